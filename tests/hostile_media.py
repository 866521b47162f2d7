"""Files a hostile (or unlucky) user hands to vem-run, made here with PyAV or by patching bytes.

Each helper writes a real file whose defect is the one its name says: timestamps that jump far
ahead, go back, repeat or are missing; an mp4 header that lies about the duration; a still image
renamed .mp4. Tests in tests/test_hostile_inputs.py feed them to a real vem-run.
"""

from __future__ import annotations

import io
import os
import struct
from fractions import Fraction

import av
from media import PALETTE, shot_picture

from vem.runtime.media_writer import encoder_for, write_video


def _encode_packets(codec: str, times: list[float], size=(64, 48), time_base=Fraction(1, 1000),
                    container_format: str = "null"):
    """Encoded packets (no B-frames) of frames shown at ``times``, with their own time base (the
    encoder set up for ``container_format``: global headers where it needs them)."""
    scratch = av.open(io.BytesIO(), "w", format=container_format)
    encoder, options = encoder_for(codec, {"bf": "0"})  # no B-frames
    stream = scratch.add_stream(encoder, rate=25, options=options)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    stream.codec_context.time_base = time_base
    packets = []
    for i, t in enumerate(times):
        frame = av.VideoFrame.from_ndarray(shot_picture(size[0], size[1], PALETTE[i % len(PALETTE)]), format="rgb24")
        frame.pts = int(round(Fraction(t).limit_denominator(1_000_000) / time_base))
        frame.time_base = time_base
        packets.extend(stream.encode(frame))
    packets.extend(stream.encode(None))
    return stream, packets, scratch


