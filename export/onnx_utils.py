"""Generic ONNX helpers shared by every component's export (issue 5).

One place for the steps each component repeats: trace to ONNX with the TorchScript exporter and
check the result, clean the graph (shape inference + constant folding), make an fp16 variant with
fp32 inputs/outputs, hash a file for the bundle manifest, and measure parity of an ONNX Runtime
session against reference outputs (the PyTorch module's).

torch is imported only inside :func:`export_onnx`, so the graph-level helpers also serve the
torch-free calibration package.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# One implementation of the manifest's file hash and the external-data file name: the runtime's
# (torch-free); sha256_file is re-exported for vem.export.transitions.
from vem.runtime.bundle import external_data_file, sha256_file

# The opset the project targets (docs/toolchain.md: torch 2.13's exporters emit it; ORT >= 1.16 runs it).
DEFAULT_OPSET = 18

# ---- saving graphs: one file, or the graph plus its weights in one external-data file ---------
#
# protobuf cannot serialise a message of 2 GiB or more, so a graph whose weights come near that
# (the denoiser of a larger AudioLDM 2 checkpoint) keeps them in ONNX's "external data": the
# weights in one side file ``<graph>.onnx.data`` beside the graph, which records their offsets.
# ONNX Runtime, TensorRT's parse_from_file, onnx.load and the checker find it from the graph's
# folder. Every graph the export writes goes through `save_model`, which picks the form by size;
# the bundle records and hashes the side file (`external_data_entry`).

# Above this serialised size a graph is written with external data: 2 GB, under protobuf's
# 2 GiB - 1 limit with room for the graph's own structure.
EXTERNAL_DATA_ABOVE_BYTES = 2_000_000_000
# Tensors smaller than this stay inside the graph even in the external form (shape constants,
# scales), so that tools that read the graph alone still see them.
EXTERNAL_TENSOR_MIN_BYTES = 1024
_external_data_above = EXTERNAL_DATA_ABOVE_BYTES


@contextlib.contextmanager
def external_data_above(size_bytes: int | None) -> Iterator[None]:
    """Within the block, `save_model` writes external data for graphs over ``size_bytes`` (None:
    the default, 2 GB). `vem-export --external-data-above` sets it; a low value shows a small
    graph in the external form, which is how the tests exercise the >2 GB path cheaply."""
    global _external_data_above
    previous = _external_data_above
    _external_data_above = EXTERNAL_DATA_ABOVE_BYTES if size_bytes is None else int(size_bytes)
    try:
        yield
    finally:
        _external_data_above = previous


def data_file_of(path: str | os.PathLike) -> Path:
    """Where `save_model` puts a graph's external data: ``<graph file>.data`` beside it."""
    return external_data_file(path)


def needs_external_data(model: Any) -> bool:
    """True when ``model`` (a ModelProto) is over the external-data threshold."""
    from google.protobuf.message import EncodeError

    try:
        return model.ByteSize() > _external_data_above
    except EncodeError:  # protobuf will not even size a message over 2 GiB
        return True


