"""Loudness (BS.1770), fades, length fitting and atomic WAV/FLAC writing."""

from __future__ import annotations

import os
import subprocess
import sys
import wave

import numpy as np
import pytest

from vem.runtime import audio
from vem.runtime.errors import EXIT_OUTPUT, OutputError, UsageError

RATE = 16000


def tone(freq=997.0, seconds=2.0, amplitude=0.5, rate=RATE):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def iir_direct_form(b, a, x):
    """Reference biquad, sample by sample (what a textbook implementation does)."""
    y = np.zeros_like(x)
    x1 = x2 = y1 = y2 = 0.0
    for i, value in enumerate(x):
        out = b[0] * value + b[1] * x1 + b[2] * x2 - a[1] * y1 - a[2] * y2
        x2, x1, y2, y1 = x1, value, y1, out
        y[i] = out
    return y


def test_k_weighting_matches_the_bs1770_table_at_48k():
    (shelf_b, shelf_a), (hp_b, hp_a) = audio.k_weighting_coefficients(48000)
    np.testing.assert_allclose(shelf_b, [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-9)
    np.testing.assert_allclose(shelf_a, [1.0, -1.69065929318241, 0.73248077421585], atol=1e-9)
    np.testing.assert_allclose(hp_b, [1.0, -2.0, 1.0])
    np.testing.assert_allclose(hp_a, [1.0, -1.99004745483398, 0.99007225036621], atol=1e-9)


def test_fft_k_weighting_equals_the_recursive_filter():
    x = np.random.default_rng(0).standard_normal(6000) * 0.1
    expected = x
    for b, a in audio.k_weighting_coefficients(RATE):
        expected = iir_direct_form(b, a, expected)
    np.testing.assert_allclose(audio.k_weight(x, RATE)[0], expected, atol=1e-9)


def test_full_scale_997hz_sine_reads_minus_3_lufs():
    # BS.1770: a 0 dBFS 997 Hz sine in one channel measures -3.01 LKFS.
    assert audio.integrated_loudness(tone(amplitude=1.0, rate=48000, seconds=3), 48000) == pytest.approx(-3.01, abs=0.02)


def test_gating_ignores_silence():
    loud = tone(amplitude=0.3, seconds=2.0)
    with_silence = np.concatenate([loud, np.zeros(3 * RATE, np.float32)])
    gated = audio.integrated_loudness(with_silence, RATE)
    # Only the few 400 ms blocks that straddle the end of the tone differ from the tone alone...
    assert gated == pytest.approx(audio.integrated_loudness(loud, RATE), abs=0.5)
    # ...whereas averaging over all 5 s would read 10 log10(2/5) = -4 dB lower.
    ungated = -0.691 + 10 * np.log10(np.mean(audio.k_weight(with_silence, RATE) ** 2))
    assert gated - ungated > 3.5
    assert audio.integrated_loudness(np.zeros(RATE, np.float32), RATE) == -np.inf


def test_normalize_reaches_target_and_respects_peak():
    quiet = tone(amplitude=0.01)
    normalized = audio.normalize_loudness(quiet, RATE, target_lufs=-16.0)
    assert normalized.dtype == np.float32 and normalized.shape == quiet.shape
    assert audio.integrated_loudness(normalized, RATE) == pytest.approx(-16.0, abs=0.05)

    # Sparse clicks: reaching -16 LUFS would push the peaks far above -1 dBFS.
    clicks = np.zeros(2 * RATE, np.float32)
    clicks[:: RATE // 4] = 0.5
    limited = audio.normalize_loudness(clicks, RATE, target_lufs=-16.0, peak_dbfs=-1.0)
    assert np.abs(limited).max() == pytest.approx(10 ** (-1 / 20), rel=1e-4)
    assert audio.integrated_loudness(limited, RATE) < -16.5

    silence = np.zeros(RATE, np.float32)
    np.testing.assert_array_equal(audio.normalize_loudness(silence, RATE), silence)


def test_normalize_keeps_stereo_shape():
    stereo = np.stack([tone(amplitude=0.05), tone(freq=500, amplitude=0.02)])
    out = audio.normalize_loudness(stereo, RATE)
    assert out.shape == stereo.shape
    assert audio.integrated_loudness(out, RATE) == pytest.approx(-16.0, abs=0.05)


def test_fades_and_fit_duration():
    ones = np.ones(RATE, np.float32)
    faded = audio.apply_fades(ones, RATE, fade_in_s=0.1, fade_out_s=0.25)
    assert faded[0] < 1e-3 and faded[-1] < 1e-3
    np.testing.assert_array_equal(faded[1600 : RATE - 4000], 1.0)  # untouched between the fades
    assert np.all(np.diff(faded[:1600]) >= 0) and np.all(np.diff(faded[-4000:]) <= 0)

    assert audio.fit_duration(ones, RATE, 0.5).shape == (8000,)
    padded = audio.fit_duration(ones, RATE, 1.5)
    assert padded.shape == (24000,) and np.all(padded[RATE:] == 0) and np.all(padded[:RATE] == 1)
    assert audio.fit_duration(np.ones((2, 100), np.float32), 100, 2.0).shape == (2, 200)
    with pytest.raises(ValueError, match="samples, channels"):
        audio.fit_duration(np.ones((100, 2), np.float32), 100, 1.0)


@pytest.mark.parametrize("ext", [".wav", ".flac"])
@pytest.mark.parametrize("channels", [1, 2])
def test_write_audio_round_trip(tmp_path, ext, channels):
    wave_in = tone(seconds=0.5) if channels == 1 else np.stack([tone(seconds=0.5), -tone(seconds=0.5, freq=300)])
    path = tmp_path / f"music{ext}"
    audio.write_audio(path, wave_in, RATE)
    back, rate = audio.read_audio(path)
    assert rate == RATE and back.shape == (channels, wave_in.shape[-1])
    # 16-bit PCM, lossless container: the decoded samples are exactly the written integers.
    np.testing.assert_array_equal(np.round(back * 32768).astype(np.int16), audio.to_pcm16(wave_in))
    if ext == ".wav":
        with wave.open(str(path)) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (channels, 2, RATE)
    assert [p for p in os.listdir(tmp_path) if "partial" in p] == []


def test_read_audio_mono_at_a_rate_is_what_the_beat_tracker_reads(tmp_path):
    """One reader: beats.load_audio is read_audio's mono mix (the channels' mean) at the analysis rate."""
    from vem.runtime.beats import load_audio

    left, right = tone(seconds=0.5), -0.5 * tone(seconds=0.5, freq=300)
    path = tmp_path / "stereo.flac"
    audio.write_audio(path, np.stack([left, right]), RATE)
    both, _ = audio.read_audio(path)
    mono, rate = audio.read_audio(path, mono=True)
    assert rate == RATE and mono.shape == (left.shape[0],)
    np.testing.assert_allclose(mono, both.mean(axis=0), atol=1e-7)
    resampled, rate = audio.read_audio(path, mono=True, sample_rate=22050)
    assert rate == 22050 and abs(resampled.shape[0] - round(left.shape[0] * 22050 / RATE)) <= 1
    np.testing.assert_array_equal(load_audio(path, 22050), resampled)


def test_write_audio_never_overwrites_without_force(tmp_path):
    path = tmp_path / "music.wav"
    path.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists") as caught:
        audio.write_audio(path, tone(seconds=0.1), RATE)
    assert caught.value.exit_code == EXIT_OUTPUT and "--force" in caught.value.hint
    assert path.read_bytes() == b"precious"
    audio.write_audio(path, tone(seconds=0.1), RATE, force=True)
    assert audio.read_audio(path)[0].shape == (1, 1600)


def test_write_audio_refuses_bad_targets(tmp_path):
    with pytest.raises(UsageError, match="cannot write audio as '.mp3'") as caught:
        audio.write_audio(tmp_path / "music.mp3", tone(seconds=0.1), RATE)
    assert caught.value.hint == "use .wav or .flac" and caught.value.exit_code == 2
    with pytest.raises(OutputError, match="does not exist"):
        audio.write_audio(tmp_path / "no" / "such" / "music.wav", tone(seconds=0.1), RATE)
    (tmp_path / "folder.wav").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        audio.write_audio(tmp_path / "folder.wav", tone(seconds=0.1), RATE, force=True)
    with pytest.raises(ValueError, match="NaN"):
        audio.write_audio(tmp_path / "nan.wav", np.full(10, np.nan, np.float32), RATE)
    assert sorted(os.listdir(tmp_path)) == ["folder.wav"]


def test_failed_write_leaves_nothing_behind(tmp_path):
    # FLAC here takes mono or stereo only: a 3-channel waveform fails inside the atomic write.
    with pytest.raises(ValueError, match="mono or stereo"):
        audio.write_audio(tmp_path / "music.flac", np.zeros((3, 100), np.float32), RATE)
    assert os.listdir(tmp_path) == []


FILE_SIZE_LIMIT_SCRIPT = """
import resource, signal, sys
import numpy as np
from vem.runtime import audio
from vem.runtime.errors import OutputError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
try:
    audio.write_audio(sys.argv[1], np.zeros(16000 * 5, np.float32), 16000, force=True)
except OutputError as error:
    print(error.exit_code, error.message)
"""


def test_disk_full_keeps_the_old_file_and_no_partial(tmp_path):
    # A real write failure: the process may not write files larger than 20 kB (RLIMIT_FSIZE),
    # so writing 5 s of 16 kHz PCM (160 kB) fails half way, as on a full disk.
    path = tmp_path / "music.wav"
    path.write_bytes(b"the previous take")
    result = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMIT_SCRIPT, str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("5 ") and "cannot be written" in result.stdout, result.stdout
    assert path.read_bytes() == b"the previous take"
    assert os.listdir(tmp_path) == ["music.wav"]
