"""Video input: probe a file, and decode it once into 16 fps frames at the sizes the parsers need.

Stage 1 of the runtime (docs/architecture.md, "Runtime stages"). VeM works on frames at 16 fps (docs/paper.md:
the frame-level parse and the TB aligner see the video at 16 fps); a real video comes at 23.976,
25, 30, 60 fps or at a variable rate, may carry rotation metadata (phones), and may be 8K, 10-bit
or broken. This module turns any of those into fixed-rate uint8 RGB arrays, or refuses with an
`InputError` whose message says what is wrong with the file.

Conventions
- Time 0 is the presentation time of the first decoded frame (containers may start elsewhere).
- Output frame k stands for time k / fps and shows the latest decoded frame whose presentation
  time is <= k / fps (a "sample and hold" on the real timestamps, so variable frame rates, dropped
  frames and 24000/1001 rates all land where a player would show them). Comparisons are done in
  exact fractions, so a frame presented exactly at k / fps is the one taken for k.
- The last frame is held for one typical frame interval (the median of the last few intervals);
  the output has ceil(duration * fps) frames, at least 1 (a single-frame video gives one frame).
- Rotation: ``rotation`` is the display matrix's angle in degrees counter-clockwise, as FFmpeg's
  ``av_display_rotation_get`` and PyAV's ``VideoFrame.rotation`` report it (a phone's portrait
  clip, stored landscape, reads -90). Frames are returned upright: rotated by that angle, so
  sizes and ``VideoInfo.width/height`` are those of the picture as a player shows it.
- Sizes are (width, height) of the upright picture; each kept frame is converted and scaled by
  FFmpeg's swscale (one cached context per size) once per requested size, straight from the decoded picture (direct resize,
  no letterboxing: the parsers want the whole picture and tolerate the aspect change).
"""

from __future__ import annotations

import math
import os
import stat
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .errors import InputError

# What the parsers need (VemConfig: transition_size is TransNetV2's 48x27; the demo visual/aligner
# frame size is 64). The pipeline passes its own sizes from the bundle's config.
DEFAULT_SIZES: dict[str, tuple[int, int]] = {"transitions": (48, 27), "visual": (64, 64)}
DEFAULT_FPS = 16.0

