"""A spectrogram PNG of the generated music with the video's cuts and the music's beats marked.

numpy + zlib only (no plotting library on the device, none added to the runtime): a log-mel image
in a perceptual colour ramp, drawn into a frame with a time axis in seconds (ticks every 1, 2, 5,
10, ... s so that a 95 s video gets as few labels as a 10 s one), a frequency axis in Hz (the
mel bands' centres), a legend, and the marks:

- a cut: a full-height line, green when a beat of the music lies within 70 ms of it (a hit, the
  report's ``hit_70ms``), red when none does (a miss), with a matching flag above the plot;
- a beat: a cyan tick in the dark lane under the spectrogram.

Text is drawn with a 5x7 bitmap font scaled 2x. `render_plot` returns the image together with
what it drew (`Plot`: tick labels, axis labels, legend entries with their positions), so a test
can check the structure without reading pixels back.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

HIT_TOLERANCE_S = 0.07
HIT = (0, 230, 80)
MISS = (255, 60, 60)
BEAT = (0, 220, 255)
INK = (235, 235, 235)
BACKGROUND = (24, 24, 28)
FONT_SCALE = 2

# Anchor colours of a dark-to-bright ramp (close to matplotlib's "magma").
_RAMP = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                  [245, 125, 21], [250, 193, 39], [252, 253, 191]], dtype=np.float64)

# 5x7 glyphs: 7 rows of 5 pixels ("#" = ink), rows separated by spaces.
_GLYPHS = {
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.", "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####", "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.", "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.", "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.", "9": ".###. #...# #...# .#### ....# ...#. .##..",
    "A": ".###. #...# #...# ##### #...# #...# #...#", "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.", "D": "###.. #..#. #...# #...# #...# #..#. ###..",
    "E": "##### #.... #.... ####. #.... #.... #####", "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####", "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.", "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#", "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#", "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.", "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#", "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.", "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.", "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.", "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..", "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    " ": "..... ..... ..... ..... ..... ..... .....", ".": "..... ..... ..... ..... ..... .##.. .##..",
    ",": "..... ..... ..... ..... .##.. ..#.. .#...", "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...", "-": "..... ..... ..... .###. ..... ..... .....",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....", "<": "...#. ..#.. .#... #.... .#... ..#.. ...#.",
    "=": "..... ..... ##### ..... ##### ..... .....", "/": "....# ...#. ...#. ..#.. .#... .#... #....",
}
GLYPH_W, GLYPH_H = 5, 7


def _glyph(char: str) -> np.ndarray:
    rows = _GLYPHS.get(char.upper(), _GLYPHS[" "]).split()
    return np.array([[c == "#" for c in row] for row in rows], dtype=bool)


def text_size(text: str, scale: int = FONT_SCALE) -> tuple[int, int]:
    """(width, height) in pixels of ``text`` in the bitmap font."""
    return (max(len(text) * (GLYPH_W + 1) - 1, 0) * scale, GLYPH_H * scale)


def draw_text(image: np.ndarray, text: str, x: int, y: int, colour=INK, scale: int = FONT_SCALE) -> None:
    """Draw ``text`` with its top-left corner at (x, y), clipped to the image."""
    height, width, _ = image.shape
    for i, char in enumerate(text):
        mask = np.kron(_glyph(char), np.ones((scale, scale), dtype=bool))
        left = x + i * (GLYPH_W + 1) * scale
        ys, xs = np.nonzero(mask)
        ys, xs = ys + y, xs + left
        keep = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
        image[ys[keep], xs[keep]] = colour


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


def time_step(duration_s: float, most: int = 12) -> float:
    """The tick spacing in seconds: the smallest of 1, 2, 5, 10, 15, 30, 60, ... giving at most
    ``most`` intervals (0.5 s and below for clips under 6 s)."""
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if duration_s / step <= most:
            return float(step)
    return 600.0 * np.ceil(duration_s / (600.0 * most))


def _seconds_label(t: float, step: float) -> str:
    return f"{t:.1f}" if step < 1 else f"{t:.0f}"


def _hz_label(hz: float) -> str:
    return f"{hz / 1000:g}K" if hz >= 1000 else f"{hz:g}"


@dataclass
class Plot:
    """The image and what was drawn on it (pixel positions in the image)."""

    image: np.ndarray  # uint8 RGB [H, W, 3]
    area: tuple[int, int, int, int]  # the spectrogram: left, top, width, height
    x_ticks: list[tuple[float, str, int]] = field(default_factory=list)  # (seconds, label, x)
    y_ticks: list[tuple[float, str, int]] = field(default_factory=list)  # (Hz, label, y)
    labels: dict[str, tuple[int, int]] = field(default_factory=dict)  # axis label text -> (x, y)
    legend: list[tuple[str, tuple[int, int, int], tuple[int, int]]] = field(default_factory=list)
    cuts: list[tuple[float, bool, int]] = field(default_factory=list)  # (seconds, hit, x)
    beats: list[tuple[float, int]] = field(default_factory=list)  # (seconds, x)


def render_plot(
    waveform: np.ndarray,
    sample_rate: int,
    cuts_s: Sequence[float],
    beats_s: Sequence[float],
    *,
    width: int = 1200,
    height: int = 256,
    hit_tolerance_s: float = HIT_TOLERANCE_S,
) -> Plot:
    """The spectrogram (``width`` x ``height`` pixels) inside its axes, legend and labels."""
    from .config import AudioConfig
    from .mel import _hz_to_mel, log_mel

    audio = AudioConfig(sample_rate=sample_rate)
    waveform = np.asarray(waveform, dtype=np.float32)
    duration = max(len(waveform) / sample_rate, 1e-6)
    # The project's one log-mel definition (the model's input space), shown over a 9-nat range
    # (about 80 dB of power) below its peak.
    mel = log_mel(waveform, audio)
    values = np.clip((mel - mel.max() + 9.0) / 9.0, 0.0, 1.0)[::-1]  # low frequencies at the bottom
    # Resample to width x height (nearest: crisp and dependency-free).
    cols = np.minimum((np.arange(width) * values.shape[1] / width).astype(int), values.shape[1] - 1)
    rows = np.minimum((np.arange(height) * values.shape[0] / height).astype(int), values.shape[0] - 1)
    spectrogram = colourise(values[rows][:, cols])

    line = GLYPH_H * FONT_SCALE
    left, top = 8 + text_size("8K")[0] + 10, line + 40  # frequency labels; title row and cut flags
    lane = 14  # the beat lane under the spectrogram
    total_w, total_h = left + width + 16, top + height + 2 + lane + 10 + line + 8 + line + 10
    image = np.empty((total_h, total_w, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    image[top:top + height, left:left + width] = spectrogram
    plot = Plot(image, (left, top, width, height))

    def column(t: float) -> int:
        return left + int(np.clip(round(t / duration * (width - 1)), 0, width - 1))

    # Frequency axis: a tick at each labelled frequency, at its mel band's row.
    n_mels = audio.n_mels
    mel_lo, mel_hi = float(_hz_to_mel(audio.f_min)), float(_hz_to_mel(audio.f_max))
    for hz in (250, 500, 1000, 2000, 4000, 8000):
        if not audio.f_min < hz <= audio.f_max:
            continue
        band = (float(_hz_to_mel(hz)) - mel_lo) / (mel_hi - mel_lo) * (n_mels + 1) - 1  # band centre index
        y = top + height - 1 - int(round((band + 0.5) / n_mels * (height - 1)))
        y = int(np.clip(y, top, top + height - 1))
        image[y, left - 6:left] = INK
        label = _hz_label(hz)
        draw_text(image, label, left - 8 - text_size(label)[0], y - line // 2)
        plot.y_ticks.append((float(hz), label, y))
    freq_label = "FREQUENCY (HZ)"
    draw_text(image, freq_label, 8, 8)
    plot.labels[freq_label] = (8, 8)

    # Time axis: ticks and labels in seconds, the axis label at the right end.
    step = time_step(duration)
    lane_top = top + height + 2
    image[lane_top:lane_top + lane, left:left + width] = (0, 0, 0)
    axis_y = lane_top + lane
    image[axis_y + 1, left:left + width] = INK
    for t in np.arange(0.0, duration + 1e-9, step):
        x = column(float(t))
        image[axis_y + 1:axis_y + 7, x] = INK
        label = _seconds_label(float(t), step)
        w = text_size(label)[0]
        draw_text(image, label, int(np.clip(x - w // 2, 0, total_w - w)), axis_y + 10)
        plot.x_ticks.append((float(t), label, x))
    time_label = "TIME (S)"
    tx, ty = left + width - text_size(time_label)[0], axis_y + 10 + line + 8
    draw_text(image, time_label, tx, ty)
    plot.labels[time_label] = (tx, ty)

    # Beats along the bottom, cuts full height with a flag above the plot.
    beats = np.asarray(beats_s, dtype=np.float64)
    # 2 px ticks, 1 px when beats lie closer than 6 px (a long video): a comb, never a solid bar.
    spacing = np.median(np.diff(beats)) / duration * width if beats.size > 1 else width
    tick = 2 if spacing >= 6 else 1
    for beat in beats:
        x = column(float(beat))
        image[lane_top + 2:lane_top + lane - 2, max(left, x - tick + 1):x + 1] = BEAT
        plot.beats.append((float(beat), x))
    for cut in cuts_s:
        x = column(float(cut))
        hit = bool(beats.size and np.min(np.abs(beats - cut)) <= hit_tolerance_s)
        colour = HIT if hit else MISS
        image[top:top + height, x] = colour
        image[top - 10:top, max(left, x - 2): x + 3] = colour
        plot.cuts.append((float(cut), hit, x))

    # Legend, in the title row: a swatch of each mark's colour and what it means.
    hits = sum(hit for _, hit, _ in plot.cuts)
    entries = [(f"CUT WITH A BEAT WITHIN {hit_tolerance_s * 1000:.0f} MS ({hits})", HIT),
               (f"CUT WITHOUT ({len(plot.cuts) - hits})", MISS), (f"BEAT ({len(plot.beats)})", BEAT)]
    x = 8 + text_size(freq_label)[0] + 60
    for text, colour in entries:
        image[8:8 + line, x:x + 4] = colour
        draw_text(image, text, x + 10, 8)
        plot.legend.append((text, colour, (x, 8)))
        x += 10 + text_size(text)[0] + 28
    return plot


def spectrogram_image(waveform: np.ndarray, sample_rate: int, cuts_s: Sequence[float], beats_s: Sequence[float],
                      **options) -> np.ndarray:
    """The plot's pixels (`render_plot`)."""
    return render_plot(waveform, sample_rate, cuts_s, beats_s, **options).image


def write_spectrogram_png(path: str, waveform: np.ndarray, sample_rate: int, cuts_s: Sequence[float],
                          beats_s: Sequence[float]) -> None:
    with open(path, "wb") as handle:
        handle.write(encode_png(spectrogram_image(waveform, sample_rate, cuts_s, beats_s)))
