"""AudioLDM 2 weights into VeM (vem.model.audioldm2, docs/audioldm2.md): parity with diffusers'
AutoencoderKL and AudioLDM2UNet2DConditionModel and transformers' SpeechT5HifiGan.

Nothing is downloaded: the AudioLDM 2 modules are built by diffusers / transformers from their
configs with random weights (the VAE, vocoder and T-UNet at AudioLDM 2's published 16 kHz sizes,
and small stand-ins for the ONNX and refusal tests), saved in the diffusers layout, converted,
and compared -- VeM's PyTorch modules and the ONNX graphs that vem-export writes (run with ONNX
Runtime) -- on the same inputs: relative error (max |a - b| / max |b|) <= 1e-4 in fp32.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
diffusers = pytest.importorskip("diffusers", reason="the audioldm2 extra (diffusers, transformers) is not installed")
transformers = pytest.importorskip("transformers", reason="the audioldm2 extra (diffusers, transformers) is not installed")

from diffusers import AutoencoderKL  # noqa: E402
from diffusers.pipelines.audioldm2.modeling_audioldm2 import AudioLDM2UNet2DConditionModel  # noqa: E402
from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig  # noqa: E402

from benchmarks.audioldm2_parity import (  # noqa: E402
    BOUND,
    REAL_UNET,
    REAL_VAE,
    REAL_VOCODER,
    SMALL_UNET,
    SMALL_VAE,
    SMALL_VOCODER,
    rel,
    write_checkpoint,
)
from vem.model.audioldm2 import UNTRAINED_PARTS, AudioLDM2Error, load_audioldm2  # noqa: E402


@pytest.fixture(scope="module")
def real_vae_vocoder(tmp_path_factory):
    """AudioLDM 2's VAE and vocoder at their real sizes (with a small T-UNet), and the conversion."""
    folder = tmp_path_factory.mktemp("audioldm2-real")
    vae, vocoder, unet = write_checkpoint(folder, REAL_VAE, REAL_VOCODER, SMALL_UNET)
    model, report = load_audioldm2(folder)
    return folder, vae, vocoder, unet, model, report


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audioldm2-small")
    vae, vocoder, unet = write_checkpoint(folder, SMALL_VAE, SMALL_VOCODER, SMALL_UNET, seed=1)
    model, report = load_audioldm2(folder)
    return folder, vae, vocoder, unet, model, report


# ---------------------------------------------------------------------------------------------
# PyTorch parity

def test_audioldm2_vae_decoder_matches_diffusers_at_real_size(real_vae_vocoder):
    _, vae, _, _, model, _ = real_vae_vocoder
    assert model.config.vae.mid_attention and model.config.vae.scale_factor == pytest.approx(0.4142)
    latent = torch.randn(2, 8, 20, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = vae.decode(latent).sample
        out = model.vae.decode(latent)
        ref_enc = vae.encode(torch.randn(1, 1, 48, 64, generator=torch.Generator().manual_seed(4))).latent_dist.mean
        out_enc, _ = model.vae.encode(torch.randn(1, 1, 48, 64, generator=torch.Generator().manual_seed(4)))
    assert out.shape == ref.shape == (2, 1, 80, 64)
    assert rel(out, ref) <= BOUND
    assert rel(out_enc, ref_enc) <= BOUND


def test_audioldm2_vocoder_matches_speecht5_hifigan_at_real_size(real_vae_vocoder):
    _, _, vocoder, _, model, _ = real_vae_vocoder
    mel = torch.randn(2, 37, 64, generator=torch.Generator().manual_seed(5))  # [B, T, M]: transformers' layout
    with torch.no_grad():
        ref = vocoder(mel)
        out = model.vocoder(mel.transpose(1, 2)).squeeze(1)
    # HiFi-GAN's padding gives 160 T + 32 samples; AudioLDM 2's pipeline keeps the first 160 T.
    assert ref.shape == (2, 37 * 160 + 32) and out.shape == (2, 37 * 160)
    assert rel(out, ref[:, : 37 * 160]) <= BOUND


def unet_inputs(model, frames: int = 16, storyboards: int = 2, seed: int = 6):
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2, cfg.vae.latent_channels, frames, cfg.latent_mel_bins, generator=g)
    timestep = torch.tensor([17.0, 640.0])
    tokens = torch.randn(2, storyboards * 6, cfg.unet.context_dim, generator=g)
    global_tokens = torch.randn(2, 2, cfg.unet.context_dim, generator=g)
    mask = torch.zeros(2, frames, storyboards)
    for i, part in enumerate(torch.arange(frames).chunk(storyboards)):
        mask[:, part, i] = 1
    return z, timestep, tokens, mask, global_tokens


