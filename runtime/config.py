"""The model configuration: one object that fixes every size in VeM.

It lives in the runtime (not in `vem.model`) because the runtime needs the same facts as the
PyTorch model -- sample rate, mel settings, latent geometry, video fps, sampler defaults -- and
must not import torch. The bundle manifest carries it as JSON, so a bundle is self-describing.

Two named configs:
- ``paper``: AudioLDM 2's published 16 kHz sizes (T-UNet, VAE, HiFi-GAN) plus the VeM additions
  (SG-CAtt, TB aligner and adapter). Used for latency measurements, never trained here.
- ``demo``: the same structure, small enough to train on a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .tags import TAG_VOCABULARY

# The six condition tokens of one storyboard, in the order of docs/paper.md Eq. 6.
CONDITION_TOKENS = ("caption", "tags", "story_text", "story_visual", "start", "duration")


@dataclass
class AudioConfig:
    """Waveform and log-mel settings (AudioLDM 2's 16 kHz front end)."""

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float = 8000.0

    @property
    def mel_frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length


@dataclass
class VAEConfig:
    """Mel VAE: 2-D convolutional encoder/decoder over (time, mel); downsamples by
    2 ** (len(channel_mult) - 1) in both axes."""

    channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    latent_channels: int = 8
    # Latents are multiplied by this before diffusion (LDM's scale_by_std); set by training.
    scale_factor: float = 1.0
    # LDM's single-head self-attention between the two middle ResNet blocks of the encoder and
    # the decoder (AudioLDM 2 has it; the demo leaves it out: quadratic in time).
    mid_attention: bool = False

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)


@dataclass
class UNetConfig:
    """T-UNet over the (time, latent-mel) plane, AudioLDM 2 layout.

    ``attention_downsample``: the downsampling factors (1 = top level) at which a level has a
    spatial transformer; the final block of each such transformer uses SG-CAtt.
    """

    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 3, 5)
    num_res_blocks: int = 2
    attention_downsample: tuple[int, ...] = (2, 4, 8)
    head_channels: int = 32
    transformer_depth: int = 1
    context_dim: int = 1024
    # Whether the TB adapter (Eq. 10) is present; False gives the "without TB-As" ablation.
    use_adapter: bool = True
    # Whether SG-CAtt masks by storyboard time (Eq. 7); False gives plain cross-attention.
    use_storyboard_mask: bool = True
    # Whether the TB adapters also read a beat grid: one channel beside the aligner features with
    # a pulse per beat of the chosen tempo (`vem.runtime.tempo`). False in checkpoints made before.
    beat_grid: bool = False
    # "vem": one spatial transformer per attention slot (SG-CAtt in place of its self-attention,
    # cross-attention to the global tokens). "audioldm2": AudioLDM 2's three transformers per slot
    # (self/self, self + cross to a ``loa_dim`` context, self + cross to ``context_dim``), SG-CAtt
    # added beside the last one's self-attention (docs/audioldm2.md).
    layout: str = "vem"
    # AudioLDM 2's second cross-attention context (its GPT-2 "language of audio" tokens); in VeM a
    # projection of the global tokens (layout "audioldm2" only).
    loa_dim: int = 768
    # GroupNorm epsilon of the ResBlocks and the output norm (AudioLDM 2: 1e-5).
    norm_eps: float = 1e-6

    @property
    def time_multiple(self) -> int:
        """Latent time length must be a multiple of this (one 2x down-sample per level)."""
        return 2 ** (len(self.channel_mult) - 1)


@dataclass
class ConditionConfig:
    """Encoders' output sizes and the condition builder (Eq. 6)."""

    text_dim: int = 512  # CLAP text space in the paper
    visual_dim: int = 768  # MAViL in the paper
    timing_dim: int = 256  # continuous-time MLP output
    timing_frequencies: int = 64  # Fourier features of seconds fed to the timing MLP
    max_storyboards: int = 32
    # Style-head outputs: one per word of runtime.tags.TAG_VOCABULARY (the paper: <= 50 tags).
    num_tags: int = len(TAG_VOCABULARY)


