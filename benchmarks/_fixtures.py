"""Shared pieces of the benchmark suites: bundles, models, inputs, the two generation paths.

Imported by each suite (``from benchmarks._fixtures import ...``); there is deliberately no
benchmarks/conftest.py. Bundles are exported once from the shipped checkpoint into a cache folder
(``VEM_BENCH_CACHE``, default ``~/.cache/vem-bench``) keyed by the checkpoint's and the exporter's
hashes, or taken from ``VEM_BENCH_BUNDLE_FP32`` / ``VEM_BENCH_BUNDLE_FP16`` when set. Latency does
not depend on weight values, so the weakly trained demo checkpoint times the same as a good one;
the paper config is timed with seeded random weights.

Run sizes are kept small for a shared 2-core CPU and can be raised:
``VEM_BENCH_STEPS`` (sampler steps, default 10), ``VEM_BENCH_ROUNDS`` (timed rounds after one
warm-up, default 2).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

STEPS = int(os.environ.get("VEM_BENCH_STEPS", "10"))
ROUNDS = int(os.environ.get("VEM_BENCH_ROUNDS", "2"))
STORYBOARDS = 8
CACHE = Path(os.environ.get("VEM_BENCH_CACHE", Path.home() / ".cache" / "vem-bench"))


def threads() -> int:
    """Threads for both ONNX Runtime and torch: ``VEM_BENCH_THREADS``, else the runtime's default
    (physical cores)."""
    if os.environ.get("VEM_BENCH_THREADS"):
        return int(os.environ["VEM_BENCH_THREADS"])
    from vem.runtime.backends.onnxruntime import physical_cores

    return physical_cores()


def pedantic(benchmark: Any, function: Any, *, rounds: int = ROUNDS, warmup: int = 1) -> Any:
    """One call per round, ``warmup`` untimed rounds first (pytest-benchmark's calibration would
    run a many-second call dozens of times). Records the 1-minute load average before and after,
    as the machine these run on is shared, and the process' peak resident memory during the
    rounds (VmHWM reset first; includes whatever the test loaded before)."""
    from vem.runtime.bench import peak_rss_mib, reset_peak_rss

    cpu_seconds: list[float] = []

    def timed() -> Any:
        # CPU seconds of the process (all threads) per call: on a shared machine the wall time
        # includes waiting for a core; the CPU time does not.
        start = time.process_time()
        out = function()
        cpu_seconds.append(time.process_time() - start)
        return out

    benchmark.extra_info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    reset_peak_rss()
    result = benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=warmup)
    benchmark.extra_info["peak_rss_mib"] = round(peak_rss_mib(), 1)
    timed_rounds = cpu_seconds[warmup:] or cpu_seconds  # --benchmark-disable: one call, no warm-up
    if timed_rounds:
        benchmark.extra_info["cpu_s_median"] = statistics.median(timed_rounds)
    benchmark.extra_info["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def _file_key(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def checkpoint_bundle(precision: str) -> Path:
    """A bundle of the shipped demo checkpoint at ``precision`` (exported once, then cached)."""
    override = os.environ.get(f"VEM_BENCH_BUNDLE_{precision.upper()}")
    if override:
        return Path(override)
    pytest.importorskip("torch")
    from vem.export import bundle_writer, graphs
    from vem.export.bundle_writer import DEFAULT_CHECKPOINT, export_bundle

    key = _file_key(DEFAULT_CHECKPOINT, Path(bundle_writer.__file__), Path(graphs.__file__))
    folder = CACHE / f"demo-{precision}-{key}"
    if not (folder / "manifest.json").is_file():
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        export_bundle(DEFAULT_CHECKPOINT, partial, precision, progress=None)
        partial.rename(folder)
    return folder


def demo_model() -> Any:
    """The shipped checkpoint as a PyTorch VeM in eval mode, HiFi-GAN's weight norm folded as in
    the export (so both paths compute the same network)."""
    from vem.export.bundle_writer import DEFAULT_CHECKPOINT
    from vem.model.vem import load_checkpoint

    model = load_checkpoint(DEFAULT_CHECKPOINT).eval()
    model.remove_weight_norm()
    return model


def generation_inputs(config: Any, seconds: float, *, storyboards: int = STORYBOARDS, seed: int = 0) -> dict[str, np.ndarray]:
    """Conditions of one video as the denoiser takes them (unit text/visual embeddings, random
    contiguous storyboards, and a tempo grid for a beat-grid config) plus aligner features at the
    video frame rate."""
    from vem.export.graphs import Size, component_specs, video_frames

    rng = np.random.default_rng(seed)
    feeds = component_specs(config)["denoiser"].make_inputs(config, Size(seconds, storyboards), rng)
    frames = video_frames(config, seconds)
    feeds["video_aligner_features"] = np.abs(rng.standard_normal((1, frames, config.aligner.feature_dim))).astype(np.float32)
    return feeds


def runtime_generate(pipeline: Any, inputs: dict[str, np.ndarray], seconds: float, steps: int = STEPS,
                     seed: int = 0) -> np.ndarray:
    """The torch-free runtime's generation stages (condition tensors -> diffuse -> VAE decoder ->
    vocoder) through the same `Pipeline` methods `vem-run` uses, on the pipeline's backend."""
    from vem.runtime.pipeline import StageTimer
    from vem.runtime.storyboard import resample_to_latent, storyboard_mask

    config = pipeline.config
    frames = config.latent_frames(seconds)
    feeds = {name: inputs[name] for name in ("caption", "tags", "story_text", "story_visual", "story_start_s",
                                             "story_duration_s")}
    feeds["storyboard_mask"] = storyboard_mask(inputs["story_start_s"], inputs["story_duration_s"], frames,
                                               config.latent_frames_per_second)
    feeds["aligner_features"] = resample_to_latent(inputs["video_aligner_features"], frames, config.video.fps,
                                                   config.latent_frames_per_second).astype(np.float32)
    if "beat_grid" in pipeline.runners["denoiser"].input_names:  # a beat-grid bundle: the same tempo pulses
        feeds["beat_grid"] = inputs["beat_grid"]
    latent = pipeline._diffuse(feeds, steps, config.diffusion.guidance, seed, config.diffusion.sampler, None)
    return pipeline._decode_audio(latent, seconds, StageTimer())


