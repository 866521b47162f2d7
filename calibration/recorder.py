"""Calibration data from real runtime runs: what each component is fed when the fp32 bundle makes
music for a video.

`record_calibration` runs `vem.runtime.pipeline.Pipeline` (the runtime a user runs, not a
re-implementation) on calibration videos with every component wrapped in a recorder, so the
activations we calibrate on are the ones the deployed graphs will see: decoded and resized
frames, storyboard tokens, aligner features and, for the denoiser, the latent and timestep at
*every* sampler step. Diffusion activations drift with the timestep (Q-Diffusion, Li et al. 2023;
PTQ4DM, Shang et al. 2023), so a calibration set from one step would mis-range the others; each
denoiser sample carries its step index and timestep so that ranges can be taken per step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vem.runtime.bundle import COMPONENTS, Bundle, load_bundle

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
# Default calibration set (`vem-export --precision int8` without --calib): 8 synthetic clips of
# 4-6 s, every sampler step. On the 2-core CPU this project is measured on, one fp32 run of such
# a clip costs ~8 s, so recording takes ~1-2 min. The field's recipe is larger (~32 clips x all
# steps); `--calib-clips 32` gives it where time allows.
DEFAULT_CLIPS = 8
DEFAULT_SECONDS = (4.0, 6.0)
DEFAULT_SEED = 7000  # vem-synth dataset seed of calibration clips (held-out gate clips use another)


@dataclass
class DenoiserStep:
    """Where a denoiser sample came from: video index, sampler step index and timestep."""

    video: int
    step: int
    timestep: float


@dataclass
class CalibrationSet:
    """Recorded feeds per component (graph input name -> array), in call order.

    ``denoiser_steps[i]`` describes ``samples["denoiser"][i]``. Feeds of the denoiser share their
    static inputs (the conditions of one generation) by reference, so a set of 8 clips x 25 steps
    stays small."""

    samples: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=lambda: {c: [] for c in COMPONENTS})
    denoiser_steps: list[DenoiserStep] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    steps: int = 0

    def count(self, component: str) -> int:
        return len(self.samples.get(component, []))

    def describe(self) -> dict[str, Any]:
        """Facts for the manifest's calibration section."""
        return {
            "videos": [Path(v).name for v in self.videos],
            "sampler_steps": int(self.steps),
            "samples": {name: len(feeds) for name, feeds in self.samples.items()},
            "denoiser_steps_covered": sorted({s.step for s in self.denoiser_steps}),
        }

    def save(self, folder: str | os.PathLike) -> Path:
        """One .npz per sample under ``folder/<component>/`` plus the denoiser step table."""
        folder = Path(folder)
        for name, feeds in self.samples.items():
            (folder / name).mkdir(parents=True, exist_ok=True)
            for index, feed in enumerate(feeds):
                np.savez(folder / name / f"{index:05d}.npz", **feed)
        table = np.array([(s.video, s.step, s.timestep) for s in self.denoiser_steps], dtype=np.float64)
        np.save(folder / "denoiser_steps.npy", table.reshape(-1, 3))
        (folder / "videos.txt").write_text("\n".join(self.videos) + "\n")
        (folder / "steps.txt").write_text(f"{self.steps}\n")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> CalibrationSet:
        folder = Path(folder)
        if not (folder / "steps.txt").is_file():
            raise ValueError(f"{folder} is not a saved calibration set (no steps.txt)")
        out = cls()
        for name in COMPONENTS:
            for path in sorted((folder / name).glob("*.npz")):
                with np.load(path) as data:
                    out.samples[name].append({key: data[key] for key in data.files})
        table = np.load(folder / "denoiser_steps.npy")
        out.denoiser_steps = [DenoiserStep(int(v), int(s), float(t)) for v, s, t in table]
        out.videos = [line for line in (folder / "videos.txt").read_text().splitlines() if line]
        out.steps = int((folder / "steps.txt").read_text())
        return out


class _RecordingBound:
    """A bound denoiser that records static + dynamic feeds of every call."""

    def __init__(self, bound: Any, static: Mapping[str, Any], sink: Callable[[dict[str, np.ndarray]], None]):
        self._bound = bound
        self._static = {name: np.array(value, copy=True) for name, value in static.items()}
        self._sink = sink

    def __call__(self, **dynamic: Any) -> dict[str, Any]:
        feed = dict(self._static)  # shared arrays, new dict
        for name, value in dynamic.items():
            feed[name] = np.array(value, copy=True)
        self._sink(feed)
        return self._bound(**dynamic)

    def close(self) -> None:
        self._bound.close()


