"""The time plan of one clip: beat grid, sections (= storyboards) and their musical roles.

The plan is shared by the music and the video renderers so that the two agree by construction:
sections start on downbeats, every beat time is known exactly, and the video's transitions are
placed on this grid (see `video.plan_shots`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vem.runtime.tempo import MAX_CHANGE_PER_BAR, TEMPO_RANGE_BPM

from .style import Style

SECTION_KINDS = ("intro", "verse", "chorus", "bridge", "breakdown", "outro")

MAJOR_PROGRESSIONS = [[0, 4, 5, 3], [0, 3, 4, 3], [5, 3, 0, 4], [0, 5, 3, 4], [1, 4, 0, 0], [0, 3, 0, 4], [3, 4, 0, 5]]
MINOR_PROGRESSIONS = [[0, 5, 2, 6], [0, 3, 4, 0], [0, 6, 5, 6], [0, 3, 5, 4], [0, 5, 3, 4], [5, 6, 0, 0]]


@dataclass
class Section:
    index: int
    kind: str
    first_bar: int
    n_bars: int
    start_s: float
    end_s: float
    progression: list[int]  # scale degrees (0-based), one chord per bar, cycled
    drum_level: int  # 0 sparse (kick + light time-keeping), 1 normal, 2 full
    lead: bool
    harmony_pattern: str  # "sustain" | "stabs" | "arpeggio" | "strum"
    octave_shift: int = 0  # harmony register change for contrast

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


# Tempo maps (the runtime's `vem.runtime.tempo.tempo_map` asks for them on free edits): the
# tempo glides, changing by at most the runtime's bound per bar, its rate chosen anew every 2-4
# bars, within GLIDE_RANGE of the style's tempo and inside the runtime's TEMPO_RANGE_BPM.
GLIDE_RANGE = (0.8, 1.25)


@dataclass
class TempoWarp:
    """Steady time -> clip time, piecewise linear between beats: the music is planned and played at
    the style's steady tempo and every event is moved to where its beat falls on the tempo map."""

    steady_s: np.ndarray  # beat times at the steady tempo
    clip_s: np.ndarray  # the same beats on the map
    # Slopes of the first and last beat interval, for times outside the map (computed once: the
    # warp is called for every note).
    first_slope: float = field(init=False, repr=False, compare=False)
    last_slope: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.first_slope = (self.clip_s[1] - self.clip_s[0]) / (self.steady_s[1] - self.steady_s[0])
        self.last_slope = (self.clip_s[-1] - self.clip_s[-2]) / (self.steady_s[-1] - self.steady_s[-2])

    def __call__(self, t):
        t = np.asarray(t, dtype=np.float64)
        inside = np.interp(t, self.steady_s, self.clip_s)
        out = np.where(t < self.steady_s[0], self.clip_s[0] + (t - self.steady_s[0]) * self.first_slope, inside)
        out = np.where(t > self.steady_s[-1], self.clip_s[-1] + (t - self.steady_s[-1]) * self.last_slope, out)
        return float(out) if out.ndim == 0 else out

    def inverse(self, t: float) -> float:
        return float(TempoWarp(self.clip_s, self.steady_s)(t))


def plan_warp(tempo_bpm: float, beats_per_bar: int, offset_s: float, duration_s: float,
              rng: np.random.Generator) -> TempoWarp:
    """A random tempo map from the first beat on (before it the tempo is steady)."""
    period = 60.0 / tempo_bpm
    slowest, fastest = TEMPO_RANGE_BPM
    low = max(GLIDE_RANGE[0], tempo_bpm / fastest)  # period multipliers: fastest ... slowest tempo
    high = min(GLIDE_RANGE[1], tempo_bpm / slowest)
    per_bar = math.log1p(MAX_CHANGE_PER_BAR)
    log_scale, rate, bars_left = 0.0, 0.0, 0
    steady, mapped = [offset_s], [offset_s]
    k = 0
    while mapped[-1] < duration_s + 8 * period or steady[-1] < duration_s + 8 * period:
        if k % beats_per_bar == 0:
            if bars_left == 0:  # a new glide every 2-4 bars: slower, steady or faster
                rate = float(rng.uniform(-per_bar, per_bar)) if rng.random() < 0.8 else 0.0
                bars_left = int(rng.integers(2, 5))
            bars_left -= 1
        step = rate / beats_per_bar
        if not math.log(low) <= log_scale + step <= math.log(high):
            rate, step = -rate, -step  # turn back at the edge of the range
        log_scale += step
        steady.append(steady[-1] + period)
        mapped.append(mapped[-1] + period * math.exp(log_scale))
        k += 1
    return TempoWarp(np.asarray(steady), np.asarray(mapped))


