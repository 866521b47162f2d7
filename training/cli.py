"""`vem-synth` and `vem-train`."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

# What each command imports beyond the base install (numpy, PyAV, ONNX Runtime, tqdm), and the
# extra that brings it (pyproject.toml): scipy for the music, scikit-image for the pictures;
# training adds torch and librosa (the held-out evaluation's beat tracker).
SYNTH_MODULES = ("scipy", "skimage")
TRAIN_MODULES = ("torch", "scipy", "skimage", "librosa")


def build_synth_parser() -> argparse.ArgumentParser:
    # numpy only (no synth extra): the help states the bounds the code uses
    from vem.runtime.tempo import MAX_CHANGE_PER_BAR, TEMPO_RANGE_BPM
    from vem.training.synth.plan import GLIDE_RANGE

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
    parser.add_argument("--tempo-maps", type=float, default=0.0, metavar="SHARE",
                        help="share of clips (0-1, default 0) whose music follows a tempo map: the tempo glides "
                             f"by up to {MAX_CHANGE_PER_BAR:.0%}% per bar (the runtime's bound) "
                             f"({GLIDE_RANGE[0]:g}-{GLIDE_RANGE[1]:g}x the style's, inside "
                             f"{TEMPO_RANGE_BPM[0]:g}-{TEMPO_RANGE_BPM[1]:g} BPM) and the cuts fall on "
                             "the moving beats; clips without a map are unchanged by this option")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return parser


def _missing_extra(prog: str, modules: tuple[str, ...], extra: str) -> int | None:
    """Exit code 2 with a one-line message naming the extra to install, if a module is absent."""
    from vem.runtime.extras import missing_extra

    error = missing_extra(modules, extra, prog)
    if error is None:
        return None
    print(f"{error.message}: {error.hint}", file=sys.stderr)  # the message starts with the command's name
    return 2


def synth_main(argv: list[str] | None = None) -> int:
    args = build_synth_parser().parse_args(argv)
    missing = _missing_extra("vem-synth", SYNTH_MODULES, "synth")
    if missing is not None:
        return missing
    from .synth.generate import generate_dataset, parse_seconds_range

    try:
        seconds = parse_seconds_range(args.seconds)
        if args.count < 1:
            raise ValueError(f"--count: need at least 1 clip, got {args.count}")
        if args.workers < 1:
            raise ValueError(f"--workers: need at least 1, got {args.workers}")
        if not 0.0 <= args.tempo_maps <= 1.0:
            raise ValueError(f"--tempo-maps: a share between 0 and 1, got {args.tempo_maps:g}")
    except ValueError as exc:
        print(f"vem-synth: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        generate_dataset(args.out, args.count, args.seed, seconds, workers=args.workers,
                         progress=not args.quiet, start_index=args.start_index, tempo_maps=args.tempo_maps)
    except OSError as exc:
        print(f"vem-synth: cannot write to {args.out}: {exc}", file=sys.stderr)
        return 5
    if not args.quiet:
        print(f"vem-synth: wrote {args.count} clips to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


TRAIN_COMMANDS = ("cache", "vae", "vocoder", "aligner", "visual", "diffusion", "adapter", "all", "ship", "reproduce")


def _key_values(text: str, name: str, kind: type) -> dict:
    """'vae=3,diffusion=10' -> {'vae': 3.0, 'diffusion': 10.0} (for --minutes / --steps)."""
    from .phases import PHASE_ORDER

    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in PHASE_ORDER:
            raise ValueError(f"{name}: expected PHASE=VALUE with PHASE in {list(PHASE_ORDER)}, got {item!r}")
        try:
            out[key] = kind(value)
        except ValueError:
            raise ValueError(f"{name}: {value!r} is not a number") from None
        if out[key] <= 0:
            raise ValueError(f"{name}: {key} must be positive, got {value}")
    return out


def build_train_parser() -> argparse.ArgumentParser:
    from .phases import DEFAULT_SETTINGS

    DEFAULT_ADAPTER = DEFAULT_SETTINGS["adapter"]
    parser = argparse.ArgumentParser(
        prog="vem-train",
        description="Train the demo checkpoint in the paper's three phases (resumable). 'all' = cache, then phase 1 "
        "(vae, vocoder, aligner, visual), phase 2 (diffusion) and phase 3 (adapter) in order; 'ship' writes the "
        "finished run's weights (fp16-stored) to --to; 'reproduce' makes the shipped demo checkpoint from nothing "
        "in one resumable command (its own flags: vem-train reproduce --help).",
    )
    parser.add_argument("command", choices=TRAIN_COMMANDS)
    parser.add_argument("--data", help="vem-synth folder (needed unless the cache is built)")
    parser.add_argument("--out", default="runs/demo", help="run folder: cache/, state.pt, losses.jsonl, checkpoints")
    parser.add_argument("--cache", default=None, help="clip cache folder (default: OUT/cache)")
    parser.add_argument("--config", default="demo", help="named config (default: demo)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--init", default=None,
                        help="start a new run from these weights (a run's state.pt or a checkpoint) instead of random ones")
    parser.add_argument("--fresh-diffusion", action="store_true",
                        help="with --init: keep its VAE, vocoder, aligner and encoders (phase 1) but start the T-UNet, "
                             "its TB adapters and the condition builder from random weights, to train phases 2-3 again")
    parser.add_argument("--plain-cross-attention", action="store_true",
                        help="train SG-CAtt without its storyboard mask (every latent frame attends to every "
                             "storyboard): the paper's 'without SG-CAtt' ablation; recorded in the checkpoint's config")
    parser.add_argument("--beat-grid", action="store_true",
                        help="give the TB adapters a beat-grid channel (one pulse per beat: the reference music's in "
                             "training, the chosen tempo's at run time; vem.runtime.tempo); with --init from weights "
                             "without it, the channel starts at zero weight, then train the adapter phase")
    parser.add_argument("--clips", type=int, default=None, help="use only the first N clips of --data")
    parser.add_argument("--minutes", default="", help="time budget per phase, e.g. vae=5,diffusion=12")
    parser.add_argument("--steps", default="", help="step limit per phase, e.g. vae=500")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cut-weight", type=float, default=None,
                        help="adapter phase: loss weight of latent frames within 80 ms of a video cut "
                             f"(default: {DEFAULT_ADAPTER.cut_weight:g}; 1 = plain MSE)")
    parser.add_argument("--rhythm-dropout", type=float, default=None,
                        help="adapter phase: share of samples trained with the TB adapters off "
                             f"(default: {DEFAULT_ADAPTER.rhythm_dropout:g})")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size of the phase(s) trained (default: each phase's own, 4 or 8)")
    parser.add_argument("--prepared", default=None,
                        help="diffusion/adapter: file of the phase's precomputed conditions; loaded when it exists "
                             "(the clip cache is then not read), else computed and saved there. A few MB: "
                             "what a run on another machine carries instead of the cache")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--checkpoint-minutes", type=float, default=3.0, help="save state.pt this often")
    parser.add_argument("--transitions-onnx", default=None,
                        help="TransNetV2 ONNX graph (default: OUT/transnet/transitions.onnx, exported if missing)")
    parser.add_argument("--to", default="model/weights/vem-demo.safetensors", help="ship: output checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def train_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    missing = _missing_extra("vem-train", TRAIN_MODULES, "export")
    if missing is not None:
        return missing
    if argv[:1] == ["reproduce"]:  # a chain of the commands below, with flags of its own
        from .reproduce import main as reproduce_main

        return reproduce_main(argv[1:])
    args = build_train_parser().parse_args(argv)
    try:
        minutes = _key_values(args.minutes, "--minutes", float)
        steps = _key_values(args.steps, "--steps", int)
        if args.clips is not None and args.clips < 1:
            raise ValueError(f"--clips: need at least 1, got {args.clips}")
        if args.batch is not None and args.batch < 1:
            raise ValueError(f"--batch: need at least 1, got {args.batch}")
        if args.prepared is not None and args.command not in ("diffusion", "adapter"):
            raise ValueError("--prepared applies to the diffusion and adapter commands only")
    except ValueError as exc:
        print(f"vem-train: {exc}", file=sys.stderr)
        return 2
    from pathlib import Path

    import torch

    from vem.runtime.config import get_config

    from .data import build_cache, ensure_transitions_onnx, load_cache
    from .loop import STATE_FILE, load_state, open_run, train_phases
    from .phases import DEFAULT_SETTINGS, PHASE_ORDER, prepared_clip_names

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.command == "ship":
        from vem.model import save_checkpoint

        if not (out / STATE_FILE).is_file():
            print(f"vem-train: no run in {out} ({STATE_FILE} missing)", file=sys.stderr)
            return 2
        model, state = load_state(out / STATE_FILE)
        Path(args.to).parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(model, args.to, dtype=torch.float16)
        print(f"vem-train: wrote {args.to} ({Path(args.to).stat().st_size / 1e6:.1f} MB; phases done: {state.done})")
        return 0
    try:
        config = get_config(args.config)
        cache = Path(args.cache) if args.cache else out / "cache"
        if args.data is not None:
            onnx = Path(args.transitions_onnx) if args.transitions_onnx else ensure_transitions_onnx(out / "transnet")
            build_cache(args.data, cache, config, onnx, workers=2, progress=not args.quiet, limit=args.clips)
        if args.command == "cache":
            return 0
        prepared = Path(args.prepared) if args.prepared else None
        if prepared is not None and prepared.is_file():
            clips = []  # the file replaces the cache; where the cache is here too, they must agree
            cached = sorted(f.stem for f in cache.glob("*.npz") if not f.name.endswith(".tmp.npz"))
            made_from = prepared_clip_names(prepared)
            if cached and cached != made_from:
                raise ValueError(f"--prepared {prepared} was made from {len(made_from)} other clips than the "
                                 f"{len(cached)} in {cache}; delete it to recompute, or pass another --prepared")
        else:
            clips = load_cache(cache)
        model, state = open_run(out, config, resume=args.resume, seed=args.seed, init=args.init,
                                fresh_diffusion=args.fresh_diffusion, plain_cross_attention=args.plain_cross_attention,
                                beat_grid=args.beat_grid)
    except ValueError as exc:
        print(f"vem-train: {exc}", file=sys.stderr)
        return 2
    settings = {}
    for name in PHASE_ORDER:
        base = DEFAULT_SETTINGS[name]
        settings[name] = dataclasses.replace(
            base, minutes=minutes.get(name, base.minutes), max_steps=steps.get(name, base.max_steps),
            batch=base.batch if args.batch is None else args.batch,
            cut_weight=base.cut_weight if args.cut_weight is None else args.cut_weight,
            rhythm_dropout=base.rhythm_dropout if args.rhythm_dropout is None else args.rhythm_dropout)
    phases = list(PHASE_ORDER) if args.command == "all" else [args.command]
    start = time.perf_counter()
    try:
        summary = train_phases(model, state, phases, clips, out, settings, progress=not args.quiet,
                               device=args.device, checkpoint_seconds=args.checkpoint_minutes * 60.0,
                               prepared=prepared)
    except ValueError as exc:  # e.g. a --prepared file made with other weights
        print(f"vem-train: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        for name, item in summary.items():
            print(f"{name}: {item['steps']} steps, {item['minutes']} min, final {item['final']}")
        print(f"vem-train: done in {(time.perf_counter() - start) / 60:.1f} min; run folder {out}")
    return 0
