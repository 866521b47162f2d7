"""`vem-run`: videos in, soundtracks out (the CLI around `Pipeline`).

Writes, per video, ``<stem>.vem.wav`` and ``<stem>.vem.mp4`` in the current folder unless ``-o``
says otherwise; every file goes through a temporary file and a rename, nothing is overwritten
without ``--force``, and the input is never touched. Errors are one line (``error: ...`` and a
``hint: ...``) with the documented exit code; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from .errors import EXIT_OK, InputError, OutputError, UsageError, VemError
from .interrupt import Interrupted, describe, handling_signals
from .progress import Progress

AUDIO_SUFFIXES = (".wav", ".flac")
# What a folder given as input expands to (containers FFmpeg reads video from).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
                  ".3gp", ".flv", ".wmv", ".ogv")
OWN_OUTPUT_SUFFIXES = (".vem.mp4", ".vem.mov", ".vem.m4v")


@dataclass
class Outputs:
    audio: str | None
    video: str | None
    report: str | None
    plot: str | None
    parse: str | None

    def files(self) -> list[str]:
        return [p for p in (self.audio, self.video, self.report, self.plot, self.parse) if p]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vem-run",
        description="Write music for a video that follows its cuts, shots and mood (VeM). "
        "By default writes <stem>.vem.wav and <stem>.vem.mp4 (the video stream copied, the music muxed in).",
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO",
                        help="input video file(s), or folders (each stands for the video files in it, sorted)")
    parser.add_argument("-o", "--output", help="output .wav/.flac/.mp4 file, or a folder when several videos are given")
    parser.add_argument("--bundle", help="exported model bundle folder (default: the bundle shipped in the package)")
    parser.add_argument("--backend", choices=["auto", "onnxruntime", "tensorrt"], default="auto")
    parser.add_argument("--precision", choices=["fp32", "fp16", "int8"], help="graph precision (default: the bundle's)")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the bundle's)")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the bundle's)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    parser.add_argument("--tags", help="comma-separated style tags instead of those predicted from the video")
    parser.add_argument("--caption", help="a global caption for the video")
    parser.add_argument("--bpm", type=float,
                        help="tempo of the music in beats per minute (default: chosen from the video's cuts and pace "
                             "tag, so that the cuts fall on beats; bundles with a beat-grid model only)")
    parser.add_argument("--tempo", choices=["auto", "steady", "map"], default="auto",
                        help="auto (default): one steady tempo when it puts every cut on a beat, else a tempo map; "
                             "steady: one tempo fitted to the cuts, its value chosen for you (--bpm fixes it); "
                             "map: a tempo map whose tempo glides between cuts (at most 5 %% per bar) so that each "
                             "cut it can reach is on a beat. The report says which was used and why, and lists "
                             "the cuts left off the grid. --bpm implies steady")
    parser.add_argument("--parse", metavar="JSON", help="use this three-level parse instead of parsing the video")
    parser.add_argument("--write-parse", metavar="JSON", help="write the parse used, for editing and re-running")
    parser.add_argument("--parse-only", action="store_true",
                        help="decode and parse only: write the parse (--write-parse, default <stem>.vem.parse.json) "
                             "and --report, and stop before any music is generated, so that cuts, tags and "
                             "captions can be checked and corrected (then: vem-run VIDEO --parse JSON)")
    parser.add_argument("--report", metavar="JSON", help="write a JSON report (parse, timings, TBIoU)")
    parser.add_argument("--plot", metavar="PNG", help="write a spectrogram with cuts and beats marked")
    parser.add_argument("--max-seconds", type=float, metavar="S",
                        help="refuse videos longer than this (read from the file's header, before decoding; "
                        "default: one hour)")
    parser.add_argument("--input-audio", choices=["drop", "mix", "track"], default="drop",
                        help="the video's own sound in the mp4: drop it (default; the music replaces it), "
                        "mix it 6 dB under the music, or keep it as a second audio track")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress or summary (progress is a bar per stage on a terminal, otherwise one line "
                             "per stage on stderr)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    batch = parser.add_argument_group("batches and clusters")
    batch.add_argument("--skip-existing", action="store_true",
                       help="skip a video whose outputs all exist already (to continue a batch that was "
                            "interrupted); it is named on stderr and counted in the summary")
    batch.add_argument("--summary", metavar="JSON",
                       help="write a JSON summary of the run: per video its status (done, failed, skipped), "
                            "worker, seconds and outputs (replaced without --force when --skip-existing "
                            "continues a run)")
    batch.add_argument("--ray", metavar="ADDRESS",
                       help="generate on a Ray cluster: 'local' starts one on this machine, anything else is "
                            "the address of a running cluster (ray start --head). Each worker loads the "
                            "bundle once; inputs and outputs must be at the same paths on every node "
                            "(shared storage). Needs the cluster extra: pip install \"vem[cluster]\"")
    batch.add_argument("--ray-workers", type=int, metavar="N",
                       help="pipelines to start (default: as many as the cluster's GPUs or CPUs allow, at most "
                            "one per video)")
    batch.add_argument("--cpus-per-worker", type=float, metavar="N",
                       help="CPU cores per worker, also its ONNX Runtime threads on a CPU (default: 1 with GPUs, "
                            "else 4, at most the cores of the largest node)")
    batch.add_argument("--gpus-per-worker", type=float, metavar="N",
                       help="GPUs per worker (default: 1 when the cluster has GPUs, else 0; 0.5 puts two "
                            "pipelines on each GPU)")
    return parser


def plan_outputs(args: argparse.Namespace, video: str, several: bool, beside: bool = False) -> Outputs:
    """Where each output of one video goes (checked before any work is done).

    Default: <stem>.vem.wav and <stem>.vem.mp4 in the current folder, or beside the video when it
    came from a folder argument (``beside``). ``-o`` naming a folder (or, with several videos,
    ``-o`` at all) puts them there; ``-o x.wav|x.flac`` writes only that audio file, ``-o x.mp4``
    only the video. With several videos, report/plot/parse files are named per video beside the
    outputs."""
    stem = Path(video).stem
    folder = Path(video).parent if beside else Path(".")
    audio: str | None = None
    mp4: str | None = None
    target = Path(args.output) if args.output else None
    names_folder = bool(args.output) and args.output.endswith(("/", os.sep))
    is_folder = target is not None and os.path.isdir(target)  # False, not an error, for a too-long name
    if target is not None and (several or is_folder or names_folder):
        if not is_folder:
            if os.path.lexists(target) or (several and target.suffix.lower() in (*AUDIO_SUFFIXES, ".mp4")):
                raise UsageError(f"-o {args.output}: with several videos -o must be an existing folder")
            raise OutputError(f"-o {args.output}: the folder does not exist",
                              hint="create it first, or choose another output folder")
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


def _check_outputs(paths: list[str], inputs: list[str], force: bool) -> None:
    """Refuse, before any work, outputs that exist, overwrite an input, or cannot be created."""
    from .atomic import check_output_path, check_writable_folder

    for path in paths:
        final = check_output_path(path, force=force, inputs=inputs)
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


# What the command line may ask for (checked before anything is loaded: exit 2).
MAX_STEPS = 1000  # the diffusion schedule's training steps: more sampler steps than that do not exist
MAX_GUIDANCE = 100.0
MAX_SEED = 2**63 - 1


def check_flags(args: argparse.Namespace) -> None:
    """UsageError (exit 2) for a flag value that cannot work, before anything slow happens."""
    import math

    from .tags import TAG_VOCABULARY, normalise_tags, unknown_tags
    from .tempo import MAX_BPM, MIN_BPM

    if args.steps is not None and not 1 <= args.steps <= MAX_STEPS:
        raise UsageError(f"--steps must be between 1 and {MAX_STEPS}, got {args.steps}")
    if args.guidance is not None and not (math.isfinite(args.guidance) and 0.0 <= args.guidance <= MAX_GUIDANCE):
        raise UsageError(f"--guidance must be a number between 0 and {MAX_GUIDANCE:g}, got {args.guidance:g}",
                         hint="1 means no guidance; the bundle's default is usually a few units")
    if not 0 <= args.seed <= MAX_SEED:
        raise UsageError(f"--seed must be between 0 and 2**63-1, got {args.seed}")
    if args.bpm is not None and not (math.isfinite(args.bpm) and MIN_BPM <= args.bpm <= MAX_BPM):
        raise UsageError(f"--bpm must be between {MIN_BPM:g} and {MAX_BPM:g}, got {args.bpm:g}")
    if args.bpm is not None and args.tempo == "map":
        raise UsageError("--bpm fixes one steady tempo; it cannot be combined with --tempo map")
    if args.max_seconds is not None and not (math.isfinite(args.max_seconds) and args.max_seconds > 0):
        raise UsageError(f"--max-seconds must be a positive number of seconds, got {args.max_seconds:g}")
    if args.tags is not None:
        unknown = unknown_tags(normalise_tags(args.tags))
        if unknown:
            raise UsageError(f"unknown tag(s) {', '.join(unknown)}; known tags: {', '.join(TAG_VOCABULARY)}")
    check_batch_flags(args)


def check_batch_flags(args: argparse.Namespace) -> None:
    """UsageError for the cluster flags: they need --ray, and counts must be positive."""
    import math

    ray_only = [flag for flag, value in (("--ray-workers", args.ray_workers),
                                         ("--cpus-per-worker", args.cpus_per_worker),
                                         ("--gpus-per-worker", args.gpus_per_worker))
                if value is not None]
    if ray_only and not args.ray:
        raise UsageError(f"{', '.join(ray_only)} only apply with --ray ADDRESS",
                         hint="add --ray local to use the cores of this machine")
    if args.ray is not None and not args.ray.strip():
        raise UsageError("--ray needs an address: 'local', or a running cluster's (host:port, ray://host:port, auto)")
    if args.ray_workers is not None and args.ray_workers < 1:
        raise UsageError(f"--ray-workers must be at least 1, got {args.ray_workers}")
    cpus = args.cpus_per_worker
    if cpus is not None and not (math.isfinite(cpus) and cpus > 0):
        raise UsageError(f"--cpus-per-worker must be a positive number, got {cpus:g}")
    gpus = args.gpus_per_worker
    if gpus is not None and not (math.isfinite(gpus) and gpus >= 0):
        raise UsageError(f"--gpus-per-worker must be 0 or more, got {gpus:g}")


def _free_bytes(folder: str) -> int | None:
    try:
        stat = os.statvfs(folder or ".")
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


# Below this much free space nothing vem writes fits (a second of 16-bit mono 16 kHz is 32 kB).
MIN_FREE_BYTES = 256 * 1024


def check_free_space(outputs: Outputs, video_size: int) -> None:
    """OutputError (exit 5) when a disk that must hold an output is full, or too full for the mp4
    (the video stream is copied into it, so it needs about the input's size)."""
    needs: dict[str, tuple[int, str]] = {}
    for path in outputs.files():
        folder = os.path.dirname(os.path.abspath(path))
        want = MIN_FREE_BYTES + (video_size if path == outputs.video else 0)
        before, first = needs.get(folder, (0, path))
        needs[folder] = (before + want, first)
    for folder, (want, first) in needs.items():
        free = _free_bytes(folder)
        if free is None or free >= want:
            continue
        if free < MIN_FREE_BYTES:
            raise OutputError(f"{first}: no space left on the device ({free // 1024} kB free in {folder})",
                              hint="free some space, or write somewhere else with -o")
        raise OutputError(f"{first}: not enough space on the device for the outputs ({free / 1e6:.1f} MB free in "
                          f"{folder}, about {want / 1e6:.1f} MB needed: the mp4 holds a copy of the video)",
                          hint="free some space, or write the music alone with -o NAME.wav")


@dataclass
class Checked:
    """What the cheap checks of one video learned (vem-run uses it when writing)."""

    info: object  # VideoInfo
    preflight: object  # Preflight
    warnings: list[str]


def check_input(args: argparse.Namespace, video: str, outputs: Outputs) -> Checked:
    """Every check of one video and its outputs that needs no model: paths, headers, the length
    limit, the packets' timestamps (and, for an mp4, that its video can be copied), free space.
    Raises the VemError the README lists; returns the warnings to print."""
    from .pipeline import MAX_VIDEO_SECONDS
    from .preflight import check_timestamps

    _check_outputs(outputs.files(), [video], args.force)
    info = check_video(video, args.max_seconds)
    limit = args.max_seconds if args.max_seconds is not None else MAX_VIDEO_SECONDS
    preflight = check_timestamps(video, info, mux=outputs.video is not None, max_seconds=limit)
    check_free_space(outputs, info.size_bytes)
    warnings = list(preflight.warnings)
    if info.has_audio and outputs.video is not None and args.input_audio == "drop":
        warnings.append("its own audio track is left out of the mp4 (the music replaces it); "
                        "--input-audio mix or track keeps it")
    return Checked(info, preflight, warnings)


def _parse_source(path: str) -> dict:
    """Where a user's parse came from, so that the report says which file (and which version of it)."""
    from .bundle import sha256_file

    return {"file": os.path.abspath(path), "sha256": sha256_file(path)}


def run_one(pipeline, args: argparse.Namespace, video: str, outputs: Outputs, parse,
            parse_source: dict | None = None, checked: Checked | None = None) -> dict:
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
    if checked is None:
        checked = check_input(args, video, outputs)
        for warning in checked.warnings:
            print(f"warning: {video}: {warning}", file=sys.stderr)
    else:
        _check_outputs(outputs.files(), [video], args.force)  # again: a file may have appeared meanwhile
    limit = args.max_seconds if args.max_seconds is not None else MAX_VIDEO_SECONDS
    progress = Progress.for_stream(sys.stderr, quiet=args.quiet)
    if getattr(args, "parse_only", False):
        return _parse_only(pipeline, args, video, outputs, parse, parse_source, limit, progress)
    result = pipeline.generate(
        video, parse=parse, tags=args.tags, caption=args.caption, steps=args.steps, guidance=args.guidance,
        seed=args.seed, progress=progress, max_video_seconds=limit,
        bpm=args.bpm, tempo_mode=args.tempo,
    )
    report = result.report
    report["parse"]["source_file"] = parse_source
    report["max_video_seconds"] = limit
    for warning in report.get("warnings", []):
        print(f"warning: {video}: {warning}", file=sys.stderr)
    report["warnings"] = list(checked.warnings) + list(report.get("warnings", []))
    report["input_audio"] = args.input_audio if checked.info.has_audio else None

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
            # The waveform is the finished music (fitted to the frames and faded by the
            # pipeline): the mux neither fades it again nor pads it to what a header claims.
            write(outputs.video, lambda temp: mux_music(
                video, result.waveform, result.sample_rate, temp, force=True, fade_s=0.0,
                duration_s=len(result.waveform) / result.sample_rate, input_audio=args.input_audio))
            report["music"]["files"].append(os.path.abspath(outputs.video))
        if outputs.parse:
            write(outputs.parse, lambda temp: _write_json_to(temp, parse_to_dict(result.parse)))
        if outputs.plot:
            write(outputs.plot, lambda temp: write_spectrogram_png(
                temp, result.waveform, result.sample_rate, result.parse.frame.transitions_s,
                report["music"]["beats_s"]))
        report["timings_s"]["write"] = time.perf_counter() - started
        report["timings_s"]["total"] += report["timings_s"]["write"]
        # Every file of this video (music, plot, parse, the report itself): the summary's "wrote" line.
        report["files_written"] = [os.path.abspath(p) for p in outputs.files()]
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
                report["music"]["files"].append(os.path.abspath(path))
                report["files_written"] = list(report["music"]["files"])
                _write_json_to(temp, data)
    return report


def summary(report: dict) -> str:
    timings = report["timings_s"]
    order = ["decode", "parse", "condition", "diffuse", "decode_audio", "analyse", "write", "total"]
    lines = [f"{report['video']['path']}: {report['video']['duration_s']:.1f} s video, "
             f"{len(report['parse']['frame']['transitions_s'])} cuts, {len(report['parse']['storyboards'])} storyboards, "
             f"tags {', '.join(report['parse']['global']['tags'])}"]
    lines.append("  " + "  ".join(f"{name} {timings[name]:.2f}s" for name in order if name in timings))
    written = report.get("files_written", report["music"]["files"])
    if report.get("parse_only"):
        lines.append("  wrote " + ", ".join(os.path.relpath(f) for f in written)
                     + "  (parse only: edit it, then vem-run VIDEO --parse JSON)")
        return "\n".join(lines)
    metrics = report["metrics"]
    hit, chance = metrics.get("hit_70ms"), metrics.get("chance_70ms")
    rhythm = f"  TBIoU {metrics['tbiou']:.3f}"
    if hit is not None and chance is not None:
        rhythm += f"  cuts with a beat within 70 ms {hit:.0%} (chance {chance:.0%})"
    lines.append(rhythm + f"  [{report['backend']} {report['precision']}, {report['steps']} steps, seed {report['seed']}]")
    lines.append("  wrote " + ", ".join(os.path.relpath(f) for f in written))
    return "\n".join(lines)


def expand_inputs(paths: list[str]) -> tuple[list[str], set[str]]:
    """The video files named by the command line, and those of them that came from a folder.

    A folder stands for the video files directly inside it (by extension, `VIDEO_SUFFIXES`),
    sorted by name; hidden files (our own temporary files among them) and vem's own outputs
    (``*.vem.mp4``) are left out, so running twice over a folder does not feed the first run's
    results back in. A file named explicitly is taken whatever its extension (its content decides).
    Each video is taken once."""
    videos: list[str] = []
    from_folder: set[str] = set()
    for raw in paths:
        if os.path.isdir(raw):
            found = sorted(
                str(entry) for entry in Path(raw).iterdir()
                if entry.suffix.lower() in VIDEO_SUFFIXES and not entry.name.startswith(".")
                and not entry.name.lower().endswith(OWN_OUTPUT_SUFFIXES) and entry.is_file()
            )
            if not found:
                raise UsageError(f"{raw}: no video files in this folder",
                                 hint=f"vem-run takes files ending in {', '.join(VIDEO_SUFFIXES)}")
            videos.extend(found)
            from_folder.update(found)
        else:
            videos.append(raw)
    return list(dict.fromkeys(videos)), from_folder


def _plan_all(args: argparse.Namespace, videos: list[str], several: bool,
              from_folder: set[str] = frozenset()) -> dict[str, Outputs]:
    plans = {video: plan_outputs(args, video, several, beside=video in from_folder) for video in videos}
    owner: dict[str, str] = {}
    for video, outputs in plans.items():
        for path in outputs.files():
            key = os.path.abspath(path)
            if key in owner:
                raise UsageError(f"{owner[key]} and {video} would both write {path}",
                                 hint="give videos with different file names, or run them separately")
            owner[key] = video
    return plans


def as_failure(error: BaseException) -> VemError:
    """The VemError a failure is reported as (its exit code inside): an OS-level failure no writer
    turned into OutputError becomes one (or a bug, exit 1); anything else unexpected is a bug."""
    if isinstance(error, VemError):
        return error
    if isinstance(error, OSError):
        from .atomic import WRITE_ERRNOS, describe_os_error

        where = f"{error.filename}: " if getattr(error, "filename", None) else ""
        return OutputError(f"{where}{describe_os_error(error)}") if error.errno in WRITE_ERRNOS \
            else VemError(f"unexpected {type(error).__name__}: {where}{describe_os_error(error)}")
    return VemError(f"unexpected {type(error).__name__}: {error}")


def _report_error(error: BaseException, debug: bool) -> VemError:
    """Print one failure the way the README promises; return it as a VemError (exit code inside)."""
    if debug:
        traceback.print_exception(type(error), error, error.__traceback__)
    failure = as_failure(error)
    print(failure.user_message(), file=sys.stderr)
    return failure


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (an engine that does not fit this GPU, ...) as one ``warning: ...`` line each."""
    print("warning: " + " ".join(str(message).split()), file=sys.stderr)


@contextlib.contextmanager
def _warnings_as_lines(debug: bool):
    """Within the block, warnings print as `_show_warning` lines (Python's own form with --debug);
    the previous warning settings come back afterwards."""
    import warnings

    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning
        yield


# --- One video of a batch, wherever it runs ------------------------------------------------------

DONE, FAILED, SKIPPED, NOT_RUN = "done", "failed", "skipped", "not run"


@dataclass
class VideoOutcome:
    """What became of one video of a batch: the summary JSON's entry, and what to print for it.

    A local batch prints as it goes (``stderr`` stays empty); a Ray worker captures its stderr
    (warnings, the error and, with --debug, the traceback) and the driver prints it, so that a
    cluster run prints what a local batch prints."""

    video: str
    status: str  # DONE, FAILED, SKIPPED or NOT_RUN (interrupted before it started)
    worker: str = "local"
    seconds: float = 0.0
    outputs: list[str] | None = None  # the files of this video (written, or found by --skip-existing)
    exit_code: int = EXIT_OK
    error: str | None = None  # the failure's one-line message
    stderr: str = ""  # captured on a worker: printed by the driver
    summary: str | None = None  # the per-video summary lines (stdout, unless -q)

    def to_json(self) -> dict:
        return {"video": self.video, "status": self.status, "worker": self.worker,
                "seconds": round(self.seconds, 3), "outputs": list(self.outputs or []),
                "exit_code": self.exit_code, "error": self.error}


def outputs_exist(outputs: Outputs) -> bool:
    """Whether every output of a video is there already (--skip-existing skips it then)."""
    files = outputs.files()
    return bool(files) and all(os.path.isfile(path) for path in files)


def generate_video(pipeline, args: argparse.Namespace, video: str, outputs: Outputs, parse=None,
                   parse_source: dict | None = None, checked: Checked | None = None,
                   worker: str = "local") -> VideoOutcome:
    """`run_one` for one video of a batch, as a `VideoOutcome`: the one place a local batch and a
    Ray worker generate a video. A failure is caught (each video fails on its own) and printed as
    the README promises; a signal (KeyboardInterrupt, not an Exception) goes through."""
    import time

    started = time.perf_counter()
    try:
        report = run_one(pipeline, args, video, outputs, parse, parse_source, checked)
    except Exception as error:  # noqa: BLE001 - each video fails on its own; the others go on
        failure = _report_error(error, args.debug)
        return VideoOutcome(video, FAILED, worker, time.perf_counter() - started, [], failure.exit_code,
                            failure.message)
    return VideoOutcome(video, DONE, worker, time.perf_counter() - started, outputs.files(),
                        summary=summary(report))


def generate_captured(pipeline, args: argparse.Namespace, video: str, outputs: Outputs, parse=None,
                      parse_source: dict | None = None, worker: str = "local") -> VideoOutcome:
    """`generate_video` with its stderr captured into the outcome (a Ray worker's stderr is not
    the user's terminal): warnings, and the error as `_report_error` prints it."""
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer), _warnings_as_lines(args.debug):
        outcome = generate_video(pipeline, args, video, outputs, parse, parse_source, None, worker)
    outcome.stderr = buffer.getvalue()
    return outcome


def print_outcome(outcome: VideoOutcome, quiet: bool) -> None:
    """What a batch prints for a finished video (the driver's half of `generate_captured`)."""
    if outcome.stderr:
        sys.stderr.write(outcome.stderr)
        sys.stderr.flush()
    if outcome.status == DONE and outcome.summary and not quiet:
        print(outcome.summary, flush=True)


def skip_existing(args: argparse.Namespace, videos: list[str], plans: dict[str, Outputs]) -> dict[str, VideoOutcome]:
    """--skip-existing: the videos whose outputs all exist, as SKIPPED outcomes (each named on stderr)."""
    skipped: dict[str, VideoOutcome] = {}
    if not args.skip_existing:
        return skipped
    for video in videos:
        if outputs_exist(plans[video]):
            skipped[video] = VideoOutcome(video, SKIPPED, "", 0.0, plans[video].files())
            if not args.quiet:
                print(f"skip: {video}: its outputs exist ({', '.join(plans[video].files())})", file=sys.stderr)
    return skipped


def finish_batch(args: argparse.Namespace, videos: list[str], outcomes: dict[str, VideoOutcome], several: bool,
                 started: float, extra: dict | None = None, stopped: KeyboardInterrupt | None = None) -> int:
    """The end of a batch, local or on a cluster: the counts line, the --summary JSON and the line
    naming the failures (in the order the videos were given), last unless a signal ``stopped``
    the run (then its line is last); returns the exit code: that of the first failure, or of the
    signal."""
    import time

    interrupted = None
    if stopped is not None:
        stopped = stopped if isinstance(stopped, Interrupted) else Interrupted()
        interrupted = stopped.exit_code
    ordered = [outcomes.get(video) or VideoOutcome(video, NOT_RUN, "") for video in videos]
    failures = [outcome for outcome in ordered if outcome.status == FAILED]
    counts = {status: sum(outcome.status == status for outcome in ordered)
              for status in (DONE, FAILED, SKIPPED, NOT_RUN)}
    wall = time.perf_counter() - started
    code = interrupted if interrupted is not None else failures[0].exit_code if failures else EXIT_OK
    if args.summary:
        data = {"videos": len(videos), **{status.replace(" ", "_"): count for status, count in counts.items()},
                "wall_s": round(wall, 3),
                "videos_per_minute": round(60.0 * counts[DONE] / wall, 3) if wall > 0 else None,
                "exit_code": code, "seed": args.seed, **(extra or {"mode": "local", "workers": 1}),
                "results": [outcome.to_json() for outcome in ordered]}
        try:
            _write_summary(args, data)
        except Exception as error:  # noqa: BLE001 - the videos are done; say why the summary is not
            failure = _report_error(error, args.debug)
            code = code or failure.exit_code
    if several and not args.quiet and interrupted is None and (counts[SKIPPED] or extra is not None):
        parts = [f"{counts[DONE]} done"] + [f"{counts[s]} {s}" for s in (SKIPPED, FAILED, NOT_RUN) if counts[s]]
        print(f"{len(videos)} videos: {', '.join(parts)} in {wall:.1f} s", file=sys.stderr)
    if failures and several:
        print(f"{len(failures)} of {len(videos)} videos failed: "
              + ", ".join(outcome.video for outcome in failures), file=sys.stderr)
    if stopped is not None:
        _interrupted(stopped, "; no partial output was left")
    return code


def _summary_force(args: argparse.Namespace) -> bool:
    # A run continued with --skip-existing rewrites its summary: it describes the batch as it stands.
    return bool(args.force or args.skip_existing)


def check_summary_path(args: argparse.Namespace, inputs: list[str], plans: dict[str, Outputs]) -> None:
    """Refuse a --summary file that cannot be written, or that a video's output would overwrite,
    before any work (exit 5 and 2)."""
    if args.summary:
        for video, outputs in plans.items():
            if os.path.abspath(args.summary) in map(os.path.abspath, outputs.files()):
                raise UsageError(f"--summary {args.summary}: {video} would write that file too")
        _check_outputs([args.summary], inputs, _summary_force(args))


def _write_summary(args: argparse.Namespace, data: dict) -> None:
    from .atomic import atomic_output

    with atomic_output(args.summary, force=_summary_force(args)) as temp:
        _write_json_to(temp, data)


def main(argv: list[str] | None = None) -> int:
    """`vem-run`; returns the exit code (README "Errors and exit codes")."""
    # SIGINT, SIGTERM, SIGHUP: stop promptly, remove temporary files, exit 128 + the signal.
    try:
        args = build_parser().parse_args(argv)  # argparse itself exits 2 on a malformed command line
        with handling_signals(), _warnings_as_lines(args.debug):
            return _main(args)
    except KeyboardInterrupt as error:  # a signal outside the stages' own handling
        return _interrupted(error, "")


def _interrupted(error: KeyboardInterrupt, detail: str) -> int:
    stop = error if isinstance(error, Interrupted) else Interrupted()
    try:
        print(f"error: {describe(stop)}{detail}", file=sys.stderr)
    except OSError:  # SIGHUP: the terminal may be gone
        pass
    return stop.exit_code


def _main(args: argparse.Namespace) -> int:
    import time

    debug = args.debug
    started = time.perf_counter()
    try:
        from .parse_schema import check_cuts_agree, load_parse
        from .tags import TAG_VOCABULARY

        check_flags(args)
        if args.ray:
            from .extras import require

            require("ray", "cluster", "vem-run --ray")
        videos, from_folder = expand_inputs(args.videos)
        several = len(videos) > 1 or bool(from_folder)
        if args.parse and several:
            raise UsageError("--parse describes one video; give one video with it")
        plans = _plan_all(args, videos, several, from_folder)
        check_summary_path(args, videos, plans)
        skipped = skip_existing(args, videos, plans)
        todo = [video for video in videos if video not in skipped]
        checked = None
        if not several and todo and not args.ray:
            # Cheap checks before the slow bundle load: a bad file or output fails in a moment.
            checked = check_input(args, videos[0], plans[videos[0]])
            for warning in checked.warnings:
                print(f"warning: {videos[0]}: {warning}", file=sys.stderr)
        parse = parse_source = None
        if args.parse and todo:
            try:
                # Tags are checked against the runtime's vocabulary: the bundle knows no others.
                parse = load_parse(args.parse, vocabulary=TAG_VOCABULARY)
                check_cuts_agree(parse)
                parse_source = _parse_source(args.parse)
            except (OSError, ValueError) as error:  # ParseError names the file and the field
                raise InputError(f"bad parse JSON: {error}") from None
        if args.ray and todo:
            from .cluster import run_on_ray

            outcomes, extra, stopped = run_on_ray(args, todo, plans, parse, parse_source)
            outcomes.update(skipped)
            return finish_batch(args, videos, outcomes, several, started, extra, stopped=stopped)
        pipeline = None
        if todo:
            from .pipeline import Pipeline

            pipeline = Pipeline.load(args.bundle, backend=args.backend, precision=args.precision,
                                     components=Pipeline.PARSE_COMPONENTS if args.parse_only else None)
    except KeyboardInterrupt as error:
        return _interrupted(error, "")
    except Exception as error:  # noqa: BLE001 - every failure becomes one message and an exit code
        return _report_error(error, debug).exit_code
    outcomes: dict[str, VideoOutcome] = dict(skipped)
    for video in todo:
        try:
            outcome = generate_video(pipeline, args, video, plans[video], parse, parse_source,
                                     checked if not several else None)
        except KeyboardInterrupt as error:  # the summary says what was done before the stop
            return finish_batch(args, videos, outcomes, several, started, stopped=error)
        outcomes[video] = outcome
        print_outcome(outcome, args.quiet)
    return finish_batch(args, videos, outcomes, several, started)

