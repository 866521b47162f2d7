"""Synthetic video whose shots change on the music's beats, rendered with numpy and encoded by PyAV.

Each storyboard (a musical section) is one scene: a scikit-image sample photograph, a procedural
texture, a moving gradient or moving shapes, colour-graded from the style (hue, saturation,
brightness, grain) and moved by a pan/zoom whose speed follows the style's energy. Inside a
scene the camera cuts between views of the same material; between scenes the material changes.
Transitions are hard cuts (mostly on downbeats, some on other beats, a few off the beat), dissolves
and fades through black (both centred on a beat), and some scenes run with no cut at all.

Every hard cut is made visible by construction: when the first frame of a new shot is too similar
to the last frame of the previous one (mean absolute difference below `MIN_CUT_DIFFERENCE`), the
new shot's view is redrawn (`render_video`), so a frame-difference detector sees every cut.
"""

from __future__ import annotations

import colorsys
import functools
from dataclasses import dataclass, field

import numpy as np

from .plan import Timeline
from .style import Style

FPS_CHOICES = (24, 25, 30, 60)
FPS_WEIGHTS = (0.3, 0.25, 0.3, 0.15)
WIDTHS = (160, 192, 224, 256, 320, 384, 426, 480)
ASPECTS = (16 / 9, 4 / 3, 1.0, 9 / 16)
ASPECT_WEIGHTS = (0.45, 0.2, 0.15, 0.2)
# On a 0-255 scale, the smallest mean absolute difference allowed across a hard cut.
MIN_CUT_DIFFERENCE = 35.0
MAX_PAN_PX_PER_FRAME = 1.6
# Photographs made of fine detail are softened so that a pan does not flicker like a cut.
DETAILED_PHOTOS = {"grass": 1.5, "gravel": 1.5, "brick": 1.0, "hubble_deep_field": 0.8, "retina": 0.6, "coins": 0.6, "camera": 0.8}

# scikit-image sample photographs (they ship in the wheel; no download) and how to describe them.
PHOTOS = {
    "astronaut": "an astronaut in a spacesuit",
    "coffee": "a cup of coffee on a saucer",
    "chelsea": "a ginger cat",
    "rocket": "a rocket on its launch pad",
    "hubble_deep_field": "a field of distant galaxies",
    "immunohistochemistry": "stained tissue under a microscope",
    "retina": "the back of an eye",
    "camera": "a man with a camera in a park",
    "moon": "the cratered surface of the moon",
    "coins": "a tray of old coins",
    "clock": "a clock face",
    "brick": "a brick wall",
    "grass": "a patch of grass",
    "gravel": "gravel on the ground",
}
SCENE_KINDS = ("photo", "texture", "gradient", "shapes")


@dataclass
class VideoFormat:
    width: int
    height: int
    fps: int


@dataclass
class TransitionPlan:
    time_s: float  # reported time: cut = first frame of the new shot; gradual = its centre
    kind: str  # cut | dissolve | fade
    duration_s: float
    on_beat: bool
    frame: int  # for cuts: index of the first frame of the new shot; else the centre frame


@dataclass
class ShotPlan:
    scene: int  # storyboard index
    start_s: float
    end_s: float
    seed: int


@dataclass
class Scene:
    """One storyboard's visual material and how it moves."""

    kind: str
    photo: str | None
    palette: np.ndarray  # (256, 3) uint8 colour lookup for procedural content
    saturation: float
    tint: np.ndarray  # (3,) float, multiplies the photo
    speed: float  # pan speed in output-frame widths per second
    grain: float
    blur: float
    words: dict = field(default_factory=dict)


def sample_format(rng: np.random.Generator) -> VideoFormat:
    fps = int(rng.choice(FPS_CHOICES, p=FPS_WEIGHTS))
    aspect = float(rng.choice(ASPECTS, p=ASPECT_WEIGHTS))
    size = int(rng.choice(WIDTHS))
    if aspect >= 1:
        width, height = size, size / aspect
    else:
        width, height = size * aspect, size
    even = lambda x: max(96, int(round(x / 2)) * 2)  # noqa: E731  (H.264 4:2:0 needs even sizes)
    return VideoFormat(even(width), even(height), fps)


