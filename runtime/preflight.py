"""Cheap checks of a video's timestamps, before the model bundle is loaded.

One demux pass over the video stream's packets (nothing is decoded: a few milliseconds per
thousand packets, I/O bound on long files) answers what the later stages would otherwise find
out only after the whole generation, or never:

- **No timestamps at all** (a raw ``.h264``/``.hevc`` elementary stream): the decoder can lay its
  frames at the stream's nominal rate, so the music can be written (.wav/.flac); the picture
  cannot be copied into an mp4 without inventing timestamps (and with B-frames, a presentation
  order), so an mp4 output is refused with a message that says so.
- **Timestamps that go back or repeat** in decoding order (two recordings glued together, an mkv
  with duplicate times, an mp4 whose sample durations are 0): the frames' order in time is not
  known, and no mp4 can hold them. Refused (exit 3), naming the packet and the timestamps.
- **An outlier timestamp** (10 frames 40 ms apart, then one at 45,000 s): laying frames on the
  16 fps grid up to it would take hours and gigabytes. Refused, naming the jump, when the jump is
  longer than the duration the header declares (the header does not account for it), or when one
  jump longer than a minute and 1000 typical frame intervals makes up over 90 % of the timeline.
  A long still section that the header agrees with (a slide shown for a minute) is kept.
- **Timestamps that run past the length limit** (``--max-seconds``), whatever the header says.
- **A header that claims more than the frames cover** (50 min declared over 3 s of frames):
  usable; `Preflight.end_s` says where the frames really end (the decoder warns, and vem-run
  muxes the music at the decoded length, not the header's).
- When an mp4 is to be written, the video packets are fed to a real mp4 muxer writing nowhere,
  so that a stream the mux would refuse fails now, with the muxer's reason, not after generation.

`check_timestamps` raises `InputError` (exit 3) or returns a `Preflight` with any warnings.
"""

from __future__ import annotations

import io
import os
import statistics
from dataclasses import dataclass, field

import av

from .errors import InputError, OutputError
from .video import VideoInfo, as_fraction, open_video, outlier_jump

# A lone jump that dwarfs the rest of the timeline (header or not).
LONE_JUMP_MIN_S = 60.0
LONE_JUMP_MIN_INTERVALS = 1000
LONE_JUMP_SHARE = 0.9
# Formats FFmpeg reads single pictures with (image2 and the *_pipe demuxers).
IMAGE_FORMATS = ("image2", "image2pipe")


@dataclass
class Preflight:
    """What the demux pass found in a usable video."""

    packets: int
    start_s: float | None  # earliest presentation time (None: no timestamps at all)
    end_s: float | None  # latest presentation time plus a typical frame interval
    has_timestamps: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def span_s(self) -> float | None:
        if self.start_s is None or self.end_s is None:
            return None
        return self.end_s - self.start_s


class _NullSink(io.RawIOBase):
    """A seekable file that keeps nothing: the mp4 muxer writes (and seeks back to patch) into it."""

    def __init__(self) -> None:
        self.position = 0
        self.size = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data) -> int:
        length = len(data)
        self.position += length
        self.size = max(self.size, self.position)
        return length

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = base + offset
        return self.position

    def tell(self) -> int:
        return self.position


def _fmt(seconds: float) -> str:
    return f"{seconds:.3f} s"


def is_still_image(path: str) -> str | None:
    """The image codec's name when FFmpeg reads ``path`` as a single picture (a PNG or JPEG,
    whatever its name), else None."""
    container, stream = open_video(path)
    with container:
        name = container.format.name
        if name in IMAGE_FORMATS or name.endswith("_pipe"):
            return stream.codec_context.name if stream.codec_context is not None else name
    return None


