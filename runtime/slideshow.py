"""Slideshow videos with known cut frames: the front end's test and benchmark material.

A slideshow is a sequence of shots, each a slow pan (and zoom) over one still picture, joined by
hard cuts or dissolves, encoded with a real codec at a real frame rate (24, 25, 29.97, 30, 60 ...).
The truth travels with the file as a `Slideshow`: for a hard cut the index and presentation time
of the first frame of the new shot, for a dissolve its first blended and first clean frame.

Pictures are real photographs (scikit-image's sample images, which load offline) when
scikit-image is installed, else procedural pictures made here with numpy (vem-bench on a runtime
install). Frames are made and encoded one at a time, so a 60 s 1080p file needs little memory.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .media_writer import ENCODERS, exact_rate, write_video

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "colorwheel", "camera",
          "moon", "coins", "horse", "clock", "brick", "grass", "gravel", "cat", "immunohistochemistry")

@dataclass(frozen=True)
class Shot:
    picture: str  # a name from PHOTOS (or any string: it seeds a procedural picture)
    seconds: float
    pan: tuple[float, float] = (0.3, 0.1)  # crop-window speed, in frame widths per 10 s (x, y)
    zoom: float = 0.0  # relative zoom change over the shot (0.1: 10 % closer by its end)
    dissolve_in_s: float = 0.0  # blend from the previous shot over this long (0: a hard cut)


@dataclass(frozen=True)
class Transition:
    kind: str  # "cut" or "dissolve"
    first_frame: int  # hard cut: first frame of the new shot; dissolve: first blended frame
    clean_frame: int  # first frame showing only the new shot (== first_frame for a cut)
    time_s: float  # presentation time of first_frame
    clean_time_s: float


@dataclass
class Slideshow:
    path: str
    codec: str
    fps: Fraction
    size: tuple[int, int]
    frames: int
    transitions: list[Transition] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return float(self.frames / self.fps)

    @property
    def cut_times_s(self) -> list[float]:
        """Hard cuts only: the presentation time of the first frame of each new shot."""
        return [t.time_s for t in self.transitions if t.kind == "cut"]

    def frame_time(self, index: int) -> float:
        return float(index / self.fps)


def _procedural_picture(name: str, width: int, height: int) -> np.ndarray:
    """A smooth, colourful, textured picture (deterministic per name) without scikit-image."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    xs = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    picture = np.zeros((height, width, 3), np.float32)
    for channel in range(3):
        for _ in range(4):
            fx, fy, phase = rng.uniform(1, 9), rng.uniform(1, 9), rng.uniform(0, 6.3)
            picture[..., channel] += np.sin(xs * fx * 6.28 + phase) * np.cos(ys * fy * 6.28 - phase)
    picture = (picture - picture.min()) / (np.ptp(picture) + 1e-6)
    base = rng.uniform(40, 200, 3).astype(np.float32)
    return np.clip(base + (picture - 0.5) * 160, 0, 255).astype(np.uint8)


def load_picture(name: str, width: int, height: int) -> np.ndarray:
    """The named photograph (or a procedural picture), scaled to cover 1.3x the frame: room to pan."""
    cover_w, cover_h = int(width * 1.3) + 2, int(height * 1.3) + 2
    image = None
    if name in PHOTOS:
        try:
            import skimage.data

            image = np.asarray(getattr(skimage.data, name)())
        except (ImportError, AttributeError, OSError):
            image = None
    if image is None:
        return _procedural_picture(name, cover_w, cover_h)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3].astype(np.uint8)
    # Nearest-neighbour index maps: scaling a photo once per shot needs no scipy.
    scale = max(cover_w / image.shape[1], cover_h / image.shape[0])
    rows = np.minimum((np.arange(int(image.shape[0] * scale)) / scale).astype(np.int64), image.shape[0] - 1)
    cols = np.minimum((np.arange(int(image.shape[1] * scale)) / scale).astype(np.int64), image.shape[1] - 1)
    return np.ascontiguousarray(image[rows][:, cols])


