"""Mel VAE (docs/paper.md §5): AudioLDM 2's AutoencoderKL layout, without the attention block.

Encoder: log-mel [B, 1, T_mel, n_mels] -> conv_in -> per level ``num_res_blocks`` ResNet
blocks (GroupNorm, SiLU, 3x3 conv) and a 2x down-sample in both axes after every level but the
last -> middle ResNet blocks -> GroupNorm, SiLU, conv to 2 * latent_channels ("double_z":
mean and log-variance) -> 1x1 quant_conv. The decoder mirrors it (num_res_blocks + 1 blocks per
level, nearest 2x up-sample + conv). The diffusion latent is the posterior mean (or a sample)
multiplied by ``config.vae.scale_factor``; the pipeline divides by it before decoding.
LDM's mid-block attention (`VAEMidAttention`, one head over every (time, mel) position) is
there only when ``config.vae.mid_attention`` (the paper config, AudioLDM 2's layout): it is
quadratic in time, and the variable 10-60 s lengths make it the dominant cost of the decoder on
an edge device, so the demo leaves it out.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vem.runtime.config import VemConfig

from .unet import group_norm


class VAEResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.block = nn.Sequential(
            group_norm(in_channels),
            nn.SiLU(),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            group_norm(out_channels),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.block(x)


class VAEMidAttention(nn.Module):
    """LDM / diffusers' VAE mid-block attention: GroupNorm, one-head self-attention over the
    flattened (time, mel) positions (q, k, v and output projections with bias), residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.Linear(channels, channels)
        self.scale = 1.0 / math.sqrt(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B, T*F, C], time-major
        q, k, v = self.to_q(tokens), self.to_k(tokens), self.to_v(tokens)
        weights = torch.softmax(torch.matmul(q.float(), k.float().transpose(1, 2)) * self.scale, dim=-1)
        out = self.to_out(torch.matmul(weights.to(v.dtype), v))
        return x + out.transpose(1, 2).reshape(x.shape)


def _middle(channels: int, attention: bool) -> list[nn.Module]:
    middle: list[nn.Module] = [VAEResBlock(channels, channels)]
    if attention:
        middle.append(VAEMidAttention(channels))
    return middle + [VAEResBlock(channels, channels)]


class VAEDownsample(nn.Module):
    """LDM's down-sample: pad right/bottom by one, then 3x3 conv with stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class VAEUpsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class VAEEncoder(nn.Module):
    """log-mel [B, 1, T, n_mels] -> (mean, logvar), each [B, latent_channels, T/d, n_mels/d]."""

    def __init__(self, config: VemConfig):
        super().__init__()
        vcfg = config.vae
        self.downsample = vcfg.downsample
        self.n_mels = config.audio.n_mels
        layers: list[nn.Module] = [nn.Conv2d(1, vcfg.channels, 3, padding=1)]
        channels = vcfg.channels
        for level, mult in enumerate(vcfg.channel_mult):
            for _ in range(vcfg.num_res_blocks):
                layers.append(VAEResBlock(channels, vcfg.channels * mult))
                channels = vcfg.channels * mult
            if level != len(vcfg.channel_mult) - 1:
                layers.append(VAEDownsample(channels))
        layers += [
            *_middle(channels, vcfg.mid_attention),
            group_norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, 2 * vcfg.latent_channels, 3, padding=1),
            nn.Conv2d(2 * vcfg.latent_channels, 2 * vcfg.latent_channels, 1),  # quant_conv
        ]
        self.layers = nn.Sequential(*layers)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            if mel.dim() != 4 or mel.shape[1] != 1 or mel.shape[3] != self.n_mels:
                raise ValueError(f"mel must be [B, 1, T, {self.n_mels}], got {tuple(mel.shape)}")
            if mel.shape[2] % self.downsample:
                raise ValueError(f"mel length {mel.shape[2]} must be a multiple of {self.downsample}")
        mean, logvar = self.layers(mel).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)


class VAEDecoder(nn.Module):
    """latent [B, latent_channels, T', F'] -> log-mel [B, 1, T' * d, F' * d]."""

    def __init__(self, config: VemConfig):
        super().__init__()
        vcfg = config.vae
        self.latent_channels = vcfg.latent_channels
        channels = vcfg.channels * vcfg.channel_mult[-1]
        layers: list[nn.Module] = [
            nn.Conv2d(vcfg.latent_channels, vcfg.latent_channels, 1),  # post_quant_conv
            nn.Conv2d(vcfg.latent_channels, channels, 3, padding=1),
            *_middle(channels, vcfg.mid_attention),
        ]
        for level in reversed(range(len(vcfg.channel_mult))):
            for _ in range(vcfg.num_res_blocks + 1):
                layers.append(VAEResBlock(channels, vcfg.channels * vcfg.channel_mult[level]))
                channels = vcfg.channels * vcfg.channel_mult[level]
            if level != 0:
                layers.append(VAEUpsample(channels))
        layers += [group_norm(channels), nn.SiLU(), nn.Conv2d(channels, 1, 3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            if latent.dim() != 4 or latent.shape[1] != self.latent_channels:
                raise ValueError(f"latent must be [B, {self.latent_channels}, T, F], got {tuple(latent.shape)}")
        return self.layers(latent)


class MelVAE(nn.Module):
    """Encoder + decoder; ``encode`` returns (mean, logvar), ``decode`` a log-mel."""

    def __init__(self, config: VemConfig):
        super().__init__()
        self.encoder = VAEEncoder(config)
        self.decoder = VAEDecoder(config)

    def encode(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(mel)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)

    @staticmethod
    def sample(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + torch.exp(0.5 * logvar) * noise

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the posterior mean (deterministic)."""
        mean, _ = self.encode(mel)
        return self.decode(mean)
