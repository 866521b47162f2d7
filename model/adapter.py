"""TB adapter (docs/paper.md §4, Eq. 10): rhythm conditioning of every T-UNet encoder block.

Two zero-initialised 1-D convolutions over time map the aligner features (already resized to
the block's time resolution) to a per-frame, per-channel scale gamma and shift beta, broadcast
over the mel axis: ``z <- z + gamma * z + beta`` (AdaLN-style). Zero initialisation makes a
fresh adapter exactly the identity, so plugging it into a trained T-UNet (training phase 3)
starts from the phase-2 model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def resize_features(features: torch.Tensor, factor: int) -> torch.Tensor:
    """Aligner features at the top latent resolution [B, T, D] -> [B, D, T / factor] by average
    pooling over windows of ``factor`` frames (the same windows as the storyboard mask's
    max-pool, `vem.model.attention.resize_storyboard_mask`)."""
    channels_first = features.transpose(1, 2)
    if factor == 1:
        return channels_first
    return F.avg_pool1d(channels_first, kernel_size=factor, stride=factor)


class TBAdapter(nn.Module):
    """Eq. 10 for one encoder block with ``channels`` channels."""

    def __init__(self, feature_dim: int, channels: int, kernel_size: int = 3):
        super().__init__()
        padding = kernel_size // 2
        self.to_gamma = nn.Conv1d(feature_dim, channels, kernel_size, padding=padding)
        self.to_beta = nn.Conv1d(feature_dim, channels, kernel_size, padding=padding)
        for conv in (self.to_gamma, self.to_beta):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    @torch.no_grad()
    def add_inputs(self, count: int = 1) -> None:
        """Widen both convolutions by ``count`` input channels with zero weights: the adapter
        computes exactly what it did, and the new channels (the beat grid) start unheard. Done
        after construction (`TUNet` builds a beat-grid model's adapters this way too) so that the
        seeded random initial weights of the rest of the model do not depend on the width."""
        for name in ("to_gamma", "to_beta"):
            old = getattr(self, name)
            # skip_init: no random draws (every weight is set below)
            new = torch.nn.utils.skip_init(nn.Conv1d, old.in_channels + count, old.out_channels, old.kernel_size[0],
                                           padding=old.padding[0], device=old.weight.device, dtype=old.weight.dtype)
            new.weight.zero_()
            new.weight[:, : old.in_channels] = old.weight
            new.bias.copy_(old.bias)
            setattr(self, name, new)

    def forward(self, z: torch.Tensor, level_features: torch.Tensor,
                scale: torch.Tensor | None = None) -> torch.Tensor:
        """z [B, C, T, F]; level_features [B, D, T] (this block's time resolution); ``scale`` [B]
        multiplies the adapter's modulation per sample (0 = this sample without the adapter,
        exactly: z is returned unchanged), so one batch can hold guided branches with and without
        the rhythm path."""
        gamma = self.to_gamma(level_features).unsqueeze(-1)
        beta = self.to_beta(level_features).unsqueeze(-1)
        if scale is not None:
            scale = scale.to(z.dtype).view(-1, 1, 1, 1)
            gamma = gamma * scale
            beta = beta * scale
        return z + gamma * z + beta
