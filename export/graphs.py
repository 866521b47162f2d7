"""Torch wrapper modules: one per bundle component, with exactly the graph interface of
docs/architecture.md (the runtime feeds these names, dtypes and layouts).

Every wrapper takes the runtime's raw arrays (uint8 RGB frames in NHWC, seconds, masks) and
does the layout work inside the graph, so the runtime never re-implements a PyTorch convention:

- `VisualGraph`      uint8 [frames, S, S, 3] -> frame_embeddings [frames, D_v], tag_logits [frames, num_tags]
- `AlignerGraph`     uint8 [1, T, A, A, 3] + transition_probs [1, T] -> features [1, T, D_a], logits [1, T]
- `BranchDenoiser`   eps of the guidance branch each sample asks for (ConditionBuilder + TUNet,
                     docs/paper.md Eqs. 5-8 and 10; ``branch`` 1 = conditional, 0 = null); the runtime
                     applies guidance (`vem.runtime.guidance`)
- `VAEDecoderGraph`  diffusion latent -> log-mel in the vocoder's [B, M, T_mel] layout
- `VocoderGraph`     log-mel [B, M, T_mel] -> waveform [B, T_mel * hop]

The transition detector (TransNetV2) has its own wrapper in `vem.export.transitions`.

Each `ComponentSpec` also names the graph's inputs/outputs, the symbolic dims (ONNX dynamic
axes and the manifest's TensorSpecs), and makes example inputs at a given size, for tracing,
parity checks and TensorRT optimisation profiles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vem.model.vem import VeM
from vem.runtime.bundle import TensorSpec
from vem.runtime.config import VemConfig
from vem.runtime.tempo import beat_grid, beat_times

from .engines import video_frames  # noqa: F401  (torch-free; re-exported for the export's callers)


def _frames_to_nchw(frames: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 [N, H, W, 3] RGB -> [N, 3, H, W] in [0, 1] (no mean/std: the torch modules take
    [0, 1] RGB, see the interface's pixel convention); float32 in the graph, float64 for the
    float64 parity reference."""
    return frames.permute(0, 3, 1, 2).to(dtype) / 255.0


