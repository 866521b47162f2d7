"""Visual encoder and style head (docs/paper.md §2; stands in for MAViL, see docs/architecture.md).

The paper encodes each storyboard's frames with MAViL (an audio-video latent space) and takes
the global emotion/style tags from a music classifier. MAViL's weights are not available
offline, so the project uses a small 2-D CNN over single frames [B, 3, S, S] -> visual_dim,
trained on the synthetic TB-Match data: a storyboard's visual condition f_v^{story_i} is the
mean of its frames' embeddings (`pool_storyboards`), and the style head predicts tag logits
from the mean embedding of the whole video, so tags need no user input at inference.
"""

from __future__ import annotations

import torch
from torch import nn

from vem.runtime.config import VemConfig

from .unet import group_norm


class VisualEncoder(nn.Module):
    """frames [B, 3, S, S] (RGB in [0, 1]) -> [B, visual_dim]."""

    def __init__(self, config: VemConfig):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out_channels in config.visual.channels:
            layers += [
                nn.Conv2d(channels, out_channels, 3, stride=2, padding=1),
                group_norm(out_channels),
                nn.SiLU(),
                nn.Conv2d(out_channels, out_channels, 3, padding=1),
                group_norm(out_channels),
                nn.SiLU(),
            ]
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(channels, config.condition.visual_dim)
        self.frame_size = config.visual.frame_size

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            if frames.dim() != 4 or frames.shape[1] != 3:
                raise ValueError(f"frames must be [B, 3, H, W], got {tuple(frames.shape)}")
        return self.proj(self.features(frames).mean(dim=(2, 3)))


class StyleHead(nn.Module):
    """Mean video embedding [B, visual_dim] -> tag logits [B, num_tags]."""

    def __init__(self, config: VemConfig):
        super().__init__()
        self.linear = nn.Linear(config.condition.visual_dim, config.condition.num_tags)

    def forward(self, video_embedding: torch.Tensor) -> torch.Tensor:
        return self.linear(video_embedding)


def pool_storyboards(frame_embeddings: torch.Tensor, frame_storyboard: torch.Tensor, num_storyboards: int) -> torch.Tensor:
    """Mean frame embedding per storyboard: [T, D] embeddings and [T] storyboard indices
    (0..N-1; frames with index < 0 are ignored) -> [N, D]. A storyboard with no frame gets 0."""
    if frame_embeddings.dim() != 2 or frame_storyboard.shape != frame_embeddings.shape[:1]:
        raise ValueError(
            f"need frame_embeddings [T, D] and frame_storyboard [T], got {tuple(frame_embeddings.shape)} "
            f"and {tuple(frame_storyboard.shape)}"
        )
    if int(frame_storyboard.max()) >= num_storyboards:
        raise ValueError(f"frame_storyboard has index {int(frame_storyboard.max())} >= {num_storyboards}")
    valid = frame_storyboard >= 0
    index = frame_storyboard[valid].long()
    sums = frame_embeddings.new_zeros(num_storyboards, frame_embeddings.shape[1]).index_add_(0, index, frame_embeddings[valid])
    counts = torch.bincount(index, minlength=num_storyboards).clamp(min=1).to(frame_embeddings.dtype)
    return sums / counts.unsqueeze(1)