def save_model(model: Any, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path``: one self-contained file, or, over the threshold, the graph and
    every tensor of at least 1 KiB in ``<path>.data``. A data file left beside ``path`` by an
    earlier save is removed first (onnx appends to an existing one; a stale one would also be
    mistaken for this graph's). In the external form onnx moves the tensors out of ``model``
    itself: reload the file to use the weights again."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = data_file_of(path)
    data.unlink(missing_ok=True)
    if needs_external_data(model):
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=EXTERNAL_TENSOR_MIN_BYTES, convert_attribute=False)
        # onnx creates the data file owner-only (0600); a bundle is read by whoever runs it
        os.chmod(data, path.stat().st_mode & 0o777)
    else:
        onnx.save_model(model, str(path))
    return path


def has_external_data(path: str | os.PathLike) -> bool:
    """True when the graph at ``path`` was written with external data (its side file exists)."""
    return data_file_of(path).is_file()


def graph_bytes(path: str | os.PathLike) -> int:
    """A graph's size on disk, its external data included."""
    path = Path(path)
    return path.stat().st_size + (data_file_of(path).stat().st_size if has_external_data(path) else 0)


def external_data_entry(path: str | os.PathLike, folder: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest's record of a graph's external data (file relative to the bundle ``folder``,
    sha256, bytes), or None for a self-contained graph."""
    if not has_external_data(path):
        return None
    data = data_file_of(path)
    return {"file": data.relative_to(Path(folder)).as_posix(), "sha256": sha256_file(data),
            "bytes": data.stat().st_size}


def copy_graph(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a graph with its external data, if any. The graph names its data file, so a copy under
    another name is rewritten (loaded and saved) rather than copied byte for byte."""
    import onnx

    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not has_external_data(src):
        data_file_of(dst).unlink(missing_ok=True)
        shutil.copyfile(src, dst)
    elif src.name == dst.name:
        shutil.copyfile(data_file_of(src), data_file_of(dst))
        shutil.copyfile(src, dst)
    else:
        save_model(onnx.load(str(src)), dst)
    return dst


def remove_graph(path: str | os.PathLike) -> None:
    """Delete a graph and its external data."""
    Path(path).unlink(missing_ok=True)
    data_file_of(path).unlink(missing_ok=True)


def session_from_model(model: Any, options: Any = None, providers: Sequence[str] | None = None):
    """An ONNX Runtime session for an in-memory ModelProto (an augmented copy of a graph). ORT
    takes serialised bytes only under 2 GiB, so a larger model goes through a temporary folder in
    the external form."""
    import onnxruntime as ort

    providers = list(providers or ["CPUExecutionProvider"])
    if not needs_external_data(model):
        return ort.InferenceSession(model.SerializeToString(), options, providers=providers)
    with tempfile.TemporaryDirectory(prefix="vem-session-") as folder:
        path = save_model(model, Path(folder) / "model.onnx")
        # The folder goes once the session exists: ORT has read the weights, or mapped them, and on
        # Linux a mapped file stays readable after it is unlinked.
        return ort.InferenceSession(str(path), options, providers=providers)


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

    ``dynamo=False``: the TorchScript exporter handles the models here (docs/toolchain.md). The
    module is put in eval mode and traced without gradients. Over protobuf's 2 GiB limit that
    exporter writes every weight to its own file beside the graph, so it traces into a scratch
    folder and the graph is re-saved by `save_model` (one data file) when that happened.
    """
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    with tempfile.TemporaryDirectory(prefix="vem-trace-", dir=path.parent) as scratch:
        traced = Path(scratch) / "model.onnx"
        with torch.no_grad():
            torch.onnx.export(
                module,
                args,
                str(traced),
                dynamo=False,
                opset_version=opset,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes={k: dict(v) for k, v in (dynamic_axes or {}).items()},
                do_constant_folding=True,
            )
        if len(list(Path(scratch).iterdir())) == 1 and traced.stat().st_size <= _external_data_above:
            remove_graph(path)
            shutil.move(str(traced), str(path))
        else:
            save_model(onnx.load(str(traced)), path)
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
    # A graph in the external form (over 2 GB) cannot be shape-inferred in memory: Polygraphy sizes
    # the proto first, which protobuf refuses over 2 GiB. Its shapes are inferred from the file
    # instead (onnx's infer_shapes_path reads the graph, not the weights) before folding and again
    # on the result; the folding passes then work from those shapes.
    external = has_external_data(src)
    # the structure is enough to count nodes; Polygraphy reads the external form from the path
    model = onnx.load(str(src), load_external_data=not external)
    nodes_before = len(model.graph.node)
    # Polygraphy logs every folding pass at INFO; keep the export's output to warnings.
    with G_LOGGER.verbosity(G_LOGGER.WARNING):
        model = infer_shapes(str(src) if external else model, allow_onnxruntime=False)
        # Several passes: folding a constant can make its consumer's shape static, and so on.
        model = fold_constants(
            model, num_passes=3, do_shape_inference=not external, fold_shapes=True,
            allow_onnxruntime_shape_inference=False
        )
        if not external:
            model = infer_shapes(model, allow_onnxruntime=False)
    save_model(model, dst)
    if has_external_data(dst):
        onnx.shape_inference.infer_shapes_path(str(dst), str(dst))
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

    # The ORT converter runs shape inference itself; given a path it uses infer_shapes_path, which
    # also works over 2 GiB (given a loaded model it would serialise it).
    model = onnx.load(str(src)) if method == "onnxconverter" else str(src)
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
    save_model(model16, dst)
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
    save_model(model, dst)
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