class RecordingRunner:
    """Wraps a runtime `Runner`: every call is recorded, then runs unchanged."""

    # The denoiser's guidance branches run as one batch of two while recording: one recorded
    # call (holding both branches' inputs) per sampler step.
    split_branches = False

    def __init__(self, inner: Any, sink: Callable[[dict[str, np.ndarray]], None]):
        self._inner = inner
        self._sink = sink

    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        self._sink({name: np.array(value, copy=True) for name, value in inputs.items()})
        return self._inner.run(inputs)

    def bind(self, **static_inputs: Any) -> _RecordingBound:
        return _RecordingBound(self._inner.bind(**static_inputs), static_inputs, self._sink)

    def __getattr__(self, name: str) -> Any:  # provider, backend, to_device, to_host, ...
        return getattr(self._inner, name)


def find_videos(folder: str | os.PathLike) -> list[Path]:
    """Video files directly in ``folder`` (sorted); ValueError if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--calib {folder}: not a folder of videos")
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not videos:
        raise ValueError(f"--calib {folder}: no videos ({', '.join(VIDEO_SUFFIXES)}) in it")
    return videos


def synth_videos(out_dir: str | os.PathLike, count: int, *, seed: int, seconds: tuple[float, float] = DEFAULT_SECONDS,
                 start_index: int = 0) -> list[Path]:
    """A `vem-synth` set (video, music, parse triples) written into ``out_dir``; returns the mp4s.

    Runs the `vem-synth` command in a child process: the synthetic generator belongs to
    vem.training, which nothing else imports (docs/architecture.md), and needs the ``dev`` extra
    (scikit-image)."""
    if count < 1:
        raise ValueError(f"need at least one calibration clip, got {count}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    code = "import sys; from vem.training.cli import synth_main; sys.exit(synth_main(sys.argv[1:]))"
    command = [sys.executable, "-c", code, "--out", str(out), "--count", str(count), "--seed", str(seed),
               "--seconds", f"{seconds[0]:g}-{seconds[1]:g}", "--start-index", str(start_index), "--quiet",
               "--workers", "1"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"vem-synth failed to write calibration clips (exit {result.returncode}): "
                           f"{result.stderr.strip()[-400:]}; pass --calib DIR with your own videos instead")
    return sorted(out.glob("*.mp4"))


def recording_pipeline(bundle: Bundle | str | os.PathLike, sink: Callable[[str, dict[str, np.ndarray]], None], *,
                       precision: str = "fp32", threads: int | None = None):
    """A runtime `Pipeline` on ONNX Runtime whose components report every call to
    ``sink(component, feeds)``."""
    from vem.runtime.backends import select_backend
    from vem.runtime.pipeline import Pipeline

    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    choice = select_backend("onnxruntime", bundle, precision=precision, threads=threads)
    runners = {}
    for name in COMPONENTS:
        inner = choice.backend.load_component(bundle, name, precision)
        runners[name] = RecordingRunner(inner, lambda feed, name=name: sink(name, feed))
    pipeline = Pipeline(bundle, runners, precision, choice.reason)
    pipeline.detector_everywhere = True  # TransNetV2's calibration needs it on every window
    return pipeline


def record_calibration(
    bundle: Bundle | str | os.PathLike,
    videos: Sequence[str | os.PathLike],
    *,
    steps: int | None = None,
    seed: int = 0,
    components: Iterable[str] = COMPONENTS,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> CalibrationSet:
    """Run the fp32 bundle through the runtime on ``videos`` and record every component's inputs.

    ``steps``: sampler steps per generation (default: the bundle's); the denoiser is recorded at
    each of them. ``seed``: generation seed of the first video (video i uses seed + i)."""
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    wanted = set(components)
    result = CalibrationSet()
    result.steps = int(steps or bundle.manifest.sampler["steps"])
    state = {"video": 0, "step": 0}

    def sink(name: str, feed: dict[str, np.ndarray]) -> None:
        if name == "denoiser":
            result.denoiser_steps.append(DenoiserStep(state["video"], state["step"], float(np.ravel(feed["timestep"])[0])))
            state["step"] += 1
        if name in wanted:
            result.samples[name].append(feed)
        elif name == "denoiser":
            result.denoiser_steps.pop()

    pipeline = recording_pipeline(bundle, sink, threads=threads)
    for index, video in enumerate(videos):
        state.update(video=index, step=0)
        if progress:
            progress(f"    calibration run {index + 1}/{len(videos)}: {Path(video).name}")
        pipeline.generate(video, steps=result.steps, seed=seed + index)
        result.videos.append(str(video))
    return result


def calibration_videos(calib_dir: str | os.PathLike | None, work_dir: str | os.PathLike, *, count: int = DEFAULT_CLIPS,
                       seed: int = DEFAULT_SEED) -> list[Path]:
    """The user's videos (``calib_dir``, at most ``count``... all of them when count is None)
    or a fresh `vem-synth` set of ``count`` clips in ``work_dir``."""
    if calib_dir is not None:
        videos = find_videos(calib_dir)
        return videos[:count] if count else videos
    return synth_videos(Path(work_dir) / "calibration-clips", count, seed=seed)


def cleanup(path: str | os.PathLike) -> None:
    shutil.rmtree(path, ignore_errors=True)


def temporary_folder(prefix: str = "vem-int8-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
