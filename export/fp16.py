"""fp16 graphs with fp32 islands, and the measurement that picks the islands.

Conversion: `onnx_utils.convert_to_fp16` (ONNX Runtime's float16 converter, fp32 inputs and
outputs kept). An *island* is a set of nodes kept in fp32; the candidates are classes of nodes
that the field usually keeps in fp32, found in the graph by structure rather than by name:

- ``norm``     normalisations: InstanceNormalization (GroupNorm as exported), LayerNormalization,
               BatchNormalization, ReduceL2 (L2 normalisation)
- ``softmax``  Softmax and the attention logits that feed it (QK^T MatMul, scale, mask bias)
- ``timing``   sinusoidal timing / position encodings: Sin, Cos and everything between a graph
               input and them (t * freq would lose its fraction in fp16 for t up to 999)
- ``head``     the output head: the last weighted layer (Conv / ConvTranspose / Gemm / MatMul)
               and every node after it (the vocoder's final conv and tanh; the denoiser's
               output conv)

`search_islands` measures instead of guessing: it converts with no island, then adds one class at
a time, keeping each time the class that lowers the parity error most (greedy forward
selection), and stops at the first set that meets the bound. Every step's error is returned so
the manifest can record the whole search.

Caveat of a CPU measurement: ONNX Runtime's CPU provider has no fp16 kernels for several ops and
runs them in fp32 behind inserted Casts, so the search sees rounding between ops but not fp16
overflow inside an op (a GroupNorm's variance of activations above ~256 overflows fp16's 65504 on
fp16 hardware). Re-run the search where the graphs will run in fp16 (a GPU) before trusting it
there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import onnx_utils

ISLAND_CLASSES = ("norm", "softmax", "timing", "head")
NORM_OPS = {"InstanceNormalization", "LayerNormalization", "BatchNormalization", "ReduceL2", "GroupNormalization"}
WEIGHTED_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def _producers(model) -> dict[str, object]:
    return {out: node for node in model.graph.node for out in node.output}


def _ancestors(model, start_nodes: Iterable, stop: Callable[[object], bool]) -> set[str]:
    """Names of nodes upstream of ``start_nodes`` (inclusive), not crossing nodes where ``stop``
    is true (those are included but not walked through)."""
    producers = _producers(model)
    seen: set[str] = set()
    stack = list(start_nodes)
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        if stop(node):
            continue
        for name in node.input:
            parent = producers.get(name)
            if parent is not None:
                stack.append(parent)
    return seen


def island_nodes(model, kind: str) -> list[str]:
    """Node names of one island class in an (fp32) ONNX model."""
    nodes = list(model.graph.node)
    if kind == "norm":
        return [n.name for n in nodes if n.op_type in NORM_OPS]
    if kind == "softmax":
        softmax = [n for n in nodes if n.op_type == "Softmax"]
        return sorted(_ancestors(model, softmax, stop=lambda n: n.op_type == "MatMul"))
    if kind == "timing":
        trig = [n for n in nodes if n.op_type in ("Sin", "Cos")]
        # walk back to the inputs, but not into weights' consumers upstream of a weighted op
        return sorted(_ancestors(model, trig, stop=lambda n: n.op_type in WEIGHTED_OPS))
    if kind == "head":
        last = max((i for i, n in enumerate(nodes) if n.op_type in WEIGHTED_OPS), default=None)
        if last is None:
            return []
        return [n.name for n in nodes[last:]]
    raise ValueError(f"unknown island class {kind!r}; choose from {ISLAND_CLASSES}")


def convert_with_islands(src: str | os.PathLike, dst: str | os.PathLike, islands: Sequence[str]) -> Path:
    """fp16 copy of ``src`` with the node classes ``islands`` kept in fp32."""
    import onnx

    model = onnx.load(str(src), load_external_data=False)  # the structure is enough
    blocked = sorted({name for kind in islands for name in island_nodes(model, kind)})
    # unnamed nodes cannot be blocked by name; the exporter names every node, check it
    return onnx_utils.convert_to_fp16(src, dst, node_block_list=blocked)


@dataclass
class IslandSearch:
    """The outcome of `search_islands`: the chosen classes and every measured step."""

    islands: list[str]
    error: float
    steps: list[dict] = field(default_factory=list)  # {"islands": [...], "max_rel": x}
    met_bound: bool = True


def search_islands(
    src: str | os.PathLike,
    work_dir: str | os.PathLike,
    error_of: Callable[[Path], float],
    bound: float,
    candidates: Sequence[str] = ISLAND_CLASSES,
) -> IslandSearch:
    """Greedy forward selection of fp32 islands (see the module docstring).

    ``error_of(path)`` runs an fp16 graph and returns its worst relative error against PyTorch.
    Classes absent from the graph are skipped. Returns the first set meeting ``bound``, or every
    class if none does (``met_bound`` False)."""
    import onnx

    work_dir = Path(work_dir)
    model = onnx.load(str(src), load_external_data=False)  # the structure is enough
    present = [kind for kind in candidates if island_nodes(model, kind)]
    steps: list[dict] = []
    cache: dict[tuple[str, ...], float] = {}

    def measure(islands: Sequence[str]) -> float:
        key = tuple(sorted(islands))
        if key not in cache:
            path = work_dir / f"search_{'_'.join(key) or 'none'}.onnx"
            convert_with_islands(src, path, key)
            cache[key] = float(error_of(path))
            steps.append({"islands": list(key), "max_rel": cache[key]})
            onnx_utils.remove_graph(path)
        return cache[key]

    chosen: list[str] = []
    error = measure(chosen)
    best_set, best_error = list(chosen), error
    while error > bound and len(chosen) < len(present):
        trials = {kind: measure([*chosen, kind]) for kind in present if kind not in chosen}
        pick = min(trials, key=trials.get)
        chosen.append(pick)
        error = trials[pick]
        if error < best_error:
            best_set, best_error = list(chosen), error
    # the smallest error seen (adding a class can make things worse: more Casts, more rounding)
    return IslandSearch(sorted(best_set), best_error, steps, met_bound=best_error <= bound)


def worst_relative_error(session_path: Path, cases: Sequence[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]]) -> float:
    """Worst max|a-b|/max|b| over every (feeds, reference) case and output."""
    session = onnx_utils.make_session(session_path)
    return max(onnx_utils.measure_parity(session, feeds, ref).worst_rel for feeds, ref in cases)
