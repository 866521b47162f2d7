"""Torch eager reference generation (docs/paper.md pipeline, §5 sampling).

z_T ~ N(0, I) from a seeded generator -> for each sampler step: one T-UNet call on the
conditional and unconditional (null-token) branches concatenated along the batch, then
classifier-free guidance (`vem.runtime.sampler.guided_eps`) and the sampler update -> latent /
``config.vae.scale_factor`` -> VAE decoder (log-mel) -> HiFi-GAN -> waveform trimmed to the
requested length. The schedule and samplers are the runtime's numpy code, so the runtime and
this reference cannot disagree about a coefficient; this is the ground truth that exported
graphs and the torch-free runtime are checked against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vem.runtime.sampler import NoiseSchedule, guided_eps, make_sampler

from .aligner import resample_to_latent
from .attention import storyboard_mask
from .vem import VeM


@dataclass
class Generation:
    latent: torch.Tensor  # [B, latent_channels, T_latent, latent_mel_bins], diffusion scale
    mel: torch.Tensor  # [B, 1, T_mel, n_mels] log-mel from the VAE decoder
    waveform: torch.Tensor  # [B, samples], trimmed to round(seconds * sample_rate)


def guidance_adapter_scale(latent: torch.Tensor, guide_rhythm: bool, rhythm_gain: float = 1.0) -> torch.Tensor:
    """Per-sample TB adapter weights [2B] for a guided batch [conditional B, null B] of
    ``latent`` [B, ...]: the conditional branch gets ``rhythm_gain`` (`DiffusionConfig.rhythm_gain`),
    the null branch 0 when ``guide_rhythm`` (`DiffusionConfig.guide_rhythm`), so guidance
    amplifies the rhythm path too; otherwise both branches carry the same adapters. Built from
    the latent's batch, so a traced graph keeps it dynamic."""
    ones = torch.ones_like(latent[:, 0, 0, 0]) * float(rhythm_gain)
    return torch.cat([ones, ones * (0.0 if guide_rhythm else 1.0)], dim=0)


@torch.no_grad()
def generate(
    model: VeM,
    caption_emb: torch.Tensor,
    tags_emb: torch.Tensor,
    story_text: torch.Tensor,
    story_visual: torch.Tensor,
    story_start_s: torch.Tensor,
    story_duration_s: torch.Tensor,
    seconds: float,
    aligner_features: torch.Tensor | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    sampler: str | None = None,
    beat_grid: torch.Tensor | None = None,
) -> Generation:
    """Generate ``seconds`` of music for a batch of parsed videos.

    Conditions as in `ConditionBuilder.forward` (pre-computed embeddings; starts and
    durations in seconds). ``aligner_features``: the TB aligner's per-frame features
    [B, T_video, feature_dim] at the video frame rate, or None for no rhythm path. ``steps``,
    ``guidance`` and ``sampler`` default to ``config.diffusion``; ``seed`` fixes the initial
    noise, so the result is deterministic for a given seed (both samplers are deterministic).
    ``beat_grid`` [B, T_latent] (`vem.runtime.tempo.beat_grid`, latent frame rate): the tempo
    pulses a ``UNetConfig.beat_grid`` model's adapters read beside the aligner features.
    """
    config = model.config
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    steps = config.diffusion.steps if steps is None else steps
    guidance = config.diffusion.guidance if guidance is None else guidance
    sampler_name = config.diffusion.sampler if sampler is None else sampler
    device = next(model.parameters()).device
    dtype = next(model.unet.parameters()).dtype

    tokens = model.condition(caption_emb, tags_emb, story_text, story_visual, story_start_s, story_duration_s)
    batch = tokens.shape[0]
    num_storyboards = story_text.shape[1]
    null = model.condition.null_tokens(batch, num_storyboards)
    all_tokens = torch.cat([tokens, null], dim=0)
    all_global = model.condition.global_tokens(all_tokens)

    frames = config.latent_frames(seconds)
    mask = storyboard_mask(story_start_s, story_duration_s, frames, config.latent_frames_per_second).to(device)
    all_mask = torch.cat([mask, mask], dim=0)
    all_features = None
    if aligner_features is not None:
        latent_features = resample_to_latent(
            aligner_features, frames, video_fps=config.video.fps, latent_fps=config.latent_frames_per_second
        )
        all_features = torch.cat([latent_features, latent_features], dim=0).to(dtype)
    all_grid = None
    if beat_grid is not None:
        all_grid = torch.cat([beat_grid, beat_grid], dim=0).to(device=device, dtype=dtype)

    schedule = NoiseSchedule.from_config(config.diffusion)
    solver = make_sampler(sampler_name, schedule, steps)
    solver.reset()
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    shape = (batch, config.vae.latent_channels, frames, config.latent_mel_bins)
    z = torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
    adapter_scale = None if all_features is None else guidance_adapter_scale(z, config.diffusion.guide_rhythm,
                                                                                config.diffusion.rhythm_gain)
    for index, t in enumerate(solver.timesteps):
        timestep = torch.full((2 * batch,), int(t), dtype=torch.int64, device=device)
        eps = model.unet(torch.cat([z, z], dim=0), timestep, all_tokens, all_mask, all_global, all_features,
                         adapter_scale, all_grid)
        eps_cond, eps_uncond = eps.chunk(2, dim=0)
        z = solver.step(guided_eps(eps_cond, eps_uncond, guidance), index, z)

    mel = model.vae.decode(z / config.vae.scale_factor)
    waveform = model.vocoder(mel.squeeze(1).transpose(1, 2)).squeeze(1)
    samples = round(seconds * config.audio.sample_rate)
    return Generation(latent=z, mel=mel, waveform=waveform[:, :samples])
