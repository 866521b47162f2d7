"""`vem-run`: videos in, soundtracks out (the CLI around `Pipeline`).

Writes, per video, ``<stem>.vem.wav`` and ``<stem>.vem.mp4`` in the current folder unless ``-o``
says otherwise; every file goes through a temporary file and a rename, nothing is overwritten
without ``--force``, and the input is never touched. Errors are one line (``error: ...`` and a
``hint: ...``) with the documented exit code; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from .errors import EXIT_OK, EXIT_UNEXPECTED, InputError, OutputError, UsageError, VemError

AUDIO_SUFFIXES = (".wav", ".flac")


@dataclass
class Outputs:
    audio: str | None
    video: str | None
    report: str | None
    plot: str | None
    parse: str | None

    def files(self) -> list[str]:
        return [p for p in (self.audio, self.video, self.report, self.plot, self.parse) if p]


def plan_outputs(args: argparse.Namespace, video: str, several: bool) -> Outputs:
    """Where each output of one video goes (checked before any work is done).

    Default: <stem>.vem.wav and <stem>.vem.mp4 in the current folder. ``-o`` naming a folder (or,
    with several videos, ``-o`` at all) puts them there; ``-o x.wav|x.flac`` writes only that audio
    file, ``-o x.mp4`` only the video. With several videos, report/plot/parse files are named per
    video beside the outputs."""
    stem = Path(video).stem
    folder = Path(".")
    audio: str | None = None
    mp4: str | None = None
    target = Path(args.output) if args.output else None
    if target is not None and (several or target.is_dir()):
        if not target.is_dir():
            raise UsageError(f"-o {args.output}: with several videos -o must be an existing folder")
        folder = target
    elif target is not None and target.suffix.lower() in AUDIO_SUFFIXES:
        audio = args.output
    elif target is not None and target.suffix.lower() == ".mp4":
        mp4 = args.output
    elif target is not None:
        raise UsageError(f"-o {args.output}: use a .wav, .flac or .mp4 file name (or a folder)")
    if audio is None and mp4 is None:  # no single file named: both, by the default names
        audio, mp4 = str(folder / f"{stem}.vem.wav"), str(folder / f"{stem}.vem.mp4")

    def per_video(path: str | None, suffix: str) -> str | None:
        if not path:
            return None
        return str(folder / f"{stem}.{suffix}") if several else path

    return Outputs(audio, mp4, per_video(args.report, "vem.report.json"), per_video(args.plot, "vem.png"),
                   per_video(args.write_parse, "vem.parse.json"))


def _check_outputs(outputs: Outputs, video: str, force: bool) -> None:
    from .atomic import check_output_path

    for path in outputs.files():
        check_output_path(path, force=force, inputs=[video])


def _write_json(path: str, data: dict, force: bool, video: str) -> None:
    from .atomic import atomic_output

    with atomic_output(path, force=force, inputs=[video]) as temp, open(temp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, default=float)
        handle.write("\n")


def run_one(pipeline, args: argparse.Namespace, video: str, outputs: Outputs, parse) -> dict:
    from .atomic import atomic_output
    from .audio import write_audio
    from .parse_schema import parse_to_dict
    from .plot import write_spectrogram_png
    from .writer import mux_music

    if not os.path.exists(video):
        raise InputError(f"{video}: no such file")
    _check_outputs(outputs, video, args.force)
    result = pipeline.generate(
        video, parse=parse, tags=args.tags, caption=args.caption, steps=args.steps, guidance=args.guidance,
        seed=args.seed, progress=not args.quiet and sys.stderr.isatty(),
    )
    report = result.report
    import time

    started = time.perf_counter()
    if outputs.audio:
        write_audio(outputs.audio, result.waveform, result.sample_rate, force=args.force)
        report["music"]["files"].append(os.path.abspath(outputs.audio))
    if outputs.video:
        mux_music(video, result.waveform, result.sample_rate, outputs.video, force=args.force)
        report["music"]["files"].append(os.path.abspath(outputs.video))
    if outputs.parse:
        _write_json(outputs.parse, parse_to_dict(result.parse), args.force, video)
    if outputs.plot:
        with atomic_output(outputs.plot, force=args.force, inputs=[video]) as temp:
            write_spectrogram_png(temp, result.waveform, result.sample_rate,
                                  result.parse.frame.transitions_s, report["music"]["beats_s"])
    report["timings_s"]["write"] = time.perf_counter() - started
    report["timings_s"]["total"] += report["timings_s"]["write"]
    if outputs.report:
        _write_json(outputs.report, report, args.force, video)
    return report


def summary(report: dict) -> str:
    timings = report["timings_s"]
    order = ["decode", "parse", "condition", "diffuse", "decode_audio", "analyse", "write", "total"]
    lines = [f"{report['video']['path']}: {report['video']['duration_s']:.1f} s video, "
             f"{len(report['parse']['transitions_s'])} cuts, {len(report['parse']['storyboards'])} storyboards, "
             f"tags {', '.join(report['parse']['global']['tags'])}"]
    lines.append("  " + "  ".join(f"{name} {timings[name]:.2f}s" for name in order if name in timings))
    metrics = report["metrics"]
    hit, chance = metrics.get("hit_70ms"), metrics.get("chance_70ms")
    rhythm = f"  TBIoU {metrics['tbiou']:.3f}"
    if hit is not None and chance is not None:
        rhythm += f"  cuts with a beat within 70 ms {hit:.0%} (chance {chance:.0%})"
    lines.append(rhythm + f"  [{report['backend']} {report['precision']}, {report['steps']} steps, seed {report['seed']}]")
    lines.append("  wrote " + ", ".join(os.path.relpath(f) for f in report["music"]["files"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from .cli import build_run_parser

    args = build_run_parser().parse_args(argv)
    debug = args.debug
    failures: list[tuple[str, VemError | Exception]] = []
    try:
        from .parse_schema import load_parse
        from .pipeline import Pipeline

        several = len(args.videos) > 1
        if args.parse and several:
            raise UsageError("--parse describes one video; give one video with it")
        plans = {video: plan_outputs(args, video, several) for video in args.videos}
        if not several:
            _check_outputs(plans[args.videos[0]], args.videos[0], args.force)
        parse = None
        if args.parse:
            try:
                parse = load_parse(args.parse)
            except OSError as error:
                raise InputError(f"{args.parse}: cannot read the parse ({error.strerror})") from None
            except ValueError as error:
                raise InputError(f"bad parse JSON: {error}") from None
        pipeline = Pipeline.load(args.bundle, backend=args.backend, precision=args.precision)
    except VemError as error:
        if debug:
            traceback.print_exc()
        print(error.user_message(), file=sys.stderr)
        return error.exit_code
    for video in args.videos:
        try:
            report = run_one(pipeline, args, video, plans[video], parse)
            if not args.quiet:
                print(summary(report))
        except KeyboardInterrupt:
            print("error: interrupted; no partial output was left", file=sys.stderr)
            return 130
        except (VemError, OSError, Exception) as error:  # each video fails on its own
            if debug:
                traceback.print_exc()
            if isinstance(error, OSError) and not isinstance(error, VemError):
                error = OutputError(f"{video}: {error}")
            if not isinstance(error, VemError):
                error = VemError(f"{video}: unexpected {type(error).__name__}: {error}")
            print(error.user_message(), file=sys.stderr)
            failures.append((video, error))
    if failures and several:
        print(f"{len(failures)} of {len(args.videos)} videos failed: "
              + ", ".join(video for video, _ in failures), file=sys.stderr)
    if failures:
        return getattr(failures[0][1], "exit_code", EXIT_UNEXPECTED)
    return EXIT_OK
