"""TB aligner (docs/paper.md §4, Eq. 9): ResNet(2+1)D-style network over 16 fps video frames.

Input [B, in_channels, T_video, H, W]: RGB plus the transition detector's per-frame probability
(4 channels). Every 3-D convolution is factorised R(2+1)D-style into a spatial 1 x k x k
convolution followed by a temporal k x 1 x 1 convolution, with the intermediate width chosen as
in Tran et al. (2018) so that the pair has about the parameters of the full k x k x k kernel.
Unlike a video classifier the network down-samples only in space (stride 1 in time), so it
keeps one output per frame. Global spatial average pooling gives the per-frame features
[B, T_video, feature_dim] -- the penultimate activations that feed the TB adapter -- and a
linear head gives the per-frame logit of Eq. 9 (BCE target: the frame is a cut and a beat).

`resample_to_latent` moves per-frame features from the video frame rate to the latent frame
rate by linear interpolation in time.
"""

from __future__ import annotations

import torch
from torch import nn

from vem.runtime.config import AlignerConfig


def _mid_channels(in_channels: int, out_channels: int, spatial: int, temporal: int) -> int:
    """R(2+1)D intermediate width: t d^2 N_in N_out / (d^2 N_in + t N_out)."""
    return max(1, (temporal * spatial * spatial * in_channels * out_channels)
               // (spatial * spatial * in_channels + temporal * out_channels))


class Conv2Plus1D(nn.Sequential):
    """Spatial 1 x k x k conv (stride 1 x s x s) -> BN -> ReLU -> temporal k x 1 x 1 conv."""

    def __init__(self, in_channels: int, out_channels: int, spatial_kernel: int = 3, temporal_kernel: int = 3,
                 spatial_stride: int = 1):
        mid = _mid_channels(in_channels, out_channels, spatial_kernel, temporal_kernel)
        super().__init__(
            nn.Conv3d(in_channels, mid, (1, spatial_kernel, spatial_kernel), stride=(1, spatial_stride, spatial_stride),
                      padding=(0, spatial_kernel // 2, spatial_kernel // 2), bias=False),
            nn.BatchNorm3d(mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid, out_channels, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0), bias=False),
        )


class BasicBlock2Plus1D(nn.Module):
    """ResNet basic block with (2+1)D convolutions; spatial stride only."""

    def __init__(self, in_channels: int, out_channels: int, spatial_stride: int):
        super().__init__()
        self.conv1 = nn.Sequential(Conv2Plus1D(in_channels, out_channels, spatial_stride=spatial_stride),
                                   nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(Conv2Plus1D(out_channels, out_channels), nn.BatchNorm3d(out_channels))
        self.shortcut: nn.Module = nn.Identity()
        if spatial_stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=(1, spatial_stride, spatial_stride), bias=False),
                nn.BatchNorm3d(out_channels),
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class TBAligner(nn.Module):
    """frames [B, C_in, T, H, W] -> (features [B, T, feature_dim], logits [B, T])."""

    def __init__(self, config: AlignerConfig):
        super().__init__()
        if len(config.stage_channels) != len(config.blocks_per_stage):
            raise ValueError("aligner stage_channels and blocks_per_stage must have the same length")
        self.in_channels = config.in_channels
        stem_mid = _mid_channels(config.in_channels, config.stem_channels, 7, 3)
        # R(2+1)D stem: 1x7x7 spatial (stride 2) then 3x1x1 temporal.
        self.stem = nn.Sequential(
            nn.Conv3d(config.in_channels, stem_mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(stem_mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(stem_mid, config.stem_channels, (3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(config.stem_channels),
            nn.ReLU(inplace=True),
        )
        stages = []
        channels = config.stem_channels
        for index, (out_channels, blocks) in enumerate(zip(config.stage_channels, config.blocks_per_stage)):
            for b in range(blocks):
                stride = 2 if (index > 0 and b == 0) else 1
                stages.append(BasicBlock2Plus1D(channels, out_channels, stride))
                channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.feature_dim = channels
        self.head = nn.Linear(channels, 1)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            if frames.dim() != 5 or frames.shape[1] != self.in_channels:
                raise ValueError(
                    f"aligner frames must be [B, {self.in_channels}, T, H, W] (RGB + transition "
                    f"probability), got {tuple(frames.shape)}"
                )
        h = self.stages(self.stem(frames))
        features = h.mean(dim=(3, 4)).transpose(1, 2)  # [B, T, C]: penultimate activations
        logits = self.head(features).squeeze(-1)
        return features, logits


def resample_to_latent(
    features: torch.Tensor, num_latent_frames: int, video_fps: float = 16.0, latent_fps: float = 25.0
) -> torch.Tensor:
    """Per-frame features [B, T_video, D] at ``video_fps`` -> [B, num_latent_frames, D] at
    ``latent_fps`` by linear interpolation in time.

    Frame k of either stream stands for its centre time (k + 0.5) / fps, so the two streams
    line up in seconds even when the latent is padded beyond the video; latent frames past the
    last video frame (or before the first centre) repeat the edge frame. The defaults are the
    paper and demo configs' rates (16 fps video; 16 kHz / hop 160 / 4x VAE = 25 latent fps)."""
    if features.dim() != 3:
        raise ValueError(f"features must be [B, T_video, D], got {tuple(features.shape)}")
    num_video = features.shape[1]
    if num_video < 1 or num_latent_frames < 1:
        raise ValueError(f"need at least one video and one latent frame, got {num_video} and {num_latent_frames}")
    times = (torch.arange(num_latent_frames, dtype=torch.float64, device=features.device) + 0.5) / latent_fps
    position = (times * video_fps - 0.5).clamp(0.0, num_video - 1)
    lower = position.floor().long()
    upper = (lower + 1).clamp(max=num_video - 1)
    weight = (position - lower.to(torch.float64)).to(features.dtype).view(1, -1, 1)
    return features[:, lower] * (1.0 - weight) + features[:, upper] * weight
