"""`vem-run`: videos in, soundtracks out (the CLI around `Pipeline`).

Writes, per video, ``<stem>.vem.wav`` and ``<stem>.vem.mp4`` in the current folder unless ``-o``
says otherwise; every file goes through a temporary file and a rename, nothing is overwritten
without ``--force``, and the input is never touched. Errors are one line (``error: ...`` and a
``hint: ...``) with the documented exit code; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from .errors import EXIT_INTERRUPTED, EXIT_OK, InputError, OutputError, UsageError, VemError
from .progress import Progress

AUDIO_SUFFIXES = (".wav", ".flac")
# What a folder given as input expands to (containers FFmpeg reads video from).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
                  ".3gp", ".flv", ".wmv", ".ogv")
OWN_OUTPUT_SUFFIXES = (".vem.mp4", ".vem.mov", ".vem.m4v")
# errno values of an OSError that mean "cannot write the output" (exit 5) rather than a bug.
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES,
                            errno.EPERM, errno.ENOTDIR})


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
    if getattr(args, "parse_only", False):
        # Only the parse (and report): no music is made, so no audio or video is written.
        if audio is not None or mp4 is not None:
            raise UsageError(f"-o {args.output}: --parse-only writes no music; name the parse file with --write-parse")
        parse_path = args.write_parse if args.write_parse and not several else str(folder / f"{stem}.vem.parse.json")
        report = str(folder / f"{stem}.vem.report.json") if args.report and several else args.report
        return Outputs(None, None, report, None, parse_path)
    if audio is None and mp4 is None:  # no single file named: both, by the default names
        audio, mp4 = str(folder / f"{stem}.vem.wav"), str(folder / f"{stem}.vem.mp4")

    def per_video(path: str | None, suffix: str) -> str | None:
        if not path:
            return None
        return str(folder / f"{stem}.{suffix}") if several else path

    return Outputs(audio, mp4, per_video(args.report, "vem.report.json"), per_video(args.plot, "vem.png"),
                   per_video(args.write_parse, "vem.parse.json"))


def _check_outputs(outputs: Outputs, video: str, force: bool) -> None:
    """Refuse, before any work, outputs that exist, overwrite the input, or cannot be created."""
    from .atomic import check_output_path, check_writable_folder

    for path in outputs.files():
        final = check_output_path(path, force=force, inputs=[video])
        check_writable_folder(os.path.dirname(final), display=path)


def _write_json_to(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, default=float)
        handle.write("\n")


def check_video(video: str, max_seconds: float | None = None):
    """Probe a video (headers and first frame only) and refuse it if unusable or over the limit.

    The limit is judged on the duration the container declares, so a three-hour file is refused
    in milliseconds, before anything is decoded (the decoder also stops at the limit, for files
    whose header understates their length)."""
    from .pipeline import MAX_VIDEO_SECONDS
    from .video import probe

    info = probe(video)
    limit = MAX_VIDEO_SECONDS if max_seconds is None else max_seconds
    if info.duration_s > limit:
        raise InputError(f"{video}: {info.duration_s:.0f} s is longer than the limit of {limit:.0f} s",
                         hint="cut the video, or raise the limit with --max-seconds")
    return info


def _parse_source(path: str) -> dict:
    """Where a user's parse came from, so that the report says which file (and which version of it)."""
    from .bundle import sha256_file

    return {"file": os.path.abspath(path), "sha256": sha256_file(path)}


