"""A spectrogram PNG of the generated music with the video's cuts and the music's beats marked.

numpy + zlib only (no plotting library on the device): log-mel image, a perceptual colour ramp,
white full-height lines at cuts, cyan ticks along the bottom at beats, a green tick on top of a
cut that has a beat within 70 ms (so alignment is visible at a glance).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import numpy as np

# Anchor colours of a dark-to-bright ramp (close to matplotlib's "magma").
_RAMP = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                  [245, 125, 21], [250, 193, 39], [252, 253, 191]], dtype=np.float64)


def colourise(values: np.ndarray) -> np.ndarray:
    """values in [0, 1], [H, W] -> uint8 RGB [H, W, 3]."""
    position = np.clip(values, 0.0, 1.0) * (len(_RAMP) - 1)
    lower = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    weight = (position - lower)[..., None]
    return (_RAMP[lower] * (1 - weight) + _RAMP[lower + 1] * weight).astype(np.uint8)


def encode_png(rgb: np.ndarray) -> bytes:
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def spectrogram_image(
    waveform: np.ndarray,
    sample_rate: int,
    cuts_s: Sequence[float],
    beats_s: Sequence[float],
    *,
    width: int = 1200,
    height: int = 256,
    hit_tolerance_s: float = 0.07,
) -> np.ndarray:
    from .config import AudioConfig
    from .mel import log_mel

    waveform = np.asarray(waveform, dtype=np.float32)
    duration = max(len(waveform) / sample_rate, 1e-6)
    # The project's one log-mel definition (the model's input space), shown over a 9-nat range
    # (about 80 dB of power) below its peak.
    mel = log_mel(waveform, AudioConfig(sample_rate=sample_rate))
    values = np.clip((mel - mel.max() + 9.0) / 9.0, 0.0, 1.0)[::-1]  # low frequencies at the bottom
    # Resample the image to width x height (nearest: keeps it crisp and dependency-free).
    cols = np.minimum((np.arange(width) * values.shape[1] / width).astype(int), values.shape[1] - 1)
    rows = np.minimum((np.arange(height) * values.shape[0] / height).astype(int), values.shape[0] - 1)
    image = colourise(values[rows][:, cols])

    def column(t: float) -> int:
        return int(np.clip(round(t / duration * (width - 1)), 0, width - 1))

    beats = np.asarray(beats_s, dtype=np.float64)
    for beat in beats:
        image[height - 14:, column(beat)] = (0, 220, 255)
    for cut in cuts_s:
        x = column(cut)
        image[:, x] = (255, 255, 255)
        hit = beats.size and np.min(np.abs(beats - cut)) <= hit_tolerance_s
        image[:10, max(0, x - 2): x + 3] = (0, 230, 80) if hit else (255, 60, 60)
    return image


def write_spectrogram_png(path: str, waveform: np.ndarray, sample_rate: int, cuts_s: Sequence[float],
                          beats_s: Sequence[float]) -> None:
    with open(path, "wb") as handle:
        handle.write(encode_png(spectrogram_image(waveform, sample_rate, cuts_s, beats_s)))
