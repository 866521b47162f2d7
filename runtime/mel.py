"""The project's one log-mel definition (numpy, torch-free).

AudioLDM 2's 16 kHz front end (docs/paper.md §5), fixed here so that training (the VAE's and the
vocoder's targets, `vem.training.mel.TorchLogMel` reproduces it in torch and a test compares the
two) and the metrics' mel distance measure the same thing:

1. Hann-windowed STFT, ``n_fft`` = ``win_length`` = 1024, hop 160, centred with reflect padding
   (frame k is centred on sample k * hop);
2. magnitude (not power) spectrum;
3. the Slaney mel filterbank (librosa's ``filters.mel`` with ``htk=False``, ``norm="slaney"``,
   written out here in numpy so that the runtime does not need librosa; a test checks that the
   two agree), 64 bands over 0..8000 Hz;
4. natural log after clamping to 1e-5 (HiFi-GAN's ``dynamic_range_compression``).

Length convention: a waveform of ``n`` samples gives ``n // hop`` frames (the last, partial hop
is dropped), so the vocoder, which makes ``hop`` samples per frame, maps the mel of ``n`` samples
back to ``(n // hop) * hop`` samples.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .config import AudioConfig

LOG_CLAMP = 1e-5


# Slaney's mel scale (the Auditory Toolbox's, librosa's default).
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / _F_SP
    log_part = hz >= _MIN_LOG_HZ
    mel = np.where(log_part, _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP, mel)
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL)), _F_SP * mel)


@lru_cache(maxsize=8)
def slaney_mel_basis(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """float32 [n_mels, n_fft // 2 + 1], read-only: triangles equally spaced on Slaney's mel scale,
    each scaled to unit area over Hz (librosa's ``filters.mel(..., htk=False, norm="slaney")``,
    computed the same way, so the two are bit-identical)."""
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:n_mels] / fdiff[:n_mels, None]
    upper = ramps[2:] / fdiff[1:, None]
    # Rounded to float32 before the area normalisation, as librosa does (bit-identical bases).
    basis = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    basis *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    basis.setflags(write=False)
    return basis


def mel_filterbank(audio: AudioConfig | None = None) -> np.ndarray:
    """float32 [n_mels, n_fft // 2 + 1]: the filterbank of step 3 (read-only)."""
    audio = audio or AudioConfig()
    return slaney_mel_basis(audio.sample_rate, audio.n_fft, audio.n_mels, float(audio.f_min), float(audio.f_max))


def num_mel_frames(num_samples: int, audio: AudioConfig | None = None) -> int:
    audio = audio or AudioConfig()
    return int(num_samples) // audio.hop_length


def log_mel(waveform: np.ndarray, audio: AudioConfig | None = None) -> np.ndarray:
    """Mono waveform [n] (float, nominally in [-1, 1], at ``audio.sample_rate``) -> float32 log-mel
    [n_mels, n // hop]. Raises ValueError for a non-1-D or too-short input."""
    audio = audio or AudioConfig()
    wave = np.asarray(waveform, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"log_mel needs a mono waveform [samples], got shape {wave.shape}")
    frames = num_mel_frames(wave.shape[0], audio)
    if frames < 1:
        raise ValueError(f"waveform too short for one mel frame: {wave.shape[0]} samples < hop {audio.hop_length}")
    if audio.win_length != audio.n_fft:
        raise ValueError("log_mel assumes win_length == n_fft (the AudioLDM 2 setting)")
    half = audio.n_fft // 2
    # Reflect padding needs more samples than half a window; pad the remainder with zeros first.
    if wave.shape[0] <= half:
        wave = np.pad(wave, (0, half + 1 - wave.shape[0]))
    padded = np.pad(wave, (half, half), mode="reflect")
    starts = np.arange(frames) * audio.hop_length
    window = np.hanning(audio.n_fft + 1)[:-1].astype(np.float32)  # periodic Hann, as torch.hann_window
    index = starts[:, None] + np.arange(audio.n_fft)[None, :]
    spectrum = np.abs(np.fft.rfft(padded[index] * window, axis=1)).astype(np.float32)  # [frames, bins]
    mel = mel_filterbank(audio) @ spectrum.T  # [n_mels, frames]
    return np.log(np.maximum(mel, LOG_CLAMP)).astype(np.float32)


def mel_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two log-mels [n_mels, T] over their common length."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"need two log-mels [n_mels, T] with the same n_mels, got {a.shape} and {b.shape}")
    frames = min(a.shape[1], b.shape[1])
    if frames < 1:
        raise ValueError("empty log-mel")
    return float(np.mean(np.abs(a[:, :frames] - b[:, :frames])))
