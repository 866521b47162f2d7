"""`vem-synth` and `vem-train`."""

from __future__ import annotations

import argparse
import sys


def build_synth_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vem-synth",
        description="Write synthetic (video, music, parse) triples whose scene cuts land on beats.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--count", type=int, default=10, help="number of clips")
    parser.add_argument("--seconds", default="8-40", help="clip length range in seconds, e.g. 8-40")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def synth_main(argv: list[str] | None = None) -> int:
    build_synth_parser().parse_args(argv)
    print("vem-synth: not implemented yet (issue 3)", file=sys.stderr)
    return 1


def build_train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vem-train",
        description="Train the demo checkpoint in the paper's three phases (resumable).",
    )
    parser.add_argument("phase", choices=["vae", "vocoder", "aligner", "diffusion", "adapter", "all"])
    parser.add_argument("--data", required=True, help="vem-synth folder")
    parser.add_argument("--out", default="runs/demo", help="run folder (checkpoints, loss log)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resume", action="store_true")
    return parser


def train_main(argv: list[str] | None = None) -> int:
    build_train_parser().parse_args(argv)
    print("vem-train: not implemented yet (issue 4)", file=sys.stderr)
    return 1
