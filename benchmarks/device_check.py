"""One device check: everything GPU-related this machine allows, in one run, in under 5 minutes.

    python -m benchmarks.device_check                       # the shipped bundle; JSON + table
    python -m benchmarks.device_check --bundle DIR --out benchmarks/results/device-check-orin.json

Sections, each ``ok``, ``skipped`` (with the reason: what this machine lacks) or ``failed``
(with the error), each timed:

- ``environment``: Python, platform, versions (numpy, ONNX Runtime and its providers, TensorRT,
  cuda-python / cuda-bindings, CuPy, torch), the GPU and driver as `gpu_info` sees them.
- ``cuda_helpers``: the cuda-python helpers the TensorRT backend stands on
  (`vem.runtime.backends.cuda`): device and pinned buffers round trip, a captured CUDA graph
  replays a copy on new data, host-to-device bandwidth from pageable vs pinned memory.
- ``torch_cuda_proxy``: the proxy of benchmarks/test_gpu.py (one guided step of the paper
  denoiser, random weights, fp16, replayed from a CUDA graph, peak device memory) at 10 s.
- ``tensorrt_engines``: per component of the bundle, a strongly typed engine built as
  `vem-export --from-bundle` builds it (`vem.export.engines`), its parity with ONNX Runtime's
  CPU provider on the same inputs (the profile's typical shapes), and its latency; for the
  denoiser also the bound diffusion step (one context, one CUDA graph, pinned copies).
- ``onnxruntime_gpu``: each component on ONNX Runtime's CUDA EP and TensorRT EP (its engine
  cache in a temporary folder), parity with the CPU provider and latency.

A time budget (``--budget-s``, default 270 s) is shared: a step that would start after it is
skipped with that reason. The JSON (``"tool": "vem-device-check"``) and a Markdown table of
every step are written side by side (``--out`` and the same name with ``.md``).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "device-check.json"
SECTIONS = ("environment", "cuda_helpers", "torch_cuda_proxy", "tensorrt_engines", "onnxruntime_gpu")
STATUSES = ("ok", "skipped", "failed")
REPEATS = 10
# GPU vs ONNX Runtime CPU, max |a - b| / max |b|: TensorRT may use TF32 for fp32 layers (on by
# default), fp16 kernels round differently from the CPU's fp32-upcast ones, int8 kernels differ in
# rounding and accumulation. Over the bound a row says so (``within_bound`` false); it does not fail.
PARITY_BOUNDS = {"fp32": 5e-3, "fp16": 2e-2, "int8": 0.1}


class Skip(Exception):
    """This machine lacks what a step needs; the message says what."""


class Clock:
    def __init__(self, budget_s: float):
        self.start = time.perf_counter()
        self.budget_s = budget_s

    @property
    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)

    def need(self, seconds: float, what: str) -> None:
        if self.left < seconds:
            raise Skip(f"time budget: {self.left:.0f} s of {self.budget_s:.0f} s left, {what} needs ~{seconds:.0f} s")


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _median_ms(function: Callable[[], Any], repeats: int = REPEATS, warmup: int = 2) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def _relative(candidate: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
    """max |a - b| / max |b| over every output (float64)."""
    worst = 0.0
    for name, ref in reference.items():
        a, b = np.asarray(candidate[name], np.float64), np.asarray(ref, np.float64)
        worst = max(worst, float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30)))
    return worst


# ---- sections ----------------------------------------------------------------------------------


def environment(clock: Clock, bundle_dir: Path) -> dict[str, Any]:
    import onnxruntime

    from vem.runtime.backends.cuda import gpu_info

    gpu = gpu_info()
    return {
        "python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine(),
        "packages": {p: _version(p) for p in ("vem", "numpy", "onnxruntime", "onnxruntime-gpu", "tensorrt",
                                              "tensorrt-cu12", "polygraphy", "onnx", "cuda-python", "cuda-bindings",
                                              "cupy-cuda12x", "torch")},
        "onnxruntime_providers": list(onnxruntime.get_available_providers()),
        "gpu": {"available": gpu.available, "reason": gpu.reason, "compute_capability": gpu.compute_capability,
                "name": gpu.name, "driver_cuda": gpu.driver_version, "bindings": gpu.bindings_version},
        "bundle": str(bundle_dir),
    }


def _need_gpu() -> Any:
    from vem.runtime.backends.cuda import gpu_info

    gpu = gpu_info()
    if not gpu.available:
        raise Skip(gpu.reason)
    return gpu


def cuda_helpers(clock: Clock, bundle_dir: Path) -> dict[str, Any]:
    _need_gpu()
    from vem.runtime.backends.cuda import CudaGraph, DeviceBuffer, PinnedBuffer, Stream

    stream = Stream()
    size = 64 << 20
    data = np.random.default_rng(0).standard_normal(size // 4).astype(np.float32)
    device, other, pinned = DeviceBuffer(size), DeviceBuffer(size), PinnedBuffer(size)
    try:
        device.upload(data, stream)
        round_trip = bool(np.array_equal(device.download(data.shape, data.dtype, stream), data))
        pinned.view(data.shape, data.dtype)[...] = data
        device.upload_from(pinned.ptr, size, stream)
        pinned.view(data.shape, data.dtype)[...] = 0
        device.download_to(pinned.ptr, size, stream)
        stream.synchronize()
        pinned_trip = bool(np.array_equal(pinned.view(data.shape, data.dtype), data))
        graph = CudaGraph()
        graph.capture(stream, lambda: other.copy_from_device(device.ptr, size, stream))
        device.upload(data * 2, stream)
        graph.launch(stream)
        replay = bool(np.array_equal(other.download(data.shape, data.dtype, stream), data * 2))
        graph.close()

        def pageable() -> None:
            device.upload(data, stream)
            stream.synchronize()

        def locked() -> None:
            device.upload_from(pinned.ptr, size, stream)
            stream.synchronize()

        pageable_ms, pinned_ms = _median_ms(pageable), _median_ms(locked)
    finally:
        for buffer in (device, other, pinned):
            buffer.free()
        stream.close()
    result = {"device_round_trip": round_trip, "pinned_round_trip": pinned_trip, "graph_replay": replay,
              "h2d_pageable_gb_s": size / pageable_ms / 1e6, "h2d_pinned_gb_s": size / pinned_ms / 1e6,
              "copy_mib": size >> 20}
    if not (round_trip and pinned_trip and replay):
        raise RuntimeError(f"a cuda helper returned wrong data: {result}")
    return result


def torch_cuda_proxy(clock: Clock, bundle_dir: Path) -> dict[str, Any]:
    try:
        import torch
    except ImportError as error:
        raise Skip(f"torch not installed ({error}): the proxy needs a CUDA build of torch") from None
    if not torch.cuda.is_available():
        raise Skip(f"no CUDA device for torch {torch.__version__} (torch.cuda.is_available() is False)")
    clock.need(40, "the paper denoiser proxy")
    from benchmarks._fixtures import denoiser_feeds
    from vem.export.bundle_writer import load_source
    from vem.export.graphs import component_specs

    model, _ = load_source("paper", seed=0)
    spec = component_specs(model.config)["denoiser"]
    module = spec.make_module(model).eval().to("cuda", dtype=torch.float16)
    feeds = denoiser_feeds(model.config, 10.0)
    static = [torch.from_numpy(feeds[name]).to("cuda") for name in spec.input_names]
    static = [t.half() if t.is_floating_point() else t for t in static]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(side):
        for _ in range(3):
            module(*static)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.reset_peak_memory_stats()
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        out = module(*static)

    def step() -> None:
        graph.replay()
        torch.cuda.synchronize()

    ms = _median_ms(step)
    return {"what": "paper denoiser, one guided step (batch 2), fp16, CUDA graph, 10 s", "step_ms": ms,
            "peak_device_mib": torch.cuda.max_memory_allocated() / 2 ** 20, "finite": bool(torch.isfinite(out).all()),
            "device": torch.cuda.get_device_name(0), "torch": torch.__version__}


def _feeds(entry: Any, manifest: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of a component at its TensorRT profile's typical ("opt") shapes."""
    from vem.export.engines import tensorrt_profiles

    config = manifest.config
    (profile,) = tensorrt_profiles(entry.name, config, config.max_seconds, config.condition.max_storyboards,
                                   entry.inputs)
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in entry.inputs:
        shape = profile[spec.name][1]
        if spec.dtype == "uint8":
            feeds[spec.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif spec.name == "timestep":
            feeds[spec.name] = rng.uniform(0, 999, shape).astype(spec.dtype)
        elif spec.name == "branch":
            feeds[spec.name] = (np.arange(int(np.prod(shape))) % 2 == 0).reshape(shape).astype(spec.dtype)
        elif spec.name in ("latent", "mel"):
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        else:
            feeds[spec.name] = rng.uniform(0, 1, shape).astype(spec.dtype)
    return feeds


def _cpu_reference(bundle: Any, name: str, precision: str, feeds: dict[str, np.ndarray]) -> tuple[dict, float]:
    from vem.runtime.backends.onnxruntime import OnnxRuntimeBackend

    runner = OnnxRuntimeBackend(providers=["CPUExecutionProvider"]).load_component(bundle, name, precision)
    outputs = runner.run(feeds)
    return outputs, _median_ms(lambda: runner.run(feeds), repeats=3, warmup=1)


def tensorrt_engines(clock: Clock, bundle_dir: Path, precision: str | None) -> dict[str, Any]:
    from vem.export.engines import check_engine_tools, engine_source, tensorrt_profiles
    from vem.export.tensorrt import build_engine, engines_folder
    from vem.runtime.backends.cuda import gpu_info
    from vem.runtime.backends.tensorrt import TensorRTRunner
    from vem.runtime.bundle import load_bundle

    ok, reason = check_engine_tools()
    if not ok:
        raise Skip(reason)
    work = Path(tempfile.mkdtemp(prefix="vem-device-check-"))
    try:
        folder = work / "bundle"
        shutil.copytree(bundle_dir, folder)
        bundle = load_bundle(folder)
        manifest = bundle.manifest
        precision = precision or manifest.precisions()[0]
        target = folder / engines_folder(gpu_info().compute_capability)
        rows: dict[str, dict[str, Any]] = {}
        built = []
        for entry in [e for e in manifest.components if e.precision == precision]:
            row: dict[str, Any] = {"status": "ok"}
            rows[entry.name] = row
            try:
                clock.need(45 if entry.name in ("transitions", "denoiser") else 20, f"the {entry.name} engine")
                config = manifest.config
                profiles = tensorrt_profiles(entry.name, config, config.max_seconds,
                                             config.condition.max_storyboards, entry.inputs)
                source, why = engine_source(folder, entry)
                t0 = time.perf_counter()
                engine = build_engine(source, target / f"{entry.name}.{precision}.plan", profiles=profiles,
                                      timing_cache_path=target / "timing.cache", name=entry.name,
                                      precision=precision, bundle_root=folder)
                built.append(engine)
                row.update(build_s=time.perf_counter() - t0, engine_mb=engine.bytes / 1e6, source=why,
                           tensorrt=engine.tensorrt_version)
                feeds = _feeds(entry, manifest)
                reference, cpu_ms = _cpu_reference(bundle, entry.name, precision, feeds)
                runner = TensorRTRunner(folder / engine.file, name=entry.name)
                try:
                    got = runner.run(feeds)
                    row.update(parity_bound=PARITY_BOUNDS[precision])
                    row.update(max_rel_vs_cpu=_relative(got, reference), cpu_ms=cpu_ms,
                               trt_ms=_median_ms(lambda r=runner, f=feeds: r.run(f)),
                               shapes={k: list(v.shape) for k, v in feeds.items()},
                               scratch_mib=runner.scratch_bytes / 2 ** 20)
                    row["within_bound"] = row["max_rel_vs_cpu"] <= row["parity_bound"]
                    if entry.name == "denoiser":
                        static = {k: v for k, v in feeds.items() if k not in ("latent", "timestep")}
                        step = runner.bind(**static)
                        z = runner.to_device(feeds["latent"])
                        t = feeds["timestep"]
                        bound = runner.to_host(step(latent=z, timestep=t)["eps"])
                        row["bound_step_max_rel_vs_run"] = _relative({"eps": bound}, {"eps": got["eps"]})
                        row["bound_step_ms"] = _median_ms(lambda s=step, z=z, t=t: s(latent=z, timestep=t))
                        row.update(graph_captures=step.captures, graph_replays=step.replays,
                                   device_resident=runner.device_resident, context_shape_changes=runner.shape_changes)
                        step.close()
                finally:
                    runner.close()
            except Skip as skip:
                row.update(status="skipped", reason=str(skip))
            except Exception as error:  # noqa: BLE001 - one component's failure is recorded, the rest go on
                row.update(status="failed", reason=f"{type(error).__name__}: {' '.join(str(error).split())}"[:500])
        manifest.engines = built
        manifest.write(folder)
        return {"precision": precision, "tensorrt": reason, "components": rows,
                "end_to_end": _end_to_end(clock, folder, precision, work)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _end_to_end(clock: Clock, folder: Path, precision: str, work: Path) -> dict[str, Any]:
    """vem-run's pipeline on the engines just built (--backend tensorrt) for a 5 s H.264 clip,
    10 steps: where each component ran (the report's ``components``) and the stage times."""
    try:
        clock.need(30, "the end-to-end run")
        from vem.runtime.bench import write_bench_video
        from vem.runtime.pipeline import Pipeline

        video = write_bench_video(work / "clip.mp4", 5.0)
        t0 = time.perf_counter()
        pipeline = Pipeline.load(folder, backend="tensorrt", precision=precision)
        load_s = time.perf_counter() - t0
        pipeline.generate(video, steps=10, seed=0)  # warm-up: lazy set-up, CUDA graph capture
        generation = pipeline.generate(video, steps=10, seed=0)
        report = generation.report
        return {"status": "ok", "load_s": load_s, "components": report["components"],
                "backend_reason": report["backend_reason"], "timings_s": report["timings_s"],
                "finite": bool(np.isfinite(generation.waveform).all())}
    except Skip as skip:
        return {"status": "skipped", "reason": str(skip)}
    except Exception as error:  # noqa: BLE001
        return {"status": "failed", "reason": f"{type(error).__name__}: {' '.join(str(error).split())}"[:500]}


def onnxruntime_gpu(clock: Clock, bundle_dir: Path, precision: str | None) -> dict[str, Any]:
    import onnxruntime

    from vem.runtime.backends.onnxruntime import CUDA, TENSORRT_EP, OnnxRuntimeBackend
    from vem.runtime.bundle import load_bundle

    available = onnxruntime.get_available_providers()
    providers = [p for p in (CUDA, TENSORRT_EP) if p in available]
    if not providers:
        raise Skip(f"ONNX Runtime {onnxruntime.__version__} has no CUDA or TensorRT execution provider "
                   f"(it offers {', '.join(available)}; install onnxruntime-gpu)")
    _need_gpu()
    bundle = load_bundle(bundle_dir)
    precision = precision or bundle.manifest.precisions()[0]
    work = Path(tempfile.mkdtemp(prefix="vem-ort-trt-"))
    result: dict[str, Any] = {"precision": precision}
    try:
        for provider in providers:
            rows = result[provider] = {}
            chain = [provider] + ([CUDA] if provider == TENSORRT_EP and CUDA in available else [])
            backend = OnnxRuntimeBackend([*chain, "CPUExecutionProvider"],
                                         tensorrt_cache_dir=work if provider == TENSORRT_EP else None)
            for entry in [e for e in bundle.manifest.components if e.precision == precision]:
                row: dict[str, Any] = {"status": "ok"}
                rows[entry.name] = row
                try:
                    clock.need(40 if provider == TENSORRT_EP else 10, f"{entry.name} on {provider}")
                    feeds = _feeds(entry, bundle.manifest)
                    reference, cpu_ms = _cpu_reference(bundle, entry.name, precision, feeds)
                    t0 = time.perf_counter()
                    runner = backend.load_component(bundle, entry.name, precision)
                    row.update(load_s=time.perf_counter() - t0, provider=runner.provider, why=runner.why,
                               fallbacks=list(runner.notes))
                    row.update(max_rel_vs_cpu=_relative(runner.run(feeds), reference), cpu_ms=cpu_ms,
                               gpu_ms=_median_ms(lambda r=runner, f=feeds: r.run(f)),
                               parity_bound=PARITY_BOUNDS[precision])
                    row["within_bound"] = row["max_rel_vs_cpu"] <= row["parity_bound"]
                    runner.close()
                except Skip as skip:
                    row.update(status="skipped", reason=str(skip))
                except Exception as error:  # noqa: BLE001
                    row.update(status="failed", reason=f"{type(error).__name__}: {' '.join(str(error).split())}"[:500])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


# ---- the run -----------------------------------------------------------------------------------


def run(bundle_dir: Path, budget_s: float = 270.0, precision: str | None = None) -> dict[str, Any]:
    clock = Clock(budget_s)
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "environment": lambda: environment(clock, bundle_dir),
        "cuda_helpers": lambda: cuda_helpers(clock, bundle_dir),
        "torch_cuda_proxy": lambda: torch_cuda_proxy(clock, bundle_dir),
        "tensorrt_engines": lambda: tensorrt_engines(clock, bundle_dir, precision),
        "onnxruntime_gpu": lambda: onnxruntime_gpu(clock, bundle_dir, precision),
    }
    sections = {}
    for name in SECTIONS:
        t0 = time.perf_counter()
        try:
            sections[name] = {"status": "ok", "reason": "", **steps[name]()}
        except Skip as skip:
            sections[name] = {"status": "skipped", "reason": str(skip)}
        except Exception as error:  # noqa: BLE001 - the check goes on and records what broke
            sections[name] = {"status": "failed", "reason": f"{type(error).__name__}: {' '.join(str(error).split())}",
                              "traceback": traceback.format_exc()[-2000:]}
        failed = [f"{group}/{component}" for group, rows in _component_groups(name, sections[name]).items()
                  for component, row in rows.items() if row["status"] == "failed"]
        if failed:
            sections[name].update(status="failed", reason=f"failed: {', '.join(failed)}")
        sections[name]["seconds"] = round(time.perf_counter() - t0, 3)
    return {"tool": "vem-device-check", "version": 1, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "budget_s": budget_s, "total_s": round(time.perf_counter() - clock.start, 3), "sections": sections}


def _component_groups(name: str, section: dict[str, Any]) -> dict[str, dict[str, dict]]:
    if name == "tensorrt_engines" and "components" in section:
        return {"TensorRT": section["components"], "pipeline": {"end_to_end": section["end_to_end"]}}
    if name == "onnxruntime_gpu":
        return {k: v for k, v in section.items() if isinstance(v, dict)}
    return {}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


def table(record: dict[str, Any]) -> str:
    """Markdown: one row per section, and one per component of the engine / ORT GPU sections."""
    lines = ["| check | status | seconds | result or reason |", "|---|---|---|---|"]
    for name, section in record["sections"].items():
        detail = section.get("reason") or ""
        if section["status"] == "ok" and name == "environment":
            gpu = section["gpu"]
            detail = f"GPU: {gpu['reason']}; ORT providers: {', '.join(section['onnxruntime_providers'])}"
        elif section["status"] == "ok" and name == "cuda_helpers":
            detail = (f"round trips and graph replay correct; H2D {section['h2d_pageable_gb_s']:.1f} GB/s pageable, "
                      f"{section['h2d_pinned_gb_s']:.1f} GB/s pinned")
        elif section["status"] == "ok" and name == "torch_cuda_proxy":
            detail = f"{section['step_ms']:.2f} ms per step, peak {section['peak_device_mib']:.0f} MiB"
        lines.append(f"| {name} | {section['status']} | {section['seconds']:.1f} | {detail} |")
        for label, rows in _component_groups(name, section).items():
            for component, row in rows.items():
                if row["status"] != "ok":
                    text = row.get("reason", "")
                elif "components" in row:  # the end-to-end run: where each component ran
                    text = "; ".join(f"{c} {p['backend']} ({p['provider']})" for c, p in row["components"].items())
                    text += f"; diffuse {row['timings_s'].get('diffuse', 0):.2f} s, total {row['timings_s']['total']:.2f} s"
                else:
                    keys = [k for k in ("max_rel_vs_cpu", "within_bound", "trt_ms", "gpu_ms", "cpu_ms", "build_s",
                                        "bound_step_ms", "graph_replays", "provider") if k in row]
                    text = ", ".join(f"{k} {_fmt(row[k])}" for k in keys)
                lines.append(f"| {name} / {label} / {component} | {row['status']} | | {text} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from vem.runtime.pipeline import default_bundle_path

    parser = argparse.ArgumentParser(prog="python -m benchmarks.device_check", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=None, help="bundle to check (default: the shipped one)")
    parser.add_argument("--precision", choices=["fp32", "fp16", "int8"], default=None,
                        help="graphs to check (default: the bundle's first precision)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON to write (default {DEFAULT_OUT})")
    parser.add_argument("--budget-s", type=float, default=270.0, help="time budget for the whole check (default 270)")
    args = parser.parse_args(argv)
    bundle_dir = args.bundle or default_bundle_path()
    record = run(Path(bundle_dir), args.budget_s, args.precision)
    text = table(record)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)
    print(f"device check: {args.out} and {args.out.with_suffix('.md')} in {record['total_s']:.0f} s")
    return 1 if any(s["status"] == "failed" for s in record["sections"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