@dataclass
class AlignerConfig:
    """TB aligner: ResNet(2+1)D-style network over 16 fps frames -> per-frame features + logit."""

    frame_size: int = 112
    in_channels: int = 4  # RGB + the transition detector's per-frame probability
    stem_channels: int = 64
    stage_channels: tuple[int, ...] = (64, 128, 256, 512)
    blocks_per_stage: tuple[int, ...] = (2, 2, 2, 2)

    @property
    def feature_dim(self) -> int:
        return self.stage_channels[-1]


@dataclass
class VisualConfig:
    """Storyboard visual encoder + global style head (stands in for MAViL, see docs/architecture.md)."""

    frame_size: int = 112
    channels: tuple[int, ...] = (64, 128, 256, 512)


@dataclass
class VocoderConfig:
    """HiFi-GAN (V1 layout, AudioLDM 2's 16 kHz upsampling); prod(upsample_rates) == hop."""

    upsample_initial_channel: int = 1024
    upsample_rates: tuple[int, ...] = (5, 4, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 8, 4, 4)
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    # "exact": transposed-conv padding chosen so every stage multiplies the length exactly.
    # "hifigan": HiFi-GAN's own padding (k - r) // 2 (AudioLDM 2's vocoder), a few samples longer
    # for odd k - r, cropped to T_mel * hop at the end as AudioLDM 2's pipeline does.
    upsample_padding: str = "exact"


@dataclass
class DiffusionConfig:
    """DDPM (docs/paper.md §5: 1000 steps, epsilon prediction) and the sampler defaults."""

    num_train_steps: int = 1000
    # LDM's "linear" schedule: betas linear in sqrt-space between these (AudioLDM 2 values).
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    prediction: str = "epsilon"
    sampler: str = "dpmpp_2m"
    steps: int = 25
    guidance: float = 3.5
    # Classifier-free guidance's null branch runs without the TB adapters, so the guided step
    # eps_null + g (eps_cond - eps_null) amplifies the rhythm path as well as the text and
    # storyboards. With the adapters in both branches (the usual ControlNet-style choice) their
    # effect cancels in the difference and the rhythm gets weight 1 at any g. Measured on the
    # shipped demo checkpoint, 100 held-out clips, 10 steps, g 3: cuts with a beat within 70 ms
    # 0.731 -> 0.859 (model card).
    guide_rhythm: bool = True
    # Weight of the TB adapters' modulation (gamma, beta of Eq. 10) in the conditional branch at
    # sampling time; 1 = as trained. Above 1 it extrapolates the rhythm path (with guide_rhythm
    # the rhythm's weight in the guided step is guidance x rhythm_gain). Baked into an exported
    # denoiser graph as a constant.
    rhythm_gain: float = 1.0


@dataclass
class VideoConfig:
    fps: float = 16.0
    # TransNetV2's input size (width, height).
    transition_size: tuple[int, int] = (48, 27)


