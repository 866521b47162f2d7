"""Attention: the storyboard mask (docs/paper.md Eq. 7) and SG-CAtt (Eq. 8).

Eq. 7: ``sMask[x, y] = 1 if s_i <= x < s_i + d_i``: latent frame x may attend to the condition
tokens of storyboard i only if x lies inside shot i. Eq. 8 writes ``softmax(sMask ⊙ QKᵀ/√d) V``;
we read it as a proper mask and add a large *finite* negative bias (-1e4) to masked logits
before an fp32 softmax. Finite on purpose: fp16 graphs and int8 calibration fail on -inf
(docs/toolchain.md), and exp(-1e4) underflows to exactly 0 in fp32, so masked tokens get weight 0.

Conventions, shared with the numpy runtime (which must build the same mask):

* latent frame t stands for the time of its centre, ``(t + 0.5) / latent_fps`` seconds;
* each T-UNet level halves time; the mask of a level with down-sampling factor s is the
  **max-pool** of the top-level mask over windows of s frames (kernel = stride = s): a coarse
  frame may see every storyboard that any of its s top-level frames lies in. Max-pool (not a
  strided pick) so that a shot shorter than s latent frames never disappears from a level;
* a row (latent frame) that has no allowed token at all -- padding frames past the end of the
  video, or a gap between shots -- is left unmasked: it attends to every token. This keeps the
  softmax from ever seeing an all-masked row.

The Query comes from the latent tokens: the (time, mel) plane flattened time-major
(index = t * F + f); the mask is the same for every mel bin of a frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import TOKENS_PER_STORYBOARD

# Additive bias on masked logits (see the module docstring for why it is finite).
MASK_BIAS = -1.0e4


def storyboard_mask(
    start_s: torch.Tensor, duration_s: torch.Tensor, num_latent_frames: int, latent_fps: float
) -> torch.Tensor:
    """Eq. 7 at the top latent resolution: [B, N] starts and durations (seconds) ->
    float mask [B, num_latent_frames, N], 1 where latent frame t (its centre time) lies in
    [start, start + duration) of storyboard n."""
    if start_s.shape != duration_s.shape or start_s.dim() != 2:
        raise ValueError(
            f"start_s and duration_s must both be [B, N]; got {tuple(start_s.shape)} and {tuple(duration_s.shape)}"
        )
    if num_latent_frames < 1 or latent_fps <= 0:
        raise ValueError(f"need num_latent_frames >= 1 and latent_fps > 0, got {num_latent_frames}, {latent_fps}")
    times = (torch.arange(num_latent_frames, dtype=torch.float64, device=start_s.device) + 0.5) / latent_fps
    times = times.view(1, -1, 1)
    start = start_s.to(torch.float64).unsqueeze(1)
    end = start + duration_s.to(torch.float64).unsqueeze(1)
    return ((times >= start) & (times < end)).to(torch.float32)


def resize_storyboard_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """Top-level mask [B, T, N] -> the mask of a level with time down-sampling ``factor``:
    max-pool over windows of ``factor`` frames -> [B, T / factor, N]."""
    if factor == 1:
        return mask
    pooled = F.max_pool1d(mask.transpose(1, 2).float(), kernel_size=factor, stride=factor)
    return pooled.transpose(1, 2)


def storyboard_attention_bias(level_mask: torch.Tensor, mel_bins: int) -> torch.Tensor:
    """Level mask [B, T, N] -> additive bias [B, T * mel_bins, N * 6] (fp32) for SG-CAtt.

    Each storyboard's mask entry is expanded to its six tokens, rows with no allowed token are
    opened to every token (see the module docstring), and the row is repeated for each mel bin
    (the queries are the (time, mel) plane flattened time-major)."""
    mask = level_mask.float()
    # A row with no allowed storyboard gets "allow all": max(mask, 1 - any(mask)).
    has_any = mask.amax(dim=-1, keepdim=True)
    allowed = torch.maximum(mask, 1.0 - has_any)
    allowed = allowed.unsqueeze(-1).expand(-1, -1, -1, TOKENS_PER_STORYBOARD).flatten(2)  # [B, T, N*6]
    bias = (1.0 - allowed) * MASK_BIAS
    bias = bias.unsqueeze(2).expand(-1, -1, mel_bins, -1).flatten(1, 2)  # [B, T*F, N*6]
    return bias


def multi_head_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(Q Kᵀ/√d + bias) V with the logits and softmax in fp32.

    q [B, Lq, H*d], k and v [B, Lk, H*d], bias [B, Lq, Lk] or None -> [B, Lq, H*d].
    Written out (no fused kernel) so the exported graph and the numerics are the same on every
    backend, and masked weights are exactly zero."""
    batch = q.shape[0]
    q = q.reshape(batch, -1, heads, q.shape[-1] // heads).transpose(1, 2)
    k = k.reshape(batch, -1, heads, k.shape[-1] // heads).transpose(1, 2)
    v = v.reshape(batch, -1, heads, v.shape[-1] // heads).transpose(1, 2)
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    if bias is not None:
        logits = logits + bias.unsqueeze(1)
    weights = torch.softmax(logits, dim=-1).to(v.dtype)
    out = torch.matmul(weights, v)
    return out.transpose(1, 2).flatten(2)


class Attention(nn.Module):
    """Multi-head attention; self-attention when ``context`` is None, else cross-attention."""

    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: int | None = None):
        super().__init__()
        inner = heads * head_dim
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, query_dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        context = x if context is None else context
        out = multi_head_attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads, bias)
        return self.to_out(out)


class SGCrossAttention(nn.Module):
    """SG-CAtt (Eqs. 7-8): Query from the latent (time, mel) tokens, Key/Value from the
    storyboard tokens, each latent frame restricted to its own storyboard's six tokens.

    forward(x [B, T, F, C], tokens [B, N*6, context_dim], level_mask [B, T, N] or None)
    -> [B, T, F, C]. ``level_mask`` is the storyboard mask already resized to this level's time
    resolution (`resize_storyboard_mask`); None (or ``use_mask=False``, the plain
    cross-attention ablation) attends to all tokens."""

    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: int, use_mask: bool = True):
        super().__init__()
        self.use_mask = use_mask
        self.attention = Attention(query_dim, heads, head_dim, context_dim)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, level_mask: torch.Tensor | None) -> torch.Tensor:
        flat = x.flatten(1, 2)  # [B, T*F, C], time-major
        bias = None
        if self.use_mask and level_mask is not None:
            bias = storyboard_attention_bias(level_mask, x.shape[2])
        out = self.attention(flat, tokens, bias)
        return out.reshape(x.shape)
