"""AudioLDM 2 -> VeM parity, measured (docs/audioldm2.md): diffusers' AutoencoderKL and
AudioLDM2UNet2DConditionModel and transformers' SpeechT5HifiGan built from AudioLDM 2's configs
with random weights (nothing is downloaded), saved in the diffusers layout, converted by
`vem.model.audioldm2`, and compared in fp32 -- VeM's PyTorch modules and the ONNX graphs run with
ONNX Runtime -- as max |VeM - reference| / max |reference|.

    python -m benchmarks.audioldm2_parity [--unet real|small] [--out benchmarks/results/audioldm2-parity.json]

Needs the `audioldm2` extra (diffusers, transformers). tests/test_audioldm2.py asserts the same
comparisons against ``BOUND``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BOUND = 1e-4  # relative, fp32

# AudioLDM 2's 16 kHz configs (the published audioldm2 / audioldm2-music vae, vocoder and unet
# config.json values; the original repository's config: VAE ch 128 x (1, 2, 4), z 8; HiFi-GAN
# 1024 ch, rates 5-4-2-2-2, kernels 16-16-8-4-4; UNet 128 x (1, 2, 3, 5), attention at 2/4/8x,
# 32-channel heads, contexts [768 (GPT-2), 1024 (Flan-T5)] plus the extra self-attention layer).
REAL_VAE = dict(in_channels=1, out_channels=1, latent_channels=8, block_out_channels=(128, 256, 512),
                layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 3,
                up_block_types=("UpDecoderBlock2D",) * 3, norm_num_groups=32, act_fn="silu", sample_size=1024,
                scaling_factor=0.4142)
REAL_VOCODER = dict(model_in_dim=64, sampling_rate=16000, upsample_initial_channel=1024,
                    upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[16, 16, 8, 4, 4],
                    resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3,
                    normalize_before=False, leaky_relu_slope=0.1)
REAL_UNET = dict(in_channels=8, out_channels=8, block_out_channels=(128, 256, 384, 640), layers_per_block=2,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 attention_head_dim=[4, 8, 12, 20], cross_attention_dim=[[None, 768, 1024]] * 4,
                 norm_num_groups=32, norm_eps=1e-5, sample_size=256)
# Small stand-ins with the same structure (32-channel heads, three transformers per slot).
SMALL_VAE = {**REAL_VAE, "block_out_channels": (32, 64, 64), "layers_per_block": 1}
SMALL_VOCODER = {**REAL_VOCODER, "upsample_initial_channel": 64, "resblock_kernel_sizes": [3, 7],
                 "resblock_dilation_sizes": [[1, 3], [1, 3]]}
SMALL_UNET = {**REAL_UNET, "block_out_channels": (32, 64, 96, 160), "layers_per_block": 1,
              "attention_head_dim": [1, 2, 3, 5], "cross_attention_dim": [[None, 24, 40]] * 4}


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def write_checkpoint(folder: Path, vae_cfg: dict, vocoder_cfg: dict, unet_cfg: dict, seed: int = 0):
    """AudioLDM 2's three modules from their configs (random weights), saved in the diffusers layout."""
    import torch
    from diffusers import AutoencoderKL
    from diffusers.pipelines.audioldm2.modeling_audioldm2 import AudioLDM2UNet2DConditionModel
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    torch.manual_seed(seed)
    vae = AutoencoderKL(**vae_cfg).eval()
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**vocoder_cfg)).eval()
    unet = AudioLDM2UNet2DConditionModel(**unet_cfg).eval()
    vae.save_pretrained(folder / "vae", safe_serialization=True)
    vocoder.save_pretrained(folder / "vocoder", safe_serialization=True)
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    return vae, vocoder, unet




def measure(unet_size: str = "small", seed: int = 0) -> dict:
    import torch

    from vem.export import onnx_utils
    from vem.export.graphs import VAEDecoderGraph, VocoderGraph, component_specs
    from vem.model.audioldm2 import load_audioldm2

    work = Path(tempfile.mkdtemp(prefix="vem-audioldm2-"))
    t0 = time.perf_counter()
    vae, vocoder, unet = write_checkpoint(work, REAL_VAE, REAL_VOCODER, REAL_UNET if unet_size == "real" else SMALL_UNET,
                                          seed)
    model, report = load_audioldm2(work)
    g = torch.Generator().manual_seed(seed + 1)
    out: dict = {"bound": BOUND, "unet_config": unet_size, "placed": report.placed,
                 "diffusers": __import__("diffusers").__version__,
                 "transformers": __import__("transformers").__version__}
    latent = torch.randn(2, 8, 20, 16, generator=g)
    mel = torch.randn(2, 37, 64, generator=g)
    ucfg = model.config.unet
    z = torch.randn(2, 8, 16, 16, generator=g)
    timestep = torch.tensor([17.0, 640.0])
    tokens = torch.randn(2, 12, ucfg.context_dim, generator=g)
    global_tokens = torch.randn(2, 2, ucfg.context_dim, generator=g)
    mask = torch.zeros(2, 16, 2)
    mask[:, :8, 0] = 1
    mask[:, 8:, 1] = 1
    with torch.no_grad():
        out["vae_decode_torch"] = rel(model.vae.decode(latent), vae.decode(latent).sample)
        wave_ref = vocoder(mel)[:, : 37 * 160]
        out["vocoder_torch"] = rel(model.vocoder(mel.transpose(1, 2)).squeeze(1), wave_ref)
        eps_ref = unet(z, timestep, encoder_hidden_states=model.unet.loa_proj(global_tokens),
                       encoder_hidden_states_1=global_tokens).sample
        out["unet_torch"] = rel(model.unet(z, timestep, tokens, mask, global_tokens), eps_ref)
        mel_ref = vae.decode(latent / vae.config.scaling_factor).sample.squeeze(1).transpose(1, 2)
    specs = component_specs(model.config)
    for name, graph, feed, ref in (("vae_decoder", VAEDecoderGraph(model), latent, mel_ref),
                                   ("vocoder", VocoderGraph(model), mel.transpose(1, 2).contiguous(), wave_ref)):
        spec = specs[name]
        path = work / f"{name}.onnx"
        onnx_utils.export_onnx(graph.eval(), (feed[:1, ..., : feed.shape[-1] // 2].contiguous()
                                              if name == "vocoder" else feed[:1, :, :8].contiguous(),),
                               path, input_names=spec.input_names, output_names=spec.output_names,
                               dynamic_axes=spec.dynamic_axes())
        (result,) = onnx_utils.make_session(path).run(None, {spec.input_names[0]: feed.numpy()})
        out[f"{name}_onnx"] = rel(result, ref)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unet", choices=["small", "real"], default="small")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "audioldm2-parity.json"))
    args = parser.parse_args(argv)
    result = measure(args.unet)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    worst = max(v for k, v in result.items() if k.endswith(("_torch", "_onnx")))
    return 0 if worst <= BOUND else 1


if __name__ == "__main__":
    sys.exit(main())