def check_timestamps(path: str, info: VideoInfo, *, mux: bool = False, max_seconds: float | None = None) -> Preflight:
    """Read every video packet's timestamps (no decoding) and refuse a file whose frames cannot be
    placed in time (InputError, exit 3), or, with ``mux``, whose video cannot be copied into an mp4
    (InputError when its timestamps are at fault, OutputError when the format cannot hold the codec).
    """
    image = is_still_image(path)
    if image is not None:
        raise InputError(f"{path}: is a single still image ({image}), not a video",
                         hint="vem writes music for a moving picture; make a video of the image first")
    container, stream = open_video(path)
    with container:
        time_base = as_fraction(stream.time_base)
        sink = output = out_stream = None
        if mux:
            from .writer import _copy_stream

            sink = _NullSink()
            output = av.open(sink, "w", format="mp4")
            try:
                out_stream = _copy_stream(output, stream, info)
            except (av.FFmpegError, ValueError) as error:
                output.close()
                raise OutputError(
                    f"{path}: its {info.codec} video cannot be copied into an mp4 "
                    f"({getattr(error, 'strerror', error)})",
                    hint="write the music alone with -o NAME.wav (or .flac)") from error
        count = timed = untimed = 0
        first_untimed: int | None = None
        previous_dts = None
        backwards: tuple[int, float, float] | None = None
        repeats: tuple[int, float] | None = None
        backward_count = repeat_count = 0
        starts: list[float] = []
        duration = 0.0  # of the packet read last
        mux_error: tuple[int, str] | None = None
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                count += 1
                base = as_fraction(packet.time_base) or time_base
                if (packet.pts is None and packet.dts is None) or not base:
                    untimed += 1
                    if first_untimed is None:
                        first_untimed = count
                    continue
                timed += 1
                if packet.dts is not None:
                    dts = float(packet.dts * base)
                    if previous_dts is not None and dts < previous_dts:
                        backward_count += 1
                        backwards = backwards or (count, previous_dts, dts)
                    elif previous_dts is not None and dts == previous_dts:
                        repeat_count += 1
                        repeats = repeats or (count, dts)
                    previous_dts = dts if previous_dts is None else max(previous_dts, dts)
                pts = packet.pts if packet.pts is not None else packet.dts
                start = float(pts * base)
                starts.append(start)
                duration = float((packet.duration or 0) * base)
                if output is not None and mux_error is None:
                    if packet.pts is None:
                        packet.pts = packet.dts
                    packet.stream = out_stream
                    try:
                        output.mux(packet)
                    except av.FFmpegError as error:
                        mux_error = (count, str(getattr(error, "strerror", error)))
        except av.FFmpegError as error:
            # Reading stopped: the decoder reports it (and uses what came before) later.
            if count == 0:
                raise InputError(f"{path}: its video cannot be read ({getattr(error, 'strerror', error)})") from error
        finally:
            if output is not None:
                try:
                    output.close()
                except av.FFmpegError as error:
                    mux_error = mux_error or (count, str(getattr(error, "strerror", error)))
                except Exception:  # noqa: BLE001 - closing a muxer that never started
                    pass

    if count == 0:
        raise InputError(f"{path}: its video stream has no packets (no picture data)")
    if timed == 0:
        # A raw elementary stream: frames come at the nominal rate, in decoding order.
        if mux:
            raise InputError(
                f"{path}: is a raw {info.codec} stream without timestamps; its picture cannot be copied into an mp4",
                hint=f"write the music alone with -o NAME.wav, or put the stream in a container first "
                     f"(ffmpeg -r {info.fps or 25:g} -i {os.path.basename(path)} -c copy NAME.mp4)")
        return Preflight(count, None, None, False,
                         [f"has no timestamps (a raw {info.codec} stream): frames are laid {1 / (info.fps or 25):.3f} s "
                          "apart, its nominal rate"])
    fix = "remux it so that its timestamps increase (e.g. ffmpeg -i IN -c copy -fflags +genpts OUT.mp4)"
    if backwards is not None:
        index, before, after = backwards
        raise InputError(
            f"{path}: its timestamps go back from {_fmt(before)} to {_fmt(after)} at packet {index} "
            f"({backward_count} time(s) in all; recordings joined together?)", hint=fix)
    if repeats is not None:
        index, when = repeats
        raise InputError(
            f"{path}: packets {index - 1} and {index} have the same timestamp {_fmt(when)} "
            f"({repeat_count} repeat(s) in all), so the frames' order in time is unknown", hint=fix)
    if untimed:
        raise InputError(f"{path}: {untimed} of its {count} video packets have no timestamp (the first is "
                         f"packet {first_untimed})", hint=fix)
    ordered = sorted(starts)
    first = ordered[0]
    # The last frame lasts a typical interval, as the decoder holds it (a packet duration is
    # only a header's word: a last sample "lasting" 50 minutes is a lie this catches).
    recent = [b - a for a, b in zip(ordered[-9:], ordered[-8:]) if b > a]
    end = ordered[-1] + (statistics.median(recent) if recent else duration or (1 / (info.fps or 25)))
    _check_outlier(path, info, ordered, end)
    span = end - first
    if max_seconds is not None and span > max_seconds:
        raise InputError(f"{path}: its frames' timestamps run to {span:.0f} s (the header says "
                         f"{info.duration_s:.1f} s), longer than the limit of {max_seconds:.0f} s",
                         hint="cut the video, or raise the limit with --max-seconds")
    if mux_error is not None:
        index, reason = mux_error
        raise InputError(f"{path}: its video cannot be copied into an mp4: the muxer refuses packet {index} ({reason})",
                         hint="write the music alone with -o NAME.wav, or " + fix)
    # A header that claims more than the frames cover is left to the decoder's warning; the music
    # follows the frames (vem-run muxes it at the decoded length, not the header's).
    return Preflight(count, first, end, True, [])


def _check_outlier(path: str, info: VideoInfo, ordered: list[float], end: float) -> None:
    if len(ordered) < 2:
        return
    gaps = [b - a for a, b in zip(ordered, ordered[1:])]
    positive = [g for g in gaps if g > 0]
    typical = statistics.median(positive) if positive else 0.0
    widest = max(range(len(gaps)), key=gaps.__getitem__)
    jump = gaps[widest]
    before, after = ordered[widest] - ordered[0], ordered[widest + 1] - ordered[0]
    error = outlier_jump(path, before, after, typical, info.duration_s, widest + 2, len(ordered))
    if error is None and jump > max(LONE_JUMP_MIN_S, LONE_JUMP_MIN_INTERVALS * typical) \
            and jump > LONE_JUMP_SHARE * (end - ordered[0]):
        # The header agrees with the jump, but one jump is nearly the whole timeline.
        error = outlier_jump(path, before, after, typical, info.duration_s, widest + 2, len(ordered),
                             header_agrees=True)
    if error is not None:
        raise error
