"""TB adapter (docs/paper.md Eq. 10) and the aligner-feature resampling."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vem.model.adapter import TBAdapter, resize_features
from vem.model.aligner import resample_to_latent
from vem.model.attention import storyboard_mask
from vem.model.testing import randomize_zero_init_
from vem.model.unet import TUNet
from vem.runtime.config import get_config


def _inputs(config, frames=32, num_storyboards=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ctx = config.unet.context_dim
    start = torch.tensor([[0.0, 0.4, 0.9]])
    duration = torch.tensor([[0.4, 0.5, 0.38]])
    z = torch.randn(2, config.vae.latent_channels, frames, config.latent_mel_bins, generator=g)
    tokens = torch.randn(2, num_storyboards * 6, ctx, generator=g)
    mask = storyboard_mask(start, duration, frames, config.latent_frames_per_second).expand(2, -1, -1)
    features = torch.randn(2, frames, config.aligner.feature_dim, generator=g)
    return z, torch.tensor([999, 3]), tokens, mask, tokens[:, :2], features


@pytest.fixture(scope="module")
def pair():
    """A T-UNet with adapters (fresh, zero) and the same weights without adapters."""
    config = get_config("demo")
    torch.manual_seed(0)
    with_adapter = randomize_zero_init_(TUNet(config).eval(), std=0.05, skip=("adapter",))
    no_config = dataclasses.replace(config, unet=dataclasses.replace(config.unet, use_adapter=False))
    without = TUNet(no_config).eval()
    missing, unexpected = without.load_state_dict(with_adapter.state_dict(), strict=False)
    assert not missing
    assert unexpected and all(".adapter." in key for key in unexpected)
    return config, with_adapter, without


def test_every_encoder_resblock_has_an_adapter(pair):
    config, with_adapter, without = pair
    adapters = [m for m in with_adapter.modules() if isinstance(m, TBAdapter)]
    levels = len(config.unet.channel_mult)
    assert len(adapters) == levels * config.unet.num_res_blocks
    assert not any(isinstance(m, TBAdapter) for m in without.modules())


def test_fresh_adapter_is_exactly_the_identity(pair):
    config, with_adapter, without = pair
    inputs = _inputs(config)
    with torch.no_grad():
        eps_with = with_adapter(*inputs)
        eps_without = without(*inputs)
        eps_no_features = with_adapter(*inputs[:5], None)
    assert torch.equal(eps_with, eps_without)
    assert torch.equal(eps_with, eps_no_features)


def test_trained_adapter_changes_the_output(pair):
    config, with_adapter, _ = pair
    inputs = _inputs(config)
    changed = TUNet(config).eval()
    changed.load_state_dict(with_adapter.state_dict())
    with torch.no_grad():
        for module in changed.modules():
            if isinstance(module, TBAdapter):
                module.to_gamma.weight.normal_(0, 0.05)
                module.to_beta.bias.normal_(0, 0.05)
        assert not torch.equal(changed(*inputs), with_adapter(*inputs))


def test_adapter_equation_10():
    adapter = TBAdapter(feature_dim=3, channels=2)
    with torch.no_grad():
        adapter.to_gamma.bias.copy_(torch.tensor([0.5, -1.0]))
        adapter.to_beta.bias.copy_(torch.tensor([2.0, 0.0]))
    z = torch.randn(1, 2, 4, 5)
    out = adapter(z, torch.zeros(1, 3, 4))
    assert torch.allclose(out[:, 0], z[:, 0] * 1.5 + 2.0)
    assert torch.allclose(out[:, 1], torch.zeros_like(z[:, 1]))


def test_resize_features_averages_the_mask_windows():
    features = torch.arange(8.0).reshape(1, 8, 1)
    assert resize_features(features, 4).flatten().tolist() == [1.5, 5.5]
    assert resize_features(features, 1).shape == (1, 1, 8)


def test_resample_to_latent_interpolates_in_seconds():
    video_fps, latent_fps = 16.0, 25.0
    frames = 40  # 2.5 s of video
    # Feature = the frame's centre time: linear interpolation must return the latent frame's
    # centre time wherever it lies between two video frame centres.
    times = (torch.arange(frames, dtype=torch.float64) + 0.5) / video_fps
    features = torch.stack([times, -2 * times], dim=-1).unsqueeze(0)
    latent = resample_to_latent(features, 72, video_fps, latent_fps)  # 2.88 s: padded past the video
    assert latent.shape == (1, 72, 2)
    latent_times = (torch.arange(72, dtype=torch.float64) + 0.5) / latent_fps
    inside = (latent_times >= times[0]) & (latent_times <= times[-1])
    assert torch.allclose(latent[0, inside, 0], latent_times[inside])
    assert torch.allclose(latent[0, inside, 1], -2 * latent_times[inside])
    # Past the last video frame the edge frame is repeated.
    assert torch.equal(latent[0, ~inside & (latent_times > 1), 0], times[-1].expand(int((~inside & (latent_times > 1)).sum())))
    assert torch.equal(latent[0, 0], features[0, 0])
    with pytest.raises(ValueError):
        resample_to_latent(features[0], 10)


def _trained_copy(config, source):
    trained = TUNet(config).eval()
    trained.load_state_dict(source.state_dict())
    torch.manual_seed(1)
    with torch.no_grad():
        for module in trained.modules():
            if isinstance(module, TBAdapter):
                for conv in (module.to_gamma, module.to_beta):
                    conv.weight.normal_(0, 0.05)
                    conv.bias.normal_(0, 0.05)
    return trained


def test_adapter_scale_switches_the_rhythm_path_per_sample(pair):
    """Scale 0 makes a sample exactly the model without aligner features (the null branch of
    guided sampling with guide_rhythm); scale 1 is the plain adapter; both in one batch."""
    config, with_adapter, _ = pair
    trained = _trained_copy(config, with_adapter)
    inputs = _inputs(config)
    with torch.no_grad():
        plain = trained(*inputs)
        no_rhythm = trained(*inputs[:5], None)
        mixed = trained(*inputs, torch.tensor([1.0, 0.0]))
    assert not torch.allclose(plain[1], no_rhythm[1])
    assert torch.allclose(mixed[0], plain[0], atol=1e-6)
    assert torch.allclose(mixed[1], no_rhythm[1], atol=1e-6)


def test_branch_denoiser_graph_module_follows_guide_rhythm(pair):
    """`BranchDenoiser` (what the ONNX denoiser is traced from) returns the conditional branch's
    eps for branch 1 and the null branch's for branch 0 (adapters off, or on when the config says
    guide_rhythm = False); the runtime's guided step from it, eps_null + g (eps_cond - eps_null),
    equals the eager one."""
    from vem.export.graphs import DENOISER_CONDITIONS, BranchDenoiser, guided_step_torch
    from vem.model.vem import VeM
    from vem.runtime.config import get_config

    config = get_config("demo")
    torch.manual_seed(0)
    model = randomize_zero_init_(VeM(config).eval(), std=0.05)
    frames, storyboards = 32, 2
    g = torch.Generator().manual_seed(3)
    ccfg = config.condition
    latent = torch.randn(1, config.vae.latent_channels, frames, config.latent_mel_bins, generator=g)
    timestep = torch.tensor([500.0])
    caption = torch.randn(1, ccfg.text_dim, generator=g)
    tags = torch.randn(1, ccfg.text_dim, generator=g)
    story_text = torch.randn(1, storyboards, ccfg.text_dim, generator=g)
    story_visual = torch.randn(1, storyboards, ccfg.visual_dim, generator=g)
    start, duration = torch.tensor([[0.0, 0.6]]), torch.tensor([[0.6, 0.68]])
    mask = storyboard_mask(start, duration, frames, config.latent_frames_per_second)
    features = torch.randn(1, frames, config.aligner.feature_dim, generator=g)
    static = dict(zip(DENOISER_CONDITIONS, (caption, tags, story_text, story_visual, start, duration, mask, features)))
    conditions = [static[name] for name in DENOISER_CONDITIONS]
    with torch.no_grad():
        tokens = model.condition(caption, tags, story_text, story_visual, start, duration)
        null = model.condition.null_tokens_like(tokens)
        eps_cond = model.unet(latent, timestep, tokens, mask, model.condition.global_tokens(tokens), features)
        for guide_rhythm in (True, False):
            model.config.diffusion.guide_rhythm = guide_rhythm
            null_features = None if guide_rhythm else features
            eps_null = model.unet(latent, timestep, null, mask, model.condition.global_tokens(null), null_features)
            graph = BranchDenoiser(model).eval()
            assert torch.allclose(graph(latent, timestep, *conditions, torch.ones(1)), eps_cond, atol=1e-5)
            assert torch.allclose(graph(latent, timestep, *conditions, torch.zeros(1)), eps_null, atol=1e-5)
            out = guided_step_torch(graph, latent, timestep, static, 3.0)
            assert torch.allclose(out, eps_null + 3.0 * (eps_cond - eps_null), atol=1e-4)
            assert not torch.allclose(out, eps_cond, atol=1e-2)
    model.config.diffusion.guide_rhythm = True
    # rhythm_gain scales the conditional branch's adapters only (the null branch stays without)
    model.config.diffusion.rhythm_gain = 1.5
    with torch.no_grad():
        eps_cond_gain = model.unet(latent, timestep, tokens, mask, model.condition.global_tokens(tokens), features,
                                   torch.tensor([1.5]))
        eps_null = model.unet(latent, timestep, null, mask, model.condition.global_tokens(null), None)
        out = guided_step_torch(BranchDenoiser(model).eval(), latent, timestep, static, 3.0)
    assert not torch.allclose(eps_cond_gain, eps_cond, atol=1e-3)
    assert torch.allclose(out, eps_null + 3.0 * (eps_cond_gain - eps_null), atol=1e-4)
    model.config.diffusion.rhythm_gain = 1.0
