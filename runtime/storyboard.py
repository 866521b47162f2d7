"""Storyboard level of the parse (docs/paper.md §1) and the condition geometry, in numpy.

- `segment_storyboards`: frame-level cut times -> shots, merged and split to duration bounds so
  that every storyboard is long enough to carry a musical phrase and there are at most
  `max_storyboards` of them (the denoiser's storyboard axis has a maximum).
- `storyboard_mask` (Eq. 7) and `resample_to_latent` mirror `vem.model.attention.storyboard_mask`
  and `vem.model.aligner.resample_to_latent` exactly (tests compare them); the runtime builds the
  denoiser's inputs with these, the torch reference with those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Span:
    start_s: float
    duration_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


def segment_storyboards(
    transitions_s: Sequence[float],
    duration_s: float,
    *,
    min_s: float = 0.75,
    max_s: float = 12.0,
    max_storyboards: int = 32,
) -> list[Span]:
    """Cut times -> contiguous storyboards covering [0, duration_s).

    Rules, in order: cuts outside (0, duration) or closer than 1 ms to another are dropped; a shot
    shorter than `min_s` joins its shorter neighbour (a too-short video stays one storyboard);
    a shot longer than `max_s` is split into equal parts; while there are more than
    `max_storyboards`, the adjacent pair with the shortest combined length is merged."""
    if not duration_s > 0 or not np.isfinite(duration_s):
        raise ValueError(f"duration_s must be a positive number, got {duration_s}")
    if not 0 < min_s <= max_s:
        raise ValueError(f"need 0 < min_s <= max_s, got {min_s}, {max_s}")
    if max_storyboards < 1:
        raise ValueError(f"max_storyboards must be >= 1, got {max_storyboards}")
    cuts = sorted(float(t) for t in transitions_s if np.isfinite(t) and 1e-3 < t < duration_s - 1e-3)
    bounds = [0.0]
    for cut in cuts:
        if cut - bounds[-1] > 1e-3:
            bounds.append(cut)
    bounds.append(float(duration_s))

    # Merge short shots into their shorter neighbour.
    while len(bounds) > 2:
        lengths = np.diff(bounds)
        shortest = int(np.argmin(lengths))
        if lengths[shortest] >= min_s:
            break
        if shortest == 0:
            del bounds[1]
        elif shortest == len(lengths) - 1:
            del bounds[-2]
        elif lengths[shortest - 1] <= lengths[shortest + 1]:
            del bounds[shortest]
        else:
            del bounds[shortest + 1]

    # Split long shots into equal parts.
    split = [bounds[0]]
    for start, end in zip(bounds[:-1], bounds[1:]):
        parts = max(1, int(np.ceil((end - start) / max_s - 1e-9)))
        split.extend(start + (end - start) * k / parts for k in range(1, parts + 1))
    bounds = split

    # Respect the storyboard axis' maximum.
    while len(bounds) - 1 > max_storyboards:
        lengths = np.diff(bounds)
        pair = int(np.argmin(lengths[:-1] + lengths[1:]))
        del bounds[pair + 1]
    return [Span(start, end - start) for start, end in zip(bounds[:-1], bounds[1:])]


def storyboard_mask(
    start_s: np.ndarray, duration_s: np.ndarray, num_latent_frames: int, latent_fps: float
) -> np.ndarray:
    """Eq. 7: [B, N] starts/durations in seconds -> float32 [B, num_latent_frames, N], 1 where the
    centre time of latent frame t lies in [start, start + duration)."""
    start = np.asarray(start_s, dtype=np.float64)
    duration = np.asarray(duration_s, dtype=np.float64)
    if start.shape != duration.shape or start.ndim != 2:
        raise ValueError(f"start_s and duration_s must both be [B, N]; got {start.shape} and {duration.shape}")
    if num_latent_frames < 1 or latent_fps <= 0:
        raise ValueError(f"need num_latent_frames >= 1 and latent_fps > 0, got {num_latent_frames}, {latent_fps}")
    times = ((np.arange(num_latent_frames, dtype=np.float64) + 0.5) / latent_fps).reshape(1, -1, 1)
    begin = start[:, None, :]
    end = begin + duration[:, None, :]
    return ((times >= begin) & (times < end)).astype(np.float32)


def resample_to_latent(
    features: np.ndarray, num_latent_frames: int, video_fps: float = 16.0, latent_fps: float = 25.0
) -> np.ndarray:
    """Per-frame features [B, T_video, D] -> [B, num_latent_frames, D], linear in time; frame k
    of either stream stands for its centre time (k + 0.5) / fps; edges repeat."""
    features = np.asarray(features)
    if features.ndim != 3:
        raise ValueError(f"features must be [B, T_video, D], got {features.shape}")
    num_video = features.shape[1]
    if num_video < 1 or num_latent_frames < 1:
        raise ValueError(f"need at least one video and one latent frame, got {num_video} and {num_latent_frames}")
    times = (np.arange(num_latent_frames, dtype=np.float64) + 0.5) / latent_fps
    position = np.clip(times * video_fps - 0.5, 0.0, num_video - 1)
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, num_video - 1)
    weight = (position - lower).astype(features.dtype).reshape(1, -1, 1)
    return features[:, lower] * (1.0 - weight) + features[:, upper] * weight


def frame_storyboard_index(frame_times_s: np.ndarray, spans: Sequence[Span]) -> np.ndarray:
    """For each frame time, the index of the storyboard containing it (-1 if none)."""
    times = np.asarray(frame_times_s, dtype=np.float64)
    index = np.full(times.shape, -1, dtype=np.int64)
    for i, span in enumerate(spans):
        index[(times >= span.start_s) & (times < span.end_s)] = i
    return index
