"""`vem-train reproduce`: the shipped demo checkpoint's whole recipe as one resumable command.

The weights in `model/weights/vem-demo.safetensors` were made over several sessions, each run
starting from the last one's weights (model card, "Recipe"). This replays that chain in order,
with the step counts those runs reached, so that one command on a fresh machine makes the same
kind of model:

    vem-synth (96 training clips, seed 1) -> clip cache -> run 1 (every phase)
    -> run 2 (diffusion, adapter) -> runs 3, 4 (adapter) -> runs 5a, 5 (adapter, prepared
    conditions) -> run 7 (adapter with the beat grid, batch 16) -> ship

Each stage is a `vem-synth` or `vem-train` command line (`--print` lists them). Finished stages
are recorded in WORK/reproduce.json and skipped when the command is run again; an interrupted
training stage continues from its state.pt (`vem-train --resume`), so the chain survives being
stopped at any point. The replay differs from the history in what history cannot repeat: every
phase runs to a step count rather than a time budget, run 1 already uses today's defaults (half
of the diffusion and adapter samples in the runtime's wording, which runs 2 onwards used), and
threads, device and batch order differ, so the weights are the same recipe, not the same bits.

``--scale`` multiplies every step count (at least 1 step each) and ``--clips`` / ``--seconds``
shrink the data: a smoke test of the chain, not a model.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

STATE_NAME = "reproduce.json"
TRAIN_CLIPS = 96
CLIP_SECONDS = "8-14"
DATA_SEED = 1
FINAL_RUN = "run7"


@dataclass(frozen=True)
class Stage:
    """One command of the recipe. ``start`` flags begin a new run (--init, --beat-grid); a stage
    whose run folder already holds a state.pt is continued with --resume instead of them."""

    name: str
    tool: str  # "synth" or "train"
    args: tuple[str, ...]
    steps: dict[str, int] = field(default_factory=dict)
    start: tuple[str, ...] = ()
    run: str | None = None  # the run folder (under WORK) this stage trains in
    continues: bool = False  # trains further in a run an earlier stage started (never from scratch)

    def argv(self, work: Path, scale: float, resume: bool) -> list[str]:
        argv = [a.replace("{W}", str(work)) for a in self.args]
        if self.steps:
            scaled = {phase: max(1, math.ceil(count * scale)) for phase, count in self.steps.items()}
            argv += ["--steps", ",".join(f"{p}={n}" for p, n in scaled.items()),
                     "--minutes", ",".join(f"{p}=999" for p in scaled)]  # step counts, not time, decide
        if self.run is not None:
            argv += ["--out", str(work / self.run)]
            argv += ["--resume"] if resume else [a.replace("{W}", str(work)) for a in self.start]
        return argv


def recipe(clips: int = TRAIN_CLIPS, seconds: str = CLIP_SECONDS) -> list[Stage]:
    """The model card's chain (run 1 ... run 7), as stages. ``{W}`` is the work folder."""
    cache = ("--cache", "{W}/cache/train")
    return [
        Stage("data", "synth", ("--out", "{W}/data/train", "--count", str(clips), "--seconds", seconds,
                                "--seed", str(DATA_SEED))),
        Stage("cache", "train", ("cache", "--data", "{W}/data/train", "--clips", str(clips), *cache,
                                 "--out", "{W}/run1")),
        # Run 1: every phase from random weights (the step counts its time budgets bought).
        Stage("run1", "train", ("all", *cache),
              steps={"vae": 168, "vocoder": 346, "aligner": 52, "visual": 170, "diffusion": 1620, "adapter": 863},
              run="run1"),
        # Run 2: diffusion and adapter trained further, in a new run started from run 1.
        Stage("run2-diffusion", "train", ("diffusion", *cache), steps={"diffusion": 859},
              start=("--init", "{W}/run1/state.pt"), run="run2"),
        Stage("run2-adapter", "train", ("adapter", *cache), steps={"adapter": 1257}, run="run2", continues=True),
        # Runs 3 and 4: the adapter phase continued with the same recipe, each from the last's state.
        Stage("run3", "train", ("adapter", *cache), steps={"adapter": 3053},
              start=("--init", "{W}/run2/state.pt"), run="run3"),
        Stage("run4", "train", ("adapter", *cache), steps={"adapter": 4040},
              start=("--init", "{W}/run3/state.pt"), run="run4"),
        Stage("ship-run4", "train", ("ship", "--out", "{W}/run4", "--to", "{W}/run4.safetensors")),
        # Runs 5a and 5: from the shipped (float16) weights, on conditions prepared once.
        Stage("run5a", "train", ("adapter", *cache, "--prepared", "{W}/adapter-prepared.pt"), steps={"adapter": 4489},
              start=("--init", "{W}/run4.safetensors"), run="run5a"),
        Stage("ship-run5a", "train", ("ship", "--out", "{W}/run5a", "--to", "{W}/run5a.safetensors")),
        Stage("run5", "train", ("adapter", *cache, "--prepared", "{W}/adapter-prepared.pt"), steps={"adapter": 2510},
              start=("--init", "{W}/run5a.safetensors"), run="run5"),
        Stage("ship-run5", "train", ("ship", "--out", "{W}/run5", "--to", "{W}/run5.safetensors")),
        # Run 7 (shipped): the beat-grid channel, 3000 adapter steps at batch 16; conditions
        # prepared again, because the grid needs each clip's beat times.
        Stage("run7", "train", ("adapter", *cache, "--prepared", "{W}/grid-prepared.pt", "--batch", "16"),
              steps={"adapter": 3000}, start=("--init", "{W}/run5.safetensors", "--beat-grid"), run="run7"),
    ]