def test_audioldm2_unet_matches_diffusers_while_the_vem_parts_are_at_their_init(small):
    """SG-CAtt's output projection and the TB adapters start at zero, so the converted T-UNet is
    AudioLDM 2's, fed VeM's global tokens (T5 context) and their projection (GPT-2 context)."""
    _, _, _, unet, model, _ = small
    z, timestep, tokens, mask, global_tokens = unet_inputs(model)
    with torch.no_grad():
        ref = unet(z, timestep, encoder_hidden_states=model.unet.loa_proj(global_tokens),
                   encoder_hidden_states_1=global_tokens).sample
        out = model.unet(z, timestep, tokens, mask, global_tokens)
        # once SG-CAtt is trained (here: given weights) the storyboards change the output
        trained = copy.deepcopy(model.unet)  # the fixture's model stays as converted
        for _, module in trained.sg_catt_modules():
            torch.nn.init.normal_(module.attention.to_out.weight, std=0.05)
        moved = trained(z, timestep, tokens, mask, global_tokens)
    assert rel(out, ref) <= BOUND
    assert rel(moved, ref) > 1e-3


# ---------------------------------------------------------------------------------------------
# ONNX parity (the graphs vem-export writes, run with ONNX Runtime)

def _onnx(module, args, path, names, outputs, axes):
    from vem.export import onnx_utils

    onnx_utils.export_onnx(module, args, path, input_names=names, output_names=outputs, dynamic_axes=axes)
    return onnx_utils.make_session(path)


def test_audioldm2_exported_vae_decoder_and_vocoder_graphs_match_diffusers(real_vae_vocoder, tmp_path):
    from vem.export.graphs import VAEDecoderGraph, VocoderGraph, component_specs

    _, vae, vocoder, _, model, _ = real_vae_vocoder
    specs = component_specs(model.config)
    g = torch.Generator().manual_seed(7)
    vae_graph = VAEDecoderGraph(model).eval()
    spec = specs["vae_decoder"]
    session = _onnx(vae_graph, (torch.randn(1, 8, 8, 16, generator=g),), tmp_path / "vae_decoder.onnx",
                    spec.input_names, spec.output_names, spec.dynamic_axes())
    latent = torch.randn(1, 8, 24, 16, generator=g)  # another length than traced: the axis is dynamic
    (mel_onnx,) = session.run(None, {"latent": latent.numpy()})
    with torch.no_grad():
        ref = vae.decode(latent / vae.config.scaling_factor).sample.squeeze(1).transpose(1, 2)
    assert mel_onnx.shape == (1, 64, 96)
    assert rel(mel_onnx, ref) <= BOUND

    spec = specs["vocoder"]
    session = _onnx(VocoderGraph(model).eval(), (torch.randn(1, 64, 10, generator=g),), tmp_path / "vocoder.onnx",
                    spec.input_names, spec.output_names, spec.dynamic_axes())
    mel = torch.randn(1, 64, 29, generator=g)
    (wave_onnx,) = session.run(None, {"mel": mel.numpy()})
    with torch.no_grad():
        ref = vocoder(mel.transpose(1, 2))[:, : 29 * 160]
    assert wave_onnx.shape == (1, 29 * 160)
    assert rel(wave_onnx, ref) <= BOUND


class _UNetOnly(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, z, timestep, tokens, mask, global_tokens):
        return self.unet(z, timestep, tokens, mask, global_tokens)