@dataclass
class Timeline:
    """Bars, sections and beats. ``beat_offset_s``, ``beat_period_s`` and `bar_start` are in steady
    time (the style's tempo); ``beats_s``, the sections' start/end and ``duration_s`` are clip times.
    Without a tempo map (``warp`` None) the two are the same."""

    duration_s: float
    beat_offset_s: float
    beat_period_s: float
    beats_per_bar: int
    beats_s: np.ndarray  # every beat time inside (0, duration)
    sections: list[Section] = field(default_factory=list)
    warp: TempoWarp | None = None

    def clip_time(self, steady_s: float) -> float:
        """Where a moment of the steady plan falls in the clip (the tempo map's time)."""
        return steady_s if self.warp is None else float(self.warp(steady_s))

    @property
    def steady_duration_s(self) -> float:
        return self.duration_s if self.warp is None else self.warp.inverse(self.duration_s)

    @property
    def downbeats_s(self) -> np.ndarray:
        return self.beats_s[:: self.beats_per_bar]

    @property
    def bar_s(self) -> float:
        return self.beat_period_s * self.beats_per_bar

    def bar_start(self, bar: int) -> float:
        return self.beat_offset_s + bar * self.bar_s

    @property
    def n_bars(self) -> int:
        return int(np.ceil((self.steady_duration_s - self.beat_offset_s) / self.bar_s))


def plan_timeline(style: Style, duration_s: float, rng: np.random.Generator,
                  warp_rng: np.random.Generator | None = None) -> Timeline:
    """Beat grid over [0, duration_s] and a split of the bars into 1-6 sections of 2-8 bars.
    ``warp_rng``: put the beats on a random tempo map (`plan_warp`) instead of a steady tempo."""
    period = 60.0 / style.tempo_bpm
    offset = float(rng.uniform(0.05, 0.45))
    warp = None if warp_rng is None else plan_warp(style.tempo_bpm, style.beats_per_bar, offset, duration_s, warp_rng)
    steady_duration = duration_s if warp is None else warp.inverse(duration_s)
    n_beats = int(np.floor((steady_duration - offset) / period - 1e-9)) + 1
    beats = offset + period * np.arange(n_beats)
    if warp is not None:
        beats = warp(beats)
    beats = beats[beats < duration_s - 1e-6]
    timeline = Timeline(duration_s, offset, period, style.beats_per_bar, beats, warp=warp)

    n_bars = timeline.n_bars
    # Sections of ~4 bars (2-8), at most one per ~4 s so that each storyboard is a real scene.
    target_bars = int(np.clip(round(4.0 / timeline.bar_s) * 2, 2, 8)) if timeline.bar_s < 4 else 2
    sizes: list[int] = []
    left = n_bars
    while left > 0:
        size = int(np.clip(target_bars + rng.choice([-2, 0, 0, 2]), 2, 8))
        if left - size < 2:  # no 1-bar leftover section
            size = left
        sizes.append(size)
        left -= size
    kinds = _section_kinds(len(sizes), rng)
    major = style.mode == "major"
    base_prog = list((MAJOR_PROGRESSIONS if major else MINOR_PROGRESSIONS)[rng.integers(0, 6)])
    alt_prog = list((MAJOR_PROGRESSIONS if major else MINOR_PROGRESSIONS)[rng.integers(0, 6)])
    bar = 0
    for i, (size, kind) in enumerate(zip(sizes, kinds)):
        start = 0.0 if i == 0 else timeline.clip_time(timeline.bar_start(bar))
        end = duration_s if i == len(sizes) - 1 else timeline.clip_time(timeline.bar_start(bar + size))
        drum_level = {"intro": 0, "verse": 1, "chorus": 2, "bridge": 1, "breakdown": 0, "outro": 0}[kind]
        if style.energy > 0.65 and kind in ("verse", "bridge"):
            drum_level = 2
        harmony_pattern = {
            "pad": "sustain", "strings": "sustain", "piano": "stabs", "epiano": "stabs",
            "guitar": "strum", "dist_guitar": "strum",
        }[style.harmony]
        if kind in ("breakdown", "intro") and rng.random() < 0.5:
            harmony_pattern = "arpeggio"
        timeline.sections.append(
            Section(
                index=i,
                kind=kind,
                first_bar=bar,
                n_bars=size,
                start_s=float(start),
                end_s=float(end),
                progression=alt_prog if kind == "bridge" else base_prog,
                drum_level=drum_level,
                lead=kind in ("verse", "chorus", "bridge") and rng.random() < 0.85,
                harmony_pattern=harmony_pattern,
                octave_shift=1 if kind == "chorus" and rng.random() < 0.5 else 0,
            )
        )
        bar += size
    return timeline


def _section_kinds(n: int, rng: np.random.Generator) -> list[str]:
    if n == 1:
        return [str(rng.choice(["verse", "chorus"]))]
    if n == 2:
        return ["intro", "chorus"] if rng.random() < 0.5 else ["verse", "chorus"]
    middle = []
    for i in range(n - 2):
        middle.append(["verse", "chorus"][i % 2] if rng.random() < 0.75 else str(rng.choice(["bridge", "breakdown"])))
    return ["intro"] + middle + [str(rng.choice(["chorus", "outro"]))]
