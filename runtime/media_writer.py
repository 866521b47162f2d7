"""The one low-level video encoder of the project: frames in, a real file (PyAV) out.

Every writer of test, benchmark and training videos (slideshows, vem-bench's clips, vem-synth,
the export's parity clip, the tests' media) makes its own pictures and hands them here; the
codec table, the stream set-up, the timestamps and the encode/mux loop exist only in this file.

Timestamps are exact: frame k of a constant-rate file has pts k in a time base of 1/rate (a
`Fraction`, so 30000/1001 stays 30000/1001); explicit presentation times (variable frame rate)
are written in milliseconds. Optional: display rotation, faststart, and a mono AAC track
interleaved with the video as a camera writes it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

# codec -> (PyAV encoder, options): fast, quiet, and with B-frames where the codec has them (decode
# order differs from presentation order, as in real files). Callers may override single options
# (quality, speed) per file.
ENCODERS: dict[str, tuple[str, dict[str, str]]] = {
    "h264": ("libx264", {"preset": "veryfast", "crf": "23"}),
    "hevc": ("libx265", {"preset": "ultrafast", "x265-params": "log-level=error"}),
    "vp9": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0"}),
    "mpeg4": ("mpeg4", {"qscale": "4", "bf": "2"}),
    "av1": ("libsvtav1", {"preset": "12"}),
}
_BY_ENCODER = {encoder: codec for codec, (encoder, _) in ENCODERS.items()}
_NTSC = (Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001))


def encoder_for(codec: str, options: Mapping[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """The PyAV encoder and its options for ``codec`` (a name of `ENCODERS` or of its encoder, e.g.
    ``h264`` or ``libx264``; any other PyAV encoder gets its own defaults), ``options`` on top."""
    encoder, defaults = ENCODERS.get(_BY_ENCODER.get(codec, codec), (codec, {}))
    return encoder, {**defaults, **(options or {})}


def exact_rate(fps: float | Fraction) -> Fraction:
    """``fps`` as an exact Fraction: 23.976, 29.97 and 59.94 mean the NTSC rates (24000/1001 ...)."""
    if isinstance(fps, Fraction):
        return fps
    for ntsc in _NTSC:
        if abs(float(ntsc) - fps) < 1e-3:
            return ntsc
    return Fraction(fps).limit_denominator(1001)


def encode_audio_until(container: Any, stream: Any, samples: np.ndarray, cursor: int, until_s: float) -> int:
    """Encode mono float ``samples[cursor:]`` up to ``until_s`` seconds (all of them for inf) into
    ``stream`` and mux the packets; returns the new cursor."""
    import av

    end = min(len(samples), int(until_s * stream.rate)) if math.isfinite(until_s) else len(samples)
    chunk = 1024
    while cursor < end:
        piece = samples[cursor : min(end, cursor + chunk)]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(piece[None, :], np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate = stream.rate
        frame.pts = cursor
        frame.time_base = Fraction(1, stream.rate)
        for packet in stream.encode(frame):
            container.mux(packet)
        cursor += len(piece)
    return cursor


def write_video(path: str | os.PathLike, frames: Iterable[Any], *, size: tuple[int, int],
                rate: float | Fraction = 30, codec: str = "h264", options: Mapping[str, str] | None = None,
                pix_fmt: str = "yuv420p", times: Sequence[float] | None = None, rotation: int | None = None,
                faststart: bool = False, audio: tuple[np.ndarray, int] | None = None,
                container_format: str | None = None, container_options: Mapping[str, str] | None = None) -> int:
    """Encode ``frames`` to ``path``; returns how many frames were written.

    frames: [H, W, 3] uint8 RGB arrays, or `av.VideoFrame`s already in ``pix_fmt``, one at a time
    (a generator keeps a long file out of memory). size: (width, height) as stored.
    rate: the nominal frame rate (`exact_rate` makes floats exact). times: each frame's
    presentation time in seconds (variable frame rate, written in ms); None: frame k at k / rate.
    rotation: display-matrix rotation in degrees counter-clockwise (metadata; pixels stay).
    faststart: the index (moov) before the media data. container_format, container_options: the
    muxer and its options when the file name does not say (``image2``, ``flv`` ...). audio: (mono float samples, sample rate),
    written as AAC and interleaved with the video (each frame followed by the audio up to 0.5 s
    after it).
    """
    import av

    rate = exact_rate(rate)
    encoder, encoder_options = encoder_for(codec, options)
    if encoder == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration unless told otherwise
    time_base = Fraction(1) / rate if times is None else Fraction(1, 1000)
    width, height = size
    written = 0
    muxer_options = {**({"movflags": "+faststart"} if faststart else {}), **(container_options or {})}
    container = av.open(os.fspath(path), "w", format=container_format, options=muxer_options)
    try:
        stream = container.add_stream(encoder, rate=rate, options=encoder_options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        audio_stream, samples, cursor = None, None, 0
        if audio is not None:
            samples, sample_rate = np.asarray(audio[0], np.float32), int(audio[1])
            audio_stream = container.add_stream("aac", rate=sample_rate, layout="mono")
        for k, picture in enumerate(frames):
            if isinstance(picture, av.VideoFrame):
                frame = picture
            else:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
            t = float(k / rate) if times is None else float(times[k])
            frame.pts = k if times is None else int(round(Fraction(t).limit_denominator(1_000_000) / time_base))
            frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
            written += 1
            if audio_stream is not None:
                cursor = encode_audio_until(container, audio_stream, samples, cursor, t + 0.5)
        for packet in stream.encode(None):
            container.mux(packet)
        if audio_stream is not None:
            encode_audio_until(container, audio_stream, samples, cursor, math.inf)
            for packet in audio_stream.encode(None):
                container.mux(packet)
    finally:
        container.close()
    return written
