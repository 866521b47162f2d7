"""Print VeM's parameter count per component: ``python -m vem.model.summary --config paper``.

The model is built on PyTorch's "meta" device (shapes only, no memory, no initialisation), so
even the paper-size model is counted instantly.
"""

from __future__ import annotations

import argparse

import torch

from vem.runtime.config import NAMED_CONFIGS, get_config

from .vem import VeM


def parameter_table(config_name: str) -> str:
    config = get_config(config_name)
    with torch.device("meta"):
        model = VeM(config)
    counts = model.parameter_counts()
    total = counts["total"]
    width = max(len(k) for k in counts)
    lines = [f"VeM parameters, config {config_name!r}", f"{'component':<{width}}  {'parameters':>13}  {'share':>6}"]
    for name, value in counts.items():
        if name == "total":
            lines.append("-" * (width + 23))
        lines.append(f"{name:<{width}}  {value:>13,}  {100.0 * value / total:>5.1f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vem.model.summary", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="paper", choices=sorted(NAMED_CONFIGS))
    args = parser.parse_args(argv)
    print(parameter_table(args.config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
