"""Explicit INT8 quantisation: Q/DQ graphs that ONNX Runtime (CPU) and TensorRT run alike.

Recipe (TensorRT's explicit-quantisation rules and the diffusion PTQ literature):

- Quantised op types: Conv, MatMul, Gemm -- where the int8 arithmetic is; elementwise ops,
  normalisations (InstanceNormalization, LayerNormalization), Softmax, Resize and activations
  stay float (TensorRT fuses them around the int8 layers; quantising them only adds rounding).
- Weights: int8, symmetric, per output channel. Activations: int8, symmetric (zero point 0), one
  scale per tensor -- TensorRT accepts only symmetric Q/DQ.
- Recipe exclusions, found by graph structure (not by layer names):
  ``conditioning``  weighted nodes that do not depend on the component's main input (the
                    denoiser's time embedding and the condition builder: storyboard timing
                    encodings, text/visual projections; a handful of tokens, so cheap in any
                    precision, and the timestep's sinusoid is the classic sensitive input);
  ``first_layer``   the first weighted node on the main path (raw pixels / noisy latent / mel);
  ``last_layer``    the last weighted node (the output head: eps, mel, waveform);
  ``attention_bmm`` MatMuls whose both inputs are activations (QK^T and attention x V): the
                    softmax input/output would need their own scales and its range moves with
                    the mask (-1e4 logits).
- Activation ranges (`activation_ranges`): per calibration sample (for the denoiser: per video
  and sampler step) the absolute maximum of each tensor; the tensor's range is a percentile of
  those per-step maxima over *all* steps (``percentile=100`` is plain max calibration). Outlier
  steps (the first, pure-noise steps) then do not set the scale alone, while every step is seen.
- Smoothing (`smooth_graph`, SmoothQuant): the 1x1 convs over channel-concatenated features
  (the res blocks' skip convs) are rewritten exactly in float, x_j / s_j and W[:, j] * s_j, so
  their channel outliers move into the per-channel weight scales before quantisation.
- The rest: measured. `sensitivity` quantises one op group at a time and measures the output
  error; `choose_exclusions` excludes the most sensitive groups until the component meets its
  error target.

Quantisation itself is ONNX Runtime's `quantize_static` (QDQ format) fed our ranges through its
calibration cache, so no third quantiser is re-implemented here.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vem.export import onnx_utils

QUANTIZED_OP_TYPES = ("Conv", "MatMul", "Gemm")
RECIPE_CLASSES = ("conditioning", "first_layer", "last_layer", "attention_bmm")
MAIN_INPUT = {"transitions": None, "visual": "frames", "aligner": "frames", "denoiser": "latent",
              "vae_decoder": "latent", "vocoder": "mel"}
# Ops the recipe never quantises (recorded in the manifest with the op types above).
FLOAT_OP_NOTE = ("normalisations (InstanceNormalization, LayerNormalization, BatchNormalization), Softmax, "
                 "Resize, Sin/Cos, activations and elementwise ops stay float: only Conv/MatMul/Gemm are quantised")


def _load(path: str | os.PathLike):
    import onnx

    return onnx.load(str(path))


def _initializers(model) -> set[str]:
    names = {init.name for init in model.graph.initializer}
    names |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    return names


def _main_input(model, component: str) -> str:
    wanted = MAIN_INPUT.get(component)
    inputs = [i.name for i in model.graph.input]
    if wanted in inputs:
        return wanted
    return inputs[0]


def _dependent_tensors(model, sources: Iterable[str]) -> set[str]:
    """Tensors computed (transitively) from any of ``sources`` (graph is topologically sorted)."""
    live = set(sources)
    for node in model.graph.node:
        if any(name in live for name in node.input if name):
            live.update(o for o in node.output if o)
    return live


def weighted_nodes(model) -> list:
    return [n for n in model.graph.node if n.op_type in QUANTIZED_OP_TYPES]


def recipe_exclusions(model, component: str) -> dict[str, list[str]]:
    """Node names per recipe class (see the module docstring)."""
    constants = _initializers(model)
    main = _main_input(model, component)
    on_main = _dependent_tensors(model, [main])
    weighted = weighted_nodes(model)
    main_path = [n for n in weighted if any(i in on_main for i in n.input)]
    classes: dict[str, list[str]] = {kind: [] for kind in RECIPE_CLASSES}
    classes["conditioning"] = [n.name for n in weighted if not any(i in on_main for i in n.input)]
    if main_path:
        classes["first_layer"] = [main_path[0].name]
        classes["last_layer"] = [main_path[-1].name]
    classes["attention_bmm"] = [n.name for n in weighted
                                if n.op_type == "MatMul" and all(i not in constants for i in n.input[:2])
                                and not _weight_like(model, n, constants)]
    return classes


def _weight_like(model, node, constants: set[str]) -> bool:
    """A MatMul whose second input is a weight reached through Transpose/Cast of a constant."""
    producers = {o: n for n in model.graph.node for o in n.output}
    name = node.input[1]
    for _ in range(3):
        if name in constants:
            return True
        producer = producers.get(name)
        if producer is None or producer.op_type not in ("Transpose", "Cast", "Reshape", "Identity"):
            return False
        name = producer.input[0]
    return name in constants


MAX_GROUPS = 16  # sensitivity costs one quantisation + evaluation per group


def op_groups(model, excluded: Iterable[str], depth: int = 4) -> dict[str, list[str]]:
    """The quantisable nodes not excluded, grouped by module path (the exporter names nodes
    after their torch module: '/unet/res/in_layers/in_layers.2_3/Conv'): the first four levels
    of the name without the exporter's repeat suffix ('_3'), so a group is one layer kind of
    one block kind (the res blocks' input convs, their skip convs, the transformers' blocks)."""
    skip = set(excluded)
    groups: dict[str, list[str]] = {}
    for node in weighted_nodes(model):
        if node.name in skip:
            continue
        parts = [re.sub(r"_\d+$", "", part) for part in node.name.split("/")[:-1]][:depth]
        key = "/".join(parts) or node.op_type
        groups.setdefault(key, []).append(node.name)
    if len(groups) > MAX_GROUPS and depth > 2:
        return op_groups(model, excluded, depth - 1)
    return groups


# ---- activation ranges --------------------------------------------------------------------------


def _tensors_to_range(model, nodes: Sequence[str]) -> list[str]:
    """Float activations at the inputs and outputs of the quantisable nodes (weights excluded)."""
    constants = _initializers(model)
    names = set(nodes)
    out: list[str] = []
    for node in model.graph.node:
        if node.name not in names:
            continue
        for tensor in [*node.input[:2], *node.output]:
            if tensor and tensor not in constants and tensor not in out:
                out.append(tensor)
    return out


def _augment_with_absmax(model, tensors: Sequence[str]):
    """A copy of ``model`` with one extra scalar output per tensor: max |tensor|."""
    import onnx
    from onnx import TensorProto, helper

    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    graph = augmented.graph
    for index, tensor in enumerate(tensors):
        abs_name, max_name = f"__vem_abs_{index}", f"__vem_absmax_{index}"
        graph.node.append(helper.make_node("Abs", [tensor], [abs_name], name=f"__vem_abs_node_{index}"))
        graph.node.append(helper.make_node("ReduceMax", [abs_name], [max_name], keepdims=0,
                                           name=f"__vem_max_node_{index}"))
        graph.output.append(helper.make_tensor_value_info(max_name, TensorProto.FLOAT, []))
    return augmented


@dataclass
class RangeStats:
    """Per tensor: the abs max of every calibration sample, and the chosen range."""

    per_sample: dict[str, np.ndarray]
    ranges: dict[str, float]
    percentile: float
    samples: int


def activation_ranges(model_path: str | os.PathLike, feeds: Sequence[Mapping[str, np.ndarray]], nodes: Sequence[str], *,
                      percentile: float = 99.0, threads: int | None = None) -> RangeStats:
    """Symmetric activation ranges: the ``percentile`` of the per-sample abs maxima (module
    docstring). ``feeds``: recorded calibration inputs (every sampler step for the denoiser)."""
    import onnxruntime as ort

    if not feeds:
        raise ValueError("no calibration samples for this component")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    model = _load(model_path)
    tensors = _tensors_to_range(model, nodes)
    augmented = _augment_with_absmax(model, tensors)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    session = onnx_utils.session_from_model(augmented, options)
    wanted = [f"__vem_absmax_{i}" for i in range(len(tensors))]
    input_names = {i.name for i in session.get_inputs()}
    maxima = np.zeros((len(feeds), len(tensors)), dtype=np.float64)
    for row, feed in enumerate(feeds):
        values = session.run(wanted, {k: v for k, v in feed.items() if k in input_names})
        maxima[row] = [float(v) for v in values]
    ranges = {name: float(np.percentile(maxima[:, i], percentile)) for i, name in enumerate(tensors)}
    return RangeStats({name: maxima[:, i] for i, name in enumerate(tensors)}, ranges, percentile, len(feeds))


def _write_range_cache(ranges: Mapping[str, float], path: Path) -> Path:
    from onnxruntime.quantization.calibrate import (
        CalibrationMethod,
        TensorData,
        TensorsData,
        save_tensors_data,
    )

    data = {}
    for name, value in ranges.items():
        bound = np.float32(max(value, 1e-8))
        data[name] = TensorData(lowest=np.array(-bound, dtype=np.float32), highest=np.array(bound, dtype=np.float32))
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), path)
    return path


def quantize_graph(src: str | os.PathLike, dst: str | os.PathLike, ranges: Mapping[str, float], *,
                   exclude: Iterable[str] = (), quantize_bias: bool = False) -> Path:
    """Q/DQ int8 copy of ``src``: Conv/MatMul/Gemm not in ``exclude``, symmetric per-channel
    int8 weights, symmetric int8 activations with the given abs ranges.

    Biases stay float (``quantize_bias=False``, the default): TensorRT's ONNX parser rejects an
    int32 DequantizeLinear ("only activation types allowed as input to this layer";
    onnx-tensorrt #850, TensorRT #3360) and folds a float bias into the int8 layer itself. ONNX
    Runtime's CPU provider still fuses DQ -> Conv(float bias) -> Q into its int8 kernels (the
    int8 speed-ups of `vem-export --precision int8` in the README are with float biases).
    ``quantize_bias=True`` writes the int32 form, which only ONNX Runtime runs."""

    dst = Path(dst)
    # quantize_static logs "consider pre-processing" on the root logger at every call; our graphs
    # are already shape-inferred and folded by the export (vem.export.onnx_utils.clean_graph).
    logging.disable(logging.WARNING)
    try:
        _quantize_static(src, dst, ranges, exclude, quantize_bias)
    finally:
        logging.disable(logging.NOTSET)
    return dst


def _quantize_static(src, dst, ranges, exclude, quantize_bias) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory(prefix="vem-q-") as work:
        cache = _write_range_cache(ranges, Path(work) / "ranges.json")
        # quantize_static writes into a scratch folder, in the external form when the source has
        # it (its own data-file naming), and `save_model` writes the result where it belongs in
        # the form its size asks for.
        out = Path(work) / "quantized.onnx"
        quantize_static(
            str(src), str(out), calibration_data_reader=None, calibration_cache_path=str(cache),
            calibrate_method=CalibrationMethod.MinMax, quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
            op_types_to_quantize=list(QUANTIZED_OP_TYPES), nodes_to_exclude=sorted(set(exclude)),
            use_external_data_format=onnx_utils.has_external_data(src),
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": quantize_bias},
        )
        onnx_utils.save_model(onnx.load(str(out)), dst)


# ---- measuring ---------------------------------------------------------------------------------


def _session(path: str | os.PathLike, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_graph(path_or_session: Any, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[list[np.ndarray]]:
    session = _session(path_or_session) if isinstance(path_or_session, (str, os.PathLike)) else path_or_session
    names = {i.name for i in session.get_inputs()}
    return [session.run(None, {k: v for k, v in feed.items() if k in names}) for feed in feeds]


def max_abs_error(outputs: Sequence[Sequence[np.ndarray]], references: Sequence[Sequence[np.ndarray]]) -> float:
    """The largest |a - b| over every sample and output (in the output's own units: for the
    transition detector, probability)."""
    return max((float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                for out, ref in zip(outputs, references) for a, b in zip(out, ref)), default=0.0)


def relative_l2(outputs: Sequence[Sequence[np.ndarray]], references: Sequence[Sequence[np.ndarray]]) -> float:
    """Mean over samples of the worst output's ||a - b|| / ||b|| (the quantisation noise-to-signal
    ratio; unlike a max-abs error it is not set by one unlucky element)."""
    errors = []
    for out, ref in zip(outputs, references):
        worst = 0.0
        for a, b in zip(out, ref):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            worst = max(worst, float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12)))
        errors.append(worst)
    return float(np.mean(errors))


def interleaved_latency(paths: Sequence[str | os.PathLike], feed: Mapping[str, np.ndarray], *, rounds: int = 7,
                        threads: int | None = None) -> list[float]:
    """Median seconds per run of each graph on one feed, the graphs' runs alternating round by
    round (after one warm-up each), so that a load change on a shared machine hits them alike;
    separate timings of two graphs moved by +-20 % between runs here and flipped int8 decisions."""
    sessions = []
    for path in paths:
        session = _session(path, threads)
        names = {i.name for i in session.get_inputs()}
        own = {k: v for k, v in feed.items() if k in names}
        session.run(None, own)
        sessions.append((session, own))
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(rounds):
        for index, (session, own) in enumerate(sessions):
            start = time.perf_counter()
            session.run(None, own)
            times[index].append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


@dataclass
class Sensitivity:
    group: str
    nodes: int
    error: float  # relative L2 of the component's output with only this group quantised


@dataclass
class QuantChoice:
    """What `choose_exclusions` decided for one component, for the manifest."""

    path: Path
    excluded: dict[str, list[str]]  # reason -> node names
    error: float  # relative L2 vs fp32 with the final exclusions
    error_all: float  # relative L2 with only the recipe exclusions
    max_abs: float  # largest |int8 - fp32| of any output element with the final exclusions
    sensitivity: list[Sensitivity] = field(default_factory=list)
    excluded_groups: list[str] = field(default_factory=list)
    quantized_nodes: int = 0


def choose_exclusions(component: str, fp32_path: str | os.PathLike, out_path: str | os.PathLike,
                      ranges: Mapping[str, float], eval_feeds: Sequence[Mapping[str, np.ndarray]], *,
                      target: float, work_dir: str | os.PathLike, measure_sensitivity: bool = True) -> QuantChoice:
    """Quantise ``fp32_path`` with the recipe exclusions; if its output error on ``eval_feeds``
    exceeds ``target`` (relative L2 vs fp32), exclude op groups most sensitive first (measured
    by quantising each group alone) until it meets the target or nothing is left."""
    model = _load(fp32_path)
    recipe = recipe_exclusions(model, component)
    recipe_nodes = sorted({n for names in recipe.values() for n in names})
    work = Path(work_dir)
    references = run_graph(fp32_path, eval_feeds)
    out_path = Path(out_path)
    max_abs = {}  # of the graph last written to out_path (the final choice when the search ends)

    def error_with(excluded: Sequence[str], path: Path) -> float:
        quantize_graph(fp32_path, path, ranges, exclude=excluded)
        outputs = run_graph(path, eval_feeds)
        if path == out_path:
            max_abs["final"] = max_abs_error(outputs, references)
        return relative_l2(outputs, references)

    error_all = error_with(recipe_nodes, out_path)
    groups = op_groups(model, recipe_nodes)
    all_quantizable = [n.name for n in weighted_nodes(model)]
    sensitivity: list[Sensitivity] = []
    # Sensitivity decides what to exclude beyond the recipe; when the recipe alone meets the
    # target there is nothing to decide and the (costly) measurement is skipped.
    if measure_sensitivity and error_all > target and len(groups) > 1:
        for group, nodes in groups.items():
            others = [n for n in all_quantizable if n not in set(nodes)]
            error = error_with(others, work / f"{component}.sens.onnx")
            sensitivity.append(Sensitivity(group, len(nodes), error))
        sensitivity.sort(key=lambda s: s.error, reverse=True)
    excluded_groups: list[str] = []
    error = error_all
    for item in sensitivity:
        if error <= target:
            break
        candidate = [*excluded_groups, item.group]
        excluded = recipe_nodes + [n for g in candidate for n in groups[g]]
        if len(set(excluded)) >= len(all_quantizable):
            break  # nothing would be left in int8: the caller keeps the component fp32
        excluded_groups = candidate
        error = error_with(excluded, out_path)
    excluded_map = {kind: sorted(names) for kind, names in recipe.items() if names}
    for group in excluded_groups:
        excluded_map[f"sensitive:{group}"] = sorted(groups[group])
    quantized = len(all_quantizable) - len({n for names in excluded_map.values() for n in names})
    return QuantChoice(out_path, excluded_map, error, error_all, max_abs["final"], sensitivity, excluded_groups,
                       quantized)


def count_qdq(path: str | os.PathLike) -> dict[str, int]:
    model = _load(path)
    counts = {"QuantizeLinear": 0, "DequantizeLinear": 0}
    for node in model.graph.node:
        if node.op_type in counts:
            counts[node.op_type] += 1
    return counts


def quantized_node_names(path: str | os.PathLike) -> set[str]:
    """Conv/MatMul/Gemm nodes of a Q/DQ graph that run in int8: both their activation and their
    weight come from a DequantizeLinear. (The activation alone does not tell: an excluded node
    whose input tensor is shared with a quantized consumer reads the same DequantizeLinear
    output, but keeps float weights and runs in float.)"""
    model = _load(path)
    producers = {o: n for n in model.graph.node for o in n.output}
    out = set()
    for node in weighted_nodes(model):
        sources = [producers.get(name) for name in node.input[:2]]
        if len(sources) == 2 and all(p is not None and p.op_type == "DequantizeLinear" for p in sources):
            out.add(node.name)
    return out


# ---- SmoothQuant-style smoothing ---------------------------------------------------------------
#
# Xiao et al. 2023 (SmoothQuant): a linear layer y = W x is unchanged when the input channel j is
# divided by s_j and the weights' input column j multiplied by it, y = (W diag(s)) (diag(s)^-1 x).
# With s_j = max|x_j|^alpha / max|W[:, j]|^(1 - alpha) the activation outliers (here: the
# concatenated encoder and decoder features of the res-block skip convs, whose channels span very
# different ranges) move into the per-output-channel-quantised weights, so one per-tensor int8
# activation scale fits every channel. The 1/s side is a Mul before the conv (the concatenation
# also feeds the block's GroupNorm, so it cannot absorb the scale); in float the rewrite is exact.

SMOOTH_MIN_SCALE, SMOOTH_MAX_SCALE = 1e-4, 1e4


def smoothing_targets(model) -> list[str]:
    """1x1, ungrouped Convs whose input is a channel Concat: the T-UNet up-path res blocks' skip
    convs over [decoder, encoder] features (found by structure, not by layer names)."""
    constants = {init.name: init for init in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    out = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in constants:
            continue
        attrs = {a.name: a for a in node.attribute}
        if "group" in attrs and attrs["group"].i != 1:
            continue
        weight = constants[node.input[1]]
        if len(weight.dims) < 3 or any(d != 1 for d in weight.dims[2:]):
            continue
        producer = producers.get(node.input[0])
        if producer is None or producer.op_type != "Concat":
            continue
        axis = next((a.i for a in producer.attribute if a.name == "axis"), None)
        if axis == 1:
            out.append(node.name)
    return out


def channel_absmax(model_path: str | os.PathLike, feeds: Sequence[Mapping[str, np.ndarray]], nodes: Sequence[str]
                   ) -> dict[str, np.ndarray]:
    """Per node: the (samples, channels) abs maxima of its activation input, channel = axis 1."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    model = _load(model_path)
    by_name = {n.name: n for n in model.graph.node}
    tensors = list(dict.fromkeys(by_name[n].input[0] for n in nodes))
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    outputs = {o.name for o in augmented.graph.output}
    for tensor in tensors:
        if tensor not in outputs:
            augmented.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = onnx_utils.session_from_model(augmented, options)
    input_names = {i.name for i in session.get_inputs()}
    rows: dict[str, list[np.ndarray]] = {t: [] for t in tensors}
    for feed in feeds:
        values = session.run(tensors, {k: v for k, v in feed.items() if k in input_names})
        for tensor, value in zip(tensors, values):
            value = np.abs(np.asarray(value, np.float32))
            axes = tuple(i for i in range(value.ndim) if i != 1)
            rows[tensor].append(value.max(axis=axes))
    return {n: np.stack(rows[by_name[n].input[0]]) for n in nodes}


