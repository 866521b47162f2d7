"""`vem-export`: a checkpoint becomes a bundle the runtime can run."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vem-export",
        description="Export a VeM checkpoint to an ONNX bundle (and TensorRT engines when a GPU and "
        "TensorRT are present). Ends with a table: component, precision, size, parity error, time.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="checkpoint (.safetensors) to export (default: the shipped demo checkpoint)")
    source.add_argument("--config", choices=["demo", "paper"], help="export an untrained model of this config")
    parser.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp16")
    parser.add_argument("--out", help="output folder (default: ./vem-bundle-<precision>)")
    parser.add_argument("--engines", choices=["auto", "yes", "no"], default="auto", help="build TensorRT engines")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="longest window the graphs accept")
    parser.add_argument("--max-storyboards", type=int, default=32)
    parser.add_argument("--calib", help="folder of calibration videos for int8 (default: a vem-synth set)")
    return parser


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("vem-export: not implemented yet (issue 5)", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
