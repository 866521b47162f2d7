"""`vem-export`: a checkpoint becomes a bundle the runtime can run.

Exit codes (as the runtime's, vem.runtime.errors): 0 ok; 1 a component missed its parity bound
(the bundle is still written, the table says which); 2 usage (int8: the INT8 issue's work);
4 model/tool problem (checkpoint missing, ``--engines yes`` without TensorRT and a GPU).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vem.runtime.errors import EXIT_BUNDLE, EXIT_USAGE


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
    parser.add_argument("--seed", type=int, default=0, help="seed of an untrained --config model and of the parity noise")
    parser.add_argument("--search-islands", action="store_true",
                        help="re-measure the fp16 graphs' fp32 islands (slow) instead of using the recorded ones")
    return parser


def format_table(reports) -> str:
    """component | precision | size | parity error (relative) vs PyTorch, bound | time."""
    rows = [("component", "precision", "size", "parity error", "bound", "time")]
    for r in reports:
        flag = "" if r.ok else "  OVER"
        rows.append((r.name, r.precision, f"{r.bytes / 1e6:.2f} MB", f"{r.max_rel:.2e}{flag}", f"{r.bound:g}",
                     f"{r.seconds:.1f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.precision == "int8":
        print("vem-export: int8 is the INT8 issue's work (calibration + quantisation), not done yet; "
              "use --precision fp32 or fp16", file=sys.stderr)
        return EXIT_USAGE
    from .bundle_writer import DEFAULT_CHECKPOINT, ExportError, export_bundle

    if args.config:
        source = args.config
    else:
        checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
        if not checkpoint.is_file():
            which = "the checkpoint" if args.checkpoint else "the shipped demo checkpoint"
            print(f"vem-export: {which} {checkpoint} does not exist; train one (vem-train) or pass "
                  f"--config demo for an untrained export", file=sys.stderr)
            return EXIT_BUNDLE
        source = checkpoint
    out = Path(args.out) if args.out else Path(f"vem-bundle-{args.precision}")
    try:
        result = export_bundle(source, out, args.precision, engines=args.engines, max_seconds=args.max_seconds,
                               max_storyboards=args.max_storyboards, seed=args.seed,
                               search_islands=args.search_islands, progress=lambda m: print(m, flush=True))
    except ExportError as error:
        print(f"vem-export: {error}", file=sys.stderr)
        return error.exit_code
    print()
    print(format_table(result.reports))
    for precision, e2e in result.end_to_end.items():
        print(f"end to end ({precision}): waveform max rel error {e2e['max_rel']:.2e}, final latent "
              f"{e2e['latent_max_rel']:.2e} vs vem.model.pipeline.generate "
              f"({e2e['steps']} steps, {e2e['seconds']:g} s, seed {e2e['seed']})")
    print(f"bundle: {result.folder} ({sum(r.bytes for r in result.reports) / 1e6:.1f} MB) in {result.seconds:.0f} s")
    over = [r for r in result.reports if not r.ok]
    if over:
        print(f"vem-export: {len(over)} component(s) over their parity bound: "
              + ", ".join(f"{r.name} ({r.precision})" for r in over), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