def torch_generate(model: Any, inputs: dict[str, np.ndarray], seconds: float, steps: int = STEPS, seed: int = 0) -> Any:
    """The PyTorch eager reference (`vem.model.pipeline.generate`) on the same conditions."""
    import torch

    from vem.model.pipeline import generate

    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(inputs[name]))

    return generate(model, tensor("caption"), tensor("tags"), tensor("story_text"), tensor("story_visual"),
                    tensor("story_start_s"), tensor("story_duration_s"), seconds,
                    aligner_features=tensor("video_aligner_features"), steps=steps, seed=seed,
                    beat_grid=tensor("beat_grid") if model.config.unet.beat_grid else None).waveform


def paper_denoiser_onnx(seed: int = 0) -> Path:
    """The paper config's guided denoiser with seeded random weights as an fp32 ONNX graph. Only
    single components are exported: the whole 354 M-parameter model takes far longer."""
    return paper_component_onnx("denoiser", seed)


def paper_component_onnx(name: str, seed: int = 0) -> Path:
    """One paper-config component (``denoiser``, ``vae_decoder``, ``vocoder``, ...) with seeded
    random weights as an fp32 ONNX graph with its dynamic axes (time, storyboards), exported once
    and then cached (latency does not depend on the weight values)."""
    pytest.importorskip("torch")
    from vem.export import graphs, onnx_utils

    key = _file_key(Path(graphs.__file__), Path(onnx_utils.__file__))
    path = CACHE / f"paper-{name}-seed{seed}-{key}.onnx"
    if path.is_file():
        return path
    import torch

    from vem.export.bundle_writer import load_source
    from vem.export.graphs import Size, component_specs

    model, _ = load_source("paper", seed=seed)
    spec = component_specs(model.config)[name]
    feeds = spec.make_inputs(model.config, Size(4.0, 2), np.random.default_rng(seed))
    args = tuple(torch.from_numpy(feeds[input_name]) for input_name in spec.input_names)
    partial = path.with_suffix(".partial.onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_utils.export_onnx(spec.make_module(model), args, partial, input_names=spec.input_names,
                           output_names=spec.output_names, dynamic_axes=spec.dynamic_axes())
    partial.rename(path)
    return path


def paper_denoiser_torch(seed: int = 0) -> Any:
    """The same paper-config guided denoiser as a PyTorch module (same seeded weights)."""
    from vem.export.bundle_writer import load_source
    from vem.export.graphs import component_specs

    model, _ = load_source("paper", seed=seed)
    return component_specs(model.config)["denoiser"].make_module(model).eval()


def denoiser_feeds(config: Any, seconds: float, seed: int = 0) -> dict[str, np.ndarray]:
    from vem.export.graphs import Size, component_specs

    # Batch 2 = [conditional, null]: one call is one guided step's work.
    return component_specs(config)["denoiser"].make_inputs(config, Size(seconds, STORYBOARDS, batch=2),
                                                           np.random.default_rng(seed))


def ort_session(path: Path) -> Any:
    from vem.runtime.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(providers=["CPUExecutionProvider"], threads=threads()).load(path, name=path.stem)