def run_one(pipeline, args: argparse.Namespace, video: str, outputs: Outputs, parse,
            parse_source: dict | None = None) -> dict:
    """Generate and write every output of one video, all or nothing.

    Each output is first written to a temporary file beside its final name; only when all of them
    are complete are they renamed into place. A failure in any (a full disk while muxing, say)
    removes every temporary file of this video, so a failed video leaves no outputs at all and a
    half-written file never appears under a real name."""
    import contextlib
    import time

    from .atomic import atomic_output
    from .audio import write_audio
    from .parse_schema import parse_to_dict
    from .pipeline import MAX_VIDEO_SECONDS
    from .plot import write_spectrogram_png
    from .writer import mux_music

    if not os.path.exists(video):
        raise InputError(f"{video}: no such file")
    _check_outputs(outputs, video, args.force)
    limit = args.max_seconds if args.max_seconds is not None else MAX_VIDEO_SECONDS
    progress = Progress.for_stream(sys.stderr, quiet=args.quiet)
    if getattr(args, "parse_only", False):
        return _parse_only(pipeline, args, video, outputs, parse, parse_source, limit, progress)
    result = pipeline.generate(
        video, parse=parse, tags=args.tags, caption=args.caption, steps=args.steps, guidance=args.guidance,
        seed=args.seed, progress=progress, max_video_seconds=limit,
        bpm=args.bpm,
    )
    report = result.report
    report["parse"]["source_file"] = parse_source
    report["max_video_seconds"] = limit
    for warning in report.get("warnings", []):
        print(f"warning: {video}: {warning}", file=sys.stderr)

    started = time.perf_counter()
    with contextlib.ExitStack() as staged_outputs:
        staged_outputs.enter_context(progress.stage("write", unit="file"))

        def write(path: str, writer) -> None:
            # `writer(temp)` fills a temporary file that becomes `path` when the whole `with`
            # block succeeds. The writers are atomic themselves; here they replace our temporary
            # file. Their errors name the temporary file: the user knows it by its final name.
            temp = staged_outputs.enter_context(atomic_output(path, force=args.force, inputs=[video]))
            try:
                writer(temp)
            except VemError as error:
                error.message = error.message.replace(temp, path)
                error.args = (error.message,)
                raise

        if outputs.audio:
            write(outputs.audio, lambda temp: write_audio(temp, result.waveform, result.sample_rate, force=True))
            report["music"]["files"].append(os.path.abspath(outputs.audio))
        if outputs.video:
            # No fade here: the pipeline faded the music in and out already (a second fade-out
            # made the mp4's last second differ from the wav's).
            write(outputs.video, lambda temp: mux_music(video, result.waveform, result.sample_rate, temp,
                                                        fade_s=0.0, force=True))
            report["music"]["files"].append(os.path.abspath(outputs.video))
        if outputs.parse:
            write(outputs.parse, lambda temp: _write_json_to(temp, parse_to_dict(result.parse)))
        if outputs.plot:
            write(outputs.plot, lambda temp: write_spectrogram_png(
                temp, result.waveform, result.sample_rate, result.parse.frame.transitions_s,
                report["music"]["beats_s"]))
        report["timings_s"]["write"] = time.perf_counter() - started
        report["timings_s"]["total"] += report["timings_s"]["write"]
        if outputs.report:
            write(outputs.report, lambda temp: _write_json_to(temp, report))
    return report


def _parse_only(pipeline, args: argparse.Namespace, video: str, outputs: Outputs, parse, parse_source,
                limit: float, progress) -> dict:
    """`vem-run --parse-only`: decode and parse, write the parse (and report), generate nothing."""
    import contextlib
    import time

    from .atomic import atomic_output
    from .parse_schema import parse_to_dict
    from .tags import normalise_tags

    started = time.perf_counter()
    parsed = pipeline.parse_video(video, parse=parse, tags=normalise_tags(args.tags) if args.tags else None,
                                  caption=args.caption, progress=progress, max_video_seconds=limit)
    for warning in parsed.warnings:
        print(f"warning: {video}: {warning}", file=sys.stderr)
    info = parsed.info
    report = {
        "video": {"path": str(video), "duration_s": parsed.duration_s, "fps": info.fps, "width": info.width,
                  "height": info.height, "rotation": info.rotation, "codec": info.codec,
                  "source_frames": parsed.source_frames},
        "parse": {**parse_to_dict(parsed.parse), "source": "user" if parse is not None else "detected",
                  "source_file": parse_source, "frame_level": parsed.frame_level},
        "timings_s": {**parsed.timings_s, "total": time.perf_counter() - started},
        "parse_only": True,
        "music": {"files": []},
        "warnings": parsed.warnings,
    }
    with contextlib.ExitStack() as staged_outputs:
        for path, data in ((outputs.parse, parse_to_dict(parsed.parse)), (outputs.report, report)):
            if path:
                temp = staged_outputs.enter_context(atomic_output(path, force=args.force, inputs=[video]))
                _write_json_to(temp, data)
                report["music"]["files"].append(os.path.abspath(path))
    return report


def summary(report: dict) -> str:
    timings = report["timings_s"]
    order = ["decode", "parse", "condition", "diffuse", "decode_audio", "analyse", "write", "total"]
    lines = [f"{report['video']['path']}: {report['video']['duration_s']:.1f} s video, "
             f"{len(report['parse']['frame']['transitions_s'])} cuts, {len(report['parse']['storyboards'])} storyboards, "
             f"tags {', '.join(report['parse']['global']['tags'])}"]
    lines.append("  " + "  ".join(f"{name} {timings[name]:.2f}s" for name in order if name in timings))
    if report.get("parse_only"):
        lines.append("  wrote " + ", ".join(os.path.relpath(f) for f in report["music"]["files"])
                     + "  (parse only: edit it, then vem-run VIDEO --parse JSON)")
        return "\n".join(lines)
    metrics = report["metrics"]
    hit, chance = metrics.get("hit_70ms"), metrics.get("chance_70ms")
    rhythm = f"  TBIoU {metrics['tbiou']:.3f}"
    if hit is not None and chance is not None:
        rhythm += f"  cuts with a beat within 70 ms {hit:.0%} (chance {chance:.0%})"
    lines.append(rhythm + f"  [{report['backend']} {report['precision']}, {report['steps']} steps, seed {report['seed']}]")
    lines.append("  wrote " + ", ".join(os.path.relpath(f) for f in report["music"]["files"]))
    return "\n".join(lines)