@dataclass
class VemConfig:
    name: str = "paper"
    max_seconds: float = 60.0
    audio: AudioConfig = field(default_factory=AudioConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    condition: ConditionConfig = field(default_factory=ConditionConfig)
    aligner: AlignerConfig = field(default_factory=AlignerConfig)
    visual: VisualConfig = field(default_factory=VisualConfig)
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    video: VideoConfig = field(default_factory=VideoConfig)

    # ---- derived geometry -------------------------------------------------------------
    @property
    def latent_mel_bins(self) -> int:
        return self.audio.n_mels // self.vae.downsample

    @property
    def latent_frames_per_second(self) -> float:
        return self.audio.mel_frames_per_second / self.vae.downsample

    def latent_frames(self, seconds: float) -> int:
        """Latent time length for `seconds` of audio, rounded up to what the T-UNet accepts."""
        raw = math.ceil(seconds * self.latent_frames_per_second)
        multiple = self.unet.time_multiple
        return max(multiple, math.ceil(raw / multiple) * multiple)

    def mel_frames(self, seconds: float) -> int:
        """Mel frames that the decoder produces for `seconds` (a padded latent length)."""
        return self.latent_frames(seconds) * self.vae.downsample

    def samples(self, seconds: float) -> int:
        return self.mel_frames(seconds) * self.audio.hop_length

    # ---- serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VemConfig:
        return _from_dict(cls, data)

    @classmethod
    def from_json(cls, text: str) -> VemConfig:
        return cls.from_dict(json.loads(text))


def _from_dict(kind: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) dataclass from plain JSON data; lists become tuples where declared."""
    if not isinstance(data, dict):
        raise TypeError(f"{kind.__name__}: expected an object, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(kind)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"{kind.__name__}: unknown field(s) {sorted(unknown)}")
    values = {}
    for name, value in data.items():
        default = getattr(kind(), name) if _has_default(known[name]) else None
        if dataclasses.is_dataclass(default):
            values[name] = _from_dict(type(default), value)
        elif isinstance(default, tuple):
            values[name] = _to_tuple(value)
        else:
            values[name] = value
    return kind(**values)


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _to_tuple(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_to_tuple(v) for v in value)
    return value


def paper_config() -> VemConfig:
    """AudioLDM 2 (16 kHz) sizes and layout: VAE ch 128 x (1,2,4) with mid-block attention,
    8-ch latent at 4x; T-UNet 128 x (1,2,3,5), attention at 2/4/8x, 32-channel heads, depth 1,
    AudioLDM 2's three transformers per attention slot, GroupNorm eps 1e-5; HiFi-GAN 1024 ch,
    rates 5-4-2-2-2 (hop 160) with HiFi-GAN's padding; scaled-linear betas 0.0015..0.0195.
    VeM additions at paper scale: CLAP 512-d text, MAViL 768-d visual, ResNet(2+1)D-18 aligner.
    `vem.model.audioldm2` loads AudioLDM 2's weights into it (docs/audioldm2.md)."""
    return VemConfig(
        name="paper",
        vae=VAEConfig(mid_attention=True),
        unet=UNetConfig(layout="audioldm2", norm_eps=1e-5),
        vocoder=VocoderConfig(upsample_padding="hifigan"),
    )


def demo_config() -> VemConfig:
    """Same structure, sized to train on a 2-core CPU (see the training issue)."""
    return VemConfig(
        name="demo",
        max_seconds=60.0,
        vae=VAEConfig(channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, latent_channels=8),
        unet=UNetConfig(
            model_channels=48,
            channel_mult=(1, 2, 3),
            num_res_blocks=1,
            attention_downsample=(2, 4),
            head_channels=24,
            transformer_depth=1,
            context_dim=128,
            # The runtime's chosen tempo as an adapter channel (vem.runtime.tempo): without it the
            # demo model picked its own tempo, unrelated to the video's (model card).
            beat_grid=True,
        ),
        condition=ConditionConfig(
            text_dim=128, visual_dim=128, timing_dim=64, timing_frequencies=16
        ),
        aligner=AlignerConfig(
            frame_size=64,
            in_channels=4,
            stem_channels=16,
            stage_channels=(16, 32, 64, 64),
            blocks_per_stage=(1, 1, 1, 1),
        ),
        visual=VisualConfig(frame_size=64, channels=(16, 32, 64, 128)),
        vocoder=VocoderConfig(
            upsample_initial_channel=128,
            upsample_rates=(5, 4, 2, 2, 2),
            upsample_kernel_sizes=(10, 8, 4, 4, 4),
            resblock_kernel_sizes=(3, 7),
            resblock_dilations=((1, 3), (1, 3)),
        ),
        diffusion=DiffusionConfig(steps=25, guidance=3.0),
    )


NAMED_CONFIGS = {"paper": paper_config, "demo": demo_config}


def get_config(name: str) -> VemConfig:
    try:
        return NAMED_CONFIGS[name]()
    except KeyError:
        raise ValueError(f"unknown config {name!r}; choose one of {sorted(NAMED_CONFIGS)}") from None
