"""Rhythm metrics of docs/paper.md §7 and the project's tight-tolerance companions (torch-free, numpy only).

Paper metrics (tolerance 0.5 s)::

    BIoU  = |B_gt ∩ B_syn| / |B_gt ∪ B_syn|    beats of the reference music vs beats of the generated music
    TBIoU = |T_v  ∩ B_m|   / |T_v  ∪ B_m|      video transitions vs beats of the generated music

The paper does not say how "∩" is counted for event times. This module fixes it as a
**one-to-one matching** (`match_events`):

1. Every pair (a_i, b_j) with |a_i − b_j| ≤ tolerance is a candidate.
2. Candidates are taken greedily in order of increasing distance (ties: smaller i, then smaller j);
   a candidate is accepted when neither a_i nor b_j has been matched yet. Each event is therefore
   matched at most once: three cuts near one beat give one match, not three ("many-to-one" is
   not allowed).
3. |A ∩ B| = number of matches; |A ∪ B| = |A| + |B| − |A ∩ B|.
4. IoU of two empty sets is 1.0 (nothing to match, nothing missed); if exactly one set is empty
   it is 0.0.

Greedy by distance can, in contrived layouts, find one match fewer than the largest possible
matching; it is deterministic, order-independent and what "nearest beat" means to a reader.

Because at usual tempi beats are ≤ 0.5 s apart, a 0.5 s tolerance lets random cut times pass
(docs/paper.md §7 caveat). Beside TBIoU the project reports the **cut-beat hit rate**: the share of
transitions with a beat within 70 ms (MIREX's beat tolerance; not one-to-one: each cut asks "is
there a beat near me"), and its **chance level**: the expected hit rate of a cut placed uniformly
at random in [0, duration], which is exactly the share of [0, duration] lying within 70 ms of some
beat (computed analytically, no random draws).

For the frame-level parser: transition precision / recall / F1 under the same one-to-one matching.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

PAPER_TOLERANCE_S = 0.5
HIT_TOLERANCE_S = 0.07
# Times closer than this to the tolerance count as inside it (0.5 written as 0.1 + 0.4, etc.).
_EPS = 1e-9


def _as_times(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: event times must be finite numbers")
    return arr


def match_events(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, tolerance: float = PAPER_TOLERANCE_S
) -> list[tuple[int, int]]:
    """One-to-one matching of two event-time lists (module docstring, rule 1-2).

    Returns the matched index pairs (i into ``a``, j into ``b``), sorted by i.
    """
    if not tolerance >= 0:
        raise ValueError(f"tolerance: must be >= 0 seconds, got {tolerance}")
    a = _as_times(a, "a")
    b = _as_times(b, "b")
    if a.size == 0 or b.size == 0:
        return []
    distance = np.abs(a[:, None] - b[None, :])
    ii, jj = np.nonzero(distance <= tolerance + _EPS)
    if ii.size == 0:
        return []
    d = distance[ii, jj]
    order = np.lexsort((jj, ii, d))  # by distance, then i, then j
    used_a = np.zeros(a.size, dtype=bool)
    used_b = np.zeros(b.size, dtype=bool)
    pairs = []
    for k in order:
        i, j = int(ii[k]), int(jj[k])
        if not used_a[i] and not used_b[j]:
            used_a[i] = used_b[j] = True
            pairs.append((i, j))
    pairs.sort()
    return pairs


def event_iou(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, tolerance: float = PAPER_TOLERANCE_S
) -> float:
    """|A ∩ B| / |A ∪ B| under the one-to-one matching; 1.0 for two empty lists, 0.0 if one is empty."""
    n_a, n_b = len(_as_times(a, "a")), len(_as_times(b, "b"))
    if n_a == 0 and n_b == 0:
        return 1.0
    matches = len(match_events(a, b, tolerance))
    return matches / (n_a + n_b - matches)


def biou(
    reference_beats: Sequence[float] | np.ndarray,
    generated_beats: Sequence[float] | np.ndarray,
    tolerance: float = PAPER_TOLERANCE_S,
) -> float:
    """BIoU (docs/paper.md §7): beats of the reference music vs beats of the generated music."""
    return event_iou(reference_beats, generated_beats, tolerance)


def tbiou(
    transitions: Sequence[float] | np.ndarray,
    music_beats: Sequence[float] | np.ndarray,
    tolerance: float = PAPER_TOLERANCE_S,
) -> float:
    """TBIoU (docs/paper.md §7): video transition times vs beats of the generated music."""
    return event_iou(transitions, music_beats, tolerance)


def nearest_offsets(targets: Sequence[float] | np.ndarray, events: Sequence[float] | np.ndarray) -> np.ndarray:
    """For each target time, the signed distance to its nearest event (event - target, seconds), in
    the targets' order; NaN for every target when there are no events."""
    targets = _as_times(targets, "targets")
    events = np.sort(_as_times(events, "events"))
    if events.size == 0:
        return np.full(targets.shape, np.nan)
    pos = np.searchsorted(events, targets)
    left = events[np.clip(pos - 1, 0, events.size - 1)]
    right = events[np.clip(pos, 0, events.size - 1)]
    return np.where(np.abs(left - targets) <= np.abs(right - targets), left, right) - targets


