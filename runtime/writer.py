"""Put the music under the video: an mp4 with the original video stream copied and the music as AAC.

Stage 6 of the runtime (docs/architecture.md). The video is never re-encoded: every packet of the input's
video stream is copied as it is (same bytes, same timestamps), so quality and size are the
input's and muxing takes a fraction of a second. The music is fitted to the video's duration
(trimmed, or padded with silence), faded out, encoded as AAC and interleaved by time. The input's
own audio is dropped by default (the music replaces it); ``input_audio="mix"`` mixes it 6 dB under
the music, ``"track"`` keeps it as a second AAC track (decoded and re-encoded, so any codec works).
Subtitle and data streams are dropped.

Rotation metadata is kept: PyAV's ``add_stream_from_template`` copies the stream's codec
parameters including their coded side data, which holds the display matrix (checked by a test).
Where the template cannot be used (AV1, whose decoder is libdav1d) the stream is added as a bare
mux stream; PyAV 18 cannot give such a stream a display matrix, so a rotated AV1 input comes out
in its stored orientation. `mux_music` checks the written file and reports that in
``MuxResult.warnings``.

Copying works for any codec the mp4 (or mov) muxer accepts: h264, hevc, vp9, av1, mpeg4 among
others (AV1 too, see `_copy_stream`). A codec mp4 cannot hold (e.g. Theora) gives an OutputError that suggests writing the
music alone (.wav / .flac).
"""

from __future__ import annotations

import contextlib
import heapq
import os
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from .atomic import WRITE_ERRNOS, atomic_output, describe_os_error
from .audio import _as_channels, _layout, apply_fades, fit_duration
from .errors import InputError, OutputError, UsageError
from .video import as_fraction, open_video, probe

VIDEO_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}
DEFAULT_FADE_S = 1.0
DEFAULT_AAC_BITRATE = 160_000
INPUT_AUDIO_MODES = ("drop", "mix", "track")
MIX_GAIN = 0.5  # the input's own sound, 6 dB under the music


@dataclass(frozen=True)
class MuxResult:
    """What `mux_music` wrote."""

    path: str
    video_codec: str
    video_packets: int
    video_duration_s: float
    audio_duration_s: float  # length of the music placed under the video (= video duration)
    sample_rate: int
    channels: int
    warnings: tuple[str, ...] = ()


def _encode_aac(waveform: np.ndarray, sample_rate: int, stream, start_pts: int) -> list[av.Packet]:
    """Encode [channels, samples] float to AAC packets whose timestamps start at ``start_pts`` samples."""
    layout = _layout(waveform.shape[0])
    packets: list[av.Packet] = []
    chunk = 1024 * 16
    samples = np.ascontiguousarray(waveform.astype(np.float32))
    for start in range(0, samples.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start : start + chunk]), format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.time_base = Fraction(1, sample_rate)
        frame.pts = start_pts + start
        packets.extend(stream.encode(frame))
    packets.extend(stream.encode(None))
    return packets


def _packet_time(packet: av.Packet) -> float:
    stamp = packet.dts if packet.dts is not None else packet.pts
    time_base = as_fraction(packet.time_base)
    if stamp is None or not time_base:
        return float("-inf")
    return float(stamp * time_base)


