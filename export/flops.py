"""Floating-point operations of one guided denoiser step: the floor under the diffusion's latency.

Counted with `torch.utils.flop_counter.FlopCounterMode`, which counts the matrix products
(``mm``/``addmm``/``bmm``/``baddbmm``/``matmul``), convolutions and scaled-dot-product attention
as 2 FLOPs per multiply-accumulate, and ignores element-wise work (norms, activations, softmax,
additions). For this T-UNet the products are nearly all of the arithmetic, so the count is a
lower bound on the work and ``flops / measured_time`` an honest lower bound on the FLOP/s a
backend achieves.

One guided step = the denoiser graph (`vem.export.graphs.BranchDenoiser`) over the conditional and
the null branch, as the runtime calls it per sampler step (one batch of two, or two concurrent
calls on a CPU; the same arithmetic): the condition builder (docs/paper.md Eq. 6) and the T-UNet for
both branches (classifier-free guidance, Eq. 5).

    python -m vem.export.flops                 # demo and paper, 10/30/60 s
    python -m vem.export.flops --config paper --seconds 60
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vem.runtime.config import VemConfig, get_config


@dataclass
class FlopCount:
    """FLOPs (2 per multiply-accumulate) of one call, total and per aten operator."""

    total: int
    by_operator: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "by_operator": dict(self.by_operator)}


def count_flops(module: Any, *args: Any, **kwargs: Any) -> FlopCount:
    """FLOPs of ``module(*args, **kwargs)`` under `FlopCounterMode` (no gradients)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*args, **kwargs)
    by_operator: Counter[str] = Counter()
    for operator, flops in counter.get_flop_counts().get("Global", {}).items():
        name = str(operator)  # "aten.convolution", "aten.mm", ...
        by_operator[name.split(".")[1] if name.startswith("aten.") else name] += int(flops)
    return FlopCount(int(counter.get_total_flops()), dict(by_operator))


def denoiser_step_flops(config: VemConfig | str, seconds: float, *, storyboards: int = 8, seed: int = 0) -> FlopCount:
    """FLOPs of one guided denoiser step (batch 1 -> T-UNet batch 2) for ``seconds`` of audio.

    The model is built on the ``meta`` device: FLOPs depend on shapes only, so even the paper
    config (354 M parameters) is counted in about a second without allocating its weights."""
    import torch

    from vem.model.vem import VeM

    from .graphs import BranchDenoiser, Size, component_specs

    config = get_config(config) if isinstance(config, str) else config
    spec = component_specs(config)["denoiser"]
    # Batch 2 = [conditional, null]: one guided step.
    feeds = spec.make_inputs(config, Size(seconds, storyboards, batch=2), np.random.default_rng(seed))
    with torch.device("meta"):
        model = VeM(config).eval()
        wrapper = BranchDenoiser(model)
        args = [torch.from_numpy(np.ascontiguousarray(feeds[name])).to("meta") for name in spec.input_names]
    return count_flops(wrapper, *args)


def denoiser_flops_table(configs: tuple[str, ...] = ("demo", "paper"), lengths: tuple[float, ...] = (10.0, 30.0, 60.0),
                         storyboards: int = 8) -> list[dict[str, Any]]:
    """One row per (config, seconds): latent frames and GFLOPs per guided step."""
    rows = []
    for name in configs:
        config = get_config(name)
        for seconds in lengths:
            count = denoiser_step_flops(config, seconds, storyboards=storyboards)
            rows.append({"config": name, "seconds": seconds, "latent_frames": config.latent_frames(seconds),
                         "storyboards": storyboards, "gflop_per_step": count.total / 1e9,
                         "by_operator_gflop": {k: v / 1e9 for k, v in sorted(count.by_operator.items())}})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vem.export.flops",
                                     description="FLOPs of one guided denoiser step per config and video length")
    parser.add_argument("--config", default="demo,paper", help="comma-separated configs (demo, paper)")
    parser.add_argument("--seconds", default="10,30,60", help="comma-separated lengths in seconds")
    parser.add_argument("--storyboards", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        configs = tuple(c.strip() for c in args.config.split(",") if c.strip())
        lengths = tuple(float(s) for s in args.seconds.split(",") if s.strip())
        for name in configs:
            get_config(name)
    except ValueError as error:
        print(f"vem.export.flops: {error}", file=sys.stderr)
        return 2
    rows = denoiser_flops_table(configs, lengths, args.storyboards)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'config':<6} {'seconds':>7} {'latent frames':>13} {'GFLOP/step':>11}")
    for row in rows:
        print(f"{row['config']:<6} {row['seconds']:>7g} {row['latent_frames']:>13} {row['gflop_per_step']:>11.2f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
