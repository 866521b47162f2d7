"""Mel VAE and HiFi-GAN shapes (docs/paper.md §5)."""

from __future__ import annotations

import pytest
import torch

from vem.model.vae import MelVAE
from vem.model.vocoder import HiFiGAN
from vem.runtime.config import get_config


@pytest.mark.parametrize("name,mel_frames", [("demo", 200), ("demo", 52), ("paper", 32)])
def test_vae_round_trip_shapes(name, mel_frames):
    config = get_config(name)
    torch.manual_seed(0)
    vae = MelVAE(config).eval()
    mel = torch.randn(1, 1, mel_frames, config.audio.n_mels)
    with torch.no_grad():
        mean, logvar = vae.encode(mel)
        latent = vae.sample(mean, logvar, torch.Generator().manual_seed(0))
        decoded = vae.decode(latent)
    down = config.vae.downsample
    assert down == 4
    assert mean.shape == logvar.shape == (1, config.vae.latent_channels, mel_frames // 4, config.audio.n_mels // 4)
    assert decoded.shape == mel.shape
    with pytest.raises(ValueError, match="multiple of 4"):
        vae.encode(torch.randn(1, 1, mel_frames + 2, config.audio.n_mels))


def test_vae_latent_matches_config_geometry():
    config = get_config("demo")
    vae = MelVAE(config).eval()
    mel = torch.randn(1, 1, config.mel_frames(2.0), config.audio.n_mels)
    with torch.no_grad():
        mean, _ = vae.encode(mel)
    assert mean.shape[2:] == (config.latent_frames(2.0), config.latent_mel_bins)


@pytest.mark.parametrize("name,mel_frames", [("demo", 100), ("demo", 37), ("paper", 12)])
def test_vocoder_length_is_frames_times_hop(name, mel_frames):
    config = get_config(name)
    torch.manual_seed(0)
    vocoder = HiFiGAN(config).eval()
    with torch.no_grad():
        wave = vocoder(torch.randn(2, config.audio.n_mels, mel_frames))
    assert wave.shape == (2, 1, mel_frames * config.audio.hop_length)
    assert wave.abs().max() <= 1.0


def test_remove_weight_norm_keeps_the_output():
    config = get_config("demo")
    torch.manual_seed(0)
    vocoder = HiFiGAN(config).eval()
    mel = torch.randn(1, config.audio.n_mels, 20)
    with torch.no_grad():
        before = vocoder(mel)
        assert vocoder.has_weight_norm
        vocoder.remove_weight_norm()
        assert not vocoder.has_weight_norm
        after = vocoder(mel)
    assert all("parametrizations" not in key for key in vocoder.state_dict())
    assert torch.allclose(before, after, atol=1e-5)
