"""TensorRT engines for an ONNX bundle, without torch: what `vem-export --from-bundle` runs.

Needs only the runtime (numpy, ONNX Runtime), ``tensorrt``, ``polygraphy`` and ``onnx`` (the
``engines`` extra, or JetPack's TensorRT plus ``pip install 'vem[engines]'``); nothing on this
path imports torch or `vem.export.graphs` (tests/test_engines_without_torch.py runs it in a
process where ``import torch`` fails). `vem.export.bundle_writer` calls `build_engines` at the
end of a full export; the optimisation profiles come from the manifest's tensor specs and config
(`tensorrt_profiles`), so a bundle carries everything an engine build needs.

Per component the engine is built from the bundle's graph at each precision; where the fp16
transitions entry names a GPU graph (``notes["gpu_graph"]``: TransNetV2 computing in fp16 with
fp32 islands, written by the export when its parity holds), the engine is built from that graph
instead of the CPU's fp16-stored-weights / fp32-compute graph.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vem.runtime.bundle import EngineEntry, Manifest, TensorSpec, load_bundle, sha256_file
from vem.runtime.config import VemConfig
from vem.runtime.errors import EXIT_BUNDLE, EXIT_USAGE

ENGINE_TOOLS_HINT = ("install TensorRT 10 and the engine tools: pip install 'vem[engines]' on a desktop "
                     "(TensorRT, Polygraphy, onnx and cuda-python from PyPI); on a Jetson, JetPack's TensorRT "
                     "(python3-libnvinfer, seen through a --system-site-packages venv) and pip install polygraphy "
                     "onnx 'cuda-python>=12,<13' (README, Jetson); engines are built on the GPU that will run them")


class ExportError(RuntimeError):
    """The export cannot go on (missing checkpoint, TensorRT demanded but absent, ...)."""

    def __init__(self, message: str, exit_code: int = 1, hint: str | None = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.hint = hint


def video_frames(config: VemConfig, seconds: float) -> int:
    """Frames the runtime decodes for ``seconds`` of video (16 fps)."""
    return max(1, int(math.ceil(seconds * config.video.fps - 1e-9)))


def tensorrt_profiles(name: str, config: VemConfig, max_seconds: float, max_storyboards: int,
                      specs: Sequence[TensorSpec]) -> list[dict[str, tuple]]:
    """One optimisation profile (min / opt / max) per component over seconds and storyboards:
    min = the shortest window (one T-UNet time multiple, one storyboard), opt = 10 s and 8
    storyboards (a typical clip), max = --max-seconds and --max-storyboards; batch 1..2."""
    opt_seconds = min(10.0, max_seconds)
    dims = {
        "min": {"batch": 1, "frames": config.unet.time_multiple, "storyboards": 1, "video_frames": 1,
                "mel_frames": config.unet.time_multiple * config.vae.downsample, "windows": 1},
        "opt": {"batch": 1, "frames": config.latent_frames(opt_seconds), "storyboards": min(8, max_storyboards),
                "video_frames": video_frames(config, opt_seconds),
                "mel_frames": config.mel_frames(opt_seconds), "windows": 4},
        "max": {"batch": 2, "frames": config.latent_frames(max_seconds), "storyboards": max_storyboards,
                "video_frames": video_frames(config, max_seconds),
                "mel_frames": config.mel_frames(max_seconds), "windows": 8},
    }
    if name == "denoiser":  # on a GPU the runtime sends both guidance branches as one batch of two
        dims["opt"]["batch"] = 2
    if name == "visual":  # per-frame batches: the runtime feeds chunks of frames
        for key, value in (("min", 1), ("opt", 64), ("max", video_frames(config, max_seconds))):
            dims[key]["frames"] = value
    profile = {}
    for spec in specs:
        shapes = tuple(tuple(d if isinstance(d, int) else dims[level][d] for d in spec.shape)
                       for level in ("min", "opt", "max"))
        profile[spec.name] = shapes
    return [profile]


def engine_source(folder: Path, entry: Any) -> tuple[Path, str]:
    """The ONNX graph an engine of `entry` is built from, and why: the entry's GPU graph
    (``notes["gpu_graph"]``) when it names one whose file is there with its recorded sha256,
    else the entry's own graph."""
    gpu = (entry.notes or {}).get("gpu_graph")
    if isinstance(gpu, dict) and gpu.get("file"):
        path = folder / gpu["file"]
        if not path.is_file():
            return folder / entry.file, f"its GPU graph {gpu['file']} is missing; built from {entry.file}"
        if gpu.get("sha256") and sha256_file(path) != gpu["sha256"]:
            return folder / entry.file, f"its GPU graph {gpu['file']} does not match its sha256; built from {entry.file}"
        data = gpu.get("external_data")
        if isinstance(data, dict) and (not (folder / data["file"]).is_file()
                                       or sha256_file(folder / data["file"]) != data.get("sha256")):
            return folder / entry.file, (f"its GPU graph's weights {data['file']} are missing or do not match their "
                                         f"sha256; built from {entry.file}")
        return path, f"built from the GPU graph {gpu['file']} ({gpu.get('storage', 'fp16 compute')})"
    return folder / entry.file, f"built from {entry.file}"