def _dtype_of(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


class VisualGraph(nn.Module):
    """Visual encoder + style head per frame. The style head is linear, so the runtime's mean of
    the per-frame logits equals the logits of the mean embedding (what the paper's head sees)."""

    def __init__(self, model: VeM):
        super().__init__()
        self.visual = model.visual
        self.style_head = model.style_head

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = self.visual(_frames_to_nchw(frames, _dtype_of(self.visual)))
        return embeddings, self.style_head(embeddings)


class AlignerGraph(nn.Module):
    """TB aligner (Eq. 9) on 16 fps frames; the 4th input channel is the transition probability
    broadcast over the picture."""

    def __init__(self, model: VeM):
        super().__init__()
        self.aligner = model.aligner

    def forward(self, frames: torch.Tensor, transition_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = _dtype_of(self.aligner)
        rgb = frames.permute(0, 4, 1, 2, 3).to(dtype) / 255.0  # [B, 3, T, H, W]
        probs = transition_probs.to(dtype)[:, None, :, None, None].expand(
            -1, 1, -1, rgb.shape[3], rgb.shape[4]
        )
        return self.aligner(torch.cat([rgb, probs], dim=1))


class BranchDenoiser(nn.Module):
    """One denoiser call: the noise prediction of the classifier-free-guidance branch each sample
    asks for (docs/paper.md Eq. 5). ``branch`` [B] is 1 for the conditional branch and 0 for the null
    branch: the learned null tokens with the same storyboard count, storyboard mask and aligner
    features, and its TB adapters switched off when ``config.diffusion.guide_rhythm`` (as
    `vem.model.pipeline.generate`). The condition tokens (Eq. 6) are built in the graph from the
    raw embeddings and seconds. The runtime applies guidance, eps_u + g (eps_c - eps_u)
    (`vem.runtime.guidance`): on a GPU both branches go as one batch of two, on a multi-core CPU
    as two concurrent calls. A ``UNetConfig.beat_grid`` model's graph has one more input after
    ``branch``: ``beat_grid`` [B, frames], the tempo pulses (`vem.runtime.tempo.beat_grid`)."""

    def __init__(self, model: VeM):
        super().__init__()
        self.condition = model.condition
        self.unet = model.unet
        self.guide_rhythm = bool(model.config.diffusion.guide_rhythm)
        self.rhythm_gain = float(model.config.diffusion.rhythm_gain)

    def forward(
        self,
        latent: torch.Tensor,
        timestep: torch.Tensor,
        caption: torch.Tensor,
        tags: torch.Tensor,
        story_text: torch.Tensor,
        story_visual: torch.Tensor,
        story_start_s: torch.Tensor,
        story_duration_s: torch.Tensor,
        storyboard_mask: torch.Tensor,
        aligner_features: torch.Tensor,
        branch: torch.Tensor,
        beat_grid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        tokens = self.condition(caption, tags, story_text, story_visual, story_start_s, story_duration_s)
        # Exactly the conditional or the null tokens for branch 1 or 0 (0 * finite = 0).
        weight = branch.to(tokens.dtype).view(-1, 1, 1)
        tokens = weight * tokens + (1.0 - weight) * self.condition.null_tokens_like(tokens)
        # `guidance_adapter_scale`: the conditional branch at rhythm_gain; the null branch at 0
        # with guide_rhythm, else at rhythm_gain too.
        on = branch.to(latent.dtype) if self.guide_rhythm else torch.ones_like(branch, dtype=latent.dtype)
        return self.unet(latent, timestep, tokens, storyboard_mask, self.condition.global_tokens(tokens),
                         aligner_features, on * self.rhythm_gain, beat_grid)


# The denoiser's condition inputs, in graph order (between timestep and branch).
DENOISER_CONDITIONS = ("caption", "tags", "story_text", "story_visual", "story_start_s", "story_duration_s",
                       "storyboard_mask", "aligner_features")


def guided_step_torch(denoiser: BranchDenoiser, latent: torch.Tensor, timestep: torch.Tensor,
                      static: dict[str, torch.Tensor], guidance: float) -> torch.Tensor:
    """The guided eps the runtime makes from the two branches (`vem.runtime.guidance`), in torch:
    the reference the tests hold the graph module to. ``static`` may hold ``beat_grid`` too."""
    batch = latent.shape[0]
    both = {name: torch.cat([value, value]) for name, value in static.items()}
    branch = torch.cat([torch.ones(batch), torch.zeros(batch)]).to(latent.dtype)
    eps = denoiser(torch.cat([latent, latent]), torch.cat([timestep, timestep]), *(both[n] for n in DENOISER_CONDITIONS),
                   branch, both.get("beat_grid"))
    eps_cond, eps_uncond = eps.chunk(2, dim=0)
    return eps_uncond + guidance * (eps_cond - eps_uncond)


class VAEDecoderGraph(nn.Module):
    """Diffusion latent -> log-mel [B, M, T_mel]: divides by ``vae.scale_factor`` (the latent is
    scaled for diffusion, §5) and returns the vocoder's layout."""

    def __init__(self, model: VeM):
        super().__init__()
        self.decoder = model.vae.decoder
        self.scale_factor = float(model.config.vae.scale_factor)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        mel = self.decoder(latent / self.scale_factor)  # [B, 1, T_mel, M]
        return mel.squeeze(1).transpose(1, 2)


class VocoderGraph(nn.Module):
    """HiFi-GAN (weight norm folded away before export) -> waveform [B, T_mel * hop]."""

    def __init__(self, model: VeM):
        super().__init__()
        self.vocoder = model.vocoder

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.vocoder(mel).squeeze(1)


# ---- component specs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    """A point in the dynamic-shape space: seconds of audio/video and storyboards (and the
    batch of the batched axes)."""

    seconds: float
    storyboards: int = 1
    batch: int = 1


@dataclass
class ComponentSpec:
    name: str
    make_module: Callable[[VeM], nn.Module]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    # builds example inputs (numpy, interface dtypes) for a config at a size, from a numpy Generator
    make_inputs: Callable[[VemConfig, Size, np.random.Generator], dict[str, np.ndarray]]

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """ONNX dynamic axes from the specs' symbolic dims (an expression such as ``frames*4`` is
        named as written; ONNX only uses it as a label)."""
        axes = {}
        for spec in [*self.inputs, *self.outputs]:
            named = {i: d for i, d in enumerate(spec.shape) if isinstance(d, str)}
            if named:
                axes[spec.name] = named
        return axes




def _visual_inputs(config: VemConfig, size: Size, rng: np.random.Generator) -> dict[str, np.ndarray]:
    s = config.visual.frame_size
    return {"frames": rng.integers(0, 256, size=(video_frames(config, size.seconds), s, s, 3), dtype=np.uint8)}


def _aligner_inputs(config: VemConfig, size: Size, rng: np.random.Generator) -> dict[str, np.ndarray]:
    a = config.aligner.frame_size
    t = video_frames(config, size.seconds)
    return {
        "frames": rng.integers(0, 256, size=(1, t, a, a, 3), dtype=np.uint8),
        "transition_probs": rng.random((1, t)).astype(np.float32),
    }


def storyboard_spans(seconds: float, storyboards: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous random storyboards covering [0, seconds): starts and durations [N]."""
    cuts = np.sort(rng.uniform(0.1, 0.9, size=storyboards - 1)) * seconds
    bounds = np.concatenate([[0.0], cuts, [seconds]])
    return bounds[:-1].astype(np.float32), np.diff(bounds).astype(np.float32)


def _denoiser_inputs(config: VemConfig, size: Size, rng: np.random.Generator) -> dict[str, np.ndarray]:
    from vem.runtime.storyboard import storyboard_mask

    b, n = size.batch, size.storyboards
    frames = config.latent_frames(size.seconds)
    d_t, d_v = config.condition.text_dim, config.condition.visual_dim
    spans = [storyboard_spans(size.seconds, n, rng) for _ in range(b)]
    start = np.stack([s for s, _ in spans])
    duration = np.stack([d for _, d in spans])

    def unit(*shape: int) -> np.ndarray:  # text/visual embeddings are unit-length vectors
        v = rng.standard_normal(shape).astype(np.float32)
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    return {
        "latent": rng.standard_normal((b, config.vae.latent_channels, frames, config.latent_mel_bins)).astype(np.float32),
        "timestep": rng.integers(0, config.diffusion.num_train_steps, size=b).astype(np.float32),
        "caption": unit(b, d_t),
        "tags": unit(b, d_t),
        "story_text": unit(b, n, d_t),
        "story_visual": unit(b, n, d_v),
        "story_start_s": start,
        "story_duration_s": duration,
        "storyboard_mask": storyboard_mask(start, duration, frames, config.latent_frames_per_second),
        "aligner_features": np.abs(rng.standard_normal((b, frames, config.aligner.feature_dim))).astype(np.float32),
        # Both branches when the batch has room: [1, 0, 1, ...].
        "branch": (np.arange(b) % 2 == 0).astype(np.float32),
        **({"beat_grid": np.stack([beat_grid(beat_times(float(rng.uniform(70, 170)), float(rng.uniform(0, 1)),
                                                        frames / config.latent_frames_per_second),
                                             frames, config.latent_frames_per_second) for _ in range(b)])}
           if config.unet.beat_grid else {}),
    }


def _vae_inputs(config: VemConfig, size: Size, rng: np.random.Generator) -> dict[str, np.ndarray]:
    frames = config.latent_frames(size.seconds)
    shape = (size.batch, config.vae.latent_channels, frames, config.latent_mel_bins)
    return {"latent": rng.standard_normal(shape).astype(np.float32)}


def _vocoder_inputs(config: VemConfig, size: Size, rng: np.random.Generator) -> dict[str, np.ndarray]:
    # log-mel values around AudioLDM's range (log of a magnitude: negative, a few units wide)
    mel = rng.normal(-5.0, 2.0, size=(size.batch, config.audio.n_mels, config.mel_frames(size.seconds)))
    return {"mel": mel.astype(np.float32)}


def component_specs(config: VemConfig) -> dict[str, ComponentSpec]:
    """The model components' graph interfaces (docs/architecture.md) for ``config``."""
    s, a = config.visual.frame_size, config.aligner.frame_size
    c, f = config.vae.latent_channels, config.latent_mel_bins
    d_t, d_v, d_a = config.condition.text_dim, config.condition.visual_dim, config.aligner.feature_dim
    m, hop, up = config.audio.n_mels, config.audio.hop_length, config.vae.downsample
    num_tags = config.condition.num_tags
    f32, u8 = "float32", "uint8"
    return {
        "visual": ComponentSpec(
            "visual", VisualGraph,
            [TensorSpec("frames", u8, ["frames", s, s, 3])],
            [TensorSpec("frame_embeddings", f32, ["frames", d_v]), TensorSpec("tag_logits", f32, ["frames", num_tags])],
            _visual_inputs,
        ),
        "aligner": ComponentSpec(
            "aligner", AlignerGraph,
            [TensorSpec("frames", u8, [1, "video_frames", a, a, 3]),
             TensorSpec("transition_probs", f32, [1, "video_frames"])],
            [TensorSpec("features", f32, [1, "video_frames", d_a]), TensorSpec("logits", f32, [1, "video_frames"])],
            _aligner_inputs,
        ),
        "denoiser": ComponentSpec(
            "denoiser", BranchDenoiser,
            [
                TensorSpec("latent", f32, ["batch", c, "frames", f]),
                TensorSpec("timestep", f32, ["batch"]),
                TensorSpec("caption", f32, ["batch", d_t]),
                TensorSpec("tags", f32, ["batch", d_t]),
                TensorSpec("story_text", f32, ["batch", "storyboards", d_t]),
                TensorSpec("story_visual", f32, ["batch", "storyboards", d_v]),
                TensorSpec("story_start_s", f32, ["batch", "storyboards"]),
                TensorSpec("story_duration_s", f32, ["batch", "storyboards"]),
                TensorSpec("storyboard_mask", f32, ["batch", "frames", "storyboards"]),
                TensorSpec("aligner_features", f32, ["batch", "frames", d_a]),
                TensorSpec("branch", f32, ["batch"]),
                *([TensorSpec("beat_grid", f32, ["batch", "frames"])] if config.unet.beat_grid else []),
            ],
            [TensorSpec("eps", f32, ["batch", c, "frames", f])],
            _denoiser_inputs,
        ),
        "vae_decoder": ComponentSpec(
            "vae_decoder", VAEDecoderGraph,
            [TensorSpec("latent", f32, ["batch", c, "frames", f])],
            [TensorSpec("mel", f32, ["batch", m, f"frames*{up}"])],
            _vae_inputs,
        ),
        "vocoder": ComponentSpec(
            "vocoder", VocoderGraph,
            [TensorSpec("mel", f32, ["batch", m, "mel_frames"])],
            [TensorSpec("waveform", f32, ["batch", f"mel_frames*{hop}"])],
            _vocoder_inputs,
        ),
    }


def transitions_spec() -> tuple[list[TensorSpec], list[TensorSpec]]:
    """TransNetV2's graph interface (`vem.export.transitions`)."""
    from .transitions import FRAME_HEIGHT, FRAME_WIDTH, WINDOW_FRAMES

    return (
        [TensorSpec("frames", "uint8", ["windows", WINDOW_FRAMES, FRAME_HEIGHT, FRAME_WIDTH, 3])],
        [TensorSpec("single_frame", "float32", ["windows", WINDOW_FRAMES]),
         TensorSpec("many_hot", "float32", ["windows", WINDOW_FRAMES])],
    )


@torch.no_grad()
def run_torch(module: nn.Module, spec: ComponentSpec, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The PyTorch outputs of a wrapper on numpy feeds, by output name. Float inputs are given
    in the module's dtype (a float64 copy of a wrapper is the exact reference of the parity
    checks, see `vem.export.bundle_writer`)."""
    dtype = _dtype_of(module)
    args = []
    for name in spec.input_names:
        value = torch.from_numpy(np.ascontiguousarray(feeds[name]))
        args.append(value.to(dtype) if value.is_floating_point() else value)
    out = module(*args)
    out = out if isinstance(out, tuple) else (out,)
    return {name: value.numpy() for name, value in zip(spec.output_names, out)}
