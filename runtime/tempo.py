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
