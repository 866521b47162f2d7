"""Where an exported graph spends its time, per module, from ONNX Runtime's own profiler.

    python -m benchmarks.profile_graph BUNDLE/denoiser.onnx BUNDLE/denoiser.int8.onnx --component denoiser

Runs each graph ``--runs`` times on the same random inputs (`vem.export.graphs` ComponentSpec,
``--seconds`` of video, the demo config unless ``--config``), sums the kernel time of its nodes by
module path (the exporter names nodes after their torch module: '/unet/res/in_layers.2_3/Conv'
-> 'unet/res' at ``--depth 2``) and prints each module's milliseconds per run beside the first
graph's. With an fp32 and an int8 graph of one component this shows which blocks int8 speeds up
and which it does not (Q/DQ overhead around float ops can outweigh small int8 matrix products).
Kernel times exclude the session's scheduling between nodes, so their sum is a little below
the wall time. Run it on a quiet machine; compare graphs within one call.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np


def module_key(node_name: str, depth: int) -> str:
    """'/unet/res/in_layers/in_layers.2_3/Conv' -> 'unet/res' (depth 2), repeat suffixes dropped."""
    parts = [re.sub(r"_\d+$", "", part) for part in node_name.strip("/").split("/")[:-1]]
    return "/".join(parts[:depth]) or "(graph)"


def profile_graph(path: str | os.PathLike, feeds: dict[str, np.ndarray], runs: int = 6, threads: int = 1,
                  depth: int = 2, by: str = "module") -> dict[str, float]:
    """Milliseconds per run (kernel time) of each module, or of each op type with ``by="op"``
    (the op ONNX Runtime ran after its fusions: QLinearConv, DequantizeLinear, ...), after one
    warm-up run."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="vem-prof-") as work:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(work) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inputs = {i.name: feeds[i.name] for i in session.get_inputs()}
        session.run(None, inputs)  # warm-up: its events are dropped below
        for _ in range(runs):
            session.run(None, inputs)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs_seen = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    warmup_end = runs_seen[0]["ts"] + runs_seen[0]["dur"] if runs_seen else 0
    totals: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= warmup_end:
            key = (event.get("args", {}).get("op_name", "?") if by == "op"
                   else module_key(event["name"][: -len("_kernel_time")], depth))
            totals[key] += event["dur"]
    return {key: microseconds / runs / 1e3 for key, microseconds in totals.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_graph", description=__doc__.split("\n\n")[0])
    parser.add_argument("graphs", nargs="+", help="ONNX graphs of one component (e.g. its fp32 and int8 files)")
    parser.add_argument("--component", default="denoiser", help="which ComponentSpec builds the inputs (default: denoiser)")
    parser.add_argument("--config", default="demo", help="named config for the input sizes (default: demo)")
    parser.add_argument("--seconds", type=float, default=6.0, help="video length of the inputs (default: 6)")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--depth", type=int, default=2, help="module path levels to group by (default: 2)")
    parser.add_argument("--by", choices=("module", "op"), default="module",
                        help="group kernel time by module path or by the op type that ran (default: module)")
    parser.add_argument("--rows", type=int, default=12, help="rows to print (default: 12)")
    args = parser.parse_args(argv)

    from vem.export.graphs import Size, component_specs
    from vem.runtime.config import get_config

    config = get_config(args.config)
    batch = 2 if args.component == "denoiser" else 1  # both guidance branches: one guided step
    feeds = component_specs(config)[args.component].make_inputs(config, Size(args.seconds, 8, batch=batch),
                                                                 np.random.default_rng(0))
    profiles = {path: profile_graph(path, feeds, args.runs, args.threads, args.depth, args.by) for path in args.graphs}
    # Largest first, by the largest time any graph spends there (an int8 graph's QLinearConv or
    # DequantizeLinear rows have no fp32 counterpart).
    keys = {k for p in profiles.values() for k in p}
    order = sorted(keys, key=lambda k: max(p.get(k, 0.0) for p in profiles.values()), reverse=True)
    names = [Path(p).name for p in args.graphs]
    print(f"| {args.by} ({args.component}, {args.seconds:g} s, {args.threads} thread(s), ms per run) | "
          + " | ".join(names) + " | " + " | ".join(f"{names[0]} / {n}" for n in names[1:]) + " |")
    print("|---|" + "---:|" * (2 * len(names) - 1))
    for key in order[: args.rows] + ["(all)"]:
        values = [sum(p.values()) if key == "(all)" else p.get(key, 0.0) for p in profiles.values()]
        ratios = [f"{values[0] / v:.2f}×" if v else "–" for v in values[1:]]
        print(f"| {key} | " + " | ".join(f"{v:.2f}" for v in values) + (" | " + " | ".join(ratios) if ratios else "")
              + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
