"""Torch reference generation end to end (demo config, 2 s, 2 steps)."""

from __future__ import annotations

import pytest
import torch

from vem.model.pipeline import generate
from vem.model.testing import randomize_zero_init_
from vem.model.vem import VeM
from vem.runtime.config import get_config

SECONDS = 2.0


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_zero_init_(VeM(get_config("demo")).eval(), std=0.05)


@pytest.fixture(scope="module")
def conditions(model):
    g = torch.Generator().manual_seed(0)
    cond = model.config.condition
    return dict(
        caption_emb=torch.randn(1, cond.text_dim, generator=g),
        tags_emb=torch.randn(1, cond.text_dim, generator=g),
        story_text=torch.randn(1, 2, cond.text_dim, generator=g),
        story_visual=torch.randn(1, 2, cond.visual_dim, generator=g),
        story_start_s=torch.tensor([[0.0, 0.8]]),
        story_duration_s=torch.tensor([[0.8, 1.2]]),
        aligner_features=torch.randn(1, 32, model.config.aligner.feature_dim, generator=g),
    )


def test_generate_end_to_end_and_deterministic(model, conditions):
    config = model.config
    first = generate(model, **conditions, seconds=SECONDS, steps=2, guidance=3.0, seed=42)
    second = generate(model, **conditions, seconds=SECONDS, steps=2, guidance=3.0, seed=42)
    assert first.latent.shape == (1, 8, config.latent_frames(SECONDS), config.latent_mel_bins)
    assert first.mel.shape == (1, 1, config.mel_frames(SECONDS), config.audio.n_mels)
    assert first.waveform.shape == (1, int(SECONDS * config.audio.sample_rate))
    assert torch.isfinite(first.waveform).all()
    assert first.waveform.abs().max() > 0
    for a, b in ((first.latent, second.latent), (first.mel, second.mel), (first.waveform, second.waveform)):
        assert torch.equal(a, b)


def test_seed_guidance_and_sampler_matter(model, conditions):
    short = 0.5  # keep this one cheap: 16 latent frames
    base = generate(model, **conditions, seconds=short, steps=2, guidance=3.0, seed=42)
    other_seed = generate(model, **conditions, seconds=short, steps=2, guidance=3.0, seed=43)
    other_guidance = generate(model, **conditions, seconds=short, steps=2, guidance=1.0, seed=42)
    ddim = generate(model, **conditions, seconds=short, steps=2, guidance=3.0, seed=42, sampler="ddim")
    assert base.waveform.shape == (1, 8000)
    assert not torch.equal(base.latent, other_seed.latent)
    assert not torch.equal(base.latent, other_guidance.latent)
    assert not torch.equal(base.latent, ddim.latent)


def test_generate_rejects_bad_arguments(model, conditions):
    with pytest.raises(ValueError, match="seconds"):
        generate(model, **conditions, seconds=0.0, steps=2)
    with pytest.raises(ValueError, match="sampler"):
        generate(model, **conditions, seconds=SECONDS, steps=2, sampler="euler")
