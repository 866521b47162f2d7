"""The VeM container (docs/paper.md Fig. / §§2-5): every trainable component in one module, plus
safetensors checkpoints that carry their own configuration.

Components: ``condition`` (Eq. 6 tokens, including the timing MLPs f_s and f_d), ``unet``
(T-UNet with SG-CAtt and the TB adapter), ``aligner`` (TB aligner), ``visual`` (frame encoder)
and ``style_head`` (tags), ``vae`` (mel VAE) and ``vocoder`` (HiFi-GAN).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from vem.runtime.config import VemConfig

from .aligner import TBAligner
from .conditioning import ConditionBuilder
from .unet import TUNet
from .vae import MelVAE
from .visual import StyleHead, VisualEncoder
from .vocoder import HiFiGAN

CHECKPOINT_FORMAT = "vem-checkpoint-1"


class VeM(nn.Module):
    def __init__(self, config: VemConfig):
        super().__init__()
        self.config = config
        self.condition = ConditionBuilder(config)
        self.unet = TUNet(config)
        self.aligner = TBAligner(config.aligner)
        self.visual = VisualEncoder(config)
        self.style_head = StyleHead(config)
        self.vae = MelVAE(config)
        self.vocoder = HiFiGAN(config)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per component; the entries before "total" add up to it.

        ``timing_mlp`` (f_s + f_d) is split out of the condition builder, and the T-UNet's
        SG-CAtt and TB-adapter parameters are split out of ``unet`` (which then counts the
        rest of the backbone)."""

        def count(module: nn.Module) -> int:
            return sum(p.numel() for p in module.parameters())

        timing = count(self.condition.start_timing) + count(self.condition.duration_timing)
        sg_catt = sum(count(m) for _, m in self.unet.sg_catt_modules())
        adapter = sum(count(b.adapter) for b in self.unet.input_blocks if getattr(b, "adapter", None) is not None)
        counts = {
            "timing_mlp": timing,
            "condition_builder": count(self.condition) - timing,
            "unet_backbone": count(self.unet) - sg_catt - adapter,
            "unet_sg_catt": sg_catt,
            "unet_tb_adapter": adapter,
            "tb_aligner": count(self.aligner),
            "visual_encoder": count(self.visual),
            "style_head": count(self.style_head),
            "vae_encoder": count(self.vae.encoder),
            "vae_decoder": count(self.vae.decoder),
            "vocoder": count(self.vocoder),
        }
        counts["total"] = count(self)
        return counts

    def remove_weight_norm(self) -> None:
        self.vocoder.remove_weight_norm()


def save_checkpoint(model: VeM, path: str | Path, dtype: torch.dtype | None = None) -> None:
    """Write all weights to a safetensors file; the config JSON goes into its metadata, so
    `load_checkpoint` needs nothing else. ``dtype`` (e.g. torch.float16) stores every floating
    tensor in that type to halve the file; the metadata records it and `load_checkpoint` casts
    back to float32."""
    from safetensors.torch import save_file

    tensors = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    if dtype is not None:
        tensors = {name: (t.to(dtype) if t.is_floating_point() else t) for name, t in tensors.items()}
    metadata = {
        "stored_dtype": str(dtype).replace("torch.", "") if dtype is not None else "native",
        "format": CHECKPOINT_FORMAT,
        "config": model.config.to_json(),
        "vocoder_weight_norm": json.dumps(model.vocoder.has_weight_norm),
    }
    save_file(tensors, str(path), metadata=metadata)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> VeM:
    """Rebuild the model from a `save_checkpoint` file (config from its metadata)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") != CHECKPOINT_FORMAT or "config" not in metadata:
        raise ValueError(f"{path} is not a VeM checkpoint (no {CHECKPOINT_FORMAT!r} metadata)")
    config = VemConfig.from_json(metadata["config"])
    model = VeM(config)
    if not json.loads(metadata.get("vocoder_weight_norm", "true")):
        model.remove_weight_norm()
    tensors = load_file(str(path), device=str(map_location))
    if metadata.get("stored_dtype", "native") != "native":
        # Weights were stored in reduced precision to save space; the model computes in float32.
        tensors = {name: (t.float() if t.is_floating_point() else t) for name, t in tensors.items()}
    model.load_state_dict(tensors)
    return model.eval()
