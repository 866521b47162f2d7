"""The INT8 quality gate: is the int8 bundle's music as well aligned as the fp32 bundle's?

On held-out clips (not the calibration clips) with fixed seeds, the fp32 and the int8 bundle run
through the same runtime (`vem.runtime.pipeline.Pipeline`) with the same seed, so the same
initial noise; the gate compares what a user would get:

- TBIoU (docs/paper.md §7, 0.5 s): the fp32 run's detected cuts vs each run's music beats. The mean
  over clips of int8 must be within ``bounds.tbiou`` (0.02) of fp32's.
- BIoU (docs/paper.md §7, 0.5 s): beats of the clip's reference music (a `vem-synth` clip's .wav
  beside the video) vs each run's beats; same 0.02 bound on the difference of means. Clips
  without reference music are compared with the fp32 run's beats as the reference (then fp32's
  BIoU is 1 by definition and int8's must be within the bound of it -- a strict test).
- Mel distance (`vem.runtime.mel.mel_distance`, mean |log-mel difference|) between the fp32 and
  the int8 music, relative to the distance between two fp32 runs whose seeds differ. A seed
  change is the variation a user already accepts as "another take of the same prompt"; int8 may
  move the music by at most ``bounds.mel_ratio`` (0.5) of that, i.e. it must stay clearly closer
  to the fp32 piece than another take is.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class GateBounds:
    tbiou: float = 0.02
    biou: float = 0.02
    mel_ratio: float = 0.5


@dataclass
class GateClip:
    video: str
    tbiou_fp32: float
    tbiou_int8: float
    biou_fp32: float
    biou_int8: float
    biou_reference: str  # "music" (the clip's own .wav) or "fp32" (the fp32 run's beats)
    beats_agreement: float  # BIoU of int8 beats vs fp32 beats
    mel_int8: float  # mel distance fp32 vs int8, same seed
    mel_seed: float  # mel distance fp32 seed s vs fp32 seed s + 1


@dataclass
class GateResult:
    clips: list[GateClip]
    bounds: GateBounds
    seed: int
    steps: int
    summary: dict[str, float] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict:
        return {"passed": self.passed, "bounds": dict(self.bounds.__dict__), "seed": self.seed, "steps": self.steps,
                "summary": dict(self.summary), "violations": list(self.violations),
                "clips": [dict(c.__dict__, video=Path(c.video).name) for c in self.clips]}

    def table(self) -> str:
        s, b = self.summary, self.bounds
        lines = [
            f"quality gate ({len(self.clips)} held-out clips, seed {self.seed}, {self.steps} steps):",
            f"  TBIoU   fp32 {s['tbiou_fp32']:.3f}  int8 {s['tbiou_int8']:.3f}  |diff| {s['tbiou_diff']:.3f}  bound {b.tbiou:g}",
            f"  BIoU    fp32 {s['biou_fp32']:.3f}  int8 {s['biou_int8']:.3f}  |diff| {s['biou_diff']:.3f}  bound {b.biou:g}",
            f"  mel distance fp32 vs int8 {s['mel_int8']:.3f}, fp32 vs another seed {s['mel_seed']:.3f}: "
            f"ratio {s['mel_ratio']:.3f}  bound {b.mel_ratio:g}",
            f"  beats of int8 vs fp32 music: BIoU {s['beats_agreement']:.3f}",
            "  " + ("PASSED" if self.passed else "FAILED: " + "; ".join(self.violations)),
        ]
        return "\n".join(lines)


def _reference_beats(video: str) -> np.ndarray | None:
    from vem.runtime.beats import track_beats_file

    wav = Path(video).with_suffix(".wav")
    return track_beats_file(wav) if wav.is_file() else None


def run_gate(bundle: str | os.PathLike, videos: Sequence[str | os.PathLike], *, seed: int = 0, steps: int | None = None,
             bounds: GateBounds | None = None, threads: int | None = None,
             progress: Callable[[str], None] | None = None) -> GateResult:
    """Run the gate of the module docstring on ``videos`` with the bundle's fp32 and int8 graphs."""
    from vem.runtime.bundle import load_bundle
    from vem.runtime.mel import log_mel, mel_distance
    from vem.runtime.metrics import biou, tbiou
    from vem.runtime.pipeline import Pipeline

    if not videos:
        raise ValueError("the quality gate needs at least one held-out video")
    bounds = bounds or GateBounds()
    loaded = load_bundle(bundle)
    steps = int(steps or loaded.manifest.sampler["steps"])
    fp32 = Pipeline.load(loaded, backend="onnxruntime", precision="fp32", threads=threads)
    int8 = Pipeline.load(loaded, backend="onnxruntime", precision="int8", threads=threads)
    audio = loaded.manifest.config.audio
    clips = []
    for index, video in enumerate(videos):
        video = str(video)
        if progress:
            progress(f"    gate clip {index + 1}/{len(videos)}: {Path(video).name}")
        clip_seed = seed + index
        a = fp32.generate(video, seed=clip_seed, steps=steps)
        q = int8.generate(video, seed=clip_seed, steps=steps)
        other = fp32.generate(video, seed=clip_seed + 1000, steps=steps)
        cuts = a.parse.frame.transitions_s
        beats_a = np.asarray(a.report["music"]["beats_s"])
        beats_q = np.asarray(q.report["music"]["beats_s"])
        reference = _reference_beats(video)
        kind = "music" if reference is not None else "fp32"
        if reference is None:
            reference = beats_a
        mel_a = log_mel(a.waveform, audio)
        clips.append(GateClip(
            video=video, tbiou_fp32=tbiou(cuts, beats_a), tbiou_int8=tbiou(cuts, beats_q),
            biou_fp32=biou(reference, beats_a), biou_int8=biou(reference, beats_q), biou_reference=kind,
            beats_agreement=biou(beats_a, beats_q), mel_int8=mel_distance(mel_a, log_mel(q.waveform, audio)),
            mel_seed=mel_distance(mel_a, log_mel(other.waveform, audio)),
        ))
    result = GateResult(clips, bounds, seed, steps)
    mean = {key: float(np.mean([getattr(c, key) for c in clips]))
            for key in ("tbiou_fp32", "tbiou_int8", "biou_fp32", "biou_int8", "beats_agreement", "mel_int8", "mel_seed")}
    mean["tbiou_diff"] = abs(mean["tbiou_int8"] - mean["tbiou_fp32"])
    mean["biou_diff"] = abs(mean["biou_int8"] - mean["biou_fp32"])
    mean["mel_ratio"] = mean["mel_int8"] / mean["mel_seed"] if mean["mel_seed"] > 0 else math.inf
    result.summary = mean
    if mean["tbiou_diff"] > bounds.tbiou:
        result.violations.append(f"TBIoU of int8 {mean['tbiou_int8']:.3f} differs from fp32 {mean['tbiou_fp32']:.3f} "
                                 f"by {mean['tbiou_diff']:.3f} > {bounds.tbiou:g}")
    if mean["biou_diff"] > bounds.biou:
        result.violations.append(f"BIoU of int8 {mean['biou_int8']:.3f} differs from fp32 {mean['biou_fp32']:.3f} "
                                 f"by {mean['biou_diff']:.3f} > {bounds.biou:g}")
    if not mean["mel_ratio"] <= bounds.mel_ratio:
        result.violations.append(f"int8 music is {mean['mel_ratio']:.3f}x as far from fp32 (mel distance) as "
                                 f"another fp32 seed is, > {bounds.mel_ratio:g}")
    return result