def write_with_packet_times(path: str | os.PathLike, pts: list[int | None], container_format: str | None = None,
                            codec: str = "h264", time_base: Fraction = Fraction(1, 1000)) -> str:
    """A video whose packets carry exactly ``pts`` (ticks of ``time_base``; dts = pts), whatever
    the encoder chose: duplicates, steps back and missing values are written as given (formats
    that refuse them raise)."""
    path = os.fspath(path)
    size = (64, 48)
    with av.open(path, "w", format=container_format) as out:
        encoder, options = encoder_for(codec, {"bf": "0"})  # no B-frames
        stream = out.add_stream(encoder, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.time_base = time_base
        stamps = iter(pts)

        def send(packets):
            for packet in packets:
                packet.pts = packet.dts = next(stamps)
                packet.duration = 0
                out.mux(packet)

        for i in range(len(pts)):
            picture = shot_picture(size[0], size[1], PALETTE[i % len(PALETTE)])
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = int(i * Fraction(1, 25) / time_base), time_base
            send(stream.encode(frame))
        send(stream.encode(None))
    return path


def write_raw_h264(path: str | os.PathLike, frames: int = 25) -> str:
    """An Annex B elementary stream (.h264): the codec's bytes with no container and no timestamps."""
    path = os.fspath(path)
    stream, packets, scratch = _encode_packets("h264", [i / 25 for i in range(frames)])
    with open(path, "wb") as handle:
        for packet in packets:
            handle.write(bytes(packet))
    scratch.close()
    return path


def concatenated_ts(path: str | os.PathLike, tmp_folder: str | os.PathLike, seconds: float = 1.0) -> str:
    """Two MPEG-TS recordings glued byte by byte (``cat a.ts b.ts``): the clock restarts halfway."""
    path = os.fspath(path)
    parts = []
    for name in ("a.ts", "b.ts"):
        part = os.path.join(os.fspath(tmp_folder), name)
        count = int(round(seconds * 25))
        write_with_packet_times(part, [int(i * 3600) for i in range(count)], "mpegts", time_base=Fraction(1, 90000))
        parts.append(part)
    with open(path, "wb") as out:
        for part in parts:
            with open(part, "rb") as handle:
                out.write(handle.read())
            os.unlink(part)
    return path


def _atoms(data: bytes, start: int = 0, end: int | None = None):
    """(type, offset, size) of the mp4 boxes between start and end (no recursion)."""
    end = len(data) if end is None else end
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if size < 8:
            return
        yield kind.decode("latin-1"), offset, size
        offset += size


def _find(data: bytes, path: list[str], start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    found = []
    for kind, offset, size in _atoms(data, start, end):
        if kind == path[0]:
            if len(path) == 1:
                found.append((offset, size))
            else:
                found.extend(_find(data, path[1:], offset + 8, offset + size))
    return found


def patch_mp4_durations(path: str | os.PathLike, seconds: float) -> str:
    """Make an mp4's headers (mvhd, tkhd, mdhd, edit lists) claim ``seconds``; the samples are untouched."""
    path = os.fspath(path)
    data = bytearray(open(path, "rb").read())
    (mvhd, _), = _find(data, ["moov", "mvhd"])
    assert data[mvhd + 8] == 0, "version-0 boxes only"
    movie_scale = struct.unpack(">I", data[mvhd + 20:mvhd + 24])[0]
    struct.pack_into(">I", data, mvhd + 24, int(seconds * movie_scale))
    for tkhd, _ in _find(data, ["moov", "trak", "tkhd"]):
        struct.pack_into(">I", data, tkhd + 28, int(seconds * movie_scale))
    for mdhd, _ in _find(data, ["moov", "trak", "mdia", "mdhd"]):
        scale = struct.unpack(">I", data[mdhd + 20:mdhd + 24])[0]
        struct.pack_into(">I", data, mdhd + 24, int(seconds * scale))
    for elst, _ in _find(data, ["moov", "trak", "edts", "elst"]):
        if data[elst + 8] == 0 and struct.unpack(">I", data[elst + 12:elst + 16])[0] >= 1:
            struct.pack_into(">I", data, elst + 16, int(seconds * movie_scale))
    open(path, "wb").write(bytes(data))
    return path


def zero_mp4_sample_deltas(path: str | os.PathLike) -> str:
    """Set every sample duration of an mp4's video track to 0 (stts): all frames at one timestamp."""
    path = os.fspath(path)
    data = bytearray(open(path, "rb").read())
    for stts, _ in _find(data, ["moov", "trak", "mdia", "minf", "stbl", "stts"]):
        entries = struct.unpack(">I", data[stts + 12:stts + 16])[0]
        for k in range(entries):
            struct.pack_into(">I", data, stts + 16 + 8 * k + 4, 0)
        break  # the first track: the video
    open(path, "wb").write(bytes(data))
    return path


def write_still_image(path: str | os.PathLike, codec: str = "png") -> str:
    """A single picture (PNG or JPEG) under whatever name ``path`` has (.mp4, say)."""
    path = os.fspath(path)
    write_video(path, [shot_picture(64, 48, PALETTE[1])], size=(64, 48), codec=codec,
                pix_fmt="rgb24" if codec == "png" else "yuvj420p", container_format="image2",
                container_options={"update": "1"})
    return path


def patch_mkv_duration(path: str | os.PathLike, seconds: float) -> str:
    """Make a Matroska file's Segment Info claim ``seconds`` (its 8-byte float Duration element,
    in the default 1 ms timecode scale); the blocks are untouched."""
    path = os.fspath(path)
    data = bytearray(open(path, "rb").read())
    at = data.find(b"\x44\x89\x88")
    assert at >= 0, "no 8-byte Duration element"
    struct.pack_into(">d", data, at + 3, seconds * 1000.0)
    open(path, "wb").write(bytes(data))
    return path


def write_plain_codec_video(path: str | os.PathLike, codec: str, container_format: str, frames: int = 10) -> str:
    """A few frames in an old codec (flv1, cinepak, ...) in its own container: a real video that
    an mp4 cannot hold."""
    path = os.fspath(path)
    pix_fmt = {"cinepak": "rgb24", "huffyuv": "yuv422p"}.get(codec, "yuv420p")
    pictures = (shot_picture(64, 48, PALETTE[i % len(PALETTE)]) for i in range(frames))
    write_video(path, pictures, size=(64, 48), rate=25, codec=codec, pix_fmt=pix_fmt, container_format=container_format)
    return path
