"""The tempo a soundtrack is written at, and the beat grid that tells the model so.

The demo model left to itself chose its own tempo, unrelated to the clip's (model card: 2.33
detected beats/s against the reference music's 1.83, per-clip correlation 0.13), so a third of
its soundtracks ran at about double time and most of their beats fell between cuts. A checkpoint
with ``UNetConfig.beat_grid`` therefore reads, beside the TB aligner's features, one more adapter
channel: a pulse per beat at the latent frame rate (`beat_grid`). In training the pulses are the
reference music's beats; at run time they come from `choose_tempo`, which picks the tempo and
phase that the video implies:

- the pace word of the parse's tags (the vocabulary's "slow" < 95 BPM <= "moderate" < 128 BPM <=
  "fast") gives a prior: the centre of its range. It is a soft prior, because the word is the
  style head's guess from the pictures: a hard range lost the right tempo for half the clips
  (tempo within 5 % for 51 % of the clips with two or more cuts, against 75 % with the soft
  prior; vem-synth's training and selection clips, predicted tags, `python -m
  vem.training.tempo_check`);
- edited video cuts on the beat, usually on a bar line, so the intervals between cuts are whole
  numbers of beats: every tempo from 70 to 170 BPM is scored by how far the cuts fall from its
  grid (anchored on the first cut), plus a preference for grids that put every cut on a downbeat
  and a cost for the distance from the prior's centre (an octave costs as much as the cuts being
  one 16 fps frame off the grid); the best one wins;
- with fewer than two cuts the prior's centre is used, the grid through the cut (or 0).

The user can also fix the tempo (`vem-run --bpm`); the grid is then anchored on the first cut.
Everything here is numpy (the runtime's torch-free rule) and shared by training, evaluation and
the runtime, so all three build the same grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .metrics import count_within

# The tag vocabulary's pace words and the tempo ranges they stand for (BPM, [low, high)).
PACE_BPM: dict[str, tuple[float, float]] = {"slow": (70.0, 95.0), "moderate": (95.0, 128.0), "fast": (128.0, 170.0)}
TEMPO_RANGE_BPM = (70.0, 170.0)
MIN_BPM, MAX_BPM = 30.0, 300.0  # what a user's --bpm may be
BEATS_PER_BAR = 4
# How far (seconds) a cut may sit from the grid and still count as on it: one 16 fps video frame,
# the resolution at which the transition detector places cuts.
CUT_TOLERANCE_S = 1.0 / 16.0
# Score weights (per unit of the term; the lowest score wins), chosen on vem-synth's training and
# selection clips with the style head's predicted tags, not on the held-out clips (model card).
OFF_GRID_WEIGHT = 1.0  # mean distance of the cuts from the grid, in units of CUT_TOLERANCE_S
DOWNBEAT_BONUS = 0.5  # subtracted when every cut lands on a bar line (a multiple of BEATS_PER_BAR)
PRIOR_WEIGHT = 1.0  # |log2(bpm / prior centre)|: an octave away costs this much
CANDIDATE_STEP_BPM = 0.25
# Above this tempo listeners and beat trackers often hear half time (madmom tracked the demo
# model's 160-164 BPM music at 80-82 BPM on held-out slideshows, and lost every cut on an odd beat;
# docs/rhythm.md says which runs). A grid this fast therefore puts cuts only on every other beat, the beats that
# are heard either way.
FAST_BPM = 145.0


@dataclass(frozen=True)
class TempoChoice:
    """The chosen tempo (BPM), the time of one beat of its grid (``anchor_s``, seconds) and why."""

    bpm: float
    anchor_s: float
    source: str  # "user", "cuts" (fitted to two or more cuts), "prior" (the pace word's centre)

    @property
    def period_s(self) -> float:
        return 60.0 / self.bpm

    def beats(self, duration_s: float) -> np.ndarray:
        return beat_times(self.bpm, self.anchor_s, duration_s)

    def report(self) -> dict:
        """vem-run's report entry (unrounded: the report gives the exact grid)."""
        return {"bpm": self.bpm, "anchor_s": self.anchor_s, "source": self.source}


def pace_range(tags: list[str] | tuple[str, ...] = ()) -> tuple[float, float]:
    """The tempo range (BPM) of the first pace word among ``tags``, else the whole range."""
    return next((PACE_BPM[tag] for tag in tags if tag in PACE_BPM), TEMPO_RANGE_BPM)


