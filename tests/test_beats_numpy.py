"""The runtime's numpy beat tracker against librosa's and against the known beats of vem-synth's
music (the training generator renders each clip's music from a beat timeline, so the true beats
are known exactly).

Stated tolerance (checked on every clip below, 5 tempi x 2 seeds, 12 s each):

- against librosa's tracker (same algorithm, same settings): the refined tempo within 0.5 %, the
  same number of beats give or take one, and at least 95 % of the numpy tracker's beats within
  10 ms (one onset frame) of one of librosa's;
- against the known beats: at least 90 % of them found within 70 ms (MIREX's tolerance), and at
  least 90 % of the tracked beats within 70 ms of a true one, for both trackers alike.

`python tests/test_beats_numpy.py` prints the per-clip figures.
"""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from vem.runtime import beats
from vem.runtime.mel import slaney_mel_basis

TEMPI = (80, 100, 120, 140, 160)
SEEDS = (5, 11)
SECONDS = 12.0
RATE = 16000

needs_librosa = pytest.mark.skipif(not beats.librosa_available(), reason="librosa (extra 'eval') is not installed")


def synth_clip(seed: int, tempo: float, seconds: float = SECONDS):
    """Music of vem-synth's generator at a given tempo, and its true beat times."""
    from vem.training.synth.music import render_music
    from vem.training.synth.plan import plan_timeline
    from vem.training.synth.style import sample_style

    rng = np.random.default_rng([seed, int(tempo)])
    style = dataclasses.replace(sample_style(rng), tempo_bpm=float(tempo))
    timeline = plan_timeline(style, seconds, rng)
    return render_music(style, timeline, rng), np.asarray(timeline.beats_s), style.genre


