"""The time plan of one clip: beat grid, sections (= storyboards) and their musical roles.

The plan is shared by the music and the video renderers so that the two agree by construction:
sections start on downbeats, every beat time is known exactly, and the video's transitions are
placed on this grid (see `video.plan_shots`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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


@dataclass
class Timeline:
    duration_s: float
    beat_offset_s: float
    beat_period_s: float
    beats_per_bar: int
    beats_s: np.ndarray  # every beat time inside (0, duration)
    sections: list[Section] = field(default_factory=list)

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
        return int(np.ceil((self.duration_s - self.beat_offset_s) / self.bar_s))


def plan_timeline(style: Style, duration_s: float, rng: np.random.Generator) -> Timeline:
    """Beat grid over [0, duration_s] and a split of the bars into 1-6 sections of 2-8 bars."""
    period = 60.0 / style.tempo_bpm
    offset = float(rng.uniform(0.05, 0.45))
    n_beats = int(np.floor((duration_s - offset) / period - 1e-9)) + 1
    beats = offset + period * np.arange(n_beats)
    beats = beats[beats < duration_s - 1e-6]
    timeline = Timeline(duration_s, offset, period, style.beats_per_bar, beats)

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
        start = 0.0 if i == 0 else timeline.bar_start(bar)
        end = duration_s if i == len(sizes) - 1 else timeline.bar_start(bar + size)
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
