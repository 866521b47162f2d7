"""Command-line entry points of the runtime: `vem-run`, `vem-bench`, `vem-eval`.

Exit codes (documented in the README): 0 ok, 1 unexpected error, 2 usage, 3 unusable input,
4 bundle/model problem, 5 cannot write output.
"""

from __future__ import annotations

import argparse
import sys

from .errors import EXIT_UNEXPECTED


def not_implemented(command: str, issue: str) -> int:
    print(f"{command}: not implemented yet ({issue})", file=sys.stderr)
    return EXIT_UNEXPECTED


def build_run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vem-run",
        description="Write music for a video that follows its cuts, shots and mood (VeM). "
        "By default writes <stem>.vem.wav and <stem>.vem.mp4 (the video stream copied, the music muxed in).",
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="input video file(s)")
    parser.add_argument("-o", "--output", help="output .wav/.flac/.mp4 file, or a folder when several videos are given")
    parser.add_argument("--bundle", help="exported model bundle folder (default: the bundle shipped in the package)")
    parser.add_argument("--backend", choices=["auto", "onnxruntime", "tensorrt"], default="auto")
    parser.add_argument("--precision", choices=["fp32", "fp16", "int8"], help="graph precision (default: the bundle's)")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the bundle's)")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the bundle's)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    parser.add_argument("--tags", help="comma-separated style tags instead of those predicted from the video")
    parser.add_argument("--caption", help="a global caption for the video")
    parser.add_argument("--parse", metavar="JSON", help="use this three-level parse instead of parsing the video")
    parser.add_argument("--write-parse", metavar="JSON", help="write the parse used, for editing and re-running")
    parser.add_argument("--report", metavar="JSON", help="write a JSON report (parse, timings, TBIoU)")
    parser.add_argument("--plot", metavar="PNG", help="write a spectrogram with cuts and beats marked")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def run_main(argv: list[str] | None = None) -> int:
    build_run_parser().parse_args(argv)
    return not_implemented("vem-run", "issue 7")


def build_bench_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vem-bench",
        description="Time the real pipeline per stage on generated videos of several lengths.",
    )
    parser.add_argument("--bundle", help="bundle folder (default: the shipped bundle)")
    parser.add_argument("--precision", default="fp32", help="comma-separated precisions")
    parser.add_argument("--backend", default="auto", help="comma-separated backends")
    parser.add_argument("--seconds", default="10,30,60", help="comma-separated video lengths in seconds")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the bundle's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up")
    parser.add_argument("--json", metavar="PATH", help="write results as JSON")
    return parser


def bench_main(argv: list[str] | None = None) -> int:
    build_bench_parser().parse_args(argv)
    return not_implemented("vem-bench", "issue 8")


def build_eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vem-eval",
        description="Rhythm metrics (BIoU, TBIoU, cut-beat hit rate at 70 ms vs chance) over a folder of "
        "(video, music) pairs or vem-run reports.",
    )
    parser.add_argument("inputs", nargs="+", help="folders or files")
    parser.add_argument("--beat-tracker", choices=["librosa", "madmom"], default="librosa")
    parser.add_argument("--json", metavar="PATH", help="write per-file metrics and means as JSON")
    return parser


def eval_main(argv: list[str] | None = None) -> int:
    build_eval_parser().parse_args(argv)
    return not_implemented("vem-eval", "issue 3")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_main())
