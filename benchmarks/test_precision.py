"""int8 vs fp32 vs fp16 on ONNX Runtime's CPU provider: per component and end to end, one run.

    VEM_INT8_BUNDLE=vem-bundle-int8 VEM_FP16_BUNDLE=vem-bundle-fp16 \\
        pytest benchmarks/test_precision.py --benchmark-columns=median,iqr,rounds -s

The int8 bundle (``vem-export --precision int8``) carries the fp32 graphs too, so fp32 and int8
come from one bundle; fp16 from ``vem-export --precision fp16``. Without VEM_FP16_BUNDLE the fp16
rows are skipped. Inputs are real: one fp32 run of the runtime on a 6 s PyAV-written clip with
cuts is recorded (`vem.calibration.recorder`) and each component is timed on the call it really
gets (the denoiser: one guided step). End to end = `Pipeline.generate` on that clip with the
bundle's sampler defaults, analysis included, as `vem-run` does it.

End to end is timed twice: by pytest-benchmark per precision, and interleaved (the precisions'
runs alternate, so a load change on a shared machine hits them alike) with the median of every
stage. The last test prints the ratio table (fp32 time / precision time) and writes it to
``benchmarks/results/precision_cpu.json``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

from vem.runtime.bundle import COMPONENTS, load_bundle  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from media import write_test_video  # noqa: E402

PRECISIONS = ("fp32", "fp16", "int8")
RESULTS = Path(__file__).resolve().parent / "results" / "precision_cpu.json"
MEDIANS: dict[tuple[str, str], float] = {}
FALLBACK: dict[tuple[str, str], bool] = {}


def _bundle_for(precision: str) -> Path:
    int8 = os.environ.get("VEM_INT8_BUNDLE")
    if not int8:
        pytest.skip("set VEM_INT8_BUNDLE to a bundle from `vem-export --precision int8` (see the module docstring)")
    if precision == "fp16":
        fp16 = os.environ.get("VEM_FP16_BUNDLE")
        if not fp16:
            pytest.skip("set VEM_FP16_BUNDLE to a bundle from `vem-export --precision fp16` for the fp16 rows")
        return Path(fp16)
    return Path(int8)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "clip.mp4"
    write_test_video(path, codec="h264", fps=30, size=(320, 180), seconds=6.0,
                     cut_times=[1.5, 3.0, 4.5], moving_square=True)
    return path


@pytest.fixture(scope="module")
def feeds(clip) -> dict[str, dict[str, np.ndarray]]:
    """The largest call each component gets in one fp32 run of the runtime on the clip."""
    from vem.calibration.recorder import record_calibration

    recorded = record_calibration(_bundle_for("fp32"), [clip], steps=2)
    return {name: max(samples, key=lambda f: sum(v.size for v in f.values()))
            for name, samples in recorded.samples.items() if samples}


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("component", COMPONENTS)
def test_component(benchmark, component, precision, feeds):
    from vem.runtime.backends import OnnxRuntimeBackend

    bundle = load_bundle(_bundle_for(precision))
    entry = bundle.manifest.component(component, precision)
    runner = OnnxRuntimeBackend(["CPUExecutionProvider"]).load(entry, bundle=bundle)
    feed = {k: v for k, v in feeds[component].items() if k in runner.input_names}
    call, args = runner.run, (feed,)
    if component == "denoiser":
        # One guided step as the runtime takes it (`vem.runtime.guidance`: on this CPU the two
        # branches as concurrent calls); the recorded call holds [conditional, null].
        from vem.runtime.guidance import bind_guided

        static = {k: v[:1] for k, v in feed.items() if k not in ("latent", "timestep", "branch", "guidance")}
        call = bind_guided(runner, static, float(bundle.manifest.sampler["guidance"]))
        args = (feed["latent"][:1], float(feed["timestep"][0]))
    call(*args)  # warm-up
    benchmark.extra_info.update(graph=entry.file, graph_precision=entry.precision)
    benchmark.pedantic(call, args=args, rounds=5, iterations=1, warmup_rounds=1)
    MEDIANS[(component, precision)] = benchmark.stats.stats.median
    FALLBACK[(component, precision)] = entry.precision != precision


@pytest.mark.parametrize("precision", PRECISIONS)
def test_end_to_end(benchmark, precision, clip):
    from vem.runtime.pipeline import Pipeline

    pipeline = Pipeline.load(_bundle_for(precision), backend="onnxruntime", precision=precision)
    pipeline.generate(clip, seed=0)  # warm-up (first ORT arena allocations)
    benchmark.extra_info.update(steps=pipeline.bundle.manifest.sampler["steps"])
    benchmark.pedantic(pipeline.generate, args=(clip,), kwargs={"seed": 0}, rounds=2, iterations=1)
    MEDIANS[("end_to_end", precision)] = benchmark.stats.stats.median


INTERLEAVED_ROUNDS = 6
INTERLEAVED: dict[str, dict] = {}


def test_end_to_end_interleaved(clip):
    """End to end again, the precisions' runs interleaved (fp32, int8, fp32, int8, ...) so that a
    load change on a shared machine hits them alike; the median total and the median of each
    stage (the report's ``timings_s``) per precision."""
    from vem.runtime.pipeline import Pipeline

    pipelines = {}
    for precision in PRECISIONS:
        try:
            path = _bundle_for(precision)
        except pytest.skip.Exception:
            continue
        pipelines[precision] = Pipeline.load(path, backend="onnxruntime", precision=precision)
        pipelines[precision].generate(clip, seed=0)  # warm-up
    runs: dict[str, list[dict]] = {p: [] for p in pipelines}
    for _ in range(INTERLEAVED_ROUNDS):
        for precision, pipeline in pipelines.items():
            runs[precision].append(pipeline.generate(clip, seed=0).report["timings_s"])
    for precision, timings in runs.items():
        stages = {key: float(np.median([t[key] for t in timings])) for key in timings[0]}
        INTERLEAVED[precision] = {"rounds": len(timings), "median_s": stages}
    assert all(v["median_s"]["total"] > 0 for v in INTERLEAVED.values())


def test_ratio_table():
    """fp32 median / precision median per row (> 1 = faster than fp32); written to results/."""
    if not MEDIANS:
        pytest.skip("no timings (run the whole module)")
    rows = []
    for name in (*COMPONENTS, "end_to_end"):
        base = MEDIANS.get((name, "fp32"))
        if base is None:
            continue
        row = {"component": name, "fp32_ms": base * 1e3}
        for precision in ("fp16", "int8"):
            value = MEDIANS.get((name, precision))
            row[f"{precision}_ms"] = None if value is None else value * 1e3
            row[f"{precision}_speedup"] = None if value is None else base / value
            row[f"{precision}_is_fp32_graph"] = FALLBACK.get((name, precision), False)
        rows.append(row)
    lines = [f"{'component':<12} {'fp32 ms':>9} {'fp16 ms':>9} {'int8 ms':>9} {'fp16 x':>7} {'int8 x':>7}"]
    def cell(row: dict, key: str, width: int, digits: int) -> str:
        return f"{row[key]:{width}.{digits}f}" if row.get(key) is not None else "-".rjust(width)

    for r in rows:
        note = "  (int8 bundle keeps fp32 here)" if r.get("int8_is_fp32_graph") else ""
        lines.append(f"{r['component']:<12} {cell(r, 'fp32_ms', 9, 1)} {cell(r, 'fp16_ms', 9, 1)} "
                     f"{cell(r, 'int8_ms', 9, 1)} {cell(r, 'fp16_speedup', 7, 2)} {cell(r, 'int8_speedup', 7, 2)}{note}")
    interleaved = {}
    if "fp32" in INTERLEAVED:
        base = INTERLEAVED["fp32"]["median_s"]
        lines.append(f"interleaved end to end ({INTERLEAVED_ROUNDS} rounds each), median s per stage:")
        stages = [k for k in base if k != "total"] + ["total"]
        lines.append(f"  {'stage':<13}" + "".join(f"{p:>9}" for p in INTERLEAVED) + "".join(
            f"{p + ' x':>9}" for p in INTERLEAVED if p != "fp32"))
        for stage in stages:
            cells = "".join(f"{INTERLEAVED[p]['median_s'].get(stage, float('nan')):9.3f}" for p in INTERLEAVED)
            ratios = "".join(f"{base[stage] / INTERLEAVED[p]['median_s'][stage]:9.2f}"
                             if INTERLEAVED[p]["median_s"].get(stage) else f"{'-':>9}"
                             for p in INTERLEAVED if p != "fp32")
            lines.append(f"  {stage:<13}{cells}{ratios}")
        interleaved = {"rounds": INTERLEAVED_ROUNDS, "median_s": {p: v["median_s"] for p, v in INTERLEAVED.items()},
                       "speedup_total": {p: base["total"] / v["median_s"]["total"]
                                         for p, v in INTERLEAVED.items() if p != "fp32"}}
    print("\n" + "\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "provider": "CPUExecutionProvider",
        "rows": rows, "end_to_end_interleaved": interleaved,
        "command": "VEM_INT8_BUNDLE=... VEM_FP16_BUNDLE=... pytest benchmarks/test_precision.py -s",
    }, indent=2) + "\n")
    assert all(r["fp32_ms"] > 0 for r in rows)
