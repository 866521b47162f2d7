"""VeM container: parameter counts and safetensors checkpoints."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import save_file

from vem.model.testing import randomize_zero_init_
from vem.model.vem import VeM, load_checkpoint, save_checkpoint
from vem.runtime.config import get_config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_zero_init_(VeM(get_config("demo")).eval())


def _outputs(model: VeM) -> list[torch.Tensor]:
    config = model.config
    g = torch.Generator().manual_seed(3)
    cond = config.condition
    with torch.no_grad():
        tokens = model.condition(
            torch.randn(1, cond.text_dim, generator=g),
            torch.randn(1, cond.text_dim, generator=g),
            torch.randn(1, 2, cond.text_dim, generator=g),
            torch.randn(1, 2, cond.visual_dim, generator=g),
            torch.tensor([[0.0, 0.3]]),
            torch.tensor([[0.3, 0.3]]),
        )
        mask = torch.ones(1, 16, 2)
        z = torch.randn(1, 8, 16, 16, generator=g)
        eps = model.unet(z, torch.tensor([7]), tokens, mask, tokens[:, :2], torch.randn(1, 16, 64, generator=g))
        features, logits = model.aligner(torch.randn(1, 4, 3, 32, 32, generator=g))
        visual = model.visual(torch.rand(2, 3, 32, 32, generator=g))
        mel = model.vae.decode(z)
        wave = model.vocoder(mel.squeeze(1).transpose(1, 2))
    return [tokens, eps, features, logits, visual, model.style_head(visual), mel, wave]


def test_parameter_counts_add_up(model):
    counts = model.parameter_counts()
    total = counts.pop("total")
    assert total == sum(p.numel() for p in model.parameters())
    assert sum(counts.values()) == total
    assert all(v > 0 for v in counts.values())
    assert counts["unet_tb_adapter"] > 0 and counts["unet_sg_catt"] > 0


def test_parameter_counts_without_adapter():
    config = get_config("demo")
    config = dataclasses.replace(config, unet=dataclasses.replace(config.unet, use_adapter=False))
    with torch.device("meta"):
        counts = VeM(config).parameter_counts()
    assert counts["unet_tb_adapter"] == 0


def test_checkpoint_round_trip(model, tmp_path):
    path = tmp_path / "demo.safetensors"
    save_checkpoint(model, path)
    loaded = load_checkpoint(path)
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    for a, b in zip(_outputs(model), _outputs(loaded)):
        assert torch.equal(a, b)


def test_checkpoint_after_weight_norm_removal(tmp_path):
    torch.manual_seed(1)
    model = VeM(get_config("demo")).eval()
    model.remove_weight_norm()
    path = tmp_path / "exported.safetensors"
    save_checkpoint(model, path)
    loaded = load_checkpoint(path)
    assert not loaded.vocoder.has_weight_norm
    mel = torch.randn(1, 64, 8)
    with torch.no_grad():
        assert torch.equal(model.vocoder(mel), loaded.vocoder(mel))


def test_load_rejects_foreign_files(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a VeM checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.safetensors")