@dataclass
class Smoothed:
    node: str
    input_range_before: float  # the per-tensor int8 range of the conv input, unsmoothed
    input_range_after: float  # ... and smoothed: every channel divided by its s_j
    scale_min: float
    scale_max: float


def smooth_graph(src: str | os.PathLike, dst: str | os.PathLike, channel_maxima: Mapping[str, np.ndarray], *,
                 alpha: float, percentile: float = 99.0) -> tuple[dict[str, float], list[Smoothed]]:
    """Write ``src`` with the convs in ``channel_maxima`` smoothed (see the section comment) to
    ``dst``. Per channel, max|x_j| is the ``percentile`` of its per-sample maxima (as the
    per-tensor ranges are). Returns the int8 ranges of the new (smoothed) conv inputs, to add to
    the calibration ranges, and what was done per node."""
    import onnx
    from onnx import helper, numpy_helper

    if not 0 <= alpha <= 1:
        raise ValueError(f"smoothing alpha must be in [0, 1], got {alpha}")
    model = _load(src)
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    new_ranges: dict[str, float] = {}
    done: list[Smoothed] = []
    rewritten = []
    for original in graph.node:
        node = onnx.NodeProto()
        node.CopyFrom(original)
        if node.name in channel_maxima:
            maxima = np.asarray(channel_maxima[node.name], np.float64)  # (samples, channels)
            weight = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float64)
            if maxima.ndim != 2 or maxima.shape[1] != weight.shape[1]:
                raise ValueError(f"{node.name}: channel maxima of shape {maxima.shape} for a weight of shape "
                                 f"{weight.shape} (expected (samples, {weight.shape[1]}))")
            act = np.percentile(maxima, percentile, axis=0)
            w = np.abs(weight).max(axis=tuple(i for i in range(weight.ndim) if i != 1))
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                scale = act ** alpha / w ** (1 - alpha)
            # a dead channel (max 0) or a zero weight column: leave that channel alone
            scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
            scale = np.clip(scale, SMOOTH_MIN_SCALE, SMOOTH_MAX_SCALE)
            broadcast = [1, len(scale)] + [1] * (weight.ndim - 2)
            inverse_name, smoothed_name = f"{node.name}/smooth_inv_scale", f"{node.name}/smoothed_input"
            weight_name = f"{node.input[1]}__smoothed"
            graph.initializer.append(numpy_helper.from_array((1.0 / scale).reshape(broadcast).astype(np.float32),
                                                             inverse_name))
            graph.initializer.append(numpy_helper.from_array(
                (weight * scale.reshape(broadcast)).astype(np.float32), weight_name))
            rewritten.append(helper.make_node("Mul", [node.input[0], inverse_name], [smoothed_name],
                                              name=f"{node.name}/smooth_mul"))
            before = float(np.percentile(maxima.max(axis=1), percentile))
            after = float(np.percentile((maxima / scale).max(axis=1), percentile))
            node.input[0], node.input[1] = smoothed_name, weight_name
            new_ranges[smoothed_name] = after
            done.append(Smoothed(node.name, before, after, float(scale.min()), float(scale.max())))
        rewritten.append(node)
    del graph.node[:]
    graph.node.extend(rewritten)
    _prune_unused_initializers(model)
    onnx_utils.save_model(model, dst)
    return new_ranges, done


def _prune_unused_initializers(model) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