def mux_music(
    video_path: str | os.PathLike,
    waveform: np.ndarray,
    sample_rate: int,
    out_path: str | os.PathLike,
    *,
    fade_s: float = DEFAULT_FADE_S,
    fade_in_s: float = 0.0,
    force: bool = False,
    bitrate: int = DEFAULT_AAC_BITRATE,
    duration_s: float | None = None,
    input_audio: str = "drop",
) -> MuxResult:
    """Write ``out_path`` (.mp4/.m4v/.mov): ``video_path``'s video stream copied packet by packet, plus
    ``waveform`` (float [samples] or [channels, samples], mono or stereo, at ``sample_rate``) as AAC,
    fitted to the video's duration with a ``fade_s`` fade-out.

    duration_s: the length to fit the music to, when the caller knows better than the header (the
    frames' real end: a header may claim 50 minutes over 3 seconds of pictures); default: the
    header's duration. Music already fitted and faded (vem-run's) is passed with ``fade_s=0``.
    input_audio: what becomes of the input's own audio (`INPUT_AUDIO_MODES`; see the module doc).

    Atomic (temp file + rename); never overwrites without ``force``; refuses ``out_path`` equal to
    ``video_path``. Raises InputError for an unusable video, OutputError when the file cannot be
    written, UsageError for an output extension that is not a video container.
    """
    video_path, out_path = os.fspath(video_path), os.fspath(out_path)
    ext = os.path.splitext(out_path)[1].lower()
    if ext not in VIDEO_CONTAINERS:
        raise UsageError(f"{out_path}: cannot write a video as '{ext or 'no extension'}'", hint="use .mp4 (or .mov)")
    channels = _as_channels(waveform)
    if channels.shape[0] not in (1, 2):
        raise ValueError(f"music must be mono or stereo, got {channels.shape[0]} channels")

    if input_audio not in INPUT_AUDIO_MODES:
        raise UsageError(f"input_audio must be one of {', '.join(INPUT_AUDIO_MODES)}, got {input_audio!r}")

    info = probe(video_path)  # InputError for anything that is not a usable video
    duration = info.duration_s if duration_s is None else float(duration_s)
    music = fit_duration(channels, sample_rate, duration)
    music = apply_fades(music, sample_rate, fade_in_s=fade_in_s, fade_out_s=fade_s)
    tracks = [music]
    if input_audio != "drop" and info.has_audio:
        own = read_input_audio(video_path, sample_rate, music.shape[0], music.shape[1], info.start_s)
        if input_audio == "mix":
            mixed = music + MIX_GAIN * own
            peak = float(np.max(np.abs(mixed))) if mixed.size else 0.0
            tracks = [mixed / peak if peak > 1.0 else mixed]
        else:
            tracks.append(own)
    tracks = [np.clip(track, -1.0, 1.0) for track in tracks]
    music = tracks[0]

    with atomic_output(out_path, force=force, inputs=[video_path]) as temp:
        source, in_stream = open_video(video_path)
        with source:
            try:
                output = av.open(temp, "w", format=VIDEO_CONTAINERS[ext])
            except av.FFmpegError as error:
                raise OutputError(f"{out_path}: cannot be created ({getattr(error, 'strerror', error)})") from error
            try:
                video_packets = _remux(source, in_stream, output, tracks, sample_rate, info, out_path, bitrate)
            except BaseException:
                with contextlib.suppress(Exception):
                    output.close()
                raise
            try:
                output.close()  # writes the index (moov): can fail on a full disk
            except av.FFmpegError as error:
                raise OutputError(f"{out_path}: cannot be written ({describe_os_error(error)})") from error

    warnings = []
    written_rotation = probe(out_path).rotation
    if written_rotation != info.rotation:
        warnings.append(
            f"the input's rotation metadata ({info.rotation} degrees) could not be copied for {info.codec} video; "
            "players will show the picture as stored"
        )
    return MuxResult(
        warnings=tuple(warnings),
        path=out_path,
        video_codec=info.codec,
        video_packets=video_packets,
        video_duration_s=duration,
        audio_duration_s=music.shape[1] / sample_rate,
        sample_rate=int(sample_rate),
        channels=int(music.shape[0]),
    )


def _copy_stream(output, in_stream, info):
    """An output stream that takes the input's packets as they are.

    The template copies all codec parameters (extradata, colour, display matrix). It needs an
    encoder-side codec of the decoder's name, which fails where the decoder is a separate library
    (AV1 decoded by libdav1d); then a bare mux stream is used and the muxer takes the codec
    configuration from the first packet, with size and rotation set explicitly.
    """
    try:
        return output.add_stream_from_template(in_stream)
    except (av.FFmpegError, ValueError):
        codec_context = in_stream.codec_context
        codec_name = getattr(codec_context.codec, "canonical_name", None) or codec_context.name
        stream = output.add_mux_stream(codec_name, width=info.coded_width, height=info.coded_height)
        stream.time_base = in_stream.time_base
        if info.rotation and hasattr(stream, "set_display_rotation"):
            # PyAV 18 writes this only for streams with a codec context; mux_music checks the
            # result and warns when the rotation was lost.
            stream.set_display_rotation(info.rotation)
        return stream