def test_audioldm2_exported_unet_graph_matches_diffusers(small, tmp_path):
    _, _, _, unet, model, _ = small
    args = unet_inputs(model, frames=8, storyboards=1)
    names = ["z", "timestep", "tokens", "mask", "global_tokens"]
    axes = {"z": {2: "frames"}, "tokens": {1: "tokens"}, "mask": {1: "frames", 2: "storyboards"}}
    session = _onnx(_UNetOnly(model.unet).eval(), args, tmp_path / "unet.onnx", names, ["eps"], axes)
    z, timestep, tokens, mask, global_tokens = unet_inputs(model, frames=24, storyboards=3, seed=8)
    feeds = dict(zip(names, (t.numpy() for t in (z, timestep, tokens, mask, global_tokens))))
    (eps,) = session.run(None, feeds)
    with torch.no_grad():
        ref = unet(z, timestep, encoder_hidden_states=model.unet.loa_proj(global_tokens),
                   encoder_hidden_states_1=global_tokens).sample
    assert rel(eps, ref) <= BOUND


# ---------------------------------------------------------------------------------------------
# what is placed, what stays untrained, what is refused

def test_audioldm2_report_places_every_tensor_and_lists_the_untrained_vem_parts(small):
    folder, vae, vocoder, unet, model, report = small
    assert report.placed == {"vae": len(vae.state_dict()), "vocoder": len(vocoder.state_dict()) - 2,
                             "unet": len(unet.state_dict())}
    assert sorted(i.split(" ")[0] for i in report.ignored) == ["vocoder/mean", "vocoder/scale"]
    assert set(report.untrained) == {desc for _, desc in UNTRAINED_PARTS}
    assert all(count > 0 for count in report.untrained.values())
    text = "\n".join(report.lines())
    assert "SG-CAtt" in text and "TB adapter" in text and "TB aligner" in text and "timing" in text


def _tamper(folder: Path, tmp_path: Path, edit) -> Path:
    import shutil

    from safetensors.torch import load_file, save_file

    copy = tmp_path / "tampered"
    shutil.copytree(folder, copy)
    path = copy / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))
    return copy


def test_audioldm2_refuses_a_tensor_it_cannot_place_naming_it_and_its_shape(small, tmp_path):
    folder = small[0]

    def edit(tensors):
        tensors["down_blocks.1.attentions.0.extra_gate.weight"] = torch.zeros(3, 5)
        tensors["conv_in.weight"] = torch.zeros(32, 8, 5, 5)

    with pytest.raises(AudioLDM2Error) as info:
        load_audioldm2(_tamper(folder, tmp_path, edit))
    message = str(info.value)
    assert "unet/down_blocks.1.attentions.0.extra_gate.weight (3, 5): no place in VeM" in message
    assert "unet/conv_in.weight (32, 8, 5, 5) -> unet.conv_in.weight (32, 8, 3, 3): shape differs" in message


def test_audioldm2_refuses_a_missing_tensor_and_an_unsupported_config(small, tmp_path):
    folder = small[0]
    with pytest.raises(AudioLDM2Error, match=r"unet/conv_out.bias: missing from the checkpoint"):
        load_audioldm2(_tamper(folder, tmp_path, lambda t: t.pop("conv_out.bias")))
    config = json.loads((folder / "vocoder" / "config.json").read_text())
    config["normalize_before"] = True
    bad = tmp_path / "tampered"
    (bad / "vocoder" / "config.json").write_text(json.dumps(config))
    with pytest.raises(AudioLDM2Error, match=r"vocoder normalize_before = True"):
        load_audioldm2(bad)
    with pytest.raises(AudioLDM2Error, match="not an AudioLDM 2 checkpoint"):
        load_audioldm2(tmp_path)


def test_audioldm2_scheduler_config_is_checked_and_taken_over(small, tmp_path):
    import shutil

    from diffusers import DDIMScheduler

    folder = tmp_path / "with-scheduler"
    shutil.copytree(small[0], folder)
    DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", num_train_timesteps=1000,
                  prediction_type="epsilon").save_pretrained(folder / "scheduler")
    model, _ = load_audioldm2(folder)
    assert (model.config.diffusion.beta_start, model.config.diffusion.beta_end) == (0.0015, 0.0195)
    DDIMScheduler(prediction_type="v_prediction").save_pretrained(folder / "scheduler")
    with pytest.raises(AudioLDM2Error, match="scheduler prediction_type = 'v_prediction'"):
        load_audioldm2(folder)


