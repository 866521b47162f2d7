"""Torch log-mel that equals `vem.runtime.mel.log_mel` (the project's one definition).

Used for the VAE's and vocoder's targets and for the vocoder's mel loss (differentiable). The
filterbank is the runtime's own (librosa Slaney), the STFT is `torch.stft` with a periodic Hann
window, centred with reflect padding; frames past ``n // hop`` are dropped as in the runtime.
tests/test_training_mel.py checks the two agree.
"""

from __future__ import annotations

import torch
from torch import nn

from vem.runtime.config import AudioConfig
from vem.runtime.mel import LOG_CLAMP, mel_filterbank


class TorchLogMel(nn.Module):
    """waveform [B, n] or [n] -> log-mel [B, n_mels, n // hop] (or [n_mels, n // hop])."""

    def __init__(self, audio: AudioConfig | None = None):
        super().__init__()
        self.audio = audio or AudioConfig()
        if self.audio.win_length != self.audio.n_fft:
            raise ValueError("TorchLogMel assumes win_length == n_fft (the AudioLDM 2 setting)")
        self.register_buffer("basis", torch.from_numpy(mel_filterbank(self.audio).copy()), persistent=False)
        self.register_buffer("window", torch.hann_window(self.audio.n_fft, periodic=True), persistent=False)

    def magnitude(self, waveform: torch.Tensor) -> torch.Tensor:
        squeeze = waveform.dim() == 1
        wave = waveform.unsqueeze(0) if squeeze else waveform
        frames = wave.shape[-1] // self.audio.hop_length
        if frames < 1:
            raise ValueError(f"waveform too short for one mel frame: {wave.shape[-1]} samples")
        half = self.audio.n_fft // 2
        if wave.shape[-1] <= half:
            wave = torch.nn.functional.pad(wave, (0, half + 1 - wave.shape[-1]))
        spec = torch.stft(wave.float(), self.audio.n_fft, hop_length=self.audio.hop_length, win_length=self.audio.win_length,
                          window=self.window, center=True, pad_mode="reflect", return_complex=True)
        mag = spec.abs()[..., :frames]
        return mag.squeeze(0) if squeeze else mag

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mag = self.magnitude(waveform)
        mel = torch.matmul(self.basis, mag)
        return torch.log(torch.clamp(mel, min=LOG_CLAMP))
