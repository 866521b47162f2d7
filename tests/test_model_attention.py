"""SG-CAtt and the storyboard mask (docs/paper.md Eqs. 7-8)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vem.model.attention import (
    MASK_BIAS,
    SGCrossAttention,
    resize_storyboard_mask,
    storyboard_attention_bias,
    storyboard_mask,
)
from vem.model.conditioning import ConditionBuilder
from vem.model.testing import randomize_zero_init_
from vem.model.unet import TUNet
from vem.runtime.config import get_config

# 64 latent frames = 2.56 s at 25 fps. Shot 1 ends at 1.17 s, inside the 4-frame pooling
# window [28, 32) (frame 28's centre is 1.14 s, frame 29's 1.18 s), so coarse levels see a
# frame that straddles two shots. Nothing covers 2.3 s .. 2.56 s (padding past the video end).
FRAMES = 64
STARTS = [0.0, 0.5, 1.17, 1.9]
DURATIONS = [0.5, 0.67, 0.73, 0.4]


def test_storyboard_mask_uses_frame_centres():
    start = torch.tensor([[0.0, 0.5]])
    duration = torch.tensor([[0.5, 0.3]])
    mask = storyboard_mask(start, duration, 25, 25.0)
    assert mask.shape == (1, 25, 2)
    # Frame t stands for (t + 0.5) / 25 s: frames 0..11 end before 0.5 s, 12..19 lie in [0.5, 0.8).
    assert mask[0, :12, 0].eq(1).all() and mask[0, 12:, 0].eq(0).all()
    assert mask[0, 12:20, 1].eq(1).all() and mask[0, :12, 1].eq(0).all() and mask[0, 20:, 1].eq(0).all()
    with pytest.raises(ValueError):
        storyboard_mask(start, duration[:, :1], 25, 25.0)


def test_resize_is_max_pool_and_keeps_short_shots():
    mask = torch.zeros(1, 16, 2)
    mask[0, :, 0] = 1
    mask[0, 5, 0] = 0
    mask[0, 5, 1] = 1  # a one-frame shot: a strided pick would lose it at factor 4
    coarse = resize_storyboard_mask(mask, 4)
    assert coarse.shape == (1, 4, 2)
    assert coarse[0, :, 0].tolist() == [1, 1, 1, 1]
    assert coarse[0, :, 1].tolist() == [0, 1, 0, 0]
    assert torch.equal(resize_storyboard_mask(mask, 1), mask)


def test_bias_expands_tokens_opens_empty_rows_and_repeats_mel():
    level = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])  # frame 1 has no storyboard (padding)
    bias = storyboard_attention_bias(level, mel_bins=3)
    assert bias.shape == (1, 2 * 3, 2 * 6)
    assert bias.dtype == torch.float32
    assert torch.isfinite(bias).all()
    frame0 = bias[0, :3]
    assert frame0[:, :6].eq(0).all() and frame0[:, 6:].eq(MASK_BIAS).all()
    assert bias[0, 3:].eq(0).all()  # empty row: attends to every token


def test_masked_tokens_get_exactly_zero_weight():
    torch.manual_seed(0)
    attention = SGCrossAttention(16, heads=2, head_dim=8, context_dim=8)
    x = torch.randn(1, 4, 3, 16)
    tokens = torch.randn(1, 12, 8)
    level = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]])
    out = attention(x, tokens, level)
    wild = tokens.clone()
    wild[:, 6:] *= 50.0  # storyboard 1's tokens, scaled far beyond normal logits
    out_wild = attention(x, wild, level)
    assert torch.equal(out[:, :2], out_wild[:, :2])
    assert not torch.allclose(out[:, 2:], out_wild[:, 2:])


def _storyboard_inputs(config, seed=0):
    g = torch.Generator().manual_seed(seed)
    cond = config.condition
    n = len(STARTS)
    start = torch.tensor([STARTS])
    duration = torch.tensor([DURATIONS])
    conds = dict(
        caption_emb=torch.randn(1, cond.text_dim, generator=g),
        tags_emb=torch.randn(1, cond.text_dim, generator=g),
        story_text=torch.randn(1, n, cond.text_dim, generator=g),
        story_visual=torch.randn(1, n, cond.visual_dim, generator=g),
        story_start_s=start,
        story_duration_s=duration,
    )
    mask = storyboard_mask(start, duration, FRAMES, config.latent_frames_per_second)
    z = torch.randn(1, config.vae.latent_channels, FRAMES, config.latent_mel_bins, generator=g)
    features = torch.randn(1, FRAMES, config.aligner.feature_dim, generator=g)
    return conds, mask, z, features


def _run_with_hooks(unet, modules, inputs, replay=None):
    """Run the real UNet forward; record each SG-CAtt module's (x, tokens, level_mask, output).
    With ``replay``, every SG-CAtt module gets its recorded input x from that earlier run, so
    the only thing that differs between runs at that module is what the UNet feeds it as
    tokens (convolutions elsewhere spread a change beyond a shot, so later modules would
    otherwise see different inputs for reasons unrelated to the mask)."""
    records: dict[str, dict] = {}
    handles = []
    for name, module in modules:
        def pre_hook(mod, args, name=name):
            if replay is not None:
                return (replay[name]["x"], *args[1:])
            return None

        def hook(mod, args, output, name=name):
            records[name] = {"x": args[0], "tokens": args[1], "mask": args[2], "out": output}

        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            eps = unet(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return records, eps


@pytest.fixture(scope="module")
def demo_models():
    config = get_config("demo")
    torch.manual_seed(0)
    builder = ConditionBuilder(config)
    unet = randomize_zero_init_(TUNet(config).eval(), std=0.05)
    return config, builder, unet


def _perturbed_run(config, builder, unet, shot):
    conds, mask, z, features = _storyboard_inputs(config)
    with torch.no_grad():
        tokens = builder(**conds)
    perturbed = tokens.clone()
    perturbed[:, shot * 6 : (shot + 1) * 6] += torch.randn(1, 6, tokens.shape[-1], generator=torch.Generator().manual_seed(7))
    timestep = torch.tensor([500])
    modules = unet.sg_catt_modules()
    base, eps = _run_with_hooks(unet, modules, (z, timestep, tokens, mask, builder.global_tokens(tokens), features))
    changed, eps_changed = _run_with_hooks(
        unet, modules, (z, timestep, perturbed, mask, builder.global_tokens(perturbed), features), replay=base
    )
    return mask, modules, base, changed, eps, eps_changed


@pytest.mark.parametrize("shot", [1, 2])
def test_perturbing_a_storyboard_changes_only_its_frames_at_every_sg_catt(demo_models, shot):
    config, builder, unet = demo_models
    mask, modules, base, changed, eps, eps_changed = _perturbed_run(config, builder, unet, shot)
    assert len(modules) == 7  # encoder at 2x and 4x, middle, decoder 2 + 2
    seen_frames = set()
    for name, _ in modules:
        level_mask = base[name]["mask"]
        frames = level_mask.shape[1]
        seen_frames.add(frames)
        factor = FRAMES // frames
        assert torch.equal(level_mask, resize_storyboard_mask(mask, factor)), name
        assert torch.equal(base[name]["x"], changed[name]["x"])
        inside = level_mask[0, :, shot].bool()
        open_rows = level_mask[0].sum(-1) == 0
        outside = ~inside & ~open_rows
        diff = (base[name]["out"] - changed[name]["out"]).abs().amax(dim=(0, 2, 3))  # per frame
        assert inside.any() and outside.any() and open_rows.any(), name
        assert diff[outside].eq(0).all(), f"{name}: frames outside shot {shot} changed"
        assert (diff[inside] > 0).all(), f"{name}: some frame inside shot {shot} did not change"
        # Padding frames past the video end attend to every token, so they see the change too.
        assert (diff[open_rows] > 0).all(), name
    assert seen_frames == {FRAMES // 2, FRAMES // 4}
    # And the perturbation reaches the UNet's output.
    assert not torch.equal(eps, eps_changed)


def test_first_sg_catt_in_plain_forward_is_confined_to_the_shot(demo_models):
    """Without any replay: the first SG-CAtt module's input does not depend on the tokens, so
    the unmodified forward pass must already show the confinement there."""
    config, builder, unet = demo_models
    conds, mask, z, features = _storyboard_inputs(config)
    with torch.no_grad():
        tokens = builder(**conds)
    perturbed = tokens.clone()
    perturbed[:, 6:12] += 1.0
    modules = unet.sg_catt_modules()[:1]
    base, _ = _run_with_hooks(unet, modules, (z, torch.tensor([10]), tokens, mask, builder.global_tokens(tokens), features))
    changed, _ = _run_with_hooks(
        unet, modules, (z, torch.tensor([10]), perturbed, mask, builder.global_tokens(perturbed), features)
    )
    (name, _), = modules
    level_mask = base[name]["mask"][0]
    diff = (base[name]["out"] - changed[name]["out"]).abs().amax(dim=(0, 2, 3))
    outside = (level_mask[:, 1] == 0) & (level_mask.sum(-1) > 0)
    assert diff[outside].eq(0).all()
    assert (diff[level_mask[:, 1] == 1] > 0).all()


def test_plain_cross_attention_ablation_is_not_confined():
    base_config = get_config("demo")
    config = dataclasses.replace(base_config, unet=dataclasses.replace(base_config.unet, use_storyboard_mask=False))
    torch.manual_seed(0)
    builder = ConditionBuilder(config)
    unet = randomize_zero_init_(TUNet(config).eval(), std=0.05)
    mask, modules, base, changed, _, _ = _perturbed_run(config, builder, unet, 1)
    for name, _ in modules:
        diff = (base[name]["out"] - changed[name]["out"]).abs().amax(dim=(0, 2, 3))
        assert (diff > 0).all(), name  # every frame sees storyboard 1


def test_mask_and_timestep_dtypes_are_interchangeable(demo_models):
    """The runtime may feed a bool or float mask and an int or float timestep."""
    config, builder, unet = demo_models
    conds, mask, z, features = _storyboard_inputs(config)
    with torch.no_grad():
        tokens = builder(**conds)
        glob = builder.global_tokens(tokens)
        reference = unet(z, torch.tensor([250]), tokens, mask, glob, features)
        as_bool = unet(z, torch.tensor([250.0]), tokens, mask.bool(), glob, features)
        unmasked = unet(z, torch.tensor([250]), tokens, None, glob, features)
    assert torch.equal(reference, as_bool)
    assert not torch.equal(reference, unmasked)
