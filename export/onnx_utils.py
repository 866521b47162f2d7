"""Generic ONNX helpers shared by every component's export (issue 5).

One place for the steps each component repeats: trace to ONNX with the TorchScript exporter and
check the result, clean the graph (shape inference + constant folding), make an fp16 variant with
fp32 inputs/outputs, hash a file for the bundle manifest, and measure parity of an ONNX Runtime
session against reference outputs (the PyTorch module's).

torch is imported only inside :func:`export_onnx`, so the graph-level helpers also serve the
torch-free calibration package.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# One implementation of the manifest's file hash: the runtime's (torch-free).
from vem.runtime.bundle import sha256_file  # noqa: F401  (re-exported for vem.export.transitions)

# The opset the project targets (docs/toolchain.md: torch 2.13's exporters emit it; ORT >= 1.16 runs it).
DEFAULT_OPSET = 18


def check_onnx(path: str | os.PathLike) -> None:
    """Run ``onnx.checker`` with full shape checking on a saved model; raises on a broken graph."""
    import onnx

    # Passing the path (not a loaded proto) lets the checker handle graphs above 2 GB too.
    onnx.checker.check_model(str(path), full_check=True)


def export_onnx(
    module: Any,
    args: tuple,
    path: str | os.PathLike,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Trace ``module`` on ``args`` into ``path`` with the TorchScript exporter, then check it.

    ``dynamo=False``: the TorchScript exporter writes one self-contained file (the dynamo exporter
    writes weights to a side ``.onnx.data`` file by default) and handles the models here
    (docs/toolchain.md). The module is put in eval mode and traced without gradients.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    with torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes={k: dict(v) for k, v in (dynamic_axes or {}).items()},
            do_constant_folding=True,
        )
    check_onnx(path)
    return path


@dataclass
class CleanReport:
    """What :func:`clean_graph` changed."""

    nodes_before: int
    nodes_after: int
    seconds: float


def clean_graph(src: str | os.PathLike, dst: str | os.PathLike | None = None) -> CleanReport:
    """Shape inference + constant folding (Polygraphy, backed by onnx-graphsurgeon), then check.

    Folding removes the shape arithmetic the TorchScript tracer leaves behind (Shape -> Gather ->
    Unsqueeze -> Concat chains around every reshape) wherever the shapes are static; dynamic axes
    keep their shape ops. ``dst`` defaults to overwriting ``src``.
    """
    import onnx
    from polygraphy.backend.onnx import fold_constants, infer_shapes
    from polygraphy.logger import G_LOGGER

    start = time.perf_counter()
    dst = Path(dst if dst is not None else src)
    model = onnx.load(str(src))
    nodes_before = len(model.graph.node)
    # Polygraphy logs every folding pass at INFO; keep the export's output to warnings.
    with G_LOGGER.verbosity(G_LOGGER.WARNING):
        model = infer_shapes(model, allow_onnxruntime=False)
        # Several passes: folding a constant can make its consumer's shape static, and so on.
        model = fold_constants(
            model, num_passes=3, do_shape_inference=True, fold_shapes=True, allow_onnxruntime_shape_inference=False
        )
        model = infer_shapes(model, allow_onnxruntime=False)
    onnx.save(model, str(dst))
    check_onnx(dst)
    return CleanReport(nodes_before, len(model.graph.node), time.perf_counter() - start)


def convert_to_fp16(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    method: str = "ort",
    op_block_list: Sequence[str] | None = None,
    node_block_list: Sequence[str] | None = None,
) -> Path:
    """Write an fp16-compute copy of ``src`` whose inputs and outputs keep their fp32 types.

    ``method``: ``"ort"`` (onnxruntime.transformers.float16, the default) or ``"onnxconverter"``
    (onnxconverter_common.float16). docs/toolchain.md: each failed on some graph the other handled. On the
    TorchScript-exported TransNetV2 graph, onnxconverter_common 1.16 writes Casts whose declared
    output type contradicts their ``to`` attribute (the checker rejects it), while the ORT
    converter works once the graph is topologically re-sorted (it appends the Casts it inserts
    for blocked nodes after their consumers); the sort is done here.

    ``op_block_list`` / ``node_block_list`` keep those ops / nodes in fp32 (the "fp32 islands"),
    on top of the converter's default op block list (a given list would otherwise replace it).
    The result is checked with ``onnx.checker``; check its numbers with :func:`measure_parity`.
    """
    import onnx
    import onnx_graphsurgeon as gs

    model = onnx.load(str(src))
    if method == "onnxconverter":
        from onnxconverter_common import float16 as converter
    elif method == "ort":
        from onnxruntime.transformers import float16 as converter
    else:
        raise ValueError(f"unknown fp16 method {method!r}; use 'ort' or 'onnxconverter'")
    blocked_ops = list(converter.DEFAULT_OP_BLOCK_LIST) + list(op_block_list or [])
    model16 = converter.convert_float_to_float16(
        model,
        keep_io_types=True,
        op_block_list=blocked_ops,
        node_block_list=list(node_block_list or []) or None,
    )
    graph = gs.import_onnx(model16)
    graph.toposort()
    graph.cleanup()
    model16 = gs.export_onnx(graph)
    dst = Path(dst)
    onnx.save(model16, str(dst))
    check_onnx(dst)
    return dst


def store_weights_fp16(src: str | os.PathLike, dst: str | os.PathLike, min_elements: int = 1024) -> Path:
    """Write a copy of ``src`` whose large float32 weights are stored as fp16 and cast back.

    Every float32 initializer with at least ``min_elements`` values is stored in fp16 and feeds a
    ``Cast(to=float)``; ONNX Runtime folds those Casts when it builds the session, so the graph
    computes in fp32 at fp32 speed from a file about half the size. This is the CPU answer to
    "fp16 bundle": ORT's CPU provider runs true fp16 graphs slower than fp32 (docs/toolchain.md), and the
    error comes almost only from rounding the weights, which both variants share.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    casts = []
    stored = []
    for initializer in list(graph.initializer):
        if initializer.data_type != TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(initializer)
        if values.size < min_elements:
            continue
        if np.any(np.abs(values) > np.finfo(np.float16).max):
            continue  # would overflow: keep it in fp32
        half = numpy_helper.from_array(values.astype(np.float16), initializer.name + "__fp16")
        stored.append(half)
        casts.append(
            helper.make_node(
                "Cast", [half.name], [initializer.name], to=TensorProto.FLOAT, name=initializer.name + "__to_fp32"
            )
        )
        graph.initializer.remove(initializer)
    graph.initializer.extend(stored)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    dst = Path(dst)
    onnx.save(model, str(dst))
    check_onnx(dst)
    return dst