def expand_inputs(paths: list[str]) -> tuple[list[str], bool]:
    """The video files named by the command line, and whether a folder was among them.

    A folder stands for the video files directly inside it (by extension, `VIDEO_SUFFIXES`),
    sorted by name; hidden files (our own temporary files among them) and vem's own outputs
    (``*.vem.mp4``) are left out, so running twice over a folder does not feed the first run's
    results back in. A file named explicitly is taken whatever its extension (its content decides).
    Each video is taken once."""
    videos: list[str] = []
    from_folder = False
    for raw in paths:
        if os.path.isdir(raw):
            from_folder = True
            found = sorted(
                str(entry) for entry in Path(raw).iterdir()
                if entry.suffix.lower() in VIDEO_SUFFIXES and not entry.name.startswith(".")
                and not entry.name.lower().endswith(OWN_OUTPUT_SUFFIXES) and entry.is_file()
            )
            if not found:
                raise UsageError(f"{raw}: no video files in this folder",
                                 hint=f"vem-run takes files ending in {', '.join(VIDEO_SUFFIXES)}")
            videos.extend(found)
        else:
            videos.append(raw)
    return list(dict.fromkeys(videos)), from_folder


def _plan_all(args: argparse.Namespace, videos: list[str], several: bool) -> dict[str, Outputs]:
    plans = {video: plan_outputs(args, video, several) for video in videos}
    owner: dict[str, str] = {}
    for video, outputs in plans.items():
        for path in outputs.files():
            key = os.path.abspath(path)
            if key in owner:
                raise UsageError(f"{owner[key]} and {video} would both write {path}",
                                 hint="give videos with different file names, or run them separately")
            owner[key] = video
    return plans


def _report_error(error: BaseException, debug: bool) -> VemError:
    """Print one failure the way the README promises; return it as a VemError (exit code inside)."""
    if debug:
        traceback.print_exception(type(error), error, error.__traceback__)
    if isinstance(error, VemError):
        failure = error
    elif isinstance(error, OSError):  # an OS-level failure no writer turned into OutputError
        from .atomic import describe_os_error

        where = f"{error.filename}: " if getattr(error, "filename", None) else ""
        failure = OutputError(f"{where}{describe_os_error(error)}") if error.errno in _OUTPUT_ERRNOS \
            else VemError(f"unexpected {type(error).__name__}: {where}{describe_os_error(error)}")
    else:
        failure = VemError(f"unexpected {type(error).__name__}: {error}")
    print(failure.user_message(), file=sys.stderr)
    return failure


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (an engine that does not fit this GPU, ...) as one ``warning: ...`` line each."""
    print("warning: " + " ".join(str(message).split()), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """`vem-run`; returns the exit code (README "Errors and exit codes")."""
    import warnings

    from .cli import build_run_parser

    args = build_run_parser().parse_args(argv)  # argparse itself exits 2 on a malformed command line
    with warnings.catch_warnings():
        if not args.debug:
            warnings.showwarning = _show_warning
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    debug = args.debug
    try:
        from .parse_schema import check_cuts_agree, load_parse
        from .pipeline import Pipeline
        from .tags import TAG_VOCABULARY

        if args.max_seconds is not None and not args.max_seconds > 0:
            raise UsageError(f"--max-seconds must be a positive number of seconds, got {args.max_seconds}")
        videos, from_folder = expand_inputs(args.videos)
        several = len(videos) > 1 or from_folder
        if args.parse and several:
            raise UsageError("--parse describes one video; give one video with it")
        plans = _plan_all(args, videos, several)
        if not several:
            # Cheap checks before the slow bundle load: a bad file or output fails in a moment.
            _check_outputs(plans[videos[0]], videos[0], args.force)
            check_video(videos[0], args.max_seconds)
        parse = parse_source = None
        if args.parse:
            try:
                # Tags are checked against the runtime's vocabulary: the bundle knows no others.
                parse = load_parse(args.parse, vocabulary=TAG_VOCABULARY)
                check_cuts_agree(parse)
                parse_source = _parse_source(args.parse)
            except (OSError, ValueError) as error:  # ParseError names the file and the field
                raise InputError(f"bad parse JSON: {error}") from None
        pipeline = Pipeline.load(args.bundle, backend=args.backend, precision=args.precision,
                                 components=Pipeline.PARSE_COMPONENTS if args.parse_only else None)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - every failure becomes one message and an exit code
        return _report_error(error, debug).exit_code
    failures: list[tuple[str, VemError]] = []
    for video in videos:
        try:
            report = run_one(pipeline, args, video, plans[video], parse, parse_source)
            if not args.quiet:
                print(summary(report))
        except KeyboardInterrupt:
            print("error: interrupted; no partial output was left", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as error:  # noqa: BLE001 - each video fails on its own; the others go on
            failures.append((video, _report_error(error, debug)))
    if failures and several:
        print(f"{len(failures)} of {len(videos)} videos failed: "
              + ", ".join(video for video, _ in failures), file=sys.stderr)
    if failures:
        # Several videos: the code of the first failure (all failed the same way, usually).
        return failures[0][1].exit_code
    return EXIT_OK
