"""T-UNet: the latent diffusion backbone with SG-CAtt and the TB adapter (docs/paper.md §§3-5).

Layout after AudioLDM 2's openaimodel UNet (2-D over the latent [B, C, T, F] plane: time x
latent mel bins): ResBlocks (GroupNorm, SiLU, 3x3 conv, timestep embedding added), a 2x
down-sample in both axes after every level but the last, a middle block (ResBlock, spatial
transformer, ResBlock), a mirrored up path with skip connections, and spatial transformers at
the levels whose down-sampling factor is in ``config.unet.attention_downsample``.

Transformer block = attn1 (self-attention over the latent tokens) + attn2 (cross-attention to
the global caption/tag tokens) + GEGLU feed-forward. In the final block of every spatial
transformer, attn1 is replaced by SG-CAtt (Eqs. 7-8, `vem.model.attention`); with depth 1 (the
demo configuration) there is no self-attention at all and attention cost is linear in time.

``config.unet.layout == "audioldm2"`` (the paper config) makes each attention slot AudioLDM 2's
three transformers instead (`TransformerStack`): self + self-attention, self-attention + cross-
attention to a ``loa_dim`` context (a projection of the global tokens, ``loa_proj``: AudioLDM 2's
GPT-2 tokens have no VeM counterpart), and self-attention + cross-attention to the global tokens,
with SG-CAtt added beside that last self-attention (zero-initialised output, so a converted
AudioLDM 2 T-UNet starts as AudioLDM 2's; docs/audioldm2.md). ResBlocks and the output norm take
``config.unet.norm_eps``.

The TB adapter (Eq. 10, `vem.model.adapter`) modulates the output of every encoder block (each
ResBlock of the down path, after that block's transformer if it has one).

Level conventions (shared with the runtime): a level with down-sampling factor s sees the
storyboard mask max-pooled over windows of s frames and the aligner features average-pooled
over the same windows. Input time length must be a multiple of ``config.unet.time_multiple``.

The forward pass has no Python branching on tensor values or shapes, so ``torch.onnx.export``
keeps the time and storyboard axes dynamic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vem.runtime.config import VemConfig

from .adapter import TBAdapter, resize_features
from .attention import Attention, SGCrossAttention, resize_storyboard_mask
from .conditioning import TOKENS_PER_STORYBOARD


def norm_groups(channels: int, max_groups: int = 32) -> int:
    """Largest group count <= 32 that divides ``channels`` (32 as in LDM when it divides)."""
    for groups in range(min(max_groups, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def group_norm(channels: int, eps: float = 1e-6) -> nn.GroupNorm:
    return nn.GroupNorm(norm_groups(channels), channels, eps=eps)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero every parameter: residual branches start as the identity (LDM convention)."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of diffusion timesteps (Eq. 1's t), [B] -> [B, dim], in fp32
    whatever the model's dtype (fp16 cannot hold t * freq for t up to 1000 precisely)."""
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=timesteps.device) * (-math.log(max_period) / half)
    args = timesteps.reshape(-1, 1).float() * torch.exp(exponent).unsqueeze(0)
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, + timestep embedding, GroupNorm-SiLU-conv (zero-init), + skip."""

    def __init__(self, in_channels: int, emb_dim: int, out_channels: int, eps: float = 1e-6):
        super().__init__()
        self.in_layers = nn.Sequential(
            group_norm(in_channels, eps), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels))
        self.out_layers = nn.Sequential(
            group_norm(out_channels, eps), nn.SiLU(), zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        return self.skip(x) + self.out_layers(h)


class Downsample(nn.Module):
    """3x3 conv, stride 2 in time and mel."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest 2x in time and mel, then 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class FeedForward(nn.Module):
    """GEGLU feed-forward, 4x inner width (LDM's transformer)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        inner = dim * mult
        self.proj_in = nn.Linear(dim, inner * 2)
        self.proj_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj_in(x).chunk(2, dim=-1)
        return self.proj_out(value * F.gelu(gate))


class TransformerBlock(nn.Module):
    """attn1 (self-attention, or SG-CAtt when ``storyboard``) + attn2 (global tokens) + FF.

    ``context``: what attn2 reads: "global" (the global tokens), "self" (the block's own tokens:
    AudioLDM 2's extra self-attention layer) or "loa" (the projected global tokens, ``loa_dim``).
    ``keep_self_attention`` with ``storyboard``: SG-CAtt is added beside attn1 (zero-initialised
    output) instead of replacing it (layout "audioldm2")."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int, storyboard: bool, use_mask: bool,
                 context: str = "global", keep_self_attention: bool = False):
        super().__init__()
        self.storyboard = storyboard
        self.context = context
        self.norm1 = nn.LayerNorm(dim)
        if storyboard:
            self.sg_catt = SGCrossAttention(dim, heads, head_dim, context_dim, use_mask=use_mask)
        self.self_attention = not storyboard or keep_self_attention
        if self.self_attention:
            self.attn1 = Attention(dim, heads, head_dim)
        if storyboard and keep_self_attention:
            zero_module(self.sg_catt.attention.to_out)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, head_dim, None if context == "self" else context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(
        self, x: torch.Tensor, tokens: torch.Tensor, global_tokens: torch.Tensor, level_mask: torch.Tensor | None,
        loa_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, T, F, C]."""
        normed = self.norm1(x)
        update = None
        if self.self_attention:
            update = self.attn1(normed.flatten(1, 2)).reshape(x.shape)
        if self.storyboard:
            story = self.sg_catt(normed, tokens, level_mask)
            update = story if update is None else update + story
        x = x + update
        flat = self.norm2(x).flatten(1, 2)
        context = {"global": global_tokens, "self": None, "loa": loa_tokens}[self.context]
        x = x + self.attn2(flat, context).reshape(x.shape)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """GroupNorm, 1x1 projection, ``depth`` transformer blocks (the last with SG-CAtt when
    ``storyboard``), zero-initialised projection back, residual."""

    def __init__(self, channels: int, head_channels: int, depth: int, context_dim: int, use_mask: bool,
                 context: str = "global", storyboard: bool = True, keep_self_attention: bool = False):
        super().__init__()
        if channels % head_channels:
            raise ValueError(f"channels {channels} are not a multiple of head_channels {head_channels}")
        heads = channels // head_channels
        self.norm = group_norm(channels)
        self.proj_in = nn.Linear(channels, channels)
        self.blocks = nn.ModuleList(
            TransformerBlock(channels, heads, head_channels, context_dim, storyboard=storyboard and (i == depth - 1),
                             use_mask=use_mask, context=context, keep_self_attention=keep_self_attention)
            for i in range(depth)
        )
        self.proj_out = zero_module(nn.Linear(channels, channels))

    def forward(
        self, x: torch.Tensor, tokens: torch.Tensor, global_tokens: torch.Tensor, level_mask: torch.Tensor | None,
        loa_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.proj_in(self.norm(x).permute(0, 2, 3, 1))  # [B, T, F, C]
        for block in self.blocks:
            h = block(h, tokens, global_tokens, level_mask, loa_tokens)
        return x + self.proj_out(h).permute(0, 3, 1, 2)


class TransformerStack(nn.Module):
    """AudioLDM 2's attention slot: three spatial transformers in a row (self/self, loa context,
    global context with SG-CAtt added beside its self-attention)."""

    def __init__(self, channels: int, head_channels: int, depth: int, context_dim: int, loa_dim: int,
                 use_mask: bool):
        super().__init__()
        self.transformers = nn.ModuleList([
            SpatialTransformer(channels, head_channels, depth, context_dim, use_mask, context="self",
                               storyboard=False),
            SpatialTransformer(channels, head_channels, depth, loa_dim, use_mask, context="loa", storyboard=False),
            SpatialTransformer(channels, head_channels, depth, context_dim, use_mask, context="global",
                               storyboard=True, keep_self_attention=True),
        ])

    def forward(
        self, x: torch.Tensor, tokens: torch.Tensor, global_tokens: torch.Tensor, level_mask: torch.Tensor | None,
        loa_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        for transformer in self.transformers:
            x = transformer(x, tokens, global_tokens, level_mask, loa_tokens)
        return x


class EncoderBlock(nn.Module):
    """One down-path block: ResBlock, optional spatial transformer, optional TB adapter."""

    def __init__(self, res: ResBlock, transformer: SpatialTransformer | None, adapter: TBAdapter | None, factor: int):
        super().__init__()
        self.res = res
        self.transformer = transformer
        self.adapter = adapter
        self.factor = factor


class DecoderBlock(nn.Module):
    """One up-path block: ResBlock over [h, skip], optional spatial transformer, optional upsample."""

    def __init__(self, res: ResBlock, transformer: SpatialTransformer | None, upsample: Upsample | None, factor: int):
        super().__init__()
        self.res = res
        self.transformer = transformer
        self.upsample = upsample
        self.factor = factor


class TUNet(nn.Module):
    """eps = unet(z, timestep, tokens, storyboard_mask, global_tokens, aligner_features)."""

    def __init__(self, config: VemConfig):
        super().__init__()
        ucfg = config.unet
        self.config = config
        self.latent_channels = config.vae.latent_channels
        self.latent_mel_bins = config.latent_mel_bins
        self.time_multiple = ucfg.time_multiple
        self.model_channels = ucfg.model_channels
        self.use_storyboard_mask = ucfg.use_storyboard_mask
        num_levels = len(ucfg.channel_mult)
        if self.latent_mel_bins % self.time_multiple:
            raise ValueError(
                f"latent mel bins {self.latent_mel_bins} must be divisible by {self.time_multiple} "
                f"(one 2x down-sample per T-UNet level)"
            )
        emb_dim = ucfg.model_channels * 4
        if ucfg.layout not in ("vem", "audioldm2"):
            raise ValueError(f"unet layout must be 'vem' or 'audioldm2', got {ucfg.layout!r}")
        eps = ucfg.norm_eps

        def transformer(channels: int) -> nn.Module:
            if ucfg.layout == "audioldm2":
                return TransformerStack(channels, ucfg.head_channels, ucfg.transformer_depth, ucfg.context_dim,
                                        ucfg.loa_dim, ucfg.use_storyboard_mask)
            return SpatialTransformer(
                channels, ucfg.head_channels, ucfg.transformer_depth, ucfg.context_dim, ucfg.use_storyboard_mask
            )

        # AudioLDM 2's second context (its GPT-2 tokens), here projected from the global tokens.
        self.loa_proj = nn.Linear(ucfg.context_dim, ucfg.loa_dim) if ucfg.layout == "audioldm2" else None

        self.time_embed = nn.Sequential(nn.Linear(ucfg.model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(self.latent_channels, ucfg.model_channels, 3, padding=1)

        self.input_blocks = nn.ModuleList()
        skip_channels = [ucfg.model_channels]
        channels = ucfg.model_channels
        factor = 1
        for level, mult in enumerate(ucfg.channel_mult):
            for _ in range(ucfg.num_res_blocks):
                out_channels = ucfg.model_channels * mult
                res = ResBlock(channels, emb_dim, out_channels, eps)
                channels = out_channels
                attn = transformer(channels) if factor in ucfg.attention_downsample else None
                adapter = TBAdapter(config.aligner.feature_dim, channels) if ucfg.use_adapter else None
                if adapter is not None and ucfg.beat_grid:
                    adapter.add_inputs(1)
                self.input_blocks.append(EncoderBlock(res, attn, adapter, factor))
                skip_channels.append(channels)
            if level != num_levels - 1:
                self.input_blocks.append(Downsample(channels))
                skip_channels.append(channels)
                factor *= 2

        self.middle_factor = factor
        self.middle_res1 = ResBlock(channels, emb_dim, channels, eps)
        self.middle_transformer = transformer(channels)
        self.middle_res2 = ResBlock(channels, emb_dim, channels, eps)

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(ucfg.channel_mult))):
            for i in range(ucfg.num_res_blocks + 1):
                out_channels = ucfg.model_channels * mult
                res = ResBlock(channels + skip_channels.pop(), emb_dim, out_channels, eps)
                channels = out_channels
                attn = transformer(channels) if factor in ucfg.attention_downsample else None
                upsample = Upsample(channels) if (level and i == ucfg.num_res_blocks) else None
                self.output_blocks.append(DecoderBlock(res, attn, upsample, factor))
            factor //= 2

        self.out = nn.Sequential(
            group_norm(channels, eps), nn.SiLU(), zero_module(nn.Conv2d(channels, self.latent_channels, 3, padding=1))
        )
        self.attention_factors = sorted(
            {b.factor for b in self.input_blocks if isinstance(b, EncoderBlock) and b.transformer is not None}
            | {b.factor for b in self.output_blocks if b.transformer is not None}
            | {self.middle_factor}
        )
        self.adapter_factors = sorted(
            {b.factor for b in self.input_blocks if isinstance(b, EncoderBlock) and b.adapter is not None}
        )

    # ------------------------------------------------------------------------------------
    def forward(
        self,
        z: torch.Tensor,
        timestep: torch.Tensor,
        tokens: torch.Tensor,
        storyboard_mask: torch.Tensor | None,
        global_tokens: torch.Tensor,
        aligner_features: torch.Tensor | None = None,
        adapter_scale: torch.Tensor | None = None,
        beat_grid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the noise (Eq. 5's eps_theta).

        z [B, latent_channels, T, latent_mel_bins] with T a multiple of ``time_multiple``;
        timestep [B] (int or float); tokens [B, N*6, context_dim] (`ConditionBuilder`);
        storyboard_mask [B, T, N] (`storyboard_mask`, 1 = latent frame inside storyboard) or
        None; global_tokens [B, 2, context_dim]; aligner_features [B, T, feature_dim] at the
        latent frame rate (`resample_to_latent`) or None (no rhythm path); adapter_scale [B] or
        None: per-sample weight of the TB adapters (0 = that sample without the rhythm path, used
        for the null branch of guidance, `vem.model.pipeline.guidance_adapter_scale`); beat_grid
        [B, T] (`vem.runtime.tempo.beat_grid`), read by the adapters beside the aligner features
        when ``UNetConfig.beat_grid`` (None there = no pulses), ignored otherwise.
        """
        self._check_inputs(z, timestep, tokens, storyboard_mask, global_tokens, aligner_features, beat_grid)
        if timestep.dim() == 0:
            timestep = timestep.reshape(1).expand(z.shape[0])
        emb = self.time_embed(timestep_embedding(timestep, self.model_channels).to(z.dtype))

        level_masks: dict[int, torch.Tensor | None] = {}
        for factor in self.attention_factors:
            use = self.use_storyboard_mask and storyboard_mask is not None
            level_masks[factor] = resize_storyboard_mask(storyboard_mask, factor) if use else None
        level_features: dict[int, torch.Tensor] = {}
        if aligner_features is not None:
            if self.config.unet.beat_grid:
                pulses = beat_grid if beat_grid is not None else aligner_features.new_zeros(aligner_features.shape[:2])
                aligner_features = torch.cat([aligner_features, pulses.to(aligner_features.dtype).unsqueeze(-1)], dim=-1)
            for factor in self.adapter_factors:
                level_features[factor] = resize_features(aligner_features, factor).to(z.dtype)

        loa = self.loa_proj(global_tokens) if self.loa_proj is not None else None
        h = self.conv_in(z)
        skips = [h]
        for block in self.input_blocks:
            if isinstance(block, Downsample):
                h = block(h)
            else:
                h = block.res(h, emb)
                if block.transformer is not None:
                    h = block.transformer(h, tokens, global_tokens, level_masks[block.factor], loa)
                if block.adapter is not None and aligner_features is not None:
                    h = block.adapter(h, level_features[block.factor], adapter_scale)
            skips.append(h)

        h = self.middle_res1(h, emb)
        h = self.middle_transformer(h, tokens, global_tokens, level_masks[self.middle_factor], loa)
        h = self.middle_res2(h, emb)

        for block in self.output_blocks:
            h = block.res(torch.cat([h, skips.pop()], dim=1), emb)
            if block.transformer is not None:
                h = block.transformer(h, tokens, global_tokens, level_masks[block.factor], loa)
            if block.upsample is not None:
                h = block.upsample(h)
        return self.out(h)

    @property
    def rhythm_dim(self) -> int:
        """What the TB adapters read per latent frame: the aligner features, plus the beat grid."""
        return self.config.aligner.feature_dim + (1 if self.config.unet.beat_grid else 0)

    def sg_catt_modules(self) -> list[tuple[str, SGCrossAttention]]:
        """Every SG-CAtt module with its qualified name (for tests, hooks and summaries)."""
        return [(name, m) for name, m in self.named_modules() if isinstance(m, SGCrossAttention)]

    def _check_inputs(self, z, timestep, tokens, storyboard_mask, global_tokens, aligner_features,
                      beat_grid=None) -> None:
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return
        if z.dim() != 4 or z.shape[1] != self.latent_channels or z.shape[3] != self.latent_mel_bins:
            raise ValueError(
                f"z must be [B, {self.latent_channels}, T, {self.latent_mel_bins}], got {tuple(z.shape)}"
            )
        batch, _, frames, _ = z.shape
        if frames % self.time_multiple:
            raise ValueError(
                f"latent time length {frames} is not a multiple of {self.time_multiple}; "
                f"use config.latent_frames(seconds) to pad"
            )
        if timestep.dim() > 1 or (timestep.dim() == 1 and timestep.shape[0] not in (1, batch)):
            raise ValueError(f"timestep must be a scalar or [B]={batch}, got {tuple(timestep.shape)}")
        context_dim = self.config.unet.context_dim
        if tokens.dim() != 3 or tokens.shape[0] != batch or tokens.shape[2] != context_dim:
            raise ValueError(f"tokens must be [B, N*6, {context_dim}], got {tuple(tokens.shape)}")
        if tokens.shape[1] % TOKENS_PER_STORYBOARD:
            raise ValueError(f"token count {tokens.shape[1]} is not a multiple of {TOKENS_PER_STORYBOARD}")
        if tuple(global_tokens.shape) != (batch, 2, context_dim):
            raise ValueError(f"global_tokens must be [B, 2, {context_dim}], got {tuple(global_tokens.shape)}")
        if storyboard_mask is not None:
            expected = (batch, frames, tokens.shape[1] // TOKENS_PER_STORYBOARD)
            if tuple(storyboard_mask.shape) != expected:
                raise ValueError(f"storyboard_mask must be [B, T, N] = {expected}, got {tuple(storyboard_mask.shape)}")
        if aligner_features is not None:
            expected = (batch, frames, self.config.aligner.feature_dim)
            if tuple(aligner_features.shape) != expected:
                raise ValueError(
                    f"aligner_features must be [B, T, D] = {expected} (latent frame rate; see "
                    f"resample_to_latent), got {tuple(aligner_features.shape)}"
                )
        if beat_grid is not None and tuple(beat_grid.shape) != (batch, frames):
            raise ValueError(f"beat_grid must be [B, T] = {(batch, frames)}, got {tuple(beat_grid.shape)}")
