"""Real test media written with PyAV: videos with known cuts, audio-only files, broken files.

Every test that needs a video makes one here instead of shipping binary fixtures, so the truth
(where the cuts are, which colour each shot has, each frame's presentation time) is known exactly
and travels with the file as a `TestVideo`.

Pictures: each shot is a flat colour from `PALETTE` (shot i has colour ``PALETTE[i % len]``) with
a white marker block in the top-left corner of the stored picture (so tests can see rotation and
flips), and optionally a small dark square moving across the lower half (so frames inside a shot
are not all identical, as in real footage).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from vem.runtime.media_writer import encode_audio_until, exact_rate, write_video

# Saturated colours that stay far apart after 4:2:0 chroma subsampling and lossy coding.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (220, 40, 40),
    (40, 190, 60),
    (40, 60, 220),
    (230, 210, 40),
    (190, 50, 200),
    (40, 200, 210),
    (120, 120, 120),
    (240, 140, 30),
)
MARKER_COLOUR = (255, 255, 255)

@dataclass
class TestVideo:
    """A video written by `write_test_video` and the facts it was written with."""

    __test__ = False  # not a pytest test class despite the name

    path: str
    codec: str
    size: tuple[int, int]  # stored (coded) width, height
    fps: float  # nominal rate given to the encoder
    frame_times: list[float]  # presentation time of every frame, seconds from 0
    cut_times: list[float]
    rotation: int | None
    pix_fmt: str
    with_audio: bool
    shot_colours: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        """End of the last frame: its start plus the typical frame interval."""
        if len(self.frame_times) > 1:
            return self.frame_times[-1] + (self.frame_times[-1] - self.frame_times[-2])
        return 1.0 / self.fps

    def shot_index_at(self, t: float) -> int:
        """Which shot is visible at time t (a frame whose time is at or after a cut shows the new shot)."""
        return sum(1 for c in self.cut_times if c <= t + 1e-9)

    def colour_at(self, t: float) -> tuple[int, int, int]:
        return PALETTE[self.shot_index_at(t) % len(PALETTE)]


def shot_picture(width: int, height: int, colour: tuple[int, int, int], marker: bool = True) -> np.ndarray:
    """One shot's base picture [H, W, 3] uint8: flat colour, white block at the stored top-left."""
    picture = np.empty((height, width, 3), np.uint8)
    picture[:] = colour
    if marker:
        mh, mw = max(1, height // 4), max(1, width // 4)
        picture[:mh, :mw] = MARKER_COLOUR
    return picture


def _vfr_times(seconds: float, fps: float, seed: int) -> list[float]:
    """Irregular presentation times: intervals drawn between 0.4/fps and 2.5/fps, in whole ms."""
    rng = np.random.default_rng(seed)
    times, t = [], 0.0
    while t < seconds - 1e-9:
        times.append(round(t, 3))
        t += max(0.001, round(float(rng.uniform(0.4, 2.5)) / fps, 3))
    return times


def write_test_video(
    path: str | os.PathLike,
    codec: str = "h264",
    fps: float | Fraction = 25.0,
    size: tuple[int, int] = (96, 64),
    seconds: float = 1.0,
    cut_times: list[float] | tuple[float, ...] = (),
    variable_frame_rate: bool = False,
    rotation: int | None = None,
    pix_fmt: str | None = None,
    with_audio: bool = False,
    moving_square: bool = False,
    frame_times: list[float] | None = None,
    faststart: bool = False,
    seed: int = 0,
) -> TestVideo:
    """Write a real video file whose shots change colour at ``cut_times`` (seconds).

    codec: any PyAV encoder (``h264``, ``hevc``, ``libvpx-vp9``, ``mpeg4`` are the tested ones).
    size: stored width, height (odd sizes need a codec/pix_fmt that allows them: 4:4:4 for h264
    and hevc, which `pix_fmt=None` picks automatically; vp9 and mpeg4 take odd 4:2:0).
    variable_frame_rate: irregular frame intervals (millisecond timestamps), seeded.
    frame_times: explicit presentation times in seconds (overrides fps/seconds/vfr spacing).
    rotation: display-matrix rotation in degrees counter-clockwise (FFmpeg's convention, what
    `VideoFrame.rotation` reads back), written as container metadata; pixels stay as stored.
    with_audio: add an AAC 440 Hz tone track of the same length (a video with sound to replace).
    faststart: put the index (moov) before the media data, as web-optimised files do.
    """
    path = os.fspath(path)
    width, height = size
    rate = exact_rate(fps)
    if frame_times is not None:
        times = [float(t) for t in frame_times]
    elif variable_frame_rate:
        times = _vfr_times(seconds, float(rate), seed)
    else:
        count = max(1, int(round(seconds * float(rate))))
        times = [float(i / rate) for i in range(count)]
    if pix_fmt is None:
        odd = width % 2 or height % 2
        pix_fmt = "yuv444p" if odd and codec in ("h264", "libx264", "hevc", "libx265") else "yuv420p"
    audio = None
    if with_audio:  # a 440 Hz tone as long as the video
        duration = (times[-1] + (times[-1] - times[-2] if len(times) > 1 else 1 / float(rate)))
        n = int(round(duration * 16000))
        audio = ((0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32), 16000)

    cuts = sorted(float(c) for c in cut_times)
    n_shots = len(cuts) + 1
    shots = [shot_picture(width, height, PALETTE[i % len(PALETTE)]) for i in range(n_shots)]

    def pictures():
        for i, t in enumerate(times):
            picture = shots[sum(1 for c in cuts if c <= t + 1e-9)]
            if moving_square:
                picture = picture.copy()
                side = max(2, min(width, height) // 6)
                x = int((i * 3) % max(1, width - side))
                y0 = height // 2
                picture[y0 : y0 + side, x : x + side] = 20
            yield picture

    # Exact 1/rate timestamps for a constant rate; VFR and explicit times in milliseconds.
    exact_cfr = frame_times is None and not variable_frame_rate
    write_video(path, pictures(), size=size, rate=rate, codec=codec, pix_fmt=pix_fmt,
                times=None if exact_cfr else times, rotation=rotation, faststart=faststart, audio=audio)
    return TestVideo(
        path=path,
        codec=codec,
        size=(width, height),
        fps=float(rate),
        frame_times=times,
        cut_times=cuts,
        rotation=rotation,
        pix_fmt=pix_fmt,
        with_audio=with_audio,
        shot_colours=[PALETTE[i % len(PALETTE)] for i in range(n_shots)],
    )


def write_test_audio(path: str | os.PathLike, seconds: float = 1.0, sample_rate: int = 16000, codec: str = "aac") -> str:
    """An audio-only file (e.g. ``clip.mp4`` holding only AAC): what a video tool must refuse."""
    path = os.fspath(path)
    n = int(round(seconds * sample_rate))
    samples = (0.2 * np.sin(2 * np.pi * 330 * np.arange(n) / sample_rate)).astype(np.float32)
    container = av.open(path, "w")
    try:
        stream = container.add_stream(codec, rate=sample_rate, layout="mono")
        encode_audio_until(container, stream, samples, 0, math.inf)
        for packet in stream.encode(None):
            container.mux(packet)
    finally:
        container.close()
    return path


def write_truncated_copy(src: str | os.PathLike, dst: str | os.PathLike, keep_fraction: float = 0.5) -> str:
    """Copy the first ``keep_fraction`` of a file's bytes: an interrupted download or copy."""
    data = open(src, "rb").read()
    with open(dst, "wb") as out:
        out.write(data[: int(len(data) * keep_fraction)])
    return os.fspath(dst)


def write_zeroed_media_copy(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Copy an mp4 with the payload of its ``mdat`` box zeroed: headers intact, no decodable frame."""
    data = bytearray(open(src, "rb").read())
    offset = 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        kind = bytes(data[offset + 4 : offset + 8])
        header = 8
        if size == 1:  # 64-bit size follows
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
            header = 16
        elif size == 0:  # box runs to the end of the file
            size = len(data) - offset
        if kind == b"mdat":
            data[offset + header : offset + size] = bytes(size - header)
            break
        offset += size
    else:
        raise ValueError(f"{src}: no mdat box found")
    with open(dst, "wb") as out:
        out.write(bytes(data))
    return os.fspath(dst)


def packet_payloads(path: str | os.PathLike, kind: str = "video") -> list[bytes]:
    """The bytes of every packet of the first stream of ``kind``, in file order."""
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        return [bytes(p) for p in container.demux(stream) if p.size > 0]


def write_flat_yuv_video(path: str | os.PathLike, size: tuple[int, int], frames: int = 2, fps: int = 25,
                         codec: str = "h264") -> str:
    """A few flat-colour frames written straight as 4:2:0 planes (no RGB conversion): an 8K file
    in well under a second. Frame k has luma 60 + 40 k, so each frame is a new shot."""
    path = os.fspath(path)
    width, height = size

    def planes():
        for k in range(frames):
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane, value in zip(frame.planes, ((60 + 40 * k) % 256, 90, 200)):
                plane.update(np.full(plane.buffer_size, value, np.uint8).tobytes())
            yield frame

    write_video(path, planes(), size=size, rate=fps, codec=codec, options={"preset": "ultrafast"} if codec == "h264" else {})
    return path


def write_hours_long_video(path: str | os.PathLike, hours: float = 3.0, frame_every_s: float = 60.0) -> TestVideo:
    """A real video lasting ``hours``: 16x16 frames, one every ``frame_every_s`` seconds (a few
    hundred frames, a few kB, written in a fraction of a second). Its header declares the full
    length, as a camera's long recording would."""
    count = int(round(hours * 3600 / frame_every_s))
    return write_test_video(path, size=(16, 16), frame_times=[frame_every_s * i for i in range(count + 1)],
                            cut_times=[frame_every_s])


def write_minimal_parse(path: str | os.PathLike, duration_s: float, tags: tuple[str, ...] = ("calm",),
                        transitions_s: tuple[float, ...] = ()) -> str:
    """The smallest valid --parse file for a video of ``duration_s`` (storyboards derived from the cuts)."""
    import json

    data = {"version": 1, "video": {"path": "clip.mp4", "duration_s": duration_s, "fps": 25.0},
            "global": {"caption": "", "tags": list(tags)}, "storyboards": [],
            "frame": {"transitions_s": list(transitions_s)}}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    return os.fspath(path)
