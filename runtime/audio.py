"""Audio post-processing and audio files: loudness, fades, length, WAV/FLAC writing and reading.

Stage 5-6 of the runtime (docs/architecture.md): the vocoder's waveform is brought to a standard loudness,
faded, fitted to the video's length and written atomically.

Waveforms are float arrays in [-1, 1], shape [samples] (mono) or [channels, samples].

Loudness: `integrated_loudness` is ITU-R BS.1770-4 integrated loudness (K-weighting, 400 ms
blocks with 75 % overlap, absolute gate at -70 LUFS, relative gate at -10 LU), computed in
numpy. Two simplifications, both documented here: the K-weighting filter is applied by FFT (the
IIR's frequency response on a zero-padded grid, exact up to the filter tail beyond the padding),
and a signal shorter than one 400 ms block is measured as a single block. `normalize_loudness`
applies one gain to reach the target (default -16 LUFS, the usual level for music on phones and
the web) and then, if the sample peak would exceed ``peak_dbfs`` (default -1 dBFS), lowers the
gain until it does not: a plain peak-safe gain, not a limiter or compressor, so very peaky music
ends up quieter than the target rather than distorted. Sample peak, not true peak.
"""

from __future__ import annotations

import math
import os
import wave
from fractions import Fraction

import av
import numpy as np

from .atomic import atomic_output
from .errors import InputError, OutputError, UsageError

DEFAULT_TARGET_LUFS = -16.0
DEFAULT_PEAK_DBFS = -1.0
SILENCE_LUFS = -70.0  # BS.1770's absolute gate: below this a signal counts as silence

# BS.1770 K-weighting, stage 1 (high shelf, models the head) and stage 2 (RLB high-pass), given
# by their analogue parameters so that the digital filter can be derived for any sample rate;
# at 48 kHz they reproduce the coefficients tabulated in the recommendation.
_SHELF_F0 = 1681.974450955533
_SHELF_GAIN_DB = 3.999843853973347
_SHELF_Q = 0.7071752369554196
_HIGHPASS_F0 = 38.13547087602444
_HIGHPASS_Q = 0.5003270373238773


def _as_channels(waveform: np.ndarray) -> np.ndarray:
    """View a waveform as [channels, samples] float64 (mono input becomes [1, n])."""
    array = np.asarray(waveform)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"waveform must be [samples] or [channels, samples], got shape {array.shape}")
    if array.shape[0] > 8 and array.shape[1] <= 8:
        raise ValueError(f"waveform shape {array.shape} looks like [samples, channels]; pass [channels, samples]")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"waveform must be floating point in [-1, 1], got {array.dtype}")
    return array.astype(np.float64, copy=False)


def _restore_shape(channels: np.ndarray, like: np.ndarray) -> np.ndarray:
    out = channels[0] if np.asarray(like).ndim == 1 else channels
    return out.astype(np.float32)