def make_session(path: str | os.PathLike, providers: Sequence[str] | None = None, threads: int | None = None):
    """An ONNX Runtime session; CPU provider unless told otherwise."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))


@dataclass
class ParityReport:
    """Per output: max |onnx - reference| and that error relative to max |reference|."""

    max_abs: dict[str, float]
    max_rel: dict[str, float]

    @property
    def worst_abs(self) -> float:
        return max(self.max_abs.values()) if self.max_abs else 0.0

    @property
    def worst_rel(self) -> float:
        return max(self.max_rel.values()) if self.max_rel else 0.0


def compare_outputs(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> ParityReport:
    """Compare two sets of named outputs (shapes must match exactly)."""
    max_abs: dict[str, float] = {}
    max_rel: dict[str, float] = {}
    for name, ref in reference.items():
        if name not in candidate:
            raise ValueError(f"output {name!r} missing from the candidate outputs {sorted(candidate)}")
        ref = np.asarray(ref, dtype=np.float64)
        got = np.asarray(candidate[name], dtype=np.float64)
        if ref.shape != got.shape:
            raise ValueError(f"output {name!r}: shape {got.shape} differs from the reference {ref.shape}")
        err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        max_abs[name] = err
        max_rel[name] = err / scale if scale > 0 else err
    return ParityReport(max_abs, max_rel)


def measure_parity(
    onnx_path_or_session: Any,
    feeds: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    providers: Sequence[str] | None = None,
) -> ParityReport:
    """Run the ONNX graph on ``feeds`` and compare each named output with ``reference``."""
    session = onnx_path_or_session
    if isinstance(session, (str, os.PathLike)):
        session = make_session(session, providers)
    names = list(reference)
    outputs = session.run(names, dict(feeds))
    return compare_outputs(reference, dict(zip(names, outputs)))


def time_session(session: Any, feeds: Mapping[str, np.ndarray], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of one ``session.run`` on ``feeds``."""
    for _ in range(warmup):
        session.run(None, dict(feeds))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, dict(feeds))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def compare_timing(
    paths: Mapping[str, str | os.PathLike],
    feeds: Mapping[str, np.ndarray],
    rounds: int = 7,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Time several graphs on the same feeds, interleaved round-robin so that load from other
    processes hits them alike; per graph, the min (closest to an idle machine) and the median
    seconds of one ``run``."""
    sessions = {name: make_session(path, providers, threads) for name, path in paths.items()}
    for session in sessions.values():
        session.run(None, dict(feeds))  # warm-up: first-run allocations, lazy kernels
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, dict(feeds))
            times[name].append(time.perf_counter() - start)
    return {name: {"min_s": float(np.min(t)), "median_s": float(np.median(t))} for name, t in times.items()}