def test_vem_export_from_audioldm2_refuses_with_exit_4_and_needs_config_paper(small, tmp_path, capsys):
    from vem.export.cli import main

    assert main(["--config", "demo", "--from-audioldm2", str(small[0]), "--out", str(tmp_path / "b")]) == 2
    assert "--config paper" in capsys.readouterr().err
    bad = _tamper(small[0], tmp_path, lambda t: t.pop("conv_out.bias"))
    assert main(["--config", "paper", "--from-audioldm2", str(bad), "--out", str(tmp_path / "b")]) == 4
    assert "unet/conv_out.bias: missing" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_vem_export_from_audioldm2_writes_a_bundle_that_vem_run_reads(small, tmp_path, transitions_graph):
    """The whole path on the small checkpoint: convert, export (fp32), run the bundle's VAE decoder
    against diffusers, and check the manifest says where the weights came from."""
    from vem.export.cli import main
    from vem.runtime.bundle import load_bundle

    folder, vae, _, _, _, _ = small
    out = tmp_path / "bundle"
    code = main(["--config", "paper", "--from-audioldm2", str(folder), "--precision", "fp32", "--out", str(out),
                 "--max-seconds", "4", "--max-storyboards", "4", "--engines", "no",
                 "--transitions-onnx", str(transitions_graph), "--save-checkpoint", str(tmp_path / "vem.safetensors")])
    assert code == 0
    manifest = load_bundle(out).manifest
    assert manifest.config.unet.layout == "audioldm2" and manifest.config.vocoder.upsample_padding == "hifigan"
    assert "AudioLDM 2 checkpoint" in manifest.built_with["source"]
    from vem.export import onnx_utils

    session = onnx_utils.make_session(out / "vae_decoder.onnx")
    latent = torch.randn(1, 8, 12, 16, generator=torch.Generator().manual_seed(9))
    (mel,) = session.run(None, {"latent": latent.numpy()})
    with torch.no_grad():
        ref = vae.decode(latent / vae.config.scaling_factor).sample.squeeze(1).transpose(1, 2)
    assert rel(mel, ref) <= BOUND
    # the saved VeM checkpoint reloads into the same model
    from vem.model.vem import load_checkpoint

    again = load_checkpoint(tmp_path / "vem.safetensors")
    assert again.config == small[4].config


def test_audioldm2_unet_matches_diffusers_at_real_size(tmp_path):
    """The full AudioLDM 2 T-UNet (AudioLDM 2's published sizes, ~350 M parameters; ~30 s and a
    few GiB on 2 cores)."""
    torch.manual_seed(0)
    unet = AudioLDM2UNet2DConditionModel(**REAL_UNET).eval()
    folder = tmp_path / "ckpt"
    vae = AutoencoderKL(**SMALL_VAE)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**SMALL_VOCODER))
    vae.save_pretrained(folder / "vae")
    vocoder.save_pretrained(folder / "vocoder")
    unet.save_pretrained(folder / "unet")
    model, report = load_audioldm2(folder)
    assert report.placed["unet"] == len(unet.state_dict())
    assert (model.config.unet.model_channels, model.config.unet.channel_mult, model.config.unet.head_channels,
            model.config.unet.context_dim, model.config.unet.loa_dim) == (128, (1, 2, 3, 5), 32, 1024, 768)
    z, timestep, tokens, mask, global_tokens = unet_inputs(model, frames=16)
    with torch.no_grad():
        ref = unet(z, timestep, encoder_hidden_states=model.unet.loa_proj(global_tokens),
                   encoder_hidden_states_1=global_tokens).sample
        out = model.unet(z, timestep, tokens, mask, global_tokens)
    assert rel(out, ref) <= BOUND