def k_weighting_coefficients(sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two K-weighting biquads (b, a) at ``sample_rate`` (bilinear transform, pre-warped)."""
    k = math.tan(math.pi * _SHELF_F0 / sample_rate)
    vh = 10.0 ** (_SHELF_GAIN_DB / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf_b = np.array([(vh + vb * k / _SHELF_Q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / _SHELF_Q + k * k) / a0])
    shelf_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _SHELF_Q + k * k) / a0])
    k = math.tan(math.pi * _HIGHPASS_F0 / sample_rate)
    a0 = 1.0 + k / _HIGHPASS_Q + k * k
    highpass_b = np.array([1.0, -2.0, 1.0])
    highpass_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _HIGHPASS_Q + k * k) / a0])
    return [(shelf_b, shelf_a), (highpass_b, highpass_a)]


def k_weight(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """Apply BS.1770's K-weighting to [channels, samples] by FFT, returning the same shape (float64)."""
    channels = _as_channels(waveform)
    n = channels.shape[1]
    if n == 0:
        return channels.copy()
    # Pad by one second: the filters' impulse responses have decayed by far more than 100 dB by
    # then, so the circular FFT product equals the causal IIR output on the first n samples.
    size = 1 << int(math.ceil(math.log2(n + sample_rate)))
    z_inv = np.exp(-2j * np.pi * np.fft.rfftfreq(size))
    response = np.ones_like(z_inv)
    for b, a in k_weighting_coefficients(sample_rate):
        response *= (b[0] + b[1] * z_inv + b[2] * z_inv**2) / (a[0] + a[1] * z_inv + a[2] * z_inv**2)
    spectrum = np.fft.rfft(channels, n=size, axis=1)
    return np.fft.irfft(spectrum * response, n=size, axis=1)[:, :n]


def integrated_loudness(waveform: np.ndarray, sample_rate: int) -> float:
    """BS.1770-4 integrated loudness in LUFS (all channels weighted 1); -inf for silence."""
    weighted = k_weight(waveform, sample_rate)
    n = weighted.shape[1]
    if n == 0:
        return -math.inf
    block = int(round(0.4 * sample_rate))
    hop = int(round(0.1 * sample_rate))
    power = weighted**2
    if n < block:
        energies = power.mean(axis=1, keepdims=True).sum(axis=0)
    else:
        # Mean square per 400 ms block for every 100 ms step, via a cumulative sum.
        cumulative = np.concatenate([np.zeros((power.shape[0], 1)), np.cumsum(power, axis=1)], axis=1)
        starts = np.arange(0, n - block + 1, hop)
        energies = ((cumulative[:, starts + block] - cumulative[:, starts]) / block).sum(axis=0)
    with np.errstate(divide="ignore"):
        loudness = -0.691 + 10.0 * np.log10(energies)
    gated = energies[loudness > SILENCE_LUFS]
    if gated.size == 0:
        return -math.inf
    relative_gate = -0.691 + 10.0 * math.log10(gated.mean()) - 10.0
    gated = energies[(loudness > SILENCE_LUFS) & (loudness > relative_gate)]
    return float(-0.691 + 10.0 * math.log10(gated.mean()))


def normalize_loudness(
    waveform: np.ndarray,
    sample_rate: int,
    target_lufs: float = DEFAULT_TARGET_LUFS,
    peak_dbfs: float = DEFAULT_PEAK_DBFS,
    max_gain_db: float = 30.0,
) -> np.ndarray:
    """Scale to ``target_lufs`` integrated loudness, then down if the sample peak exceeds ``peak_dbfs``.

    Silence (below -70 LUFS) is returned unchanged; the gain is capped at ``max_gain_db`` so that
    near-silent output is not blown up into loud noise. See the module docstring for what is measured.
    """
    channels = _as_channels(waveform)
    loudness = integrated_loudness(channels, sample_rate)
    if not math.isfinite(loudness):
        return _restore_shape(channels, waveform)
    gain_db = min(target_lufs - loudness, max_gain_db)
    gain = 10.0 ** (gain_db / 20.0)
    peak = float(np.max(np.abs(channels))) * gain
    peak_limit = 10.0 ** (peak_dbfs / 20.0)
    if peak > peak_limit:
        gain *= peak_limit / peak
    return _restore_shape(channels * gain, waveform)


def apply_fades(waveform: np.ndarray, sample_rate: int, fade_in_s: float = 0.0, fade_out_s: float = 0.0) -> np.ndarray:
    """Raised-cosine fade in and fade out (each at most half the signal); returns a new array."""
    channels = _as_channels(waveform).copy()
    n = channels.shape[1]
    for seconds, at_end in ((fade_in_s, False), (fade_out_s, True)):
        if seconds < 0:
            raise ValueError(f"fade length must be >= 0 seconds, got {seconds}")
        length = min(int(round(seconds * sample_rate)), n // 2)
        if length <= 0:
            continue
        # sin^2 from 0 to 1: smooth at both ends, no click where the fade starts.
        ramp = np.sin(0.5 * np.pi * (np.arange(length) + 0.5) / length) ** 2
        if at_end:
            channels[:, n - length :] *= ramp[::-1]
        else:
            channels[:, :length] *= ramp
    return _restore_shape(channels, waveform)


def fit_duration(waveform: np.ndarray, sample_rate: int, duration_s: float) -> np.ndarray:
    """Trim, or pad with silence at the end, to exactly round(duration_s * sample_rate) samples."""
    if not (math.isfinite(duration_s) and duration_s >= 0):
        raise ValueError(f"duration must be a non-negative number of seconds, got {duration_s}")
    channels = _as_channels(waveform)
    target = int(round(duration_s * sample_rate))
    if channels.shape[1] >= target:
        fitted = channels[:, :target]
    else:
        fitted = np.concatenate([channels, np.zeros((channels.shape[0], target - channels.shape[1]))], axis=1)
    return _restore_shape(fitted, waveform)


def to_pcm16(waveform: np.ndarray) -> np.ndarray:
    """[channels, samples] float -> interleaved-ready int16 [channels, samples] (clipped, rounded)."""
    channels = _as_channels(waveform)
    if not np.all(np.isfinite(channels)):
        raise ValueError("waveform contains NaN or infinite samples")
    return np.round(np.clip(channels, -1.0, 1.0) * 32767.0).astype(np.int16)


AUDIO_FORMATS = {".wav": "wav", ".flac": "flac"}


def write_audio(path: str | os.PathLike, waveform: np.ndarray, sample_rate: int, *, force: bool = False) -> str:
    """Write 16-bit PCM ``.wav`` (stdlib wave) or ``.flac`` (PyAV), atomically.

    The file appears complete or not at all; an existing file is replaced only with ``force``.
    Raises UsageError for another extension, OutputError when it cannot be written.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in AUDIO_FORMATS:
        raise UsageError(f"{path}: cannot write audio as '{ext or 'no extension'}'", hint="use .wav or .flac")
    if not (isinstance(sample_rate, (int, np.integer)) and 1000 <= int(sample_rate) <= 384000):
        raise ValueError(f"sample_rate must be an integer in Hz, got {sample_rate!r}")
    pcm = to_pcm16(waveform)
    with atomic_output(path, force=force) as temp:
        if ext == ".wav":
            _write_wav(temp, pcm, int(sample_rate))
        else:
            _write_flac(temp, pcm, int(sample_rate))
    return path


def _write_wav(path: str, pcm: np.ndarray, sample_rate: int) -> None:
    with wave.open(path, "wb") as out:
        out.setnchannels(pcm.shape[0])
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(np.ascontiguousarray(pcm.T).astype("<i2").tobytes())


def _layout(channels: int) -> str:
    if channels == 1:
        return "mono"
    if channels == 2:
        return "stereo"
    raise ValueError(f"only mono or stereo audio can be written, got {channels} channels")


def _write_flac(path: str, pcm: np.ndarray, sample_rate: int) -> None:
    try:
        with av.open(path, "w", format="flac") as container:
            stream = container.add_stream("flac", rate=sample_rate, layout=_layout(pcm.shape[0]))
            stream.format = "s16"
            chunk = 4096
            interleaved = np.ascontiguousarray(pcm.T)
            for start in range(0, interleaved.shape[0], chunk):
                piece = interleaved[start : start + chunk].reshape(1, -1)  # packed s16: [1, n * channels]
                frame = av.AudioFrame.from_ndarray(piece, format="s16", layout=_layout(pcm.shape[0]))
                frame.sample_rate = sample_rate
                frame.pts = start
                frame.time_base = Fraction(1, sample_rate)
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    except av.FFmpegError as error:
        raise OutputError(f"cannot encode FLAC ({getattr(error, 'strerror', error)})") from error


def read_audio(path: str | os.PathLike, mono: bool = False, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of any file PyAV reads (wav, flac, mp3, an mp4's track):
    (float32 [channels, samples], rate). The project's one audio reader.

    With ``mono`` the channels are averaged and a [samples] array is returned; with
    ``sample_rate`` FFmpeg's resampler converts to that rate.
    Raises InputError (a ValueError) for a missing file, one without audio or one PyAV cannot read.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise InputError(f"{path}: has no audio stream")
            stream = container.streams.audio[0]
            rate = int(sample_rate or stream.rate)
            # Float planar at the wanted rate, the stream's layout: [channels, samples] whatever the codec.
            resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=rate)
            pieces = []
            for frame in container.decode(stream):
                pieces.extend(f.to_ndarray() for f in resampler.resample(frame))
            pieces.extend(f.to_ndarray() for f in resampler.resample(None))
    except av.FFmpegError as error:
        raise InputError(f"{path}: not a readable audio file ({getattr(error, 'strerror', error)})") from error
    if not pieces:
        raise InputError(f"{path}: its audio stream has no samples")
    audio = np.concatenate(pieces, axis=1).astype(np.float32, copy=False)
    return (audio.mean(axis=0) if mono else audio), rate