class _ShotRenderer:
    def __init__(self, shot: Shot, width: int, height: int, frames: int):
        self.picture = load_picture(shot.picture, width, height)
        self.width, self.height, self.frames = width, height, max(frames, 1)
        self.shot = shot

    def frame(self, i: int) -> np.ndarray:
        u = i / self.frames
        shot, (pic_h, pic_w) = self.shot, self.picture.shape[:2]
        scale = 1.0 / (1.0 + shot.zoom * u)  # crop size relative to the frame's
        crop_w, crop_h = max(2, int(self.width * scale)), max(2, int(self.height * scale))
        seconds = shot.seconds * u
        x = (pic_w - crop_w) / 2 + shot.pan[0] * self.width * seconds / 10.0
        y = (pic_h - crop_h) / 2 + shot.pan[1] * self.height * seconds / 10.0
        x = int(np.clip(x, 0, pic_w - crop_w))
        y = int(np.clip(y, 0, pic_h - crop_h))
        crop = self.picture[y:y + crop_h, x:x + crop_w]
        if (crop_w, crop_h) == (self.width, self.height):
            return crop
        rows = (np.arange(self.height) * crop_h // self.height)
        cols = (np.arange(self.width) * crop_w // self.width)
        return crop[rows][:, cols]


def write_slideshow(path: str | os.PathLike, shots: list[Shot], *, fps: float | Fraction = 30,
                    size: tuple[int, int] = (640, 360), codec: str = "h264") -> Slideshow:
    """Encode ``shots`` to ``path`` and return the truth about its transitions."""
    if codec not in ENCODERS:
        raise ValueError(f"codec must be one of {', '.join(ENCODERS)}, got {codec!r}")
    rate = exact_rate(fps)
    width, height = size
    # Frame ranges per shot: shot i starts at the first frame whose time >= its start time.
    starts, begin = [], 0.0
    for shot in shots:
        starts.append(int(np.ceil(begin * rate - 1e-9)))
        begin += shot.seconds
    total = int(np.ceil(begin * rate - 1e-9))
    ends = starts[1:] + [total]
    transitions = []
    for index in range(1, len(shots)):
        blend = int(round(shots[index].dissolve_in_s * rate))
        first = starts[index] - blend  # the blend ends where the new shot would have cut in
        kind = "dissolve" if blend else "cut"
        transitions.append(Transition(kind, first, starts[index], float(first / rate), float(starts[index] / rate)))
    renderers = [_ShotRenderer(shot, width, height, end - start + int(round(shot.dissolve_in_s * rate)))
                 for shot, start, end in zip(shots, starts, ends)]

    def pictures():
        for k in range(total):
            shot = max(i for i, start in enumerate(starts) if start <= k)
            picture = renderers[shot].frame(k - starts[shot] + int(round(shots[shot].dissolve_in_s * rate)))
            nxt = shot + 1
            if nxt < len(shots) and shots[nxt].dissolve_in_s > 0:
                blend = int(round(shots[nxt].dissolve_in_s * rate))
                if k >= starts[nxt] - blend:
                    alpha = (k - (starts[nxt] - blend) + 1) / (blend + 1)
                    incoming = renderers[nxt].frame(k - (starts[nxt] - blend))
                    picture = (picture * (1 - alpha) + incoming * alpha).round().astype(np.uint8)
            yield picture

    write_video(path, pictures(), size=size, rate=rate, codec=codec)
    return Slideshow(os.fspath(path), codec, rate, (width, height), total, transitions)


def steady_shots(seconds: float, shot_s: float = 2.0, seed: int = 0, dissolve_every: int = 0,
                 dissolve_s: float = 0.5) -> list[Shot]:
    """Shots of equal length over distinct photographs; every ``dissolve_every``-th transition a dissolve."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(PHOTOS))
    shots, used = [], 0.0
    while used < seconds - 1e-9:
        length = min(shot_s, seconds - used)
        index = len(shots)
        dissolve = dissolve_s if dissolve_every and index and index % dissolve_every == 0 else 0.0
        shots.append(Shot(PHOTOS[order[index % len(order)]], length,
                          pan=(float(rng.uniform(-0.6, 0.6)), float(rng.uniform(-0.3, 0.3))),
                          zoom=float(rng.uniform(0, 0.15)), dissolve_in_s=dissolve))
        used += length
    return shots


def free_shots(seconds: float, seed: int = 0, low_s: float = 1.4, high_s: float = 5.0) -> list[Shot]:
    """Shots of random length in [low_s, high_s], as a person edits without music."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(PHOTOS))
    shots, used = [], 0.0
    while used < seconds - 1e-9:
        length = min(float(rng.uniform(low_s, high_s)), seconds - used)
        shots.append(Shot(PHOTOS[order[len(shots) % len(order)]], length,
                          pan=(float(rng.uniform(-0.6, 0.6)), float(rng.uniform(-0.3, 0.3))),
                          zoom=float(rng.uniform(0, 0.15))))
        used += length
    return shots
