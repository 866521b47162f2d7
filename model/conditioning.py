"""Condition builder: the storyboard tokens of SG-CAtt (docs/paper.md §3, Eq. 6).

Eq. 6 concatenates, per storyboard i, ``f_t^C ‖ f_t^T ‖ f_t^{story_i} ‖ f_v^{story_i} ‖
f_s^{story_i} ‖ f_d^{story_i}``. Here each of the six vectors becomes one token of width
``context_dim`` (a Linear projection of the encoder output plus a learned token-type
embedding), so storyboard i contributes six Key/Value tokens. Tokens are ordered
storyboard-major: storyboard i's six tokens are contiguous, in the order of
``vem.runtime.config.CONDITION_TOKENS``. The caption and tag tokens are repeated in every
storyboard so that a latent frame that may only see its own storyboard still sees the global
theme.

Inputs are pre-computed encoder outputs (CLAP-space text embeddings, MAViL-space visual
embeddings); the text encoders are not part of the torch model. The timing MLPs (f_s, f_d)
are, because the paper trains them.

Classifier-free guidance uses a learned null token per token type (`null_tokens`); training
drops the condition by replacing all of a sample's tokens with the null tokens (`drop_mask`).
"""

from __future__ import annotations

import torch
from torch import nn

from vem.runtime.config import CONDITION_TOKENS, VemConfig

from .timing import TimingMLP

TOKENS_PER_STORYBOARD = len(CONDITION_TOKENS)
# Number of global tokens given to the plain cross-attention (attn2): caption and tags.
NUM_GLOBAL_TOKENS = 2


class ConditionBuilder(nn.Module):
    """Encoder outputs -> storyboard tokens [B, N * 6, context_dim] (Eq. 6)."""

    def __init__(self, config: VemConfig):
        super().__init__()
        cond = config.condition
        width = config.unet.context_dim
        self.context_dim = width
        self.start_timing = TimingMLP(cond)  # f_s
        self.duration_timing = TimingMLP(cond)  # f_d
        self.caption_proj = nn.Linear(cond.text_dim, width)
        self.tags_proj = nn.Linear(cond.text_dim, width)
        self.story_text_proj = nn.Linear(cond.text_dim, width)
        self.story_visual_proj = nn.Linear(cond.visual_dim, width)
        self.start_proj = nn.Linear(cond.timing_dim, width)
        self.duration_proj = nn.Linear(cond.timing_dim, width)
        self.type_embedding = nn.Parameter(torch.randn(TOKENS_PER_STORYBOARD, width) * 0.02)
        self.null_embedding = nn.Parameter(torch.randn(TOKENS_PER_STORYBOARD, width) * 0.02)
        self.text_dim = cond.text_dim
        self.visual_dim = cond.visual_dim

    def forward(
        self,
        caption_emb: torch.Tensor,
        tags_emb: torch.Tensor,
        story_text: torch.Tensor,
        story_visual: torch.Tensor,
        story_start_s: torch.Tensor,
        story_duration_s: torch.Tensor,
        drop_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Build the tokens.

        Shapes: caption_emb, tags_emb [B, text_dim]; story_text [B, N, text_dim]; story_visual
        [B, N, visual_dim]; story_start_s, story_duration_s [B, N] in seconds. ``drop_mask``
        [B] bool (True = replace every token of that sample by its null token, for condition
        dropout in training). Returns [B, N * 6, context_dim], storyboard-major.
        """
        self._check_shapes(caption_emb, tags_emb, story_text, story_visual, story_start_s, story_duration_s)
        num_storyboards = story_text.shape[1]
        caption = self.caption_proj(caption_emb).unsqueeze(1).expand(-1, num_storyboards, -1)
        tags = self.tags_proj(tags_emb).unsqueeze(1).expand(-1, num_storyboards, -1)
        parts = [
            caption,
            tags,
            self.story_text_proj(story_text),
            self.story_visual_proj(story_visual),
            self.start_proj(self.start_timing(story_start_s)),
            self.duration_proj(self.duration_timing(story_duration_s)),
        ]
        # [B, N, 6, C] + type embedding, then storyboard-major flattening to [B, N*6, C].
        tokens = torch.stack(parts, dim=2) + self.type_embedding
        tokens = tokens.flatten(1, 2)
        if drop_mask is not None:
            null = self.null_tokens_like(tokens)
            keep = drop_mask.to(torch.bool).logical_not().reshape(-1, 1, 1)
            tokens = torch.where(keep, tokens, null)
        return tokens

    def null_tokens(self, batch: int, num_storyboards: int) -> torch.Tensor:
        """The unconditional tokens for classifier-free guidance: [batch, N * 6, context_dim]."""
        return self.null_embedding.unsqueeze(0).unsqueeze(0).expand(batch, num_storyboards, -1, -1).flatten(1, 2)

    def null_tokens_like(self, tokens: torch.Tensor) -> torch.Tensor:
        """Null tokens with the batch and storyboard count of ``tokens`` (trace-friendly)."""
        # reshape, not unflatten: the tracer freezes unflatten's sizes, which would fix the
        # storyboard count of an exported graph.
        grid = tokens.reshape(tokens.shape[0], -1, TOKENS_PER_STORYBOARD, tokens.shape[-1])
        return (torch.zeros_like(grid) + self.null_embedding).flatten(1, 2)

    @staticmethod
    def global_tokens(tokens: torch.Tensor) -> torch.Tensor:
        """Caption and tag tokens of storyboard 0: [B, 2, context_dim], the context of attn2.

        They are identical in every storyboard, so storyboard 0's copy stands for all; for null
        tokens this gives the null caption and null tags tokens."""
        return tokens[:, :NUM_GLOBAL_TOKENS]

    def _check_shapes(self, caption_emb, tags_emb, story_text, story_visual, story_start_s, story_duration_s):
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return
        if caption_emb.dim() != 2 or caption_emb.shape[-1] != self.text_dim:
            raise ValueError(f"caption_emb must be [B, {self.text_dim}], got {tuple(caption_emb.shape)}")
        if tags_emb.shape != caption_emb.shape:
            raise ValueError(f"tags_emb must be [B, {self.text_dim}], got {tuple(tags_emb.shape)}")
        batch = caption_emb.shape[0]
        if story_text.dim() != 3 or story_text.shape[0] != batch or story_text.shape[2] != self.text_dim:
            raise ValueError(f"story_text must be [B, N, {self.text_dim}], got {tuple(story_text.shape)}")
        num = story_text.shape[1]
        if num < 1:
            raise ValueError("at least one storyboard is needed")
        if tuple(story_visual.shape) != (batch, num, self.visual_dim):
            raise ValueError(
                f"story_visual must be [B, N, {self.visual_dim}] = {(batch, num, self.visual_dim)}, "
                f"got {tuple(story_visual.shape)}"
            )
        for name, value in (("story_start_s", story_start_s), ("story_duration_s", story_duration_s)):
            if tuple(value.shape) != (batch, num):
                raise ValueError(f"{name} must be [B, N] = {(batch, num)}, got {tuple(value.shape)}")