# ------------------------------------------------------------------------------------------------
# planning


def plan_transitions(style: Style, timeline: Timeline, fps: int, rng: np.random.Generator) -> list[TransitionPlan]:
    """Transition times on the beat grid: scene boundaries plus cuts inside each scene."""
    beat = timeline.beat_period_s
    bpb = timeline.beats_per_bar
    duration = timeline.duration_s
    # Shot length in beats: energetic styles cut every half bar or bar, calm ones every 2-4 bars.
    if style.energy > 0.65:
        lengths = [bpb // 2 if bpb == 4 else bpb, bpb, bpb]
    elif style.energy > 0.35:
        lengths = [bpb, bpb, 2 * bpb]
    else:
        lengths = [2 * bpb, 2 * bpb, 4 * bpb]
    candidates: list[tuple[float, str, bool]] = []  # (time, kind, on_beat)
    for section in timeline.sections:
        first_beat = section.first_bar * bpb
        if section.index > 0:
            r = rng.random()
            kind = "dissolve" if r < 0.22 else ("fade" if r < 0.32 else "cut")
            candidates.append((timeline.clip_time(timeline.beat_offset_s + first_beat * beat), kind, True))
        no_cut_scene = rng.random() < (0.25 if style.energy < 0.5 else 0.1)
        if no_cut_scene:
            continue
        pos = first_beat
        end_beat = (section.first_bar + section.n_bars) * bpb
        while True:
            pos += int(rng.choice(lengths))
            if pos >= end_beat - 1:
                break
            r = rng.random()
            offset = 0.0
            on_beat = True
            if r < 0.15:  # on another beat of the bar
                offset = float(rng.choice([-1, 1]))
            elif r < 0.22:  # off the beat: on the "and"
                offset = 0.5
                on_beat = False
            t = timeline.clip_time(timeline.beat_offset_s + (pos + offset) * beat)
            kind = "dissolve" if (on_beat and rng.random() < 0.08) else "cut"
            candidates.append((t, kind, on_beat))
    candidates.sort()

    plans: list[TransitionPlan] = []
    min_gap = max(0.45, 0.9 * beat)
    for i, (t, kind, on_beat) in enumerate(candidates):
        if t < 0.5 or t > duration - 0.5:
            continue
        if plans and t - plans[-1].time_s < min_gap:
            continue
        if kind == "cut":
            frame = int(round(t * fps))
            plans.append(TransitionPlan(frame / fps, "cut", 0.0, on_beat, frame))
            continue
        length = float(np.clip(beat, 0.3, 0.8)) if kind == "dissolve" else float(np.clip(2 * beat, 0.5, 1.0))
        prev_t = plans[-1].time_s + plans[-1].duration_s / 2 if plans else 0.0
        next_t = candidates[i + 1][0] if i + 1 < len(candidates) else duration
        if t - length / 2 - prev_t < 0.3 or next_t - (t + length / 2) < 0.3 or t + length / 2 > duration - 0.2:
            frame = int(round(t * fps))  # no room for a gradual transition here: make it a cut
            plans.append(TransitionPlan(frame / fps, "cut", 0.0, on_beat, frame))
            continue
        plans.append(TransitionPlan(t, kind, length, on_beat, int(round(t * fps))))
    return plans


def _palette(hue: float, saturation: float, brightness: float, rng: np.random.Generator) -> np.ndarray:
    """A 256-entry colour ramp around the style's hue: dark to light, saturation as given."""
    spread = 0.08 + 0.12 * rng.random()
    stops = []
    for k in range(4):
        h = (hue + spread * (k - 1.5) / 1.5) % 1.0
        v = np.clip(0.15 + 0.75 * brightness * (0.35 + 0.65 * k / 3) + 0.1 * k / 3, 0.03, 1.0)
        s = np.clip(saturation * (1.1 - 0.25 * k / 3), 0, 1)
        stops.append(colorsys.hsv_to_rgb(h, s, v))
    stops = np.array(stops)
    x = np.linspace(0, 1, 256)
    ramp = np.stack([np.interp(x, np.linspace(0, 1, 4), stops[:, c]) for c in range(3)], axis=1)
    return np.clip(ramp * 255, 0, 255).astype(np.uint8)


def plan_scenes(style: Style, timeline: Timeline, rng: np.random.Generator) -> list[Scene]:
    scenes = []
    photo_names = list(PHOTOS)
    for section in timeline.sections:
        kind = str(rng.choice(SCENE_KINDS, p=(0.45, 0.2, 0.17, 0.18)))
        hue = (style.hue + rng.normal(0, 0.04)) % 1.0
        bright = float(np.clip(style.brightness + rng.normal(0, 0.06) + (0.06 if section.kind == "chorus" else 0), 0, 1))
        tint = np.array(colorsys.hsv_to_rgb(hue, 0.35 + 0.4 * style.saturation, 1.0))
        tint = tint / tint.max()
        scenes.append(
            Scene(
                kind=kind,
                photo=str(rng.choice(photo_names)) if kind == "photo" else None,
                palette=_palette(hue, style.saturation, bright, rng),
                saturation=style.saturation,
                tint=tint,
                speed=float((0.03 + 0.3 * style.energy) * (0.8 + 0.4 * rng.random()) * (1.3 if section.kind == "chorus" else 1)),
                grain={"grainy": 9.0, "sharp": 0.0, "smooth": 0.0}[style.texture],
                blur={"smooth": 1.6, "sharp": 0.0, "grainy": 0.4}[style.texture],
                words={"hue": hue, "brightness": bright},
            )
        )
    return scenes


# ------------------------------------------------------------------------------------------------
# sources


@functools.lru_cache(maxsize=32)
def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3]
    # keep them modest: the largest frame is 480 px and a zoom needs at most ~2x that
    step = max(1, int(max(image.shape[:2]) // 700))
    return np.ascontiguousarray(image[::step, ::step]).astype(np.uint8)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return image
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, sigma=(sigma, sigma, 0)[: image.ndim])


def _grade_photo(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    image = _photo(scene.photo).astype(np.float32)
    luma = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    sat = 0.3 + 0.9 * scene.saturation
    image = luma[..., None] + sat * (image - luma[..., None])
    image = image * scene.tint[None, None, :]
    # Expose to the scene's brightness: the photo's own mean level (the moon is dark, the coffee
    # cup light) must not decide how bright the scene looks, the style must.
    target = 30.0 + 160.0 * scene.words["brightness"]
    luma_now = float((image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean())
    image = image * float(np.clip(target / max(luma_now, 1.0), 0.35, 2.5))
    if scene.grain:  # after the exposure, so that a dark photo brought up does not bring up its grain
        image = image + rng.normal(0, scene.grain, image.shape[:2])[..., None]
    image = _blur(image, scene.blur + DETAILED_PHOTOS.get(scene.photo, 0.0))
    return np.clip(image, 0, 255).astype(np.uint8)


def _texture(scene: Scene, rng: np.random.Generator, size: int = 640) -> np.ndarray:
    """Smooth fractal noise (sum of upsampled random grids) mapped through the scene's palette."""
    from scipy.ndimage import zoom

    field_ = np.zeros((size, size), dtype=np.float32)
    for cells, weight in ((4, 1.0), (8, 0.5), (16, 0.3 if scene.blur < 1 else 0.1), (64, 0.25 if scene.grain else 0.05)):
        grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
        field_ += weight * zoom(grid, size / (cells + 1), order=1)[:size, :size]
    field_ = (field_ - field_.min()) / (np.ptp(field_) + 1e-6)
    return scene.palette[(field_ * 255).astype(np.uint8)]


class PanZoomShot:
    """A moving crop of a source image: pan from one point to another while zooming."""

    def __init__(self, source: np.ndarray, fmt: VideoFormat, start_s: float, end_s: float, speed: float,
                 rng: np.random.Generator):
        self.source = source
        self.fmt = fmt
        self.start_s, self.end_s = start_s, end_s
        src_h, src_w = source.shape[:2]
        s_max = min(src_w / fmt.width, src_h / fmt.height)  # source px per output px, crop fits
        self.s0 = s_max * rng.uniform(0.45, 0.95)
        self.s1 = float(np.clip(self.s0 * rng.uniform(0.8, 1.25), s_max * 0.4, s_max))
        crop_w0, crop_h0 = fmt.width * max(self.s0, self.s1), fmt.height * max(self.s0, self.s1)
        lo = np.array([crop_h0 / 2, crop_w0 / 2])
        hi = np.array([src_h - crop_h0 / 2, src_w - crop_w0 / 2])
        self.c0 = lo + (hi - lo) * rng.random(2)
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction) + 1e-9
        # Pan speed in output px per second, capped at MAX_PAN_PX_PER_FRAME so that motion between
        # two frames stays well below the difference across a cut (fine textures decorrelate fast).
        # Energy sets the pan speed as a share of the cap (0.1 ... 1 x MAX_PAN_PX_PER_FRAME per frame).
        share = 0.1 + 0.9 * float(np.clip((speed - 0.03) / 0.33, 0.0, 1.0))
        px_per_s = share * MAX_PAN_PX_PER_FRAME * fmt.fps
        travel = px_per_s * max(self.s0, self.s1) * (end_s - start_s)
        self.c1 = np.clip(self.c0 + direction * travel, lo, hi)
        self.ys = np.arange(fmt.height, dtype=np.float32) - fmt.height / 2
        self.xs = np.arange(fmt.width, dtype=np.float32) - fmt.width / 2

    def frame(self, t: float) -> np.ndarray:
        u = float(np.clip((t - self.start_s) / max(self.end_s - self.start_s, 1e-6), 0, 1))
        u = u * u * (3 - 2 * u) * 0.5 + u * 0.5  # ease in and out a little
        s = self.s0 + (self.s1 - self.s0) * u
        cy, cx = self.c0 + (self.c1 - self.c0) * u
        rows = np.clip((cy + self.ys * s).astype(np.int32), 0, self.source.shape[0] - 1)
        cols = np.clip((cx + self.xs * s).astype(np.int32), 0, self.source.shape[1] - 1)
        return self.source[rows[:, None], cols[None, :]]


class GradientShot:
    """Bands of the scene palette drifting and rotating (procedural, no source image)."""

    def __init__(self, scene: Scene, fmt: VideoFormat, start_s: float, end_s: float, rng: np.random.Generator):
        self.palette = scene.palette
        self.start_s = start_s
        yy, xx = np.mgrid[0 : fmt.height, 0 : fmt.width].astype(np.float32)
        self.yy, self.xx = yy / fmt.width, xx / fmt.width
        self.angle0 = rng.uniform(0, 2 * np.pi)
        self.spin = rng.choice([-1, 1]) * scene.speed * 0.6
        self.freq = rng.uniform(1.5, 5.0)
        self.drift = scene.speed * rng.uniform(0.6, 1.4)
        self.phase = rng.uniform(0, 2 * np.pi)

    def frame(self, t: float) -> np.ndarray:
        dt = t - self.start_s
        a = self.angle0 + self.spin * dt
        v = self.xx * np.cos(a) + self.yy * np.sin(a)
        level = 0.5 + 0.5 * np.sin(2 * np.pi * (self.freq * v - self.drift * dt) + self.phase)
        return self.palette[(level * 255).astype(np.uint8)]


class ShapesShot:
    """Discs and boxes in palette colours moving over a still gradient background."""

    def __init__(self, scene: Scene, fmt: VideoFormat, start_s: float, end_s: float, rng: np.random.Generator):
        self.fmt = fmt
        self.start_s = start_s
        yy, xx = np.mgrid[0 : fmt.height, 0 : fmt.width].astype(np.float32)
        a = rng.uniform(0, 2 * np.pi)
        ramp = (xx * np.cos(a) + yy * np.sin(a)) / max(fmt.width, fmt.height)
        ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
        lo, hi = sorted(rng.integers(0, 256, 2))
        self.background = scene.palette[(lo + (hi - lo) * 0.4 * ramp).astype(np.uint8)]
        n = int(rng.integers(3, 9))
        size = min(fmt.width, fmt.height)
        self.shapes = []
        for _ in range(n):
            self.shapes.append(
                dict(
                    disc=bool(rng.random() < 0.6),
                    r=float(rng.uniform(0.06, 0.2) * size),
                    pos=rng.uniform(0, 1, 2) * [fmt.height, fmt.width],
                    vel=rng.normal(size=2) * scene.speed * fmt.width,
                    colour=scene.palette[int(rng.integers(128, 256))],
                )
            )

    def frame(self, t: float) -> np.ndarray:
        dt = t - self.start_s
        out = self.background.copy()
        h, w = self.fmt.height, self.fmt.width
        for shape in self.shapes:
            # bounce inside the frame: reflect the unbounded position into [0, size)
            raw = shape["pos"] + shape["vel"] * dt
            cy, cx = (np.abs((raw + [h, w]) % (2 * np.array([h, w])) - [h, w]))
            r = shape["r"]
            y0, y1 = int(max(cy - r, 0)), int(min(cy + r + 1, h))
            x0, x1 = int(max(cx - r, 0)), int(min(cx + r + 1, w))
            if y1 <= y0 or x1 <= x0:
                continue
            if shape["disc"]:
                yy = np.arange(y0, y1)[:, None] - cy
                xx = np.arange(x0, x1)[None, :] - cx
                mask = yy * yy + xx * xx <= r * r
                out[y0:y1, x0:x1][mask] = shape["colour"]
            else:
                out[y0:y1, x0:x1] = shape["colour"]
        return out


class ExposedShot:
    """Another shot with its exposure scaled by ``factor`` (a 256-entry lookup table, cheap per frame)."""

    def __init__(self, shot, factor: float):
        self.shot = shot
        self.lut = np.clip(np.arange(256) * factor, 0, 255).astype(np.uint8)

    def frame(self, t: float) -> np.ndarray:
        return self.lut[self.shot.frame(t)]


def make_shot(scene: Scene, fmt: VideoFormat, start_s: float, end_s: float, rng: np.random.Generator,
              cache: dict) -> PanZoomShot | GradientShot | ShapesShot:
    key = id(scene)
    if scene.kind == "photo":
        if key not in cache:
            cache[key] = _grade_photo(scene, rng)
        return PanZoomShot(cache[key], fmt, start_s, end_s, scene.speed, rng)
    if scene.kind == "texture":
        if key not in cache:
            cache[key] = _texture(scene, rng)
        return PanZoomShot(cache[key], fmt, start_s, end_s, scene.speed, rng)
    if scene.kind == "gradient":
        return GradientShot(scene, fmt, start_s, end_s, rng)
    return ShapesShot(scene, fmt, start_s, end_s, rng)


# ------------------------------------------------------------------------------------------------
# rendering


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


def render_video(path: str, style: Style, timeline: Timeline, fmt: VideoFormat, transitions: list[TransitionPlan],
                 scenes: list[Scene], rng: np.random.Generator) -> list[dict]:
    """Render and encode the video (H.264, yuv420p); returns one dict per shot (its scene and times)."""
    from vem.runtime.media_writer import write_video

    duration = timeline.duration_s
    n_frames = int(round(duration * fmt.fps))
    section_starts = [s.start_s for s in timeline.sections]

    def scene_at(t: float) -> int:
        return int(np.searchsorted(section_starts, t + 1e-6, side="right") - 1)

    # Shot k spans [bounds[k], bounds[k+1]); a cut's bound is its exact frame time.
    bounds = [0.0] + [tr.time_s for tr in transitions] + [duration]
    cache: dict = {}
    shots = []
    for k in range(len(bounds) - 1):
        a, b = bounds[k], bounds[k + 1]
        # the scene is the storyboard the shot mostly lies in
        scene_index = scene_at((a + b) / 2)
        shots.append(make_shot(scenes[scene_index], fmt, a, b, rng, cache))
        shots[-1].scene_index = scene_index
        if k > 0 and transitions[k - 1].kind == "cut":
            previous_last = shots[k - 1].frame(a - 1.0 / fmt.fps)
            for attempt in range(10):
                first = shots[k].frame(a)
                if _mean_abs_diff(previous_last, first) >= MIN_CUT_DIFFERENCE:
                    break
                # Too similar: redraw the view (another crop / pattern); from the fifth try also
                # expose it a stop away from the previous shot (as an editor cuts dark to light);
                # leave the scene's material and colours last of all.
                shots[k] = make_shot(scenes[scene_index], fmt, a, b, rng, cache)
                if attempt >= 4:
                    darker = float(shots[k].frame(a).mean()) < float(previous_last.mean())
                    shots[k] = ExposedShot(shots[k], 0.6 if darker else 1.4)
                shots[k].scene_index = scene_index
            else:
                shots[k] = _contrasting_shot(scenes[scene_index], fmt, a, b, rng, previous_last)
                shots[k].scene_index = scene_index

    gradual = [(k + 1, tr) for k, tr in enumerate(transitions) if tr.kind != "cut"]

    def pictures():
        for i in range(n_frames):
            t = i / fmt.fps
            # a cut's bound is frame / fps, computed exactly as t is: frame `tr.frame` opens the shot
            shot_index = min(int(np.searchsorted(bounds, t, side="right")) - 1, len(shots) - 1)
            image = None
            for k, tr in gradual:
                half = tr.duration_s / 2
                if tr.time_s - half <= t < tr.time_s + half:
                    before, after = shots[k - 1].frame(t), shots[k].frame(t)
                    u = (t - (tr.time_s - half)) / tr.duration_s
                    if tr.kind == "dissolve":
                        image = (before * (1 - u) + after * u).astype(np.uint8)
                    else:  # fade through black: out over the first half, in over the second
                        image = (before * max(0.0, 1 - 2 * u)).astype(np.uint8) if u < 0.5 else (after * (2 * u - 1)).astype(np.uint8)
                    break
            yield shots[shot_index].frame(t) if image is None else image

    write_video(path, pictures(), size=(fmt.width, fmt.height), rate=fmt.fps, options={"preset": "ultrafast", "crf": "20"})
    return [
        {"scene": int(s.scene_index), "start_s": float(bounds[k]), "end_s": float(bounds[k + 1])}
        for k, s in enumerate(shots)
    ]


def _contrasting_shot(scene: Scene, fmt: VideoFormat, a: float, b: float, rng: np.random.Generator,
                      previous: np.ndarray):
    """Last resort for a visible cut: the scene's own colours as drifting bands, much darker than
    ``previous`` if that is bright, much lighter if it is dark (the hue stays the style's)."""
    variant = Scene(**{**scene.__dict__, "kind": "gradient"})
    palette = scene.palette.astype(np.float32)
    if float(previous.mean()) >= 110:
        palette = palette * 0.3
    else:
        palette = 255 - (255 - palette) * 0.3
    variant.palette = np.clip(palette, 0, 255).astype(np.uint8)
    return GradientShot(variant, fmt, a, b, rng)
