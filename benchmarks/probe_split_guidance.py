"""Would the guided denoiser step be faster on a CPU with its two guidance branches on two cores?

    python -m benchmarks.probe_split_guidance [--checkpoint CKPT] [--seconds 6] [--rounds 12]

The bundle's denoiser (`vem.export.graphs.GuidedDenoiser`) runs the conditional and the null
branch as one batch of two and returns the guided eps. On two cores ONNX Runtime then spreads each
op over both threads, which the int8 graph's small element-wise, Q/DQ and Transpose ops do poorly
(`benchmarks.profile_graph --by op`: the int8 step gains ~1.8x over fp32 at one thread, ~1.4x at
two). This probe exports the alternative: one *branch* graph (the same inputs, with ``branch``
[batch] = 1 for the conditional and 0 for the null branch in place of ``guidance``), runs its two
branches as two concurrent calls of one single-threaded session (ONNX Runtime releases the GIL
while it runs), and combines eps_u + g (eps_c - eps_u) in numpy. It times, interleaved in one
process: the batched graph at two threads and the split branches, in fp32 and in int8 (recipe
exclusions of `vem.calibration.quantize`, activation ranges from random example inputs: a speed
probe, not a quality result). The split fp32 eps is checked against the batched graph's.

Nothing in the runtime uses the branch graph; the numbers say whether the bundle contract should
change (see the README, INT8).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def branch_module(model):
    """The branch graph's module (built here so the torch import stays inside the probe)."""
    import torch
    from torch import nn

    class BranchDenoiser(nn.Module):
        def __init__(self):
            super().__init__()
            self.condition = model.condition
            self.unet = model.unet
            self.guide_rhythm = bool(model.config.diffusion.guide_rhythm)
            self.rhythm_gain = float(model.config.diffusion.rhythm_gain)

        def forward(self, latent, timestep, caption, tags, story_text, story_visual, story_start_s,
                    story_duration_s, storyboard_mask, aligner_features, branch):
            tokens = self.condition(caption, tags, story_text, story_visual, story_start_s, story_duration_s)
            weight = branch.view(-1, 1, 1)
            tokens = weight * tokens + (1.0 - weight) * self.condition.null_tokens_like(tokens)
            # As `vem.model.pipeline.guidance_adapter_scale`: the null branch without the TB
            # adapters when guide_rhythm, both branches at rhythm_gain otherwise.
            scale = self.rhythm_gain * (branch if self.guide_rhythm else torch.ones_like(branch))
            return self.unet(latent, timestep, tokens, storyboard_mask, self.condition.global_tokens(tokens),
                             aligner_features, scale)

    return BranchDenoiser().eval()


def quantize_recipe(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    from vem.calibration import quantize as q

    model = q._load(src)
    exclude = sorted({n for names in q.recipe_exclusions(model, "denoiser").values() for n in names})
    nodes = [n.name for n in q.weighted_nodes(model) if n.name not in exclude]
    ranges = q.activation_ranges(src, feeds, nodes).ranges
    return q.quantize_graph(src, dst, ranges, exclude=exclude)


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe_split_guidance",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="model/weights/vem-demo.safetensors")
    parser.add_argument("--seconds", type=float, default=6.0, help="video length of the inputs (default: 6)")
    parser.add_argument("--rounds", type=int, default=12, help="interleaved timing rounds (default: 12)")
    parser.add_argument("--work", default=None, help="keep the graphs here (default: a temporary folder)")
    args = parser.parse_args(argv)

    import torch

    from vem.export.graphs import GuidedDenoiser, Size, component_specs
    from vem.export.onnx_utils import export_onnx
    from vem.model import load_checkpoint

    model = load_checkpoint(args.checkpoint).float().eval()
    spec = component_specs(model.config)["denoiser"]
    rng = np.random.default_rng(0)
    size = Size(args.seconds, storyboards=3)
    feeds = spec.make_inputs(model.config, size, rng)
    calibration = [spec.make_inputs(model.config, size, rng) for _ in range(4)]
    guidance = float(feeds["guidance"][0])
    branch_names = [n for n in spec.input_names if n != "guidance"] + ["branch"]
    axes = spec.dynamic_axes()
    axes.pop("guidance", None)
    axes["branch"] = {0: "batch"}

    with tempfile.TemporaryDirectory(prefix="vem-split-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        example = tuple(torch.from_numpy(feeds[n]) for n in spec.input_names)
        batched = export_onnx(GuidedDenoiser(model).eval(), example, work / "batched.onnx",
                              input_names=spec.input_names, output_names=spec.output_names,
                              dynamic_axes=spec.dynamic_axes())
        branch_example = (*example[:-1], torch.ones(1))
        branch = export_onnx(branch_module(model), branch_example, work / "branch.onnx", input_names=branch_names,
                             output_names=["eps"], dynamic_axes=axes)
        branch_calibration = [{**{k: v for k, v in f.items() if k != "guidance"}, "branch": np.ones(1, np.float32)}
                              for f in calibration]
        graphs = {
            "fp32": (batched, branch),
            "int8": (quantize_recipe(batched, work / "batched.int8.onnx", calibration),
                     quantize_recipe(branch, work / "branch.int8.onnx", branch_calibration)),
        }
        pool = ThreadPoolExecutor(2)
        branch_feeds = {k: v for k, v in feeds.items() if k != "guidance"}
        cond_feeds = {**branch_feeds, "branch": np.ones(1, np.float32)}
        null_feeds = {**branch_feeds, "branch": np.zeros(1, np.float32)}

        runners = {}
        for precision, (batched_path, branch_path) in graphs.items():
            whole = session(batched_path, 2)
            single = session(branch_path, 1)  # one session, two concurrent calls

            def split(single=single):
                cond = pool.submit(single.run, None, cond_feeds)
                null = pool.submit(single.run, None, null_feeds)
                eps_c, eps_u = cond.result()[0], null.result()[0]
                return eps_u + guidance * (eps_c - eps_u)

            runners[f"{precision} batched, 2 threads"] = lambda whole=whole: whole.run(None, feeds)[0]
            runners[f"{precision} split, 2 x 1 thread"] = split
        reference = runners["fp32 batched, 2 threads"]()
        difference = float(np.abs(runners["fp32 split, 2 x 1 thread"]() - reference).max())
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.rounds + 2):
            for name, run in runners.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    medians = {name: 1e3 * float(np.median(t[2:])) for name, t in times.items()}
    base = medians["fp32 batched, 2 threads"]
    print(f"| guided step ({args.seconds:g} s, median of {args.rounds}) | ms | fp32 batched / this |")
    print("|---|---:|---:|")
    for name, ms in medians.items():
        print(f"| {name} | {ms:.1f} | {base / ms:.2f}× |")
    print(f"split fp32 eps vs batched: max |difference| {difference:.2e} (of mean |eps| "
          f"{float(np.abs(reference).mean()):.3f})")
    print(f"int8 over fp32: batched {medians['fp32 batched, 2 threads'] / medians['int8 batched, 2 threads']:.2f}×, "
          f"split {medians['fp32 split, 2 x 1 thread'] / medians['int8 split, 2 x 1 thread']:.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
