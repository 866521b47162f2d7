"""The paper's three training phases (docs/paper.md §5) as small, separately testable trainers.

Phase 1 (components, independent of each other):
- ``vae``      Mel VAE: L1 reconstruction of random 1.28 s log-mel crops (the VAE is fully
               convolutional; short crops buy steps on a CPU) + a small KL term.
- ``vocoder``  HiFi-GAN on ground-truth mel -> waveform crops of 0.64 s: multi-resolution STFT
               loss (spectral convergence + log-magnitude L1) + log-mel L1. No adversarial
               term: it costs a discriminator's compute, which the CPU budget cannot pay.
- ``aligner``  TB aligner, Eq. 9: BCE on the per-frame target "cut AND beat" with a positive
               weight (positives are ~4% of frames); input RGB + TransNetV2 probability.
- ``visual``   visual encoder + style head: multi-label BCE of the tags from the mean embedding
               of a few frames of the clip.
Phase 2 ``diffusion``: latent diffusion (epsilon MSE, Eq. 5) on random 4-6 s crops with the
               encoders, VAE and aligner frozen; the T-UNet and the condition builder (its
               projections, null tokens and the timing MLPs f_s, f_d) train; 10% condition
               dropout (all tokens -> null tokens) for classifier-free guidance; no adapter
               (aligner_features=None). The VAE latent scale (LDM's scale_by_std: 1 / std of the
               latents) is measured first and stored in ``config.vae.scale_factor``.
               Half of the samples carry the runtime's wording of the text conditions
               (`runtime_text`: caption, tags and storyboard descriptions from the predicted
               tags), half vem-synth's, so the model serves the runtime's sentences too.
Phase 3 ``adapter``: the TB adapters (Eq. 10) with the frozen aligner's features, jointly with
               the T-UNet at a tenth of the adapter's learning rate. A ``UNetConfig.beat_grid``
               model's adapters also read the reference music's beats as a pulse channel
               (`vem.runtime.tempo.beat_grid`); at run time the pulses are the chosen tempo's.

Every phase offers ``prepare(model, clips)`` (one-off precomputation), ``parameters(model)``
(what trains), ``sample_batch(rng)`` and ``loss(model, batch) -> (loss, parts)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vem.model.aligner import resample_to_latent
from vem.model.attention import storyboard_mask
from vem.model.visual import pool_storyboards
from vem.runtime.sampler import NoiseSchedule
from vem.runtime.storyboard import Span, frame_storyboard_index
from vem.runtime.tempo import beat_grid

from .data import Clip
from .mel import TorchLogMel

PHASE_ORDER = ("vae", "vocoder", "aligner", "visual", "diffusion", "adapter")


@dataclass
class PhaseSettings:
    lr: float
    batch: int
    minutes: float  # default CPU budget of the phase in `vem-train all`
    max_steps: int
    # Adapter phase only (`AdapterPhase`): loss weight of the latent frames within
    # CUT_WEIGHT_RADIUS_S of a video cut (1 = plain mean), and the share of samples trained with
    # the TB adapters off (rhythm dropout, so guidance's adapter-free null branch is in-distribution).
    cut_weight: float = 1.0
    rhythm_dropout: float = 0.0


DEFAULT_SETTINGS: dict[str, PhaseSettings] = {
    "vae": PhaseSettings(lr=1e-3, batch=4, minutes=7.0, max_steps=20000),
    "vocoder": PhaseSettings(lr=1e-3, batch=4, minutes=6.0, max_steps=20000),
    "aligner": PhaseSettings(lr=1e-3, batch=4, minutes=4.0, max_steps=20000),
    "visual": PhaseSettings(lr=1e-3, batch=8, minutes=2.0, max_steps=20000),
    "diffusion": PhaseSettings(lr=4e-4, batch=4, minutes=20.0, max_steps=50000),
    "adapter": PhaseSettings(lr=5e-4, batch=4, minutes=6.0, max_steps=20000),
}


def _to_unit(frames: np.ndarray) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float32 [0, 1] (the bundle's pixel convention)."""
    return torch.from_numpy(np.ascontiguousarray(frames)).float().div_(255.0)


