"""`vem-export --precision int8`: an fp32 bundle plus explicit-quantisation (Q/DQ) graphs.

Steps (the recipe is in `vem.calibration.quantize`'s docstring):

1. the fp32 bundle (`export_bundle`, or an existing one given as ``fp32_bundle``);
2. calibration: the fp32 bundle runs through the runtime on calibration videos (``--calib DIR``
   or a small `vem-synth` set) and every component's inputs are recorded, the denoiser's at every
   sampler step (`vem.calibration.recorder`);
3. per component: activation ranges (percentile of per-step maxima), SmoothQuant smoothing of
   the skip convs (``smooth_alpha``), Q/DQ graph with the recipe
   exclusions, per-op-group sensitivity, exclusions until the output error meets ``target``;
   then the component is kept in int8 only if it pays: output error within ``target`` and at
   least ``MIN_SPEEDUP`` faster than fp32 on ONNX Runtime's CPU provider. Otherwise it stays
   fp32 in the int8 bundle (the runtime falls back to fp32 per component) and the manifest says
   why;
4. the quality gate (`vem.calibration.gate`) on held-out clips; `vem-export` exits non-zero when
   it fails unless ``--no-gate``.

ONNX Runtime's `quantize_static` makes the graphs. NVIDIA ModelOpt (0.47) was tried: it runs
on this CPU in a separate environment, but its ``[onnx]`` extra pulls onnxruntime-gpu 1.24 and
torch 2.14 (both conflict with this project's pins), and its TensorRT-style graph (Q/DQ around
fp16 casts) ran 2.1x *slower* than fp32 on ONNX Runtime's CPU provider (0.43 s vs 0.20 s per
denoiser call) at the same error, because ORT does not fuse it into QLinear kernels.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vem.runtime.bundle import ComponentEntry, load_bundle, sha256_file

from . import onnx_utils

MIN_SPEEDUP = 1.1  # below this an int8 graph does not pay for its rounding
LATENCY_ROUNDS = 7  # interleaved fp32/int8 timing rounds behind that decision
DEFAULT_TARGET = 0.1  # rel. L2 of a component's output vs fp32: 0.05 and 0.1 passed the gate, 0.2 failed (docs/precision.md)
# Where the default target does not fit a component's output. TransNetV2's is a sparse probability
# map (near 0 except at cuts), whose small norm turns small absolute changes into large relative
# ones. `vem-export --precision int8` (2026-11-26, docs/precision.md): all its convs in int8 gave rel. L2
# 0.101 with max |p_int8 - p_fp32| 0.029 (the cut threshold is 0.5), the same cut frames
# (tests/test_int8.py) and a passing gate; with the target at 0.1 the search excluded two of its
# six cells and the int8 graph gained 1.28x instead of 1.96x.
COMPONENT_TARGETS = {"transitions": 0.15}
DEFAULT_PERCENTILE = 99.0
DEFAULT_SMOOTH_ALPHA = 0.8  # SmoothQuant strength for the skip convs: 0.8 beat 0.5 (docs/precision.md); None: off
GATE_SEED = 9000  # vem-synth dataset seed of the held-out gate clips (calibration uses another)
EVAL_SAMPLES = 6  # calibration samples per component used to measure errors (spread over steps)


@dataclass
class Int8Component:
    name: str
    kept: bool
    why: str
    error: float = float("nan")
    error_recipe_only: float = float("nan")
    speedup: float = float("nan")
    fp32_ms: float = float("nan")
    int8_ms: float = float("nan")
    seconds: float = 0.0
    notes: dict = field(default_factory=dict)


@dataclass
class Int8Result:
    folder: Path
    components: list[Int8Component]
    calibration: dict
    gate: Any  # vem.calibration.gate.GateResult or None
    fp32_reports: list
    seconds: float

    def table(self) -> str:
        rows = [("component", "int8?", "output error", "fp32 ms", "int8 ms", "speedup", "why")]
        for c in self.components:
            rows.append((c.name, "int8" if c.kept else "fp32", f"{c.error:.3f}", f"{c.fp32_ms:.1f}", f"{c.int8_ms:.1f}",
                         f"{c.speedup:.2f}x", c.why))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def _spread(items: Sequence, count: int) -> list:
    if len(items) <= count:
        return list(items)
    index = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in index]


def _latency_feed(feeds: Sequence[dict]) -> dict:
    """The largest recorded call (most elements): the one whose cost matters."""
    return max(feeds, key=lambda f: sum(int(np.asarray(v).size) for v in f.values()))


def quantize_bundle(
    folder: str | os.PathLike,
    *,
    calib: str | os.PathLike | None = None,
    calibration: Any = None,
    save_calibration: str | os.PathLike | None = None,
    calib_clips: int = 8,
    calib_steps: int | None = None,
    percentile: float = DEFAULT_PERCENTILE,
    target: float | None = None,
    components: Sequence[str] | None = None,
    sensitivity: bool = True,
    gate: bool = True,
    gate_clips: int = 3,
    gate_videos: Sequence[str | os.PathLike] | None = None,
    gate_steps: int | None = None,
    gate_bounds: Any = None,
    min_speedup: float = MIN_SPEEDUP,
    smooth_alpha: float | None = DEFAULT_SMOOTH_ALPHA,
    work_dir: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = print,
) -> Int8Result:
    """Add int8 graphs to the fp32 bundle in ``folder`` (in place); see the module docstring.

    calibration: a recorded `vem.calibration.recorder.CalibrationSet` (or a folder it was saved
        to) to use instead of recording one. components: which to try (default: all six). gate_videos: held-out videos for the gate
    (default: ``gate_clips`` fresh `vem-synth` clips with another seed than calibration's).
    smooth_alpha: SmoothQuant-style smoothing strength for the convs over concatenated features
    (`vem.calibration.quantize.smooth_graph`) before quantising; None quantises them unsmoothed."""
    from vem.calibration import quantize as q
    from vem.calibration.gate import GateBounds, run_gate
    from vem.calibration.recorder import (
        DEFAULT_SEED,
        CalibrationSet,
        calibration_videos,
        record_calibration,
        synth_videos,
        temporary_folder,
    )
    from vem.runtime.bundle import COMPONENTS

    started = time.perf_counter()
    say = progress or (lambda _m: None)
    folder = Path(folder)
    bundle = load_bundle(folder)
    manifest = bundle.manifest
    if "fp32" not in manifest.precisions():
        raise ValueError(f"{folder}: int8 needs the fp32 graphs in the bundle (it has {manifest.precisions()})")
    wanted = list(components or COMPONENTS)
    unknown = [c for c in wanted if c not in COMPONENTS]
    if unknown:
        raise ValueError(f"unknown component(s) {unknown}; choose from {list(COMPONENTS)}")
    if calib_clips < 1:
        raise ValueError(f"--calib-clips must be >= 1, got {calib_clips}")
    if smooth_alpha is not None and not 0 <= smooth_alpha <= 1:
        raise ValueError(f"--smooth-alpha must be in [0, 1], got {smooth_alpha}")
    work = Path(work_dir) if work_dir is not None else temporary_folder()
    own_work = work_dir is None
    try:
        t0 = time.perf_counter()
        source_text = "user videos (--calib)" if calib is not None else "vem-synth clips generated on the fly"
        if calibration is not None:
            source_text = "a recorded calibration set"
        if calibration is None:
            videos = calibration_videos(calib, work, count=calib_clips, seed=DEFAULT_SEED)
            say(f"  int8 calibration: {len(videos)} video(s) through the fp32 runtime, every sampler step ...")
            calibration = record_calibration(bundle, videos, steps=calib_steps, components=wanted, progress=say)
        elif not isinstance(calibration, CalibrationSet):
            calibration = CalibrationSet.load(calibration)
        if save_calibration is not None:
            calibration.save(save_calibration)
        record_s = time.perf_counter() - t0
        manifest.components = [e for e in manifest.components if e.precision != "int8"]
        results: list[Int8Component] = []
        for name in wanted:
            t0 = time.perf_counter()
            feeds = calibration.samples[name]
            fp32_entry = manifest.component(name, "fp32")
            if not feeds:
                results.append(Int8Component(name, False, "no calibration samples recorded"))
                continue
            say(f"  int8 {name}: ranges from {len(feeds)} samples, sensitivity, Q/DQ graph ...")
            src = folder / fp32_entry.file
            model = q._load(src)
            ranges = q.activation_ranges(src, feeds, [n.name for n in q.weighted_nodes(model)], percentile=percentile)
            out = folder / f"{name}.int8.onnx"
            quantize_src, range_map, smoothed = src, dict(ranges.ranges), []
            targets = q.smoothing_targets(model) if smooth_alpha is not None else []
            if targets:
                say(f"  int8 {name}: smoothing {len(targets)} conv(s) over concatenated features (alpha {smooth_alpha:g})")
                quantize_src = work / f"{name}.smoothed.onnx"
                maxima = q.channel_absmax(src, feeds, targets)
                new_ranges, smoothed = q.smooth_graph(src, quantize_src, maxima, alpha=smooth_alpha,
                                                      percentile=percentile)
                range_map.update(new_ranges)
            target_here = target if target is not None else COMPONENT_TARGETS.get(name, DEFAULT_TARGET)
            eval_feeds = _spread(feeds, EVAL_SAMPLES)
            choice = q.choose_exclusions(name, quantize_src, out, range_map, eval_feeds,
                                         target=target_here, work_dir=work, measure_sensitivity=sensitivity)
            feed = _latency_feed(feeds)
            fp32_s, int8_s = q.interleaved_latency([src, out], feed, rounds=LATENCY_ROUNDS)
            speedup = fp32_s / int8_s
            notes = {
                "quantization": "explicit Q/DQ (onnxruntime.quantization.quantize_static, QDQ format)",
                "weights": "int8 symmetric per output channel", "activations": "int8 symmetric per tensor",
                "op_types": list(q.QUANTIZED_OP_TYPES), "float_ops": q.FLOAT_OP_NOTE,
                "activation_ranges": f"percentile {percentile:g} of per-sample abs maxima over {ranges.samples} "
                                     f"calibration samples" + (" (every sampler step)" if name == "denoiser" else ""),
                "excluded_nodes": choice.excluded,
                "excluded_why": {
                    "conditioning": "does not depend on the main input: time embedding / condition tokens (recipe)",
                    "first_layer": "first layer on the main path (recipe)",
                    "last_layer": "output head (recipe)",
                    "attention_bmm": "activation x activation MatMul around softmax (recipe)",
                    "sensitive:*": f"op group whose quantisation alone gave the largest output error; excluded "
                                   f"until the error met {target_here:g}",
                },
                "sensitivity": [{"group": s.group, "nodes": s.nodes, "rel_l2": round(s.error, 5)}
                                for s in choice.sensitivity],
                "quantized_nodes": choice.quantized_nodes,
                "smoothing": {
                    "method": "SmoothQuant (Xiao et al. 2023): x_j / s_j in a Mul before the conv, s_j into its "
                              "weights' input channel j; s_j = max|x_j|^alpha / max|W[:, j]|^(1 - alpha)",
                    "alpha": smooth_alpha,
                    "nodes": [{"node": s.node, "input_range_before": round(s.input_range_before, 4),
                               "input_range_after": round(s.input_range_after, 4),
                               "scale_min": round(s.scale_min, 5), "scale_max": round(s.scale_max, 5)}
                              for s in smoothed],
                } if smoothed else None,
                "rel_l2_recipe_only": choice.error_all, "rel_l2": choice.error, "target_rel_l2": target_here,
                "max_abs_vs_fp32": choice.max_abs,
                "cpu_ms_fp32": fp32_s * 1e3, "cpu_ms_int8": int8_s * 1e3, "speedup_cpu": speedup,
            }
            row = Int8Component(name, True, "", choice.error, choice.error_all, speedup, fp32_s * 1e3, int8_s * 1e3,
                                notes=notes)
            if choice.error > target_here:
                row.kept, row.why = False, f"output error {choice.error:.3f} > {target_here:g} after excluding every group"
            elif speedup < min_speedup:
                row.kept, row.why = False, f"int8 does not pay on the CPU ({speedup:.2f}x < {min_speedup:g}x)"
            else:
                row.why = f"{choice.quantized_nodes} layers int8"
            if row.kept:
                entry = ComponentEntry(
                    name=name, precision="int8", file=out.name, sha256=sha256_file(out), bytes=out.stat().st_size,
                    inputs=list(fp32_entry.inputs), outputs=list(fp32_entry.outputs),
                    parity={"rel_l2_vs_fp32": choice.error}, notes=notes,
                    external_data=onnx_utils.external_data_entry(out, folder))
                manifest.components.append(entry)
            else:
                onnx_utils.remove_graph(out)
            row.seconds = time.perf_counter() - t0
            results.append(row)
            say(f"    {name}: {'int8' if row.kept else 'stays fp32'} (error {row.error:.3f}, "
                f"{row.speedup:.2f}x) {row.why}")
        kept = [r.name for r in results if r.kept]
        calibration_facts = {
            **calibration.describe(),
            "source": source_text,
            "recorded_with": "vem.runtime.pipeline.Pipeline, fp32 bundle, ONNX Runtime CPU",
            "record_seconds": round(record_s, 1),
            "range_method": f"percentile {percentile:g} of per-sample (per video and sampler step) abs maxima",
            "smoothquant": ({"alpha": smooth_alpha, "targets": "1x1 convs over channel-concatenated features "
                                                            "(the T-UNet res blocks' skip convs)"}
                            if smooth_alpha is not None else "off"),
            "tool": "onnxruntime.quantization.quantize_static (QDQ); nvidia-modelopt 0.47 tried, see vem.export.int8",
            "int8_components": kept,
            "fp32_components": {r.name: r.why for r in results if not r.kept},
            "component_results": {r.name: {"kept": r.kept, "rel_l2": r.error, "speedup_cpu": r.speedup, "why": r.why}
                                  for r in results},
        }
        manifest.calibration = calibration_facts
        manifest.built_with["precisions"] = sorted({*manifest.built_with.get("precisions", ["fp32"]), "int8"})
        if not kept:
            manifest.write(folder)
            raise ValueError("no component gained from int8 (see the table); the bundle stays fp32")
        manifest.write(folder)
        gate_result = None
        if gate:
            if gate_videos is None:
                gate_videos = synth_videos(work / "gate-clips", gate_clips, seed=GATE_SEED)
            say(f"  int8 quality gate on {len(gate_videos)} held-out clip(s) ...")
            gate_result = run_gate(folder, gate_videos, steps=gate_steps, bounds=gate_bounds or GateBounds(),
                                   progress=say)
            manifest.calibration["gate"] = gate_result.to_dict()
            manifest.write(folder)
        return Int8Result(folder, results, manifest.calibration, gate_result, [], time.perf_counter() - started)
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def export_int8_bundle(source: Any, out_dir: str | os.PathLike, *, fp32_bundle: str | os.PathLike | None = None,
                       export_options: dict | None = None, progress: Callable[[str], None] | None = print,
                       **quantize_options: Any) -> Int8Result:
    """The whole `vem-export --precision int8`: fp32 export (or a copy of ``fp32_bundle``), then
    `quantize_bundle` on it."""
    from .bundle_writer import export_bundle
    from .engines import ENGINE_TOOLS_HINT, ExportError, check_engine_tools, engines_from_bundle

    engines = (export_options or {}).get("engines", "no")
    engine_tools = check_engine_tools() if engines != "no" else (False, "")
    if engines == "yes" and not engine_tools[0]:  # before the minutes of export and calibration
        raise ExportError(f"--engines yes: cannot build TensorRT engines here: {engine_tools[1]}", exit_code=4,
                          hint=ENGINE_TOOLS_HINT)
    out = Path(out_dir)
    reports = []
    if fp32_bundle is not None and Path(fp32_bundle).resolve() == out.resolve():
        pass  # quantise the fp32 bundle in place
    elif fp32_bundle is not None:
        source_bundle = load_bundle(fp32_bundle)
        out.mkdir(parents=True, exist_ok=True)
        for entry in source_bundle.manifest.components:
            if entry.precision == "fp32":
                onnx_utils.copy_graph(source_bundle.path(entry), out / entry.file)
        source_bundle.manifest.components = [e for e in source_bundle.manifest.components if e.precision == "fp32"]
        source_bundle.manifest.engines = []
        source_bundle.manifest.write(out)
    else:
        result = export_bundle(source, out, "fp32", progress=progress, **(export_options or {}))
        reports = result.reports
    int8 = quantize_bundle(out, progress=progress, **quantize_options)
    int8.fp32_reports = reports
    if engine_tools[0] and (int8.gate is None or int8.gate.passed):
        # The fp32 engines were built by export_bundle; the int8 Q/DQ graphs exist only now.
        kept = [r.name for r in int8.components if r.kept]
        if kept:
            engines_from_bundle(out, precisions=["int8"], say=progress)
    return int8
