"""`vem-synth` and `vem-train`."""

from __future__ import annotations

import argparse
import os
import sys
import time


def build_synth_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vem-synth",
        description="Write synthetic (video, music, parse) triples whose scene cuts land on beats: per clip an "
        "H.264 mp4, its music as 16 kHz mono WAV and the three-level parse as JSON.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--count", type=int, default=10, help="number of clips (default: 10)")
    parser.add_argument("--seconds", default="8-40", help="clip length range in seconds, e.g. 8-40 (default)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; clip i depends only on (seed, i)")
    parser.add_argument("--start-index", type=int, default=0, help="index of the first clip (to extend a set)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="worker processes (default: min(2, CPUs))")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return parser


def synth_main(argv: list[str] | None = None) -> int:
    args = build_synth_parser().parse_args(argv)
    from .synth.generate import generate_dataset, parse_seconds_range

    try:
        seconds = parse_seconds_range(args.seconds)
        if args.count < 1:
            raise ValueError(f"--count: need at least 1 clip, got {args.count}")
        if args.workers < 1:
            raise ValueError(f"--workers: need at least 1, got {args.workers}")
    except ValueError as exc:
        print(f"vem-synth: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        generate_dataset(args.out, args.count, args.seed, seconds, workers=args.workers,
                         progress=not args.quiet, start_index=args.start_index)
    except OSError as exc:
        print(f"vem-synth: cannot write to {args.out}: {exc}", file=sys.stderr)
        return 5
    if not args.quiet:
        print(f"vem-synth: wrote {args.count} clips to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


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
