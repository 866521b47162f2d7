"""Shapes of every VeM component for the paper and demo configs (docs/paper.md §§2-5)."""

from __future__ import annotations

import pytest
import torch

from vem.model.aligner import TBAligner
from vem.model.attention import storyboard_mask
from vem.model.conditioning import ConditionBuilder
from vem.model.unet import TUNet
from vem.model.visual import StyleHead, VisualEncoder, pool_storyboards
from vem.runtime.config import get_config


def make_conditions(config, batch: int, num_storyboards: int, seconds: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cond = config.condition
    start = torch.linspace(0.0, seconds, num_storyboards + 1)[:-1].expand(batch, -1).contiguous()
    duration = torch.full((batch, num_storyboards), seconds / num_storyboards)
    return dict(
        caption_emb=torch.randn(batch, cond.text_dim, generator=g),
        tags_emb=torch.randn(batch, cond.text_dim, generator=g),
        story_text=torch.randn(batch, num_storyboards, cond.text_dim, generator=g),
        story_visual=torch.randn(batch, num_storyboards, cond.visual_dim, generator=g),
        story_start_s=start,
        story_duration_s=duration,
    )


def run_unet(config, builder, unet, seconds, num_storyboards, batch=1):
    conds = make_conditions(config, batch, num_storyboards, seconds)
    tokens = builder(**conds)
    frames = config.latent_frames(seconds)
    mask = storyboard_mask(conds["story_start_s"], conds["story_duration_s"], frames, config.latent_frames_per_second)
    z = torch.randn(batch, config.vae.latent_channels, frames, config.latent_mel_bins)
    features = torch.randn(batch, frames, config.aligner.feature_dim)
    with torch.no_grad():
        eps = unet(z, torch.full((batch,), 999), tokens, mask, builder.global_tokens(tokens), features)
    return tokens, mask, eps


@pytest.fixture(scope="module")
def demo():
    config = get_config("demo")
    torch.manual_seed(0)
    return config, ConditionBuilder(config), TUNet(config).eval()


@pytest.fixture(scope="module")
def paper():
    config = get_config("paper")
    torch.manual_seed(0)
    return config, ConditionBuilder(config), TUNet(config).eval()


@pytest.mark.parametrize("seconds", [10.0, 23.7, 60.0])
@pytest.mark.parametrize("num_storyboards", [1, 7, 32])
def test_demo_unet_shapes(demo, seconds, num_storyboards):
    config, builder, unet = demo
    tokens, mask, eps = run_unet(config, builder, unet, seconds, num_storyboards)
    frames = config.latent_frames(seconds)
    assert frames % config.unet.time_multiple == 0
    assert frames >= seconds * config.latent_frames_per_second
    assert tokens.shape == (1, num_storyboards * 6, config.unet.context_dim)
    assert mask.shape == (1, frames, num_storyboards)
    assert eps.shape == (1, config.vae.latent_channels, frames, config.latent_mel_bins)
    assert torch.isfinite(eps).all()


def test_paper_unet_shapes_10s(paper):
    config, builder, unet = paper
    _, _, eps = run_unet(config, builder, unet, 10.0, 32)
    assert eps.shape == (1, 8, 256, 16)
    assert torch.isfinite(eps).all()


@pytest.mark.slow
@pytest.mark.parametrize("seconds", [23.7, 60.0])
@pytest.mark.parametrize("num_storyboards", [1, 7])
def test_paper_unet_shapes_long(paper, seconds, num_storyboards):
    config, builder, unet = paper
    _, _, eps = run_unet(config, builder, unet, seconds, num_storyboards)
    assert eps.shape == (1, 8, config.latent_frames(seconds), 16)


def test_paper_geometry():
    config = get_config("paper")
    assert config.latent_frames(60.0) == 1504  # 1500 latent frames at 25 fps, padded to a multiple of 8
    assert config.latent_mel_bins == 16
    unet_levels = len(config.unet.channel_mult)
    assert config.latent_mel_bins % 2 ** (unet_levels - 1) == 0


def test_unet_rejects_bad_lengths(demo):
    config, builder, unet = demo
    tokens, mask, _ = run_unet(config, builder, unet, 1.0, 2)
    z = torch.randn(1, 8, config.latent_frames(1.0) + 1, 16)
    with pytest.raises(ValueError, match="multiple of"):
        unet(z, torch.tensor([10]), tokens, None, builder.global_tokens(tokens))
    z = torch.randn(1, 8, config.latent_frames(1.0), 16)
    with pytest.raises(ValueError, match="storyboard_mask"):
        unet(z, torch.tensor([10]), tokens, mask[:, :, :1], builder.global_tokens(tokens))


def test_condition_builder_layout_and_null_tokens(demo):
    config, builder, _ = demo
    conds = make_conditions(config, 2, 3, 10.0)
    tokens = builder(**conds)
    assert tokens.shape == (2, 18, config.unet.context_dim)
    grid = tokens.unflatten(1, (3, 6))
    # Caption and tags tokens are the same in every storyboard; the others are per storyboard.
    assert torch.allclose(grid[:, 0, :2], grid[:, 2, :2])
    assert not torch.allclose(grid[:, 0, 2:], grid[:, 1, 2:])
    assert torch.equal(builder.global_tokens(tokens), grid[:, 0, :2])
    null = builder.null_tokens(2, 3)
    assert null.shape == tokens.shape
    assert torch.equal(builder.null_tokens_like(tokens), null)
    dropped = builder(**conds, drop_mask=torch.tensor([True, False]))
    assert torch.equal(dropped[0], null[0])
    assert torch.equal(dropped[1], tokens[1])
    with pytest.raises(ValueError, match="story_visual"):
        builder(**{**conds, "story_visual": conds["story_visual"][:, :2]})


@pytest.mark.parametrize("name", ["demo", "paper"])
def test_aligner_shapes(name):
    config = get_config(name)
    aligner = TBAligner(config.aligner).eval()
    size = config.aligner.frame_size
    frames = torch.randn(1, config.aligner.in_channels, 3, size, size)
    with torch.no_grad():
        features, logits = aligner(frames)
    assert features.shape == (1, 3, config.aligner.feature_dim)
    assert logits.shape == (1, 3)
    with pytest.raises(ValueError, match="RGB"):
        aligner(torch.randn(1, 3, 5, size, size))


def test_aligner_keeps_time_local():
    """Spatial down-sampling only: a change in the last frame cannot reach the first frames
    beyond the temporal receptive field (stem + 2 temporal convs per block)."""
    config = get_config("demo")
    aligner = TBAligner(config.aligner).eval()
    frames = torch.randn(1, 4, 24, 32, 32)
    changed = frames.clone()
    changed[:, :, -1] += 1.0
    with torch.no_grad():
        a, _ = aligner(frames)
        b, _ = aligner(changed)
    # Receptive field in time: stem +-1 frame, then +-2 per block (4 blocks): +-9 frames.
    assert torch.equal(a[:, :14], b[:, :14])
    assert not torch.equal(a[:, -1], b[:, -1])


@pytest.mark.parametrize("name", ["demo", "paper"])
def test_visual_encoder_and_style_head(name):
    config = get_config(name)
    encoder = VisualEncoder(config).eval()
    head = StyleHead(config)
    size = config.visual.frame_size
    with torch.no_grad():
        embeddings = encoder(torch.rand(6, 3, size, size))
    assert embeddings.shape == (6, config.condition.visual_dim)
    assert head(embeddings.mean(0, keepdim=True)).shape == (1, config.condition.num_tags)


def test_pool_storyboards_means_frames():
    embeddings = torch.arange(12.0).reshape(6, 2)
    index = torch.tensor([0, 0, 1, 1, 1, -1])
    pooled = pool_storyboards(embeddings, index, 3)
    assert torch.equal(pooled[0], embeddings[:2].mean(0))
    assert torch.equal(pooled[1], embeddings[2:5].mean(0))
    assert torch.equal(pooled[2], torch.zeros(2))
    with pytest.raises(ValueError):
        pool_storyboards(embeddings, index, 1)