# A file whose declared end lies this far beyond what decodes is reported as cut short.
_TRUNCATION_TOLERANCE_S = 0.5
# How many packets probe() reads looking for the first picture before calling the stream undecodable.
_PROBE_PACKET_LIMIT = 600


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` learns from a video's headers and its first decoded frame."""

    path: str
    duration_s: float  # from the stream (or container) header; see DecodedVideo.duration_s
    fps: float  # average frame rate
    width: int  # as displayed (after rotation)
    height: int
    rotation: int  # display rotation, degrees counter-clockwise, one of -90, 0, 90, 180
    codec: str
    pix_fmt: str
    has_audio: bool
    frame_count: int  # from the header when it has one, else duration * fps
    coded_width: int  # as stored
    coded_height: int
    start_s: float  # presentation time of the first frame in the container's clock
    size_bytes: int

    @property
    def needs_transpose(self) -> bool:
        return self.rotation in (90, -90)


@dataclass
class DecodedVideo:
    """Frames at a fixed rate, one array per requested size: ``frames[name]`` is uint8 [T, H, W, 3]."""

    info: VideoInfo
    fps: float
    frames: dict[str, np.ndarray]
    times_s: np.ndarray  # [T] float64: k / fps, the time each output frame stands for
    source_times_s: np.ndarray  # [T] float64: presentation time of the decoded frame shown there
    duration_s: float  # what was decoded: end of the last frame (or max_seconds when cut there)
    frames_decoded: int  # pictures the decoder produced (<= the file's count when cut short)
    stopped_at_limit: bool  # True when max_seconds cut the decoding short
    warnings: list[str] = field(default_factory=list)
    # One entry per decoded source frame, in presentation order (what a player shows): its time
    # (relative to the first frame, like times_s) and a tiny colour thumbnail (`_SignatureReader`: block means of Y, U and V on a 16x9 grid),
    # from which cuts are placed on the exact source frame (`vem.runtime.transitions.find_transitions`).
    frame_times_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [N] float64
    signatures: np.ndarray = field(default_factory=lambda: np.zeros((0, *SIGNATURE_SHAPE), np.uint8))  # [N, 3, 9, 16]

    @property
    def num_frames(self) -> int:
        return int(self.times_s.shape[0])


# ----------------------------------------------------------------------------------------------
# opening and probing


def _check_path(path: str) -> int:
    """Refuse missing, non-regular and empty files before FFmpeg sees them; return the size."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not a video file")
    try:
        mode = os.stat(path).st_mode  # stat, not open: a fifo must never block us
        size = os.path.getsize(path)
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror})") from error
    if not stat.S_ISREG(mode):
        kind = ("a named pipe (fifo)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
                else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
        raise InputError(f"{path}: is {kind}, not a regular file", hint="vem reads videos from files; save it to one first")
    if size == 0:
        raise InputError(f"{path}: is empty (0 bytes)", hint="the file was not fully written or copied")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied")
    return size


def _ffmpeg_reason(error: Exception) -> str:
    """FFmpeg's short reason ("Invalid data found when processing input") without paths and codes."""
    reason = getattr(error, "strerror", None) or str(error)
    return str(reason).strip().rstrip(".")


def as_fraction(rational) -> Fraction | None:
    """PyAV's rationals as exact Fractions (PyAV 19 returns its own AVRational; 0/1 means unset)."""
    if rational is None:
        return None
    value = Fraction(rational.numerator, rational.denominator) if rational.denominator else None
    return value if value else None


def _open_input(path: str):
    try:
        # Tags in a legacy encoding must not make the video unreadable (PyAV <= 18 option).
        return av.open(path, metadata_errors="ignore")
    except TypeError:  # PyAV 19 always decodes metadata leniently and dropped the argument
        return av.open(path)


def open_video(path: str | os.PathLike) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open ``path`` and return (container, its main video stream); InputError when it is not a video."""
    path = os.fspath(path)
    _check_path(path)
    try:
        container = _open_input(path)
    except av.FFmpegError as error:
        raise InputError(
            f"{path}: not a readable video ({_ffmpeg_reason(error)}): the file is damaged, truncated "
            "or not a media file",
            hint="check that it plays in a video player; an interrupted download or copy leaves such files",
        ) from error
    except (OSError, ValueError) as error:  # e.g. undecodable file name or unreadable file
        raise InputError(f"{path}: cannot be opened ({error})") from error
    if not container.streams.video:
        has_audio = bool(container.streams.audio)
        container.close()
        if has_audio:
            raise InputError(f"{path}: has only audio, no video stream", hint="vem needs a video to write music for")
        if not container.streams:
            # FFmpeg recognised a container (e.g. an mp4 header) but found no stream description:
            # typically an mp4 whose index (written last) was cut off.
            raise InputError(
                f"{path}: not a readable video (no streams found): the file is damaged, truncated or not a media file",
                hint="an interrupted download or copy leaves such files; get the complete file again",
            )
        raise InputError(f"{path}: has no video stream")
    # The stream FFmpeg would pick (attached cover pictures are video streams too; skip them).
    candidates = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    stream = candidates[0] if candidates else container.streams.video[0]
    return container, stream


def _rotation_of(frame: av.VideoFrame) -> int:
    """The frame's display rotation snapped to a right angle, in (-180, 180] (see module docstring)."""
    try:
        angle = float(frame.rotation)
    except (AttributeError, TypeError, ValueError):
        return 0
    if not math.isfinite(angle):
        return 0
    quarter = int(round(angle / 90.0)) % 4  # 0, 1, 2, 3 quarter turns counter-clockwise
    return {0: 0, 1: 90, 2: 180, 3: -90}[quarter]


def _frame_rate(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            value = float(rate)
            if math.isfinite(value) and value > 0:
                return value
    return 0.0


def _declared_duration(container, stream) -> float | None:
    time_base = as_fraction(stream.time_base)
    if stream.duration and time_base:
        value = float(stream.duration * time_base)
        if value > 0:
            return value
    if container.duration:
        value = container.duration / av.time_base
        if value > 0:
            return value
    return None


def _missing_bytes(stream, size_bytes: int) -> int:
    """How far the container's sample index points beyond the end of the file (0 when complete)."""
    try:
        entries = stream.index_entries
        last_end = max((entry.pos + entry.size for entry in entries), default=0)
    except (AttributeError, TypeError, ValueError):
        return 0
    return max(0, int(last_end) - size_bytes)


def _iter_frames(container, stream, problems: dict[str, object], max_packets: int | None = None):
    """Decoded frames in presentation order; packets that fail to decode are skipped and counted.

    A player shows what it can of a damaged stream; so does this. ``problems`` collects
    ``bad_packets`` (count), ``last_error`` (FFmpeg's reason) and ``read_error`` (reading the
    file failed: the iteration ends there).
    """
    problems.setdefault("bad_packets", 0)
    packets = container.demux(stream)
    seen = 0
    while True:
        if max_packets is not None and seen >= max_packets:
            problems["gave_up_after"] = seen
            return
        seen += 1
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as error:
            problems["read_error"] = _ffmpeg_reason(error)
            return
        try:
            frames = packet.decode()
        except av.FFmpegError as error:
            problems["bad_packets"] = int(problems["bad_packets"]) + 1
            problems["last_error"] = _ffmpeg_reason(error)
            continue
        yield from frames


def _first_frame(container, stream, path: str) -> av.VideoFrame:
    """Decode until the first picture; InputError when the stream has none to give."""
    problems: dict[str, object] = {}
    frames = _iter_frames(container, stream, problems, max_packets=_PROBE_PACKET_LIMIT)
    for frame in frames:
        frames.close()
        return frame
    reason = problems.get("last_error") or problems.get("read_error")
    where = f" in its first {_PROBE_PACKET_LIMIT} packets" if problems.get("gave_up_after") else ""
    raise InputError(
        f"{path}: has a video stream but no decodable frames{where}" + (f" ({reason})" if reason else ""),
        hint="the file is damaged or its video data is missing",
    )


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video's facts from its headers and its first frame (fast: does not decode the rest).

    Raises InputError, with a one-line message naming the file, for a missing, empty, truncated,
    non-media, audio-only or undecodable file.
    """
    path = os.fspath(path)
    size_bytes = _check_path(path)
    container, stream = open_video(path)
    with container:
        missing = _missing_bytes(stream, size_bytes)
        if missing > 0:
            raise InputError(
                f"{path}: is truncated ({missing} bytes of its video data are missing from the end)",
                hint="the download or copy was interrupted; get the complete file again",
            )
        codec_context = stream.codec_context
        codec = codec_context.name if codec_context is not None else "unknown"
        fps = _frame_rate(stream)
        duration = _declared_duration(container, stream)
        frame = _first_frame(container, stream, path)
        rotation = _rotation_of(frame)
        start_s = float(frame.time) if frame.time is not None else 0.0
        if duration is None:
            # No header duration (raw streams): count packets' timestamps, without decoding.
            duration = _duration_from_packets(path)
        frame_count = int(stream.frames) if stream.frames else int(round(duration * fps)) if fps else 0
        coded_w, coded_h = frame.width, frame.height
        width, height = (coded_h, coded_w) if rotation in (90, -90) else (coded_w, coded_h)
        return VideoInfo(
            path=path,
            duration_s=float(duration),
            fps=fps,
            width=width,
            height=height,
            rotation=rotation,
            codec=codec,
            pix_fmt=frame.format.name,
            has_audio=bool(container.streams.audio),
            frame_count=max(frame_count, 1),
            coded_width=coded_w,
            coded_height=coded_h,
            start_s=start_s,
            size_bytes=size_bytes,
        )


def _duration_from_packets(path: str) -> float:
    container, stream = open_video(path)
    with container:
        first, last = None, None
        for packet in container.demux(stream):
            time_base = as_fraction(packet.time_base)
            if packet.pts is None or not time_base:
                continue
            start = packet.pts * time_base
            end = start + (packet.duration or 0) * time_base
            first = start if first is None else min(first, start)
            last = end if last is None else max(last, end)
        if first is None:
            return 0.0
        return float(last - first)


# ----------------------------------------------------------------------------------------------
# decoding


# ----------------------------------------------------------------------------------------------
# the per-source-frame signal

# A 16x9 grid of block means of each of Y, U and V: 432 bytes per source frame (an hour at 60 fps
# is 93 MB), enough to tell one shot from the next and to place a cut on its exact frame.
SIGNATURE_SHAPE = (3, 9, 16)
# Points sampled per grid cell along each axis: block means from a lattice of the decoded planes,
# read in place (no colour conversion, no scaling pass over the whole picture).
_SAMPLES_PER_CELL = 6
_PLANAR_8BIT = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p", "yuvj440p",
                "yuv411p", "yuv410p"}


def _lattice(length: int, cells: int) -> np.ndarray:
    points = cells * _SAMPLES_PER_CELL
    return np.minimum(((np.arange(points) + 0.5) * length / points).astype(np.intp), max(length - 1, 0))


def _plane_grid(plane, dtype: np.dtype, shift: int, rows: int, cols: int, step: int = 1, offset: int = 0) -> np.ndarray:
    """Block means of one plane (``step``/``offset`` pick one channel of an interleaved plane)."""
    itemsize = np.dtype(dtype).itemsize
    width = plane.width
    array = np.frombuffer(plane, dtype).reshape(-1, plane.line_size // itemsize)[: plane.height]
    points = array[np.ix_(_lattice(plane.height, rows), _lattice(width, cols) * step + offset)]
    if shift:
        points = points >> shift
    return points.reshape(rows, _SAMPLES_PER_CELL, cols, _SAMPLES_PER_CELL).mean(axis=(1, 3))


class _SignatureReader:
    """A source frame's signature, uint8 [3, 9, 16] (block means of Y, U and V on a 16x9 grid), for one stream: reads the decoded planes in place where their layout is
    known, else asks swscale for a small YUV picture (one cached context)."""

    def __init__(self) -> None:
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        _, rows, cols = SIGNATURE_SHAPE
        name = frame.format.name
        try:
            if name in _PLANAR_8BIT:
                grids = [_plane_grid(p, np.uint8, 0, rows, cols) for p in frame.planes[:3]]
            elif name.startswith(("yuv420p1", "yuv422p1", "yuv444p1")) and name.endswith("le"):
                bits = int(name[len("yuv420p"):-2])
                grids = [_plane_grid(p, np.uint16, bits - 8, rows, cols) for p in frame.planes[:3]]
            elif name == "nv12":
                luma, chroma = frame.planes[0], frame.planes[1]
                grids = [_plane_grid(luma, np.uint8, 0, rows, cols),
                         _plane_grid(chroma, np.uint8, 0, rows, cols, step=2, offset=0),
                         _plane_grid(chroma, np.uint8, 0, rows, cols, step=2, offset=1)]
            elif name == "gray":
                luma = _plane_grid(frame.planes[0], np.uint8, 0, rows, cols)
                grids = [luma, np.full_like(luma, 128), np.full_like(luma, 128)]
            else:
                grids = None
        except (ValueError, TypeError):  # a plane whose buffer is not laid out as assumed
            grids = None
        if grids is None:
            small = self._reformatter.reformat(frame, width=cols * _SAMPLES_PER_CELL, height=rows * _SAMPLES_PER_CELL,
                                               format="yuv444p", interpolation="AREA")
            grids = [_plane_grid(p, np.uint8, 0, rows, cols) for p in small.planes[:3]]
        return np.clip(np.rint(np.stack(grids)), 0, 255).astype(np.uint8)


def _check_sizes(sizes: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    if not sizes:
        raise ValueError("sizes: give at least one name -> (width, height)")
    checked = {}
    for name, size in sizes.items():
        try:
            width, height = (int(v) for v in size)
        except (TypeError, ValueError) as error:
            raise ValueError(f"sizes[{name!r}] must be (width, height), got {size!r}") from error
        if width < 1 or height < 1 or width > 8192 or height > 8192:
            raise ValueError(f"sizes[{name!r}] = {size!r}: width and height must be in 1..8192")
        checked[name] = (width, height)
    return checked


class _FrameConverter:
    """Converts a decoded frame to upright uint8 RGB at each requested size, once per frame."""

    def __init__(self, sizes: dict[str, tuple[int, int]], rotation: int):
        self.sizes = sizes
        self.rotation = rotation
        self.quarter_turns = {0: 0, 90: 1, 180: 2, -90: 3}[rotation]
        self._last_frame = None
        self._last_arrays: dict[str, np.ndarray] = {}
        # One reformatter per size keeps its swscale context between frames; frame.reformat()
        # would build a new one for every call, which costs more than the scaling itself.
        self._reformatters = {name: VideoReformatter() for name in sizes}

    def __call__(self, frame: av.VideoFrame) -> dict[str, np.ndarray]:
        if frame is self._last_frame:  # held over several output times: convert once
            return self._last_arrays
        arrays: dict[str, np.ndarray] = {}
        by_size: dict[tuple[int, int], np.ndarray] = {}  # parsers that share a size share one conversion
        for name, (width, height) in self.sizes.items():
            if (width, height) in by_size:
                arrays[name] = by_size[(width, height)]
                continue
            # Scale in the stored orientation (swap the target for quarter turns), rotate after:
            # rotating a small array is cheaper than rotating the decoded picture.
            stored_w, stored_h = (height, width) if self.quarter_turns % 2 else (width, height)
            shrinking = stored_w < frame.width and stored_h < frame.height
            rgb = self._reformatters[name].reformat(
                frame,
                width=stored_w,
                height=stored_h,
                format="rgb24",
                interpolation="AREA" if shrinking else "BILINEAR",
            ).to_ndarray()
            if self.quarter_turns:
                rgb = np.ascontiguousarray(np.rot90(rgb, k=self.quarter_turns))
            arrays[name] = by_size[(width, height)] = rgb
        self._last_frame, self._last_arrays = frame, arrays
        return arrays


def decode_frames(
    path: str | os.PathLike,
    fps: float = DEFAULT_FPS,
    sizes: dict[str, tuple[int, int]] | None = None,
    max_seconds: float | None = None,
    threads: int = 0,
    progress: Callable[[int], None] | None = None,
) -> DecodedVideo:
    """Decode ``path`` once and return frames at ``fps`` (default 16), at every size in ``sizes``.

    sizes: name -> (width, height) of the upright picture; default ``DEFAULT_SIZES``.
    max_seconds: stop after this much video (the rest is not decoded, so a limit on a 3-hour
        file returns quickly); ``DecodedVideo.stopped_at_limit`` tells whether it cut.
    threads: decoder threads (0 = FFmpeg picks, frame + slice threading).
    progress: called now and then with the number of source frames decoded since its last call.

    Raises InputError for files `probe` refuses, or when no frame decodes.
    """
    path = os.fspath(path)
    if not (isinstance(fps, (int, float, Fraction)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if max_seconds is not None and not (math.isfinite(max_seconds) and max_seconds > 0):
        raise ValueError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")
    sizes = _check_sizes(DEFAULT_SIZES if sizes is None else sizes)
    info = probe(path)

    step = Fraction(fps).limit_denominator(1_000_000)  # output frames per second, exact
    limit = Fraction(max_seconds).limit_denominator(1_000_000) if max_seconds is not None else None
    convert = _FrameConverter(sizes, info.rotation)
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in sizes}
    source_times: list[Fraction] = []
    warnings: list[str] = []
    read_signature = _SignatureReader()
    signal_times: list[Fraction] = []
    signatures: list[np.ndarray] = []

    def emit(frame, frame_t: Fraction) -> None:
        arrays = convert(frame)
        for name in sizes:
            outputs[name].append(arrays[name])
        source_times.append(frame_t)

    container, stream = open_video(path)
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads
    nominal_interval = Fraction(1) / Fraction(info.fps).limit_denominator(1_000_000) if info.fps else None

    t0: Fraction | None = None
    held, held_t = None, None  # the latest frame so far and its time (relative to t0)
    recent_intervals: list[Fraction] = []
    next_k = 0
    frames_decoded = 0
    stopped_at_limit = False
    problems: dict[str, object] = {}
    with container:
        decoded_frames = _iter_frames(container, stream, problems)
        for frame in decoded_frames:
            frames_decoded += 1
            if progress is not None and frames_decoded % 32 == 0:
                progress(32)
            time_base = as_fraction(frame.time_base)
            if frame.pts is not None and time_base:
                absolute = frame.pts * time_base
            elif held_t is not None and t0 is not None:  # no timestamp: assume the nominal rate
                absolute = t0 + held_t + (nominal_interval or Fraction(1, 25))
            else:
                absolute = Fraction(0)
            if t0 is None:
                t0 = absolute
            t = absolute - t0
            if held is not None and t <= held_t:
                # Out-of-order or repeated timestamp (broken stream): keep the newer picture
                # at the old time rather than going back in time.
                held = frame
                signatures[-1] = read_signature(frame)
                continue
            if limit is not None and t >= limit:
                stopped_at_limit = True
                break
            signal_times.append(t)
            signatures.append(read_signature(frame))
            if held is not None and recent_intervals:
                # A lone timestamp far beyond the rest would lay the held frame on the 16 fps grid
                # for hours (vem-run's preflight refuses such files; this guards library callers).
                outlier = outlier_jump(path, float(held_t), float(t), float(statistics.median(recent_intervals)),
                                       info.duration_s, frames_decoded)
                if outlier is not None:
                    raise outlier
            # Every output time before this frame shows the frame held so far.
            while held is not None and next_k / step < t:
                emit(held, held_t)
                next_k += 1
            if held is not None:
                recent_intervals = (recent_intervals + [t - held_t])[-8:]
            held, held_t = frame, t
        decoded_frames.close()  # stop demuxing now (max_seconds): the rest is never read
        if progress is not None and frames_decoded % 32:
            progress(frames_decoded % 32)
        if problems.get("bad_packets"):
            warnings.append(
                f"{problems['bad_packets']} damaged video packet(s) skipped ({problems.get('last_error')})"
            )
        if problems.get("read_error") and held is not None:
            warnings.append(
                f"reading stopped at {float(held_t):.2f} s: {problems['read_error']}; the rest of the video is not used"
            )

        if held is None:
            raise InputError(f"{path}: has a video stream but no decodable frames", hint="the file is damaged")

        if stopped_at_limit:
            end = limit
        else:
            if recent_intervals:
                hold_for = Fraction(statistics.median(recent_intervals))
            else:  # a single frame: hold it for one nominal frame interval
                hold_for = nominal_interval or Fraction(1, 25)
            end = held_t + hold_for
            if limit is not None:
                end = min(end, limit)
        total = max(1, math.ceil(end * step))
        while next_k < total:
            emit(held, held_t)
            next_k += 1

    decoded_duration = float(end)
    if not stopped_at_limit and info.duration_s - decoded_duration > _TRUNCATION_TOLERANCE_S:
        warnings.append(
            f"the header says {info.duration_s:.2f} s but frames end at {decoded_duration:.2f} s "
            "(file cut short or damaged?)"
        )
    frames = {name: np.stack(arrays) for name, arrays in outputs.items()}
    return DecodedVideo(
        info=info,
        fps=float(step),
        frames=frames,
        times_s=np.arange(total, dtype=np.float64) / float(step),
        source_times_s=np.array([float(t) for t in source_times], dtype=np.float64),
        duration_s=decoded_duration,
        frames_decoded=frames_decoded,
        stopped_at_limit=stopped_at_limit,
        warnings=warnings,
        frame_times_s=np.array([float(t) for t in signal_times], dtype=np.float64),
        signatures=np.stack(signatures) if signatures else np.zeros((0, *SIGNATURE_SHAPE), np.uint8),
    )


# ----------------------------------------------------------------------------------------------
# outlier timestamps (shared by vem.runtime.preflight; decode_frames may call it per frame)

# A jump between two consecutive presentation times is an outlier when it is longer than both of
# these and than the whole duration the header declares (the header does not account for it).
OUTLIER_MIN_S = 10.0
OUTLIER_MIN_INTERVALS = 100


def outlier_jump(path: str, before_s: float, after_s: float, typical_s: float, declared_s: float | None,
                 frame: int | None = None, frames: int | None = None, *,
                 header_agrees: bool = False) -> InputError | None:
    """The InputError to raise when the jump from ``before_s`` to ``after_s`` (seconds from the
    first frame) is an outlier, else None.

    ``typical_s`` is the usual interval between frames so far (a median), ``declared_s`` the
    header's duration (None or 0 when it has none); ``header_agrees`` judges the jump without the
    header (for a caller that has found it an outlier by another rule). Laying frames on the 16 fps grid across such a
    jump is what makes a 10-frame file take hours and gigabytes. In `decode_frames` the rule is:
    before filling the grid up to a new frame at ``t``, call
    ``outlier_jump(path, float(held_t), float(t), median(recent_intervals), info.duration_s)``
    and raise what it returns (the caller's pass over packet timestamps already refuses such
    files before the bundle loads; this guards the library's own callers)."""
    jump = after_s - before_s
    declared = declared_s if declared_s and math.isfinite(declared_s) else 0.0
    if not (jump > max(OUTLIER_MIN_S, OUTLIER_MIN_INTERVALS * typical_s) and (header_agrees or jump > declared)):
        return None
    which = f"frame {frame} of {frames}" if frame is not None and frames is not None else "a frame"
    return InputError(
        f"{path}: a frame's timestamp is an outlier: {which} is at {after_s:.3f} s, {jump:.0f} s after the one "
        f"before ({before_s:.3f} s); frames are otherwise {typical_s * 1000:.0f} ms apart and the header says "
        f"{declared:.2f} s",
        hint="the file's timestamps are damaged; re-encode it at a constant frame rate")