def read_input_audio(video_path: str, sample_rate: int, channels: int, samples: int, start_s: float) -> np.ndarray:
    """The input's first audio stream as float [channels, samples] at ``sample_rate``, aligned with
    the picture (time 0 = the first frame at ``start_s``), cut or padded with silence to ``samples``.
    InputError when it does not decode."""
    out = np.zeros((channels, samples), dtype=np.float64)
    resampler = av.AudioResampler(format="fltp", layout=_layout(channels), rate=int(sample_rate))
    try:
        with av.open(video_path) as container:
            stream = container.streams.audio[0]
            cursor = None
            for frame in container.decode(stream):
                for piece in resampler.resample(frame):
                    if cursor is None:
                        cursor = int(round(((piece.time if piece.time is not None else start_s) - start_s)
                                           * sample_rate))
                    data = piece.to_ndarray().reshape(channels, -1)
                    begin, end = max(cursor, 0), min(cursor + data.shape[1], samples)
                    if end > begin:
                        out[:, begin:end] = data[:, begin - cursor:end - cursor]
                    cursor += data.shape[1]
                if cursor is not None and cursor >= samples:
                    break
    except (av.FFmpegError, IndexError, ValueError) as error:
        raise InputError(f"{video_path}: its audio track cannot be decoded ({getattr(error, 'strerror', error)})",
                         hint="leave it out (--input-audio drop)") from error
    return out


def _remux(source, in_stream, output, tracks: list[np.ndarray], sample_rate: int, info, out_path: str,
           bitrate: int) -> int:
    try:
        out_video = _copy_stream(output, in_stream, info)
        out_audio = []
        for track in tracks:
            stream = output.add_stream("aac", rate=int(sample_rate), layout=_layout(track.shape[0]))
            stream.bit_rate = bitrate
            out_audio.append(stream)
    except (av.FFmpegError, ValueError) as error:
        raise OutputError(
            f"{out_path}: cannot set up the output streams ({getattr(error, 'strerror', error)})",
            hint="write the music alone with a .wav or .flac output",
        ) from error

    # The music starts where the picture starts (some containers start their clock above 0).
    start_pts = int(round(info.start_s * sample_rate))
    try:
        # All audio packets in time order (a second track is interleaved with the first).
        audio_packets = list(heapq.merge(*[_encode_aac(track, sample_rate, stream, start_pts)
                                           for track, stream in zip(tracks, out_audio)], key=_packet_time))
    except av.FFmpegError as error:
        raise OutputError(f"{out_path}: AAC encoding failed ({getattr(error, 'strerror', error)})") from error

    demuxed = source.demux(in_stream)
    pending = 0  # next audio packet to write
    copied = 0
    while True:
        try:
            packet = next(demuxed)
        except StopIteration:
            break
        except av.FFmpegError as error:
            raise InputError(
                f"{info.path}: reading its video failed after {copied} packets ({getattr(error, 'strerror', error)})",
                hint="the file is damaged",
            ) from error
        if packet.size == 0 or (packet.dts is None and packet.pts is None):
            continue  # the demuxer's end-of-stream marker carries no data
        if packet.pts is None:
            packet.pts = packet.dts  # mp4 needs a presentation time; the payload is untouched
        # Interleave by time: all music up to this picture goes first.
        now = _packet_time(packet)
        while pending < len(audio_packets) and _packet_time(audio_packets[pending]) <= now:
            _mux(output, audio_packets[pending], out_path, info.codec)
            pending += 1
        packet.stream = out_video
        _mux(output, packet, out_path, info.codec)
        copied += 1
    for packet in audio_packets[pending:]:
        _mux(output, packet, out_path, info.codec)
    if copied == 0:
        raise InputError(f"{info.path}: its video stream has no packets to copy")
    return copied


def _mux(output, packet, out_path: str, codec: str) -> None:
    try:
        output.mux(packet)
    except av.FFmpegError as error:
        if getattr(error, "errno", None) in WRITE_ERRNOS:
            raise OutputError(f"{out_path}: cannot be written ({describe_os_error(error)})") from error
        raise OutputError(
            f"{out_path}: cannot write the {codec} video into this container ({getattr(error, 'strerror', error)})",
            hint="write the music alone with a .wav or .flac output",
        ) from error