def _load_record(work: Path) -> tuple[list[str], dict[str, float]]:
    """The finished stages, in order, and each one's seconds."""
    path = work / STATE_NAME
    if not path.is_file():
        return [], {}
    record = json.loads(path.read_text())
    return record["done"], record.get("seconds", {})


def _save_record(work: Path, done: list[str], seconds: dict[str, float]) -> None:
    path = work / STATE_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"done": done, "seconds": seconds}, indent=1))
    tmp.replace(path)  # a stop mid-write leaves the previous record


def shell_line(stage: Stage, argv: list[str]) -> str:
    return " ".join(["vem-synth" if stage.tool == "synth" else "vem-train", *argv])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vem-train reproduce",
        description="Make the shipped demo checkpoint from nothing: synthetic data, cache, and the model card's "
                    "chain of training runs (1, 2, 3, 4, 5a, 5, 7) in order, then ship. Resumable: run the same "
                    "command again to continue. About 5 to 6 hours on a 2-core CPU (model card); --device cuda for a GPU.")
    parser.add_argument("--out", default="runs/reproduce", help="work folder for data, cache and runs (default: runs/reproduce)")
    parser.add_argument("--to", default=None, help="where to ship the final weights (default: OUT/vem-demo.safetensors)")
    parser.add_argument("--device", default="cpu", help="torch device for the training runs (default: cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every step count (at least 1 each): below 1 for a smoke test (default: 1)")
    parser.add_argument("--clips", type=int, default=TRAIN_CLIPS, help=f"training clips (default: {TRAIN_CLIPS})")
    parser.add_argument("--seconds", default=CLIP_SECONDS, help=f"clip length range (default: {CLIP_SECONDS})")
    parser.add_argument("--transitions-onnx", default=None,
                        help="TransNetV2 ONNX graph for the cache (default: exported into the run folder)")
    parser.add_argument("--print", action="store_true", help="list the commands and which are done; run nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.scale > 0:
        print(f"vem-train reproduce: --scale must be positive, got {args.scale}", file=sys.stderr)
        return 2
    if args.clips < 1:
        print(f"vem-train reproduce: --clips: need at least 1, got {args.clips}", file=sys.stderr)
        return 2
    work = Path(args.out)
    final = Path(args.to) if args.to else work / "vem-demo.safetensors"
    stages = recipe(args.clips, args.seconds)
    stages.append(Stage("ship", "train", ("ship", "--out", "{W}/" + FINAL_RUN, "--to", str(final))))
    done, seconds = _load_record(work)

    from .cli import synth_main, train_main

    for number, stage in enumerate(stages, 1):
        resume = stage.run is not None and (work / stage.run / "state.pt").is_file()
        if stage.continues and not resume and not args.print and stage.name not in done:
            print(f"vem-train reproduce: stage {stage.name} continues {work / stage.run}, which holds no state.pt; "
                  f"remove the stages after it from {work / STATE_NAME} to make it again", file=sys.stderr)
            return 2
        argv = stage.argv(work, args.scale, resume)
        if stage.tool == "train" and argv[0] != "ship":
            argv += ["--device", args.device, "--threads", str(args.threads)]
            if stage.name == "cache" and args.transitions_onnx:
                argv += ["--transitions-onnx", args.transitions_onnx]
        if args.quiet:
            argv += ["--quiet"]
        if args.print:
            print(f"{'done' if stage.name in done else 'todo'}  {shell_line(stage, argv)}")
            continue
        if stage.name in done:
            continue
        print(f"vem-train reproduce: [{number}/{len(stages)}] {stage.name}: {shell_line(stage, argv)}", flush=True)
        if stage.tool == "synth":
            work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        code = (synth_main if stage.tool == "synth" else train_main)(argv)
        if code != 0:
            print(f"vem-train reproduce: stage {stage.name} failed (exit {code}); fix the cause and run the same "
                  "command again to continue from it", file=sys.stderr)
            return code
        seconds[stage.name] = round(time.perf_counter() - start, 1)
        done.append(stage.name)
        _save_record(work, done, seconds)
    if not args.print:
        total = sum(seconds.values())
        print(f"vem-train reproduce: done, {final} ({total / 60:.1f} min of stages; per stage in {work / STATE_NAME})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