def tempo_prior(tags: list[str] | tuple[str, ...] = ()) -> float:
    """The tempo the tags suggest (BPM): the geometric centre of their pace range (tempo ratios,
    not differences, are what the ear hears)."""
    low, high = pace_range(tags)
    return math.sqrt(low * high)


def _off_grid(cuts_s: np.ndarray, period_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Each cut's distance (s) from the grid through the first cut, and its beat index on it."""
    beats = (cuts_s - cuts_s[0]) / period_s
    index = np.rint(beats)
    return np.abs(beats - index) * period_s, index.astype(np.int64)


def choose_tempo(cuts_s, tags: list[str] | tuple[str, ...] = (), bpm: float | None = None,
                 hard_pace: bool = False) -> TempoChoice:
    """The tempo and phase for a clip with these cut times (seconds) and tags (see the module
    docstring). ``bpm``: the user's tempo, kept as given (only its phase is chosen).
    ``hard_pace``: only tempi inside the pace word's range (the first rule; kept so that
    `python -m vem.training.tempo_check` can compare the two)."""
    cuts = np.sort(np.asarray(cuts_s, dtype=np.float64).reshape(-1))
    cuts = cuts[np.isfinite(cuts)]
    anchor = float(cuts[0]) if cuts.size else 0.0
    if bpm is not None:
        if not (math.isfinite(bpm) and MIN_BPM <= bpm <= MAX_BPM):
            raise ValueError(f"tempo must be between {MIN_BPM:g} and {MAX_BPM:g} BPM, got {bpm}")
        return TempoChoice(float(bpm), anchor, "user")
    centre = tempo_prior(tags)
    if cuts.size < 2:
        return TempoChoice(round(centre, 2), anchor, "prior")
    low, high = pace_range(tags) if hard_pace else TEMPO_RANGE_BPM
    candidates = np.arange(low, high + 1e-9, CANDIDATE_STEP_BPM)
    best, best_score = centre, math.inf
    for candidate in candidates:
        if candidate > FAST_BPM:  # cuts on every other beat only (see FAST_BPM)
            distance, half_index = _off_grid(cuts, 2 * 60.0 / candidate)
            index = 2 * half_index
        else:
            distance, index = _off_grid(cuts, 60.0 / candidate)
        score = OFF_GRID_WEIGHT * float(distance[1:].mean()) / CUT_TOLERANCE_S
        if np.all(index % BEATS_PER_BAR == 0):
            score -= DOWNBEAT_BONUS
        score += PRIOR_WEIGHT * abs(math.log2(candidate / centre))
        if score < best_score:
            best, best_score = float(candidate), score
    # The grid's phase: the one that puts the cuts, on average, closest to a beat (circular mean
    # of their phases), rather than trusting the first cut alone.
    period = 60.0 / best
    phases = np.exp(2j * np.pi * cuts / period)
    anchor = float((np.angle(phases.mean()) / (2 * np.pi)) % 1.0 * period)
    return TempoChoice(best, anchor, "cuts")


def beat_times(bpm: float, anchor_s: float, duration_s: float) -> np.ndarray:
    """Every beat of the grid at ``bpm`` through ``anchor_s`` within [0, duration_s)."""
    period = 60.0 / bpm
    first = anchor_s - math.floor(anchor_s / period) * period
    return first + period * np.arange(max(0, math.ceil((duration_s - first) / period)))


def beat_grid(beats_s, frames: int, frames_per_second: float, start_s: float = 0.0) -> np.ndarray:
    """float32 [frames]: one unit pulse per beat, split between the two latent frames around it
    in proportion to closeness (so a beat between frames keeps its exact time), for the window of
    ``frames`` latent frames starting at ``start_s``. Frame i stands for time (i + 0.5) / fps,
    like the storyboard mask's frames."""
    grid = np.zeros(frames, dtype=np.float32)
    position = (np.asarray(beats_s, dtype=np.float64) - start_s) * frames_per_second - 0.5
    lower = np.floor(position).astype(np.int64)
    upper_share = (position - lower).astype(np.float32)
    for index, share in ((lower, 1.0 - upper_share), (lower + 1, upper_share)):
        inside = (index >= 0) & (index < frames)
        np.add.at(grid, index[inside], share[inside])
    return grid


# ----------------------------------------------------------------------------------------------
# Tempo maps: free edits, every hard cut on a beat
#
# A steady tempo fitted to freely edited cuts (1.4-5 s apart, as people edit without music) puts
# many cuts between beats. Film composers hit such sync points with a tempo map: the tempo moves
# smoothly between hit points so that each lands on a beat. `tempo_map` chooses, between each pair
# of consecutive cuts, a whole number of beats whose tempo glides geometrically from where the
# previous stretch ended -- so the tempo never jumps, and changes by at most
# ``max_change_per_bar`` per bar of four beats -- from 70 BPM to FAST_BPM, preferring stretches of
# whole bars (cuts on downbeats) and tempi near the pace word's. A cut that no such map can reach
# (two cuts closer than one beat at the fastest tempo, or a tempo that would have to change faster
# than the bound) is left off the grid, and the map says which and why.

# Real scores move a few percent per bar in a ritardando or accelerando. 5 % per bar: on random
# free edits `plan_tempo` then reaches 0.925 of the cuts, against 0.883 at 4 % and 0.944 at 6 %
# (`python -m benchmarks.tempo_map_bound`; docs/rhythm.md).
MAX_CHANGE_PER_BAR = 0.05
SKIP_COST = 4.0  # cost of leaving a cut off the grid, against the per-stretch costs below
GLIDE_WEIGHT = 20.0  # per unit of |log| tempo change per bar
STRETCH_BAR_BONUS = 0.3  # a stretch of whole bars between cuts (the next cut on a downbeat)
MAP_PRIOR_WEIGHT = 0.5  # |log2(tempo / pace prior)| of each stretch
MAX_SKIPPED = 2  # cuts one stretch may leave off between two kept ones


@dataclass(frozen=True)
class TempoMap:
    """Beat times that put the chosen cuts on beats, with the tempo moving smoothly between them."""

    beats_s: np.ndarray  # every beat in [0, duration), ascending
    source: str  # "map" (fitted to the cuts), "steady", "user" or "prior" (see `tempo_map`)
    on_grid_s: tuple[float, ...]  # the cuts that are beats
    left_off: tuple[dict, ...]  # {"time_s": t, "reason": "..."} for each cut left off the grid

    @property
    def anchor_s(self) -> float:
        return float(self.beats_s[0]) if len(self.beats_s) else 0.0

    @property
    def bpm(self) -> float:
        """The median tempo (BPM) of the map."""
        if len(self.beats_s) < 2:
            return 0.0
        return float(60.0 / np.median(np.diff(self.beats_s)))

    @property
    def bpm_range(self) -> tuple[float, float]:
        if len(self.beats_s) < 2:
            return (0.0, 0.0)
        periods = np.diff(self.beats_s)
        return float(60.0 / periods.max()), float(60.0 / periods.min())

    def beats(self, duration_s: float) -> np.ndarray:
        return self.beats_s[self.beats_s < duration_s]

    def report(self) -> dict:
        low, high = self.bpm_range
        return {"bpm": round(self.bpm, 2), "bpm_range": [round(low, 2), round(high, 2)],
                "anchor_s": round(self.anchor_s, 4), "source": self.source,
                "cuts_on_grid": len(self.on_grid_s), "cuts_left_off": list(self.left_off),
                "beats_s": [round(float(b), 6) for b in self.beats_s]}


def _glide(start_period: float, length_s: float, beats: int, max_log_ratio: float = math.log(2.0)) -> float | None:
    """The per-beat ratio r with start_period * (r + r^2 + ... + r^beats) = length_s (the stretch's
    first beat comes one glided period after the cut), or None when no r with |log r| <=
    ``max_log_ratio`` fits."""
    def total(r: float) -> float:
        return start_period * (beats if abs(r - 1.0) < 1e-12 else r * (r ** beats - 1.0) / (r - 1.0))

    low, high = math.exp(-max_log_ratio), math.exp(max_log_ratio)
    if not total(low) <= length_s <= total(high):
        return None
    for _ in range(40):  # bisection: total() grows with r
        middle = 0.5 * (low + high)
        if total(middle) < length_s:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def tempo_map(cuts_s, duration_s: float, tags: list[str] | tuple[str, ...] = (),
              max_change_per_bar: float = MAX_CHANGE_PER_BAR) -> TempoMap:
    """A tempo map through the cuts (see above). Fewer than two cuts: the steady `choose_tempo`."""
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a positive number, got {duration_s}")
    cuts = np.sort(np.asarray(cuts_s, dtype=np.float64).reshape(-1))
    cuts = cuts[np.isfinite(cuts) & (cuts >= 0) & (cuts < duration_s)]
    if cuts.size < 2:
        steady = choose_tempo(cuts, tags)
        return TempoMap(steady.beats(duration_s), steady.source, tuple(float(c) for c in cuts[:1]), ())
    # A map stays at or below FAST_BPM: a steady grid above it keeps its cuts on every other beat,
    # which is heard in the right phase because the cuts sit on bar lines at a steady tempo; a
    # gliding one was not (vem-synth clips on 144-169 BPM maps: madmom found a beat at 1 of 10
    # cuts, docs/rhythm.md).
    slowest, fastest = 60.0 / TEMPO_RANGE_BPM[0], 60.0 / FAST_BPM
    prior = 60.0 / tempo_prior(tags)
    per_beat = math.log1p(max_change_per_bar) / BEATS_PER_BAR  # allowed |log r| per beat
    count = len(cuts)
    # best[i]: {end_period_bucket: (cost, end_period, previous state, beats)} for paths whose last
    # kept cut is i. Periods are bucketed to 1 % so that the search stays small.
    best: list[dict] = [dict() for _ in range(count)]

    def bucket(period: float) -> int:
        return int(round(math.log(period) / 0.01))

    # The first kept cut: any cut, with any starting tempo (a steady first stretch), skipping the
    # cuts before it. Starting periods: those that fit whole beats to the next cuts, plus the prior.
    for first in range(count):
        starts = {prior}
        for nxt in range(first + 1, min(count, first + 4)):
            gap = cuts[nxt] - cuts[first]
            for beats in range(1, int(gap / fastest) + 1):
                if slowest >= gap / beats >= fastest:
                    starts.add(gap / beats)
        for period in starts:
            if not fastest <= period <= slowest:
                continue
            cost = SKIP_COST * first + MAP_PRIOR_WEIGHT * abs(math.log2(period / prior))
            key = bucket(period)
            if key not in best[first] or cost < best[first][key][0]:
                best[first][key] = (cost, period, None, 0)
    for i in range(count):
        for key, (cost, period, _, _) in list(best[i].items()):
            for j in range(i + 1, min(count, i + 2 + MAX_SKIPPED)):
                gap = cuts[j] - cuts[i]
                skipped = j - i - 1
                if gap < fastest * 0.9:
                    continue
                lo_beats = max(1, int(gap / (slowest * 1.2)))
                hi_beats = int(gap / (fastest * 0.8)) + 1
                for beats in range(lo_beats, hi_beats + 1):
                    ratio = _glide(period, gap, beats, per_beat)
                    if ratio is None:
                        continue
                    end = period * ratio ** beats
                    if not fastest * 0.999 <= min(period * ratio, end) and max(period * ratio, end) <= slowest * 1.001:
                        continue
                    step = (GLIDE_WEIGHT * abs(math.log(ratio)) * BEATS_PER_BAR + SKIP_COST * skipped
                            + MAP_PRIOR_WEIGHT * abs(math.log2(end / prior))
                            - (STRETCH_BAR_BONUS if beats % BEATS_PER_BAR == 0 else 0.0))
                    total = cost + step
                    nkey = bucket(end)
                    if nkey not in best[j] or total < best[j][nkey][0]:
                        best[j][nkey] = (total, end, (i, key), beats)
    # The best path's end: any last cut, paying for the cuts after it.
    final = min(((cost + SKIP_COST * (count - 1 - i), i, key) for i in range(count)
                 for key, (cost, *_rest) in best[i].items()), key=lambda item: item[0])
    _, i, key = final
    path = []  # (cut index, start period of the stretch ending there, beats)
    while True:
        cost, end, previous, beats = best[i][key]
        path.append((i, end, previous, beats))
        if previous is None:
            break
        i, key = previous
    path.reverse()
    kept = [step[0] for step in path]
    beats_out: list[float] = [float(cuts[kept[0]])]
    period = path[0][1]
    first_period = period
    for (i, _, _, _), (j, end, _, beats) in zip(path, path[1:]):
        ratio = _glide(period, cuts[j] - cuts[i], beats)
        t = float(cuts[i])
        for _ in range(beats - 1):
            period *= ratio
            t += period
            beats_out.append(t)
        period = end
        beats_out.append(float(cuts[j]))
    # Before the first kept cut and after the last one: steady at the edge tempo.
    before = float(cuts[kept[0]]) - first_period * np.arange(1, int(cuts[kept[0]] / first_period) + 1)
    after = float(cuts[kept[-1]]) + period * np.arange(1, int((duration_s - cuts[kept[-1]]) / period) + 2)
    beats_all = np.concatenate([before[::-1], beats_out, after])
    beats_all = beats_all[(beats_all >= 0) & (beats_all < duration_s)]
    left_off = []
    for index, cut in enumerate(cuts):
        if index in kept:
            continue
        neighbours = [abs(cut - cuts[k]) for k in (index - 1, index + 1) if 0 <= k < count]
        if neighbours and min(neighbours) < fastest:
            reason = (f"{min(neighbours):.2f} s from the next cut: closer than one beat at "
                      f"{FAST_BPM:g} BPM, a map's fastest tempo")
        else:
            reason = (f"no tempo within {TEMPO_RANGE_BPM[0]:g}-{FAST_BPM:g} BPM changing at most "
                      f"{max_change_per_bar:.0%} per bar reaches it")
        left_off.append({"time_s": round(float(cut), 4), "reason": reason})
    return TempoMap(beats_all, "map", tuple(float(cuts[k]) for k in kept), tuple(left_off))


# ----------------------------------------------------------------------------------------------
# Which of the two: vem-run's default (`--tempo auto`)
#
# A steady tempo is what a listener expects, and what the demo adapter was trained on; a tempo map
# is for cuts no steady tempo can hold. So: the steady fit, when it puts every hard cut within
# STEADY_FIT_S of a beat (an editor who cut to a tempo and snapped to frames: at 24 fps a cut is
# at most one frame, 42 ms, after its beat, and the fitted phase halves that); otherwise the map,
# when it keeps more cuts on the grid than the steady fit does.
STEADY_FIT_S = 0.035
TEMPO_MODES = ("auto", "steady", "map")


def plan_tempo(cuts_s, duration_s: float, tags: list[str] | tuple[str, ...] = (), bpm: float | None = None,
               mode: str = "auto", max_change_per_bar: float = MAX_CHANGE_PER_BAR) -> tuple[TempoChoice | TempoMap, str]:
    """The tempo the model is asked for, and why: ``bpm`` fixes a steady tempo; ``mode`` is
    ``steady`` (one tempo fitted to the cuts), ``map`` (`tempo_map`, gliding at most
    ``max_change_per_bar``) or ``auto`` (see above)."""
    if mode not in TEMPO_MODES:
        raise ValueError(f"tempo mode must be one of {', '.join(TEMPO_MODES)}, got {mode!r}")
    cuts = np.sort(np.asarray(cuts_s, dtype=np.float64).reshape(-1))
    cuts = cuts[np.isfinite(cuts) & (cuts >= 0) & (cuts < duration_s)]
    if bpm is not None:
        return choose_tempo(cuts, tags, bpm), "the user's --bpm"
    if mode == "map":
        return tempo_map(cuts, duration_s, tags, max_change_per_bar), "--tempo map"
    steady = choose_tempo(cuts, tags)
    if mode == "steady":
        return steady, "--tempo steady"
    if cuts.size < 2:
        return steady, "auto: fewer than two cuts"
    steady_hits = count_within(cuts, steady.beats(duration_s), STEADY_FIT_S)
    if steady_hits == cuts.size:
        return steady, f"auto: one steady tempo holds all {cuts.size} cuts"
    mapped = tempo_map(cuts, duration_s, tags, max_change_per_bar)
    map_hits = count_within(cuts, mapped.beats_s, STEADY_FIT_S)
    if map_hits > steady_hits:
        return mapped, (f"auto: a steady tempo holds {steady_hits} of {cuts.size} cuts, a tempo map "
                        f"{map_hits}")
    return steady, f"auto: a tempo map holds no more cuts than one steady tempo ({steady_hits} of {cuts.size})"