def aligner_input(frames: np.ndarray, trans_prob: np.ndarray) -> torch.Tensor:
    """uint8 RGB [T, A, A, 3] + probabilities [T] -> [1, 4, T, A, A]: the probability broadcast
    over the frame as the 4th channel (docs/architecture.md)."""
    rgb = _to_unit(frames).permute(3, 0, 1, 2)  # [3, T, A, A]
    prob = torch.from_numpy(np.asarray(trans_prob, dtype=np.float32)).view(1, -1, 1, 1).expand(1, -1, rgb.shape[2], rgb.shape[3])
    return torch.cat([rgb, prob], dim=0).unsqueeze(0)


class Phase:
    name = ""

    def __init__(self, clips: list[Clip], settings: PhaseSettings):
        if not clips:
            raise ValueError(f"phase {self.name}: no training clips")
        self.clips = clips
        self.settings = settings

    def prepare(self, model) -> None:  # noqa: B027 - optional hook
        pass

    def parameters(self, model) -> list[torch.nn.Parameter]:
        raise NotImplementedError

    def param_groups(self, model) -> list[dict]:
        return [{"params": self.parameters(model), "lr": self.settings.lr}]

    def train_mode(self, model) -> None:
        model.eval()

    def sample_batch(self, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


# ---- phase 1 -------------------------------------------------------------------------------
class VAEPhase(Phase):
    name = "vae"
    crop_frames = 128  # 1.28 s of mel; a multiple of the VAE's 4x down-sampling
    kl_weight = 1e-4

    def parameters(self, model):
        return list(model.vae.parameters())

    def train_mode(self, model):
        model.eval()
        model.vae.train()

    def sample_batch(self, rng):
        crops = []
        for _ in range(self.settings.batch):
            mel = self.clips[rng.integers(len(self.clips))].mel
            crops.append(_crop(mel, self.crop_frames, rng))
        return {"mel": torch.from_numpy(np.stack(crops)).transpose(1, 2).unsqueeze(1)}  # [B, 1, T, M]

    def loss(self, model, batch):
        mel = batch["mel"]
        mean, logvar = model.vae.encode(mel)
        recon = model.vae.decode(model.vae.sample(mean, logvar))
        l1 = F.l1_loss(recon, mel)
        kl = 0.5 * torch.mean(mean.pow(2) + logvar.exp() - 1.0 - logvar)
        return l1 + self.kl_weight * kl, {"l1": float(l1.detach()), "kl": float(kl.detach())}


def _crop(mel: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    """A random [M, frames] window of a [M, T] log-mel (padded with silence when shorter)."""
    if mel.shape[1] < frames:
        return np.pad(mel, ((0, 0), (0, frames - mel.shape[1])), constant_values=float(np.log(1e-5)))
    start = int(rng.integers(mel.shape[1] - frames + 1))
    return mel[:, start : start + frames]


class VocoderPhase(Phase):
    name = "vocoder"
    crop_frames = 32  # 0.32 s
    resolutions = ((512, 128, 512), (1024, 256, 1024), (256, 64, 256))

    def __init__(self, clips, settings):
        super().__init__(clips, settings)
        self.to_mel = None

    def parameters(self, model):
        return list(model.vocoder.parameters())

    def train_mode(self, model):
        model.eval()
        model.vocoder.train()

    def sample_batch(self, rng):
        hop = None
        mels, waves = [], []
        for _ in range(self.settings.batch):
            clip = self.clips[rng.integers(len(self.clips))]
            hop = len(clip.wave) // clip.mel.shape[1] if hop is None else hop
            start = int(rng.integers(max(1, clip.mel.shape[1] - self.crop_frames + 1)))
            mel = clip.mel[:, start : start + self.crop_frames]
            wave = clip.wave[start * hop : (start + self.crop_frames) * hop]
            if mel.shape[1] < self.crop_frames:
                mel = np.pad(mel, ((0, 0), (0, self.crop_frames - mel.shape[1])), constant_values=float(np.log(1e-5)))
            wave = np.pad(wave, (0, self.crop_frames * hop - len(wave)))
            mels.append(mel)
            waves.append(wave)
        return {"mel": torch.from_numpy(np.stack(mels)), "wave": torch.from_numpy(np.stack(waves))}

    def loss(self, model, batch):
        if self.to_mel is None:
            self.to_mel = TorchLogMel(model.config.audio)
        fake = model.vocoder(batch["mel"]).squeeze(1)
        real = batch["wave"][:, : fake.shape[1]]
        stft = sum(stft_loss(fake, real, n_fft, hop, win) for n_fft, hop, win in self.resolutions) / len(self.resolutions)
        mel_l1 = F.l1_loss(self.to_mel(fake), self.to_mel(real))
        return stft + mel_l1, {"stft": float(stft.detach()), "mel_l1": float(mel_l1.detach())}


def stft_loss(fake: torch.Tensor, real: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1 at one resolution (Parallel WaveGAN's MR-STFT)."""
    window = torch.hann_window(win, device=fake.device)
    f = torch.stft(fake, n_fft, hop, win, window, return_complex=True).abs().clamp(min=1e-7)
    r = torch.stft(real, n_fft, hop, win, window, return_complex=True).abs().clamp(min=1e-7)
    convergence = torch.linalg.norm(r - f) / torch.linalg.norm(r).clamp(min=1e-7)
    return convergence + F.l1_loss(torch.log(f), torch.log(r))


class AlignerPhase(Phase):
    name = "aligner"
    window_frames = 48  # 3 s at 16 fps
    max_pos_weight = 30.0

    def __init__(self, clips, settings):
        super().__init__(clips, settings)
        positives = float(sum(c.target.sum() for c in clips))
        total = float(sum(len(c.target) for c in clips))
        self.pos_weight = float(min(self.max_pos_weight, (total - positives) / max(positives, 1.0)))

    def parameters(self, model):
        return list(model.aligner.parameters())

    def train_mode(self, model):
        model.eval()
        model.aligner.train()

    def sample_batch(self, rng):
        inputs, targets = [], []
        for _ in range(self.settings.batch):
            clip = self.clips[rng.integers(len(self.clips))]
            n = len(clip.target)
            length = min(self.window_frames, n)
            start = int(rng.integers(n - length + 1))
            frames = clip.aligner[start : start + length]
            x = aligner_input(frames, clip.trans_prob[start : start + length])
            y = torch.from_numpy(clip.target[start : start + length].copy())
            if length < self.window_frames:  # pad in time by repeating the last frame, target 0
                pad = self.window_frames - length
                x = torch.cat([x, x[:, :, -1:].expand(-1, -1, pad, -1, -1)], dim=2)
                y = F.pad(y, (0, pad))
            if rng.random() < 0.5:
                x = x.flip(-1)  # horizontal flip: cuts do not care about left and right
            inputs.append(x)
            targets.append(y)
        return {"frames": torch.cat(inputs), "target": torch.stack(targets)}

    def loss(self, model, batch):
        _, logits = model.aligner(batch["frames"])
        target = batch["target"]
        pos_weight = torch.tensor(self.pos_weight, device=logits.device)
        bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)
        with torch.no_grad():
            predicted = logits > 0
            hits = float((predicted & (target > 0.5)).sum())
            recall = hits / max(float(target.sum()), 1.0)
            precision = hits / max(float(predicted.sum()), 1.0)
        return bce, {"bce": float(bce.detach()), "recall": recall, "precision": precision}


class VisualPhase(Phase):
    name = "visual"
    frames_per_clip = 6

    def parameters(self, model):
        return list(model.visual.parameters()) + list(model.style_head.parameters())

    def train_mode(self, model):
        model.eval()
        model.visual.train()
        model.style_head.train()

    def sample_batch(self, rng):
        frames, tags = [], []
        for _ in range(self.settings.batch):
            clip = self.clips[rng.integers(len(self.clips))]
            index = np.sort(rng.choice(len(clip.visual), size=min(self.frames_per_clip, len(clip.visual)), replace=False))
            picked = clip.visual[index]
            if len(picked) < self.frames_per_clip:
                picked = np.concatenate([picked, np.repeat(picked[-1:], self.frames_per_clip - len(picked), axis=0)])
            frames.append(picked)
            tags.append(clip.tags_hot)
        x = _to_unit(np.concatenate(frames)).permute(0, 3, 1, 2)  # [B * K, 3, S, S]
        return {"frames": x, "tags": torch.from_numpy(np.stack(tags))}

    def loss(self, model, batch):
        emb = model.visual(batch["frames"]).view(batch["tags"].shape[0], self.frames_per_clip, -1).mean(dim=1)
        logits = model.style_head(emb)
        bce = F.binary_cross_entropy_with_logits(logits, batch["tags"])
        return bce, {"bce": float(bce.detach())}


# ---- phases 2 and 3 --------------------------------------------------------------------------
@dataclass
class ClipConditions:
    """Per-clip diffusion inputs precomputed with the frozen VAE / encoders / aligner."""

    latent: torch.Tensor  # [C, T_lat, F], unscaled posterior mean
    caption: torch.Tensor
    tags: torch.Tensor
    story_text: torch.Tensor  # [N, D_t]
    story_visual: torch.Tensor  # [N, D_v]
    story_start_s: np.ndarray
    story_duration_s: np.ndarray
    aligner_features: torch.Tensor | None = None  # [T_lat, D_a] at the latent frame rate
    # The same conditions worded the way the runtime words them (no captioner on the device):
    # caption and tags from the style head's predicted tags, each storyboard's description from
    # its own predicted tags (`runtime_text`).
    runtime_caption: torch.Tensor | None = None
    runtime_tags: torch.Tensor | None = None
    runtime_story_text: torch.Tensor | None = None
    cuts_s: np.ndarray | None = None  # the video's cuts (seconds), for the adapter's cut weighting
    # The reference music's beats (seconds): a beat-grid model's tempo pulses (`vem.runtime.tempo`).
    # None in files prepared before the beat grid existed.
    beats_s: np.ndarray | None = None


@torch.no_grad()
def clip_story_visual(model, clip: Clip, stride: int = 4) -> torch.Tensor:
    """f_v per storyboard: the mean visual embedding of every ``stride``-th frame in it."""
    model.visual.eval()
    frames = clip.visual[::stride]
    times = np.arange(len(clip.visual))[::stride] / model.config.video.fps
    emb = model.visual(_to_unit(frames).permute(0, 3, 1, 2))
    spans = [Span(float(s), float(d)) for s, d in zip(clip.story_start_s, clip.story_duration_s)]
    index = torch.from_numpy(frame_storyboard_index(times, spans))
    return pool_storyboards(emb, index, len(spans))


@dataclass
class RuntimeText:
    caption: str
    tags: list[str]
    descriptions: list[str]
    caption_emb: np.ndarray  # [D_t]
    tags_emb: np.ndarray  # [D_t]
    story_text: np.ndarray  # [N, D_t]


@torch.no_grad()
def runtime_text(model, clip: Clip, story_start_s: np.ndarray, story_duration_s: np.ndarray,
                 stride: int = 2) -> RuntimeText:
    """The text conditions the runtime would build for ``clip`` (vem.runtime.pipeline's parse):
    global tags = `tags_from_probabilities` of the style head's mean per-frame probabilities,
    caption = `caption_from_tags`, storyboard i's description = `describe_storyboard` of the tags
    predicted from its own frames. Training on these sentences for a share of samples removes the
    train/inference mismatch between vem-synth's hand-written descriptions and the runtime's."""
    from vem.runtime.captions import caption_from_tags, describe_storyboard, tags_from_probabilities
    from vem.runtime.text import HashedTextEncoder

    model.visual.eval()
    model.style_head.eval()
    frames = clip.visual[::stride]
    times = np.arange(len(clip.visual))[::stride] / model.config.video.fps
    logits = model.style_head(model.visual(_to_unit(frames).permute(0, 3, 1, 2)))
    probabilities = torch.sigmoid(logits).double().numpy()
    tags = tags_from_probabilities(probabilities.mean(0))
    caption = caption_from_tags(tags)
    spans = [Span(float(s), float(d)) for s, d in zip(story_start_s, story_duration_s)]
    index = frame_storyboard_index(times, spans)
    descriptions = []
    for i in range(len(spans)):
        members = index == i
        pooled = (probabilities[members] if members.any() else probabilities).mean(0)
        descriptions.append(describe_storyboard(i, len(spans), tags_from_probabilities(pooled)))
    encoder = HashedTextEncoder(model.config.condition.text_dim)
    return RuntimeText(caption, tags, descriptions, encoder.encode(caption), encoder.encode_tags(tags),
                       encoder.encode_batch(descriptions))


@torch.no_grad()
def clip_aligner_features(model, clip: Clip, num_latent_frames: int) -> torch.Tensor:
    """The frozen aligner's per-frame features over the whole clip, resampled to the latent rate."""
    model.aligner.eval()
    features, _ = model.aligner(aligner_input(clip.aligner, clip.trans_prob))
    cfg = model.config
    return resample_to_latent(features, num_latent_frames, cfg.video.fps, cfg.latent_frames_per_second)[0]


@torch.no_grad()
def clip_latent(model, clip: Clip) -> torch.Tensor:
    model.vae.eval()
    d = model.config.vae.downsample
    frames = clip.mel.shape[1] // d * d
    mean, _ = model.vae.encode(torch.from_numpy(clip.mel[:, :frames]).T.reshape(1, 1, frames, -1))
    return mean[0]


PREPARED_FORMAT = 1
# The modules `DiffusionPhase.prepare` reads; none of them trains in phases 2 and 3.
PREPARED_FROM = ("vae", "visual", "style_head", "aligner")


def prepared_fingerprint(model) -> str:
    """A hash of the weights the prepared conditions were computed with (the frozen VAE, visual
    encoder, style head and aligner), so a saved set is never used with other weights."""
    digest = hashlib.sha256()
    for module_name in PREPARED_FROM:
        for name, tensor in sorted(getattr(model, module_name).state_dict().items()):
            digest.update(f"{module_name}.{name}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def save_prepared(path: str | Path, conditions: list[ClipConditions], model, uses_aligner: bool,
                  clip_names: list[str]) -> None:
    """Save the phase's precomputed per-clip conditions (`vem-train --prepared`): ~10 MB for
    the 97-clip demo set instead of the clip cache's ~290 MB, so a run on a lent GPU machine
    carries this file and skips both the cache and the minute of preparation. Tensors are stored
    in float16 (and read back as float32): a relative rounding of at most 2^-11, far below the
    noise the diffusion loss adds to the latents."""
    def compact(value):
        if torch.is_tensor(value):  # clone: a view would save its whole parent storage
            return value.detach().to(torch.float16 if value.is_floating_point() else value.dtype).clone()
        return value

    payload = {
        "format": PREPARED_FORMAT,
        "fingerprint": prepared_fingerprint(model),
        "uses_aligner": uses_aligner,
        "clips": list(clip_names),  # which cached clips, in order (`prepared_clip_names`)
        "conditions": [{key: compact(value) for key, value in dataclasses.asdict(c).items()} for c in conditions],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def prepared_clip_names(path: str | Path) -> list[str]:
    """The names of the cached clips a `--prepared` file was made from."""
    return list(torch.load(path, map_location="cpu", weights_only=False).get("clips", []))


def load_prepared(path: str | Path, model, uses_aligner: bool) -> list[ClipConditions]:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload.get("format") != PREPARED_FORMAT:
        raise ValueError(f"{path}: prepared conditions of format {payload.get('format')!r}, expected {PREPARED_FORMAT}")
    # An adapter phase's file holds everything the diffusion phase needs too (plus the aligner
    # features, dropped below), so one file can carry both phases to another machine.
    if uses_aligner and not payload["uses_aligner"]:
        raise ValueError(f"{path}: prepared for the diffusion phase, without the aligner features the adapter "
                         "phase needs; prepare it with the adapter command")
    fingerprint = prepared_fingerprint(model)
    if payload["fingerprint"] != fingerprint:
        raise ValueError(f"{path}: prepared with other VAE/encoder/aligner weights (fingerprint "
                         f"{payload['fingerprint']}, this model {fingerprint}); delete it to recompute")
    def widen(value):
        return value.float() if torch.is_tensor(value) and value.is_floating_point() else value

    conditions = [ClipConditions(**{key: widen(value) for key, value in item.items()}) for item in payload["conditions"]]
    if not uses_aligner:
        conditions = [dataclasses.replace(c, aligner_features=None) for c in conditions]
    return conditions


CUT_WEIGHT_RADIUS_S = 0.08  # +-2 latent frames at 25 fps: a beat's onset and its attack


class DiffusionPhase(Phase):
    name = "diffusion"
    crop_seconds = (4.0, 6.0)
    cond_dropout = 0.1
    runtime_text_share = 0.5  # share of samples conditioned on the runtime's wording (`runtime_text`)
    uses_aligner = False

    def __init__(self, clips, settings, prepared: str | Path | None = None):
        # With a saved set of prepared conditions the clips themselves are not needed.
        self.prepared = Path(prepared) if prepared is not None else None
        if self.prepared is not None and self.prepared.is_file():
            self.clips, self.settings = list(clips), settings
        else:
            super().__init__(clips, settings)
        self.conditions: list[ClipConditions] = []
        self.alphas_cumprod: torch.Tensor | None = None

    def prepare(self, model):
        cfg = model.config
        if self.prepared is not None and self.prepared.is_file():
            self.conditions = load_prepared(self.prepared, model, self.uses_aligner)
        else:
            self.conditions = self._build_conditions(model)
            if self.prepared is not None:
                save_prepared(self.prepared, self.conditions, model, self.uses_aligner,
                              [clip.name for clip in self.clips])
        if not self.uses_aligner:  # phase 2 fixes the latent scale; phase 3 keeps it
            std = float(torch.cat([c.latent.flatten() for c in self.conditions]).std())
            cfg.vae.scale_factor = float(1.0 / max(std, 1e-6))
        schedule = NoiseSchedule.from_config(cfg.diffusion)
        self.alphas_cumprod = torch.from_numpy(schedule.alphas_cumprod).float()

    def _build_conditions(self, model) -> list[ClipConditions]:
        conditions = []
        for clip in self.clips:
            latent = clip_latent(model, clip)
            words = runtime_text(model, clip, clip.story_start_s, clip.story_duration_s)
            conditions.append(ClipConditions(
                latent=latent,
                caption=torch.from_numpy(clip.caption),
                tags=torch.from_numpy(clip.tags_emb),
                story_text=torch.from_numpy(clip.story_text),
                story_visual=clip_story_visual(model, clip),
                story_start_s=clip.story_start_s,
                story_duration_s=clip.story_duration_s,
                aligner_features=clip_aligner_features(model, clip, latent.shape[1]) if self.uses_aligner else None,
                runtime_caption=torch.from_numpy(words.caption_emb),
                runtime_tags=torch.from_numpy(words.tags_emb),
                runtime_story_text=torch.from_numpy(words.story_text),
                cuts_s=np.asarray(clip.cuts_s, dtype=np.float64),
                beats_s=np.asarray(clip.beats_s, dtype=np.float64),
            ))
        return conditions

    def parameters(self, model):
        unet = [p for n, p in model.unet.named_parameters() if ".adapter." not in n]
        return unet + list(model.condition.parameters())

    def train_mode(self, model):
        model.eval()
        model.unet.train()
        model.condition.train()

    def sample_batch(self, rng):
        if not self.conditions:
            raise RuntimeError("call prepare(model) before sampling diffusion batches")
        latent_fps = self.latent_fps
        multiple = self.time_multiple
        seconds = rng.uniform(*self.crop_seconds)
        length = max(multiple, int(seconds * latent_fps) // multiple * multiple)
        shortest = min(c.latent.shape[1] for c in self.conditions)
        length = min(length, shortest // multiple * multiple)
        items = []
        weights = []
        weigh_cuts = self.uses_aligner and self.settings.cut_weight != 1.0
        for _ in range(self.settings.batch):
            cond = self.conditions[rng.integers(len(self.conditions))]
            offset = int(rng.integers(cond.latent.shape[1] - length + 1))
            t0, t1 = offset / latent_fps, (offset + length) / latent_fps
            start = np.maximum(cond.story_start_s, t0)
            end = np.minimum(cond.story_start_s + cond.story_duration_s, t1)
            keep = np.nonzero(end > start + 1e-6)[0]
            items.append((cond, offset, keep, (start[keep] - t0).astype(np.float32), (end - start)[keep].astype(np.float32)))
            if weigh_cuts:
                weights.append(self._frame_weights(cond, offset, length))
        n = max(len(k) for _, _, k, _, _ in items)
        batch = {key: [] for key in ("latent", "caption", "tags", "story_text", "story_visual", "start", "duration",
                                     "features", "beat_grid")}
        with_grid = self.uses_aligner and self._config.unet.beat_grid
        for cond, offset, keep, start, duration in items:
            pad = n - len(keep)
            runtime_words = cond.runtime_caption is not None and rng.random() < self.runtime_text_share
            batch["latent"].append(cond.latent[:, offset : offset + length])
            batch["caption"].append(cond.runtime_caption if runtime_words else cond.caption)
            batch["tags"].append(cond.runtime_tags if runtime_words else cond.tags)
            story_text = cond.runtime_story_text if runtime_words else cond.story_text
            # Padding storyboards have zero duration: no latent frame is inside them, so no frame
            # attends to their tokens (and every real frame has its own storyboard).
            batch["story_text"].append(F.pad(story_text[keep], (0, 0, 0, pad)))
            batch["story_visual"].append(F.pad(cond.story_visual[keep], (0, 0, 0, pad)))
            batch["start"].append(torch.from_numpy(np.pad(start, (0, pad))))
            batch["duration"].append(torch.from_numpy(np.pad(duration, (0, pad))))
            if cond.aligner_features is not None:
                batch["features"].append(cond.aligner_features[offset : offset + length])
            if with_grid:
                if cond.beats_s is None:
                    raise ValueError("a beat-grid model needs each clip's beat times, which this --prepared file "
                                     "(made before the beat grid) lacks; delete it to recompute")
                batch["beat_grid"].append(torch.from_numpy(
                    beat_grid(cond.beats_s, length, latent_fps, start_s=offset / latent_fps)))
        out = {k: torch.stack(v) for k, v in batch.items() if v}
        b = self.settings.batch
        out["t"] = torch.from_numpy(rng.integers(0, len(self.alphas_cumprod), size=b))
        out["noise"] = torch.from_numpy(rng.standard_normal(tuple(out["latent"].shape)).astype(np.float32))
        out["drop"] = torch.from_numpy(rng.random(b) < self.cond_dropout)
        if weigh_cuts:
            out["frame_weight"] = torch.from_numpy(np.stack(weights))
        if self.uses_aligner and self.settings.rhythm_dropout > 0:  # drawn only then: older runs replay exactly
            out["adapter_scale"] = torch.from_numpy((rng.random(b) >= self.settings.rhythm_dropout).astype(np.float32))
        return out

    def _frame_weights(self, cond: ClipConditions, offset: int, length: int) -> np.ndarray:
        """Per latent frame loss weight [length]: ``cut_weight`` within CUT_WEIGHT_RADIUS_S of a
        cut, 1 elsewhere. The rhythm the adapter must learn lives in those few frames (a beat's
        onset at the cut); in a plain mean they are ~8 % of the loss."""
        weight = np.ones(length, dtype=np.float32)
        if cond.cuts_s is None or not len(cond.cuts_s):
            return weight
        centres = (offset + np.arange(length) + 0.5) / self.latent_fps
        near = np.min(np.abs(centres[:, None] - cond.cuts_s[None, :]), axis=1) <= CUT_WEIGHT_RADIUS_S
        weight[near] = self.settings.cut_weight
        return weight

    @property
    def latent_fps(self) -> float:
        return self._config.latent_frames_per_second

    @property
    def time_multiple(self) -> int:
        return self._config.unet.time_multiple

    def bind(self, model) -> None:
        self._config = model.config

    def loss(self, model, batch):
        cfg = model.config
        z0 = batch["latent"] * cfg.vae.scale_factor
        abar = self.alphas_cumprod.to(batch["t"].device)[batch["t"]].view(-1, 1, 1, 1)
        zt = abar.sqrt() * z0 + (1.0 - abar).sqrt() * batch["noise"]
        tokens = model.condition(batch["caption"], batch["tags"], batch["story_text"], batch["story_visual"],
                                 batch["start"], batch["duration"], drop_mask=batch["drop"])
        mask = storyboard_mask(batch["start"], batch["duration"], z0.shape[2], cfg.latent_frames_per_second).float()
        features = batch.get("features") if self.uses_aligner else None
        eps = model.unet(zt, batch["t"], tokens, mask, model.condition.global_tokens(tokens), features,
                         batch.get("adapter_scale") if features is not None else None, batch.get("beat_grid"))
        squared = (eps - batch["noise"]) ** 2
        mse = squared.mean()
        if "frame_weight" in batch:  # normalised, so the loss stays on the plain MSE's scale
            weight = batch["frame_weight"].view(squared.shape[0], 1, -1, 1)
            loss = (squared * weight).mean() / weight.mean()
            return loss, {"mse": float(mse.detach()), "weighted": float(loss.detach())}
        return mse, {"mse": float(mse.detach())}


class AdapterPhase(DiffusionPhase):
    name = "adapter"
    uses_aligner = True
    unet_lr_ratio = 0.1

    def parameters(self, model):
        return [p for n, p in model.unet.named_parameters() if ".adapter." in n]

    def param_groups(self, model):
        adapter = self.parameters(model)
        adapter_ids = {id(p) for p in adapter}
        rest = [p for p in model.unet.parameters() if id(p) not in adapter_ids]
        return [{"params": adapter, "lr": self.settings.lr},
                {"params": rest, "lr": self.settings.lr * self.unet_lr_ratio}]

    def train_mode(self, model):
        model.eval()
        model.unet.train()


PHASES: dict[str, type[Phase]] = {
    "vae": VAEPhase,
    "vocoder": VocoderPhase,
    "aligner": AlignerPhase,
    "visual": VisualPhase,
    "diffusion": DiffusionPhase,
    "adapter": AdapterPhase,
}


def make_phase(name: str, clips: list[Clip], model, settings: PhaseSettings | None = None,
               prepared: str | Path | None = None) -> Phase:
    """``prepared``: diffusion/adapter only, a file of precomputed conditions to load (when it
    exists; the clips are then not needed) or to write after preparing."""
    if name not in PHASES:
        raise ValueError(f"unknown phase {name!r}; choose one of {list(PHASE_ORDER)}")
    settings = settings or DEFAULT_SETTINGS[name]
    if issubclass(PHASES[name], DiffusionPhase):
        phase = PHASES[name](clips, settings, prepared=prepared)
    else:
        if prepared is not None:
            raise ValueError(f"phase {name}: --prepared applies to the diffusion and adapter phases only")
        phase = PHASES[name](clips, settings)
    if isinstance(phase, DiffusionPhase):
        phase.bind(model)
    return phase
