"""The guided denoiser step as one batch of two over both cores, or one guidance branch per core.

    python -m benchmarks.probe_split_guidance [--checkpoint CKPT] [--seconds 6] [--rounds 12]

The denoiser graph (`vem.export.graphs.BranchDenoiser`) returns the eps of the guidance branch
each sample asks for, and the runtime applies guidance (`vem.runtime.guidance`). It can send both
branches as one batch of two (ONNX Runtime then spreads each op over the threads, which the int8
graph's many small element-wise, Q/DQ and Transpose ops do poorly: `benchmarks.profile_graph --by
op` gives the int8 step ~1.8x over fp32 at one thread, ~1.4x at two) or as two concurrent calls of
one single-threaded session, one per core (what the runtime does on a CPU with two or more
threads). This probe exports the graph from a checkpoint, quantises it (recipe exclusions of
`vem.calibration.quantize`, activation ranges from random example inputs: a speed probe, not a
quality result) and times both ways in fp32 and int8, interleaved in one process. The two ways'
fp32 guided eps are compared.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def quantize_recipe(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    from vem.calibration import quantize as q

    model = q._load(src)
    exclude = sorted({n for names in q.recipe_exclusions(model, "denoiser").values() for n in names})
    nodes = [n.name for n in q.weighted_nodes(model) if n.name not in exclude]
    ranges = q.activation_ranges(src, feeds, nodes).ranges
    return q.quantize_graph(src, dst, ranges, exclude=exclude)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe_split_guidance",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="model/weights/vem-demo.safetensors")
    parser.add_argument("--seconds", type=float, default=6.0, help="video length of the inputs (default: 6)")
    parser.add_argument("--rounds", type=int, default=12, help="interleaved timing rounds (default: 12)")
    parser.add_argument("--work", default=None, help="keep the graphs here (default: a temporary folder)")
    args = parser.parse_args(argv)

    import torch

    from vem.export.graphs import BranchDenoiser, Size, component_specs
    from vem.export.onnx_utils import export_onnx
    from vem.model import load_checkpoint
    from vem.runtime.backends.onnxruntime import OnnxRuntimeRunner
    from vem.runtime.guidance import bind_guided

    def runner(path: Path, threads: int, split: bool) -> OnnxRuntimeRunner:
        # The runtime's runner (spinning off, as its default); split = what the backend chooses
        # for a branch graph on a CPU with two or more threads.
        return OnnxRuntimeRunner(path, name="denoiser", providers=["CPUExecutionProvider"], threads=threads,
                                 split_branches=split)

    model = load_checkpoint(args.checkpoint).float().eval()
    spec = component_specs(model.config)["denoiser"]
    rng = np.random.default_rng(0)
    size = Size(args.seconds, storyboards=3)
    feeds = spec.make_inputs(model.config, size, rng)
    calibration = [spec.make_inputs(model.config, Size(args.seconds, 3, batch=2), rng) for _ in range(4)]
    guidance = float(model.config.diffusion.guidance)
    static = {k: v for k, v in feeds.items() if k not in ("latent", "timestep", "branch")}
    latent, timestep = feeds["latent"], float(feeds["timestep"][0])

    with tempfile.TemporaryDirectory(prefix="vem-split-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        example = tuple(torch.from_numpy(feeds[n]) for n in spec.input_names)
        fp32 = export_onnx(BranchDenoiser(model).eval(), example, work / "denoiser.onnx",
                           input_names=spec.input_names, output_names=spec.output_names,
                           dynamic_axes=spec.dynamic_axes())
        graphs = {"fp32": fp32, "int8": quantize_recipe(fp32, work / "denoiser.int8.onnx", calibration)}
        steps = {}
        for precision, path in graphs.items():
            steps[f"{precision} batch of two, 2 threads"] = bind_guided(runner(path, 2, False), static, guidance)
            steps[f"{precision} split, 2 x 1 thread"] = bind_guided(runner(path, 1, True), static, guidance)
        reference = steps["fp32 batch of two, 2 threads"](latent, timestep)
        difference = float(np.abs(steps["fp32 split, 2 x 1 thread"](latent, timestep) - reference).max())
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.rounds + 2):
            for name, step in steps.items():
                start = time.perf_counter()
                step(latent, timestep)
                times[name].append(time.perf_counter() - start)
        for step in steps.values():
            step.close()
    medians = {name: 1e3 * float(np.median(t[2:])) for name, t in times.items()}
    base = medians["fp32 batch of two, 2 threads"]
    print(f"| guided step ({args.seconds:g} s, median of {args.rounds}) | ms | fp32 batch of two / this |")
    print("|---|---:|---:|")
    for name, ms in medians.items():
        print(f"| {name} | {ms:.1f} | {base / ms:.2f}× |")
    print(f"split fp32 eps vs batch of two: max |difference| {difference:.2e} (of mean |eps| "
          f"{float(np.abs(reference).mean()):.3f})")
    print(f"int8 over fp32: batch of two {base / medians['int8 batch of two, 2 threads']:.2f}×, "
          f"split {medians['fp32 split, 2 x 1 thread'] / medians['int8 split, 2 x 1 thread']:.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
