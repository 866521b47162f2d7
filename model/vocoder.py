"""HiFi-GAN vocoder (docs/paper.md §5), V1 generator layout with AudioLDM 2's 16 kHz up-sampling.

log-mel [B, n_mels, T_mel] -> 7-tap conv -> per up-sampling stage: LeakyReLU(0.1), transposed
conv (stride = rate), multi-receptive-field fusion (mean of ResBlock1s with the configured
kernels and dilations) -> LeakyReLU, 7-tap conv to one channel, tanh -> [B, 1, T_mel * hop].

Transposed-conv padding (``config.vocoder.upsample_padding``): "exact" chooses it so each stage
multiplies the length exactly by its rate (``padding = ceil((k - r) / 2)``, ``output_padding =
(k - r) mod 2``), so the output has exactly T_mel * hop samples even for an odd k - r; "hifigan"
is HiFi-GAN's own ``padding = (k - r) // 2`` (AudioLDM 2's vocoder: 16 - 5 is odd, so the first
stage gives 5 T + 1 samples and the waveform 160 T + 32), cropped to the first T_mel * hop
samples as AudioLDM 2's pipeline crops it. Weight normalisation is used
for training; `HiFiGAN.remove_weight_norm` folds it away before export.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from vem.runtime.config import VemConfig

LRELU_SLOPE = 0.1


class ResBlock1(nn.Module):
    """HiFi-GAN ResBlock1: pairs of (dilated conv, conv) with residuals."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=d * (kernel_size - 1) // 2))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2)) for _ in dilations
        )
        for conv in (*self.convs1, *self.convs2):
            _init_conv(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2 in zip(self.convs1, self.convs2):
            h = conv2(F.leaky_relu(conv1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
            x = x + h
        return x


def _init_conv(conv: nn.Module) -> None:
    """HiFi-GAN's init: N(0, 0.01) weights (applied before weight norm splits them)."""
    if parametrize.is_parametrized(conv, "weight"):
        with torch.no_grad():
            direction = conv.parametrizations.weight.original1
            direction.normal_(0.0, 0.01)
            dims = tuple(range(1, direction.dim()))
            conv.parametrizations.weight.original0.copy_(direction.norm(dim=dims, keepdim=True))


class HiFiGAN(nn.Module):
    """HiFi-GAN V1 generator: [B, n_mels, T_mel] -> [B, 1, T_mel * prod(upsample_rates)]."""

    def __init__(self, config: VemConfig):
        super().__init__()
        vcfg = config.vocoder
        if math.prod(vcfg.upsample_rates) != config.audio.hop_length:
            raise ValueError(
                f"vocoder upsample_rates {vcfg.upsample_rates} multiply to {math.prod(vcfg.upsample_rates)}, "
                f"not the hop length {config.audio.hop_length}"
            )
        if len(vcfg.resblock_kernel_sizes) != len(vcfg.resblock_dilations):
            raise ValueError("vocoder resblock_kernel_sizes and resblock_dilations must have the same length")
        if vcfg.upsample_padding not in ("exact", "hifigan"):
            raise ValueError(f"vocoder upsample_padding must be 'exact' or 'hifigan', got {vcfg.upsample_padding!r}")
        exact = vcfg.upsample_padding == "exact"
        self.crop = not exact
        self.n_mels = config.audio.n_mels
        self.hop = config.audio.hop_length
        channels = vcfg.upsample_initial_channel
        self.conv_pre = weight_norm(nn.Conv1d(config.audio.n_mels, channels, 7, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for rate, kernel in zip(vcfg.upsample_rates, vcfg.upsample_kernel_sizes):
            if kernel < rate:
                raise ValueError(f"vocoder upsample kernel {kernel} is smaller than its rate {rate}")
            out_channels = channels // 2
            up = nn.ConvTranspose1d(
                channels, out_channels, kernel, stride=rate,
                padding=(kernel - rate + 1) // 2 if exact else (kernel - rate) // 2,
                output_padding=(kernel - rate) % 2 if exact else 0,
            )
            self.ups.append(weight_norm(up))
            _init_conv(self.ups[-1])
            for k, d in zip(vcfg.resblock_kernel_sizes, vcfg.resblock_dilations):
                self.resblocks.append(ResBlock1(out_channels, k, tuple(d)))
            channels = out_channels
        self.num_kernels = len(vcfg.resblock_kernel_sizes)
        self.conv_post = weight_norm(nn.Conv1d(channels, 1, 7, padding=3))
        _init_conv(self.conv_post)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            if mel.dim() != 3 or mel.shape[1] != self.n_mels:
                raise ValueError(f"vocoder input must be [B, {self.n_mels}, T_mel], got {tuple(mel.shape)}")
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        x = self.conv_post(F.leaky_relu(x))
        if self.crop:
            x = x[:, :, : mel.shape[-1] * self.hop]
        return torch.tanh(x)

    @property
    def has_weight_norm(self) -> bool:
        return any(parametrize.is_parametrized(m, "weight") for m in self.modules())

    def remove_weight_norm(self) -> None:
        """Fold weight normalisation into plain weights (export; numerically the same output)."""
        for module in self.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
