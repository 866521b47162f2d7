"""A graph over protobuf's 2 GiB limit through the exporter's own steps: trace, clean, fp16.

No paper-config graph reaches 2 GB (its fp32 denoiser is about 1.5 GB), but a larger AudioLDM 2
checkpoint would. This builds a plain stack of ``--layers`` Linear(8192, 8192) + GELU layers
(9 layers: 2.42 GB of fp32 weights) and runs it through `vem.export.onnx_utils` exactly as a
component's export does: `export_onnx` (the TorchScript exporter, re-saved as one external-data
file), `clean_graph` (shape inference and constant folding), `convert_to_fp16` (fp16 compute) and
`store_weights_fp16` (fp16 storage, fp32 compute), then runs every graph in ONNX Runtime and
compares it with the module in PyTorch. Records, per step: seconds, the files written (graph and
data bytes) and the parity; and the process's peak RSS.

    python -m benchmarks.external_data [--layers 9] [--work /tmp/vem-external-data] \
        [--json benchmarks/results/external-data.json]

Needs about 12 GiB of memory and 8 GB of disk under --work; a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import time
from pathlib import Path

import numpy as np

WIDTH = 8192
RESULT = Path(__file__).resolve().parent / "results" / "external-data.json"


def build_module(layers: int, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    blocks = []
    for _ in range(layers):
        linear = torch.nn.Linear(WIDTH, WIDTH)
        torch.nn.init.normal_(linear.weight, std=WIDTH ** -0.5)  # keeps activations O(1) through the stack
        blocks += [linear, torch.nn.GELU()]
    return torch.nn.Sequential(*blocks).eval()


def _files(path: Path) -> dict:
    from vem.export import onnx_utils

    data = onnx_utils.data_file_of(path)
    return {"graph_bytes": path.stat().st_size, "external_data_bytes": data.stat().st_size if data.is_file() else 0,
            "external_data": data.is_file()}


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run(layers: int, work: Path) -> dict:
    import torch

    from vem.export import onnx_utils

    work.mkdir(parents=True, exist_ok=True)
    module = build_module(layers)
    weights_bytes = sum(p.numel() * 4 for p in module.parameters())
    x = np.random.default_rng(1).standard_normal((2, 16, WIDTH)).astype(np.float32)
    with torch.no_grad():
        reference = module(torch.from_numpy(x)).numpy()
    steps: dict[str, dict] = {}

    fp32 = work / "big.onnx"
    t0 = time.perf_counter()
    onnx_utils.export_onnx(module, (torch.from_numpy(x),), fp32, input_names=["x"], output_names=["y"],
                           dynamic_axes={"x": {0: "batch", 1: "frames"}, "y": {0: "batch", 1: "frames"}})
    steps["export_onnx"] = {"seconds": time.perf_counter() - t0, **_files(fp32)}
    del module
    t0 = time.perf_counter()
    clean = onnx_utils.clean_graph(fp32)
    steps["clean_graph"] = {"seconds": time.perf_counter() - t0, "nodes_before": clean.nodes_before,
                            "nodes_after": clean.nodes_after, **_files(fp32)}
    outputs = {"fp32": fp32}
    t0 = time.perf_counter()
    outputs["fp16_compute"] = onnx_utils.convert_to_fp16(fp32, work / "big.fp16.onnx")
    steps["convert_to_fp16"] = {"seconds": time.perf_counter() - t0, **_files(outputs["fp16_compute"])}
    t0 = time.perf_counter()
    outputs["fp16_storage"] = onnx_utils.store_weights_fp16(fp32, work / "big.fp16w.onnx")
    steps["store_weights_fp16"] = {"seconds": time.perf_counter() - t0, **_files(outputs["fp16_storage"])}
    for kind, path in outputs.items():
        t0 = time.perf_counter()
        session = onnx_utils.make_session(path)
        load_s = time.perf_counter() - t0
        parity = onnx_utils.measure_parity(session, {"x": x}, {"y": reference})
        steps[f"run_{kind}"] = {"session_seconds": load_s, "max_rel": parity.worst_rel, "max_abs": parity.worst_abs}
        del session
    return {"layers": layers, "width": WIDTH, "weights_bytes": weights_bytes,
            "threshold_bytes": onnx_utils.EXTERNAL_DATA_ABOVE_BYTES, "steps": steps,
            "peak_rss_gib": round(_peak_rss_gib(), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=9)
    parser.add_argument("--work", default="/tmp/vem-external-data")
    parser.add_argument("--json", default=str(RESULT))
    parser.add_argument("--keep", action="store_true", help="keep the graphs under --work")
    args = parser.parse_args(argv)
    work = Path(args.work)
    try:
        result = run(args.layers, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                         "processor": platform.processor() or platform.machine()}
    result["command"] = f"python -m benchmarks.external_data --layers {args.layers}"
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