def count_within(targets: Sequence[float] | np.ndarray, events: Sequence[float] | np.ndarray,
                 tolerance: float = HIT_TOLERANCE_S) -> int:
    """How many targets have an event within ``tolerance``."""
    offsets = nearest_offsets(targets, events)
    return int(np.sum(np.abs(offsets[~np.isnan(offsets)]) <= tolerance + _EPS))


def hit_rate(
    cuts: Sequence[float] | np.ndarray, beats: Sequence[float] | np.ndarray, tolerance: float = HIT_TOLERANCE_S
) -> float:
    """Share of cuts with at least one beat within ``tolerance`` (default 70 ms). NaN when there are no cuts."""
    cuts = _as_times(cuts, "cuts")
    if cuts.size == 0:
        return math.nan
    return count_within(cuts, beats, tolerance) / cuts.size


def chance_hit_rate(
    beats: Sequence[float] | np.ndarray, duration_s: float, tolerance: float = HIT_TOLERANCE_S
) -> float:
    """Expected `hit_rate` of cuts drawn uniformly at random over [0, duration_s].

    Equal to the measure of (⋃_b [b − tol, b + tol]) ∩ [0, duration] divided by the duration:
    the probability that one uniform cut lands within ``tolerance`` of a beat. Exact, no sampling.
    """
    if not duration_s > 0:
        raise ValueError(f"duration_s: must be > 0, got {duration_s}")
    beats = np.sort(_as_times(beats, "beats"))
    if beats.size == 0:
        return 0.0
    starts = np.clip(beats - tolerance, 0.0, duration_s)
    ends = np.clip(beats + tolerance, 0.0, duration_s)
    covered = 0.0
    cur_start, cur_end = starts[0], ends[0]
    for s, e in zip(starts[1:], ends[1:]):
        if s > cur_end:
            covered += cur_end - cur_start
            cur_start, cur_end = s, e
        else:
            cur_end = max(cur_end, e)
    covered += cur_end - cur_start
    return float(covered / duration_s)


def transition_prf(
    reference: Sequence[float] | np.ndarray,
    predicted: Sequence[float] | np.ndarray,
    tolerance: float = PAPER_TOLERANCE_S,
) -> dict[str, float]:
    """Precision, recall and F1 of predicted transition times against reference ones (one-to-one).

    Conventions: precision is 1.0 when nothing is predicted, recall is 1.0 when there is nothing to
    find, F1 is 1.0 when both lists are empty and 0.0 when precision + recall is 0.
    """
    n_ref, n_pred = len(_as_times(reference, "reference")), len(_as_times(predicted, "predicted"))
    matches = len(match_events(reference, predicted, tolerance))
    precision = matches / n_pred if n_pred else 1.0
    recall = matches / n_ref if n_ref else 1.0
    if n_ref == 0 and n_pred == 0:
        f1 = 1.0
    elif precision + recall == 0:
        f1 = 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "matches": matches}


def cut_beat_offsets(cuts: Sequence[float] | np.ndarray, beats: Sequence[float] | np.ndarray) -> list[dict]:
    """Per cut: its time, the nearest beat and the signed offset (beat - cut, seconds; None when
    there are no beats), in the cuts' order: what a viewer would notice, cut by cut."""
    cuts = _as_times(cuts, "cuts")
    rows = []
    for cut, offset in zip(cuts, nearest_offsets(cuts, beats)):
        if np.isnan(offset):
            rows.append({"time_s": float(cut), "nearest_beat_s": None, "offset_s": None})
            continue
        rows.append({"time_s": float(cut), "nearest_beat_s": float(cut + offset), "offset_s": round(float(offset), 6)})
    return rows


def rhythm_metrics(
    transitions: Sequence[float] | np.ndarray,
    music_beats: Sequence[float] | np.ndarray,
    duration_s: float,
    reference_beats: Sequence[float] | np.ndarray | None = None,
) -> dict[str, float]:
    """All rhythm numbers for one (video, music) pair, as `vem-eval` and `vem-run` reports carry them.

    Keys: ``tbiou`` (0.5 s), ``biou`` (0.5 s; NaN when no reference beats are given), ``hit_70ms``
    (share of transitions with a beat within 70 ms; NaN without transitions), ``chance_70ms`` (the
    same for uniformly random cut times), ``n_transitions``, ``n_beats``.
    """
    n_cuts = len(_as_times(transitions, "transitions"))
    return {
        "tbiou": tbiou(transitions, music_beats),
        "biou": biou(reference_beats, music_beats) if reference_beats is not None else math.nan,
        "hit_70ms": hit_rate(transitions, music_beats),
        "chance_70ms": chance_hit_rate(music_beats, duration_s) if n_cuts else math.nan,
        "n_transitions": float(n_cuts),
        "n_beats": float(len(_as_times(music_beats, "music_beats"))),
    }


def nan_to_none(value):
    """``value`` with every NaN float, inside dicts and lists too, replaced by None: NaN is not
    JSON, null is (what vem-run's report, vem-eval --json and the rhythm benchmarks write)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nan_to_none(v) for v in value]
    return value


__all__ = [
    "HIT_TOLERANCE_S",
    "PAPER_TOLERANCE_S",
    "biou",
    "chance_hit_rate",
    "count_within",
    "cut_beat_offsets",
    "event_iou",
    "hit_rate",
    "match_events",
    "nan_to_none",
    "nearest_offsets",
    "rhythm_metrics",
    "tbiou",
    "transition_prf",
]