def within(a, b, tolerance):
    """Share of the times in ``a`` with one of ``b`` within ``tolerance`` (0 when b is empty)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 1.0
    if b.size == 0:
        return 0.0
    return float(np.mean(np.abs(a[:, None] - b[None, :]).min(axis=1) <= tolerance + 1e-9))


def compare(seed: int, tempo: float) -> dict:
    import librosa

    audio, truth, genre = synth_clip(seed, tempo)
    ours = beats.track_beats(audio, RATE, "numpy")
    theirs = beats.track_beats(audio, RATE, "librosa")
    env = beats.onset_strength(audio)
    fps = RATE / beats.ONSET_HOP
    their_env = librosa.onset.onset_strength(y=audio, sr=RATE, hop_length=beats.ONSET_HOP)
    their_coarse = float(librosa.feature.tempo(onset_envelope=their_env, sr=RATE, hop_length=beats.ONSET_HOP)[0])
    return {
        "seed": seed, "tempo": tempo, "genre": genre,
        "bpm_numpy": beats.refine_tempo(env, fps, beats.estimate_tempo(env, fps)),
        "bpm_librosa": beats.refine_tempo(their_env, fps, their_coarse),
        "n_numpy": len(ours), "n_librosa": len(theirs), "n_true": len(truth),
        "numpy_in_librosa_10ms": within(ours, theirs, 0.010),
        "max_numpy_librosa_s": float(np.abs(ours[:, None] - theirs[None, :]).min(axis=1).max()) if len(ours) and len(theirs) else np.inf,
        "recall_numpy": within(truth, ours, 0.07), "precision_numpy": within(ours, truth, 0.07),
        "recall_librosa": within(truth, theirs, 0.07), "precision_librosa": within(theirs, truth, 0.07),
        "envelope_max_diff": float(np.abs(env - their_env).max() / max(their_env.max(), 1e-9)),
    }


@needs_librosa
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tempo", TEMPI)
def test_numpy_tracker_agrees_with_librosa_and_the_known_beats(seed, tempo):
    r = compare(seed, tempo)
    label = f"{r['genre']} at {tempo} BPM (seed {seed})"
    assert r["envelope_max_diff"] < 1e-4, label  # the onset envelopes are the same signal
    assert r["bpm_numpy"] == pytest.approx(r["bpm_librosa"], rel=0.005), label
    assert abs(r["n_numpy"] - r["n_librosa"]) <= 1, label
    assert r["numpy_in_librosa_10ms"] >= 0.95, label
    for tracker in ("numpy", "librosa"):
        assert r[f"recall_{tracker}"] >= 0.9, f"{label}: {tracker} found {r[f'recall_{tracker}']:.2f} of the beats"
        assert r[f"precision_{tracker}"] >= 0.9, f"{label}: {tracker} precision {r[f'precision_{tracker}']:.2f}"


def test_numpy_tracker_finds_a_click_track_without_librosa():
    """120 BPM clicks (first at 0.25 s): every click found within 10 ms, nothing else."""
    clicks = np.zeros(RATE * 8, dtype=np.float32)
    times = np.arange(0.25, 8.0, 0.5)
    for t in times:
        k = int(t * RATE)
        clicks[k:k + 80] = np.hanning(160)[80:]
    found = beats.track_beats(clicks, RATE)
    assert within(times[:-1], found, 0.010) == 1.0  # the last click may fall at the very end
    assert within(found, times, 0.010) == 1.0
    assert float(np.median(np.diff(found))) == pytest.approx(0.5, abs=0.01)


def test_numpy_tracker_on_silence_and_short_input():
    assert beats.track_beats(np.zeros(RATE * 5, dtype=np.float32), RATE).size == 0
    assert beats.track_beats(np.ones(RATE // 2, dtype=np.float32), RATE).size == 0


def test_numpy_tracker_resamples_other_rates_with_pyav():
    """The same clicks at 44.1 kHz give the same beats (to one onset frame) as at 16 kHz."""
    clicks = {}
    for rate in (16000, 44100):
        signal = np.zeros(rate * 6, dtype=np.float32)
        for t in np.arange(0.3, 6.0, 0.6):
            k = int(t * rate)
            attack = np.hanning(2 * (rate // 200))[rate // 200:]
            signal[k:k + attack.size] = attack
        clicks[rate] = beats.track_beats(signal, rate)
    assert len(clicks[16000]) >= 8
    assert within(clicks[16000], clicks[44100], 0.011) == 1.0


@needs_librosa
def test_mel_filterbank_is_librosas_bit_for_bit():
    import librosa

    for sr, n_fft, n_mels, fmin, fmax in [(16000, 1024, 64, 0.0, 8000.0), (16000, 2048, 128, 0.0, 8000.0),
                                          (22050, 2048, 128, 30.0, 11025.0), (44100, 512, 40, 100.0, 5000.0)]:
        ours = slaney_mel_basis(sr, n_fft, n_mels, fmin, fmax)
        theirs = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False, norm="slaney")
        assert ours.dtype == np.float32 and np.array_equal(ours, theirs), (sr, n_fft, n_mels)


def test_the_runtime_path_imports_no_heavy_package():
    """A fresh interpreter that loads the pipeline module, tracks beats and draws the plot's
    log-mel has not imported librosa, numba, llvmlite, scipy, scikit-learn or torch."""
    code = (
        "import sys, numpy as np\n"
        "import vem.runtime.pipeline, vem.runtime.run, vem.runtime.writer, vem.runtime.plot\n"
        "from vem.runtime.beats import track_beats\n"
        "from vem.runtime.plot import spectrogram_image\n"
        "t = np.arange(16000 * 4) / 16000\n"
        "y = (np.sin(2 * np.pi * 440 * t) * (np.mod(t, 0.5) < 0.05)).astype(np.float32)\n"
        "b = track_beats(y, 16000)\n"
        "spectrogram_image(y, 16000, [1.0], b)\n"
        "heavy = sorted(m for m in ('librosa', 'numba', 'llvmlite', 'scipy', 'sklearn', 'torch') if m in sys.modules)\n"
        "print(len(b), ','.join(heavy) or 'none')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    count, heavy = out.stdout.split()
    assert int(count) >= 6 and heavy == "none"


if __name__ == "__main__":  # the figures of the module docstring's comparison
    keys = ["tempo", "seed", "genre", "bpm_numpy", "bpm_librosa", "n_true", "n_numpy", "n_librosa",
            "numpy_in_librosa_10ms", "max_numpy_librosa_s", "recall_numpy", "recall_librosa",
            "precision_numpy", "precision_librosa", "envelope_max_diff"]
    print("\t".join(keys))
    for tempo in TEMPI:
        for seed in SEEDS:
            r = compare(seed, tempo)
            print("\t".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys))
