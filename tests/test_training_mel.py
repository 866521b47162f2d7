"""The torch log-mel used in training equals the runtime's numpy definition (vem.runtime.mel)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vem.runtime.config import AudioConfig  # noqa: E402
from vem.runtime.mel import log_mel, mel_distance, num_mel_frames  # noqa: E402
from vem.training.mel import TorchLogMel  # noqa: E402


def _music_like(seconds: float = 1.3, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1375.5 * t) * (t % 0.5 < 0.1)
    return (tone + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)


@pytest.mark.parametrize("samples", [20800, 20801, 20959, 600])
def test_torch_log_mel_equals_numpy_definition(samples):
    wave = _music_like(2.0)[:samples]
    reference = log_mel(wave)
    assert reference.shape == (64, samples // 160) == (64, num_mel_frames(samples))
    torch_mel = TorchLogMel()(torch.from_numpy(wave)).numpy()
    assert torch_mel.shape == reference.shape
    assert np.max(np.abs(torch_mel - reference)) < 2e-3
    # Batched input gives the same frames.
    batched = TorchLogMel()(torch.from_numpy(np.stack([wave, wave]))).numpy()
    np.testing.assert_allclose(batched[1], torch_mel, atol=1e-5)


def test_log_mel_finds_a_tone_in_the_right_band_and_floors_silence():
    rate = 16000
    t = np.arange(rate) / rate
    mel = log_mel((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    assert mel.shape == (64, 100)
    import librosa

    centres = librosa.mel_frequencies(n_mels=66, fmin=0.0, fmax=8000.0)[1:-1]
    assert abs(centres[int(np.argmax(mel[:, 50]))] - 1000.0) < 150.0
    silent = log_mel(np.zeros(rate, dtype=np.float32))
    assert np.allclose(silent, np.log(1e-5))


def test_log_mel_rejects_bad_input_and_mel_distance_is_symmetric():
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, 16000), dtype=np.float32))
    with pytest.raises(ValueError, match="too short"):
        log_mel(np.zeros(100, dtype=np.float32))
    a = log_mel(_music_like(1.0))
    b = log_mel(_music_like(1.2))
    assert mel_distance(a, a) == 0.0
    assert mel_distance(a, b + 1.0) == pytest.approx(mel_distance(b + 1.0, a))
    assert mel_distance(a, a + 0.5) == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ValueError):
        mel_distance(a, a[:10])
    assert AudioConfig().hop_length == 160