def check_engine_tools() -> tuple[bool, str]:
    """(True, "TensorRT 10.3.0 on Orin (sm_87)") when TensorRT, a GPU, Polygraphy and onnx are all
    here, else (False, what is missing) -- one line."""
    from .tensorrt import tensorrt_available

    ok, reason = tensorrt_available()
    if not ok:
        return False, reason
    missing = []
    for module in ("polygraphy", "onnx"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        return False, f"{' and '.join(missing)} not installed (the engine builder needs them beside TensorRT)"
    return True, reason


def build_engines(folder: Path, manifest: Manifest, max_seconds: float, max_storyboards: int,
                  say: Callable[[str], None], precisions: Sequence[str] | None = None) -> list[EngineEntry]:
    """TensorRT engines from the bundle's ONNX graphs (strongly typed, one optimisation profile
    each, a shared timing cache) into ``engines/sm_XX/``; `precisions` limits which graphs."""
    from vem.runtime.backends.cuda import gpu_info

    from .tensorrt import build_engine, engines_folder

    capability = str(gpu_info().compute_capability)
    target = folder / engines_folder(capability)
    target.mkdir(parents=True, exist_ok=True)
    cache = target / "timing.cache"
    built = []
    for entry in manifest.components:
        if precisions is not None and entry.precision not in precisions:
            continue
        t0 = time.perf_counter()
        profiles = tensorrt_profiles(entry.name, manifest.config, max_seconds, max_storyboards, entry.inputs)
        source, why = engine_source(folder, entry)
        engine = build_engine(source, target / f"{entry.name}.{entry.precision}.plan",
                              profiles=profiles, timing_cache_path=cache, name=entry.name,
                              precision=entry.precision, bundle_root=folder)
        built.append(engine)
        say(f"    engine {engine.file}: {engine.bytes / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s ({why})")
    return built


@dataclass
class EnginesResult:
    folder: Path
    engines: list[EngineEntry]
    message: str
    seconds: float


def engines_from_bundle(bundle_dir: str | Path, out_dir: str | Path | None = None, *,
                        precisions: Sequence[str] | None = None,
                        say: Callable[[str], None] | None = print) -> EnginesResult:
    """Build the TensorRT engines of an existing ONNX bundle (in place, or into a copy at
    `out_dir`) and record them in its manifest. Raises ExportError (exit 4) when TensorRT, a GPU
    or the engine tools are missing, before anything is copied or written."""
    say = say or (lambda _m: None)
    started = time.perf_counter()
    source = Path(bundle_dir)
    bundle = load_bundle(source)  # BundleError names what is wrong with it
    available = bundle.manifest.precisions()
    wanted = list(precisions) if precisions else available
    absent = [p for p in wanted if p not in available]
    if absent:
        raise ExportError(f"bundle {source} has no {', '.join(absent)} graphs (it has {', '.join(available)})",
                          exit_code=EXIT_USAGE)
    ok, reason = check_engine_tools()
    if not ok:
        raise ExportError(f"cannot build TensorRT engines here: {reason}", exit_code=EXIT_BUNDLE,
                          hint=ENGINE_TOOLS_HINT)
    folder = source
    if out_dir is not None and Path(out_dir).resolve() != source.resolve():
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, folder, dirs_exist_ok=True)
        bundle = load_bundle(folder)
    manifest = bundle.manifest
    config = manifest.config
    say(f"vem-export: TensorRT engines for {folder} ({', '.join(wanted)}; {reason})")
    built = build_engines(folder, manifest, float(config.max_seconds), int(config.condition.max_storyboards),
                          say, precisions=wanted)
    keys = {(e.name, e.precision, e.compute_capability) for e in built}
    manifest.engines = [e for e in manifest.engines if (e.name, e.precision, e.compute_capability) not in keys]
    manifest.engines.extend(built)
    manifest.write(folder)
    message = f"built {len(built)} TensorRT engines ({reason})"
    return EnginesResult(folder, built, message, time.perf_counter() - started)
