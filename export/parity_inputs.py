"""Real inputs for the export's parity checks: decoded video frames and realistic conditions.

"Real" here means what the runtime will feed, made the way the runtime makes it: a clip encoded
to H.264 with PyAV and decoded by `vem.runtime.video.decode_frames` at 16 fps (codec noise,
chroma subsampling, smooth pictures with cuts -- not uniform noise), captions and tags through
`vem.runtime.text.HashedTextEncoder`, storyboards from `vem.runtime.storyboard`, and the
storyboard visual features pooled from the visual encoder's per-frame embeddings.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vem.runtime.config import VemConfig
from vem.runtime.tempo import beat_grid, choose_tempo

# Flat-ish shots, far apart in colour, each with a gradient and a moving square.
_SHOT_COLOURS = ((200, 60, 40), (40, 170, 80), (50, 70, 210), (220, 200, 60), (170, 60, 190))


def write_parity_video(path: str | os.PathLike, seconds: float = 8.0, fps: int = 24, shot_s: float = 1.6,
                       size: tuple[int, int] = (160, 96)) -> Path:
    """Write an H.264 clip with a cut every ``shot_s`` seconds (PyAV), for parity inputs."""
    from vem.runtime.media_writer import write_video

    path = Path(path)
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width]
    frames = int(round(seconds * fps))

    def pictures():
        for index in range(frames):
            t = index / fps
            colour = np.array(_SHOT_COLOURS[int(t // shot_s) % len(_SHOT_COLOURS)], dtype=np.float32)
            shade = 0.6 + 0.4 * (xs / width)[..., None]
            picture = (colour * shade).astype(np.uint8)
            x0 = int((t * 40) % (width - 16))
            picture[height // 2 : height // 2 + 16, x0 : x0 + 16] = 20
            yield picture

    write_video(path, pictures(), size=size, rate=fps)
    return path


def decode_parity_frames(path: str | os.PathLike, config: VemConfig, max_seconds: float | None = None) -> dict[str, np.ndarray]:
    """Frames at 16 fps at the three sizes the runtime decodes (docs/architecture.md)."""
    from vem.runtime.video import decode_frames

    s, a = config.visual.frame_size, config.aligner.frame_size
    sizes = {"visual": (s, s), "aligner": (a, a), "transitions": tuple(config.video.transition_size)}
    decoded = decode_frames(path, fps=config.video.fps, sizes=sizes, max_seconds=max_seconds)
    return decoded.frames


CAPTIONS = (
    "a calm acoustic piece for a walk by the sea",
    "energetic electronic music with a driving beat for a city at night",
)
STORY_TEXTS = ("wide shot of the coast", "close up of a face", "cars pass in the rain", "a door opens",
               "people dance in a bright room", "the sun sets over hills")


def real_denoiser_feeds(config: VemConfig, frame_embeddings: np.ndarray, seconds: float, storyboards: int,
                        seed: int = 0) -> dict[str, np.ndarray]:
    """Denoiser inputs as the runtime builds them for ``seconds`` of video cut into
    ``storyboards`` shots: text-encoder embeddings, storyboard spans, the Eq. 7 mask, visual
    features pooled per storyboard from real frame embeddings, aligner-like features, and the
    latent at the first sampler step (pure noise)."""
    from vem.runtime.storyboard import resample_to_latent, segment_storyboards, storyboard_mask
    from vem.runtime.tags import TAG_VOCABULARY
    from vem.runtime.text import HashedTextEncoder

    rng = np.random.default_rng(seed)
    encoder = HashedTextEncoder(config.condition.text_dim)
    cuts = np.linspace(0.0, seconds, storyboards + 1)[1:-1]
    spans = segment_storyboards(cuts, seconds, min_s=0.1, max_storyboards=storyboards)
    frames = config.latent_frames(seconds)
    start = np.array([[sp.start_s for sp in spans]], dtype=np.float32)
    duration = np.array([[sp.duration_s for sp in spans]], dtype=np.float32)
    per_frame = np.asarray(frame_embeddings, dtype=np.float32)
    times = (np.arange(len(per_frame)) + 0.5) / config.video.fps
    story_visual = np.stack([
        per_frame[(times >= sp.start_s) & (times < sp.end_s)].mean(0)
        if np.any((times >= sp.start_s) & (times < sp.end_s)) else per_frame.mean(0)
        for sp in spans
    ])[None]
    video_features = np.abs(rng.standard_normal((1, max(1, int(seconds * config.video.fps)), config.aligner.feature_dim)))
    return {
        "latent": rng.standard_normal((1, config.vae.latent_channels, frames, config.latent_mel_bins)).astype(np.float32),
        "timestep": np.array([config.diffusion.num_train_steps - 1], dtype=np.float32),
        "caption": encoder.encode(CAPTIONS[seed % len(CAPTIONS)])[None],
        "tags": encoder.encode_tags(list(TAG_VOCABULARY[seed % 5 :: 9][:3]))[None],
        "story_text": encoder.encode_batch([STORY_TEXTS[i % len(STORY_TEXTS)] for i in range(len(spans))])[None],
        "story_visual": story_visual.astype(np.float32),
        "story_start_s": start,
        "story_duration_s": duration,
        "storyboard_mask": storyboard_mask(start, duration, frames, config.latent_frames_per_second),
        "aligner_features": resample_to_latent(video_features, frames, config.video.fps,
                                               config.latent_frames_per_second).astype(np.float32),
        "branch": np.array([1.0], dtype=np.float32),  # the conditional branch
        # A tempo grid through the storyboard cuts, as `vem.runtime.tempo` chooses one.
        **({"beat_grid": _grid(cuts, seconds, frames, config)[None]} if config.unet.beat_grid else {}),
    }


def _grid(cuts: np.ndarray, seconds: float, frames: int, config: VemConfig) -> np.ndarray:
    choice = choose_tempo(cuts, ("moderate",))
    return beat_grid(choice.beats(seconds), frames, config.latent_frames_per_second)
