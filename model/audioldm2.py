"""AudioLDM 2 weights into VeM's paper config (docs/audioldm2.md).

An AudioLDM 2 checkpoint in the diffusers layout is a folder with ``vae/`` (diffusers
``AutoencoderKL``), ``vocoder/`` (transformers ``SpeechT5HifiGan``) and ``unet/`` (diffusers
``AudioLDM2UNet2DConditionModel``), each holding ``config.json`` and a safetensors file
(``diffusion_pytorch_model.safetensors`` or ``model.safetensors``). `load_audioldm2` reads the
three configs, builds the VeM paper config with the checkpoint's sizes (`config_from_audioldm2`),
and places every tensor by name into the VeM modules. It needs neither diffusers nor transformers
(safetensors and torch only) and never touches the network.

It refuses, with the tensors' names and shapes, whatever it cannot place: a tensor with no place
in VeM, a shape that differs, a VeM weight that nothing fills outside the VeM-specific parts, a
config value VeM does not implement. The VeM-specific parts keep their initialisation and are
listed in the report (`UNTRAINED_PARTS`): SG-CAtt, the TB aligner and adapter, the timing MLPs,
the condition builder, the global-token projection that stands in for AudioLDM 2's GPT-2 tokens,
the visual encoder and style head.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vem.runtime.config import VAEConfig, VemConfig, VocoderConfig, get_config

from .unet import EncoderBlock, norm_groups
from .vem import VeM

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "model.safetensors")
SUBFOLDERS = ("vae", "vocoder", "unet")

# VeM parts with no AudioLDM 2 counterpart: (prefix of the VeM parameter names, what it is).
UNTRAINED_PARTS = (
    ("condition.", "condition builder (Eq. 6 tokens) and the timing MLPs f_s, f_d"),
    ("unet.loa_proj.", "projection of the global tokens into AudioLDM 2's second (GPT-2, loa_dim) context"),
    (".sg_catt.", "SG-CAtt (Eqs. 7-8), added beside the last transformer's self-attention, zero-initialised output"),
    (".adapter.", "TB adapter (Eq. 10), zero-initialised"),
    ("aligner.", "TB aligner (Eq. 9)"),
    ("visual.", "storyboard visual encoder"),
    ("style_head.", "global style/tag head"),
)


def _untrained(key: str, prefix: str) -> bool:
    """Whether the VeM parameter ``key`` belongs to the untrained part named by ``prefix``: a
    top-level module ("aligner.") or, with a leading dot, a sub-module anywhere (".sg_catt.")."""
    return prefix in key if prefix.startswith(".") else key.startswith(prefix)


class AudioLDM2Error(ValueError):
    """The checkpoint cannot be placed into VeM; the message names every offending tensor or value."""


@dataclass
class ConversionReport:
    placed: dict[str, int] = field(default_factory=dict)  # component -> tensors placed
    untrained: dict[str, int] = field(default_factory=dict)  # description -> parameters left as initialised
    ignored: list[str] = field(default_factory=list)  # source tensors read but not needed (with why)
    source: str = ""

    def lines(self) -> list[str]:
        out = [f"AudioLDM 2 checkpoint {self.source}:"]
        out += [f"  {name}: {count} tensors placed" for name, count in self.placed.items()]
        out += [f"  ignored: {item}" for item in self.ignored]
        out.append("  untrained (VeM-specific, keep their initialisation):")
        out += [f"    {desc}: {count / 1e6:.2f} M parameters" for desc, count in self.untrained.items()]
        return out


# ---------------------------------------------------------------------------------------------
# reading

def _read_component(folder: Path, name: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    sub = folder / name
    config_path = sub / "config.json"
    if not config_path.is_file():
        raise AudioLDM2Error(f"{folder} is not an AudioLDM 2 checkpoint in the diffusers layout: {config_path} is missing")
    weights = next((sub / f for f in WEIGHT_FILES if (sub / f).is_file()), None)
    if weights is None:
        raise AudioLDM2Error(f"no weights in {sub}: expected one of {', '.join(WEIGHT_FILES)} (safetensors only; "
                             "a .bin checkpoint must be re-saved with safe_serialization=True)")
    config = json.loads(config_path.read_text())
    return config, {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}


def _require(errors: list[str], what: str, value: Any, allowed: Any) -> None:
    ok = value in allowed if isinstance(allowed, tuple) else value == allowed  # a tuple: one of
    if not ok:
        errors.append(f"{what} = {value!r} (VeM implements {allowed!r})")


def _channels(block_out: list[int], what: str, errors: list[str]) -> tuple[int, tuple[int, ...]]:
    base = int(block_out[0])
    mult = []
    for c in block_out:
        if c % base:
            errors.append(f"{what} block_out_channels {block_out}: not multiples of the first")
        mult.append(c // base)
    for c in block_out:
        if norm_groups(int(c)) != 32:
            errors.append(f"{what} channels {c} not divisible by 32 (VeM's GroupNorm uses 32 groups there)")
    return base, tuple(mult)


def config_from_audioldm2(vae_cfg: dict, vocoder_cfg: dict, unet_cfg: dict,
                          base: VemConfig | None = None, scheduler_cfg: dict | None = None) -> VemConfig:
    """The VeM paper config with the checkpoint's VAE, vocoder and T-UNet sizes; AudioLDM2Error
    lists every config value VeM does not implement. ``scheduler_cfg`` (the folder's
    ``scheduler/scheduler_config.json``, when there is one) must describe VeM's DDPM: epsilon
    prediction on a scaled-linear schedule; its betas and step count are taken over."""
    config = base or get_config("paper")
    errors: list[str] = []
    diffusion = config.diffusion
    if scheduler_cfg is not None:
        _require(errors, "scheduler prediction_type", scheduler_cfg.get("prediction_type", "epsilon"), "epsilon")
        _require(errors, "scheduler beta_schedule", scheduler_cfg.get("beta_schedule", "scaled_linear"),
                 "scaled_linear")
        diffusion = dataclasses.replace(
            diffusion, num_train_steps=int(scheduler_cfg.get("num_train_timesteps", diffusion.num_train_steps)),
            beta_start=float(scheduler_cfg.get("beta_start", diffusion.beta_start)),
            beta_end=float(scheduler_cfg.get("beta_end", diffusion.beta_end)))
    # ---- VAE (diffusers AutoencoderKL)
    _require(errors, "vae in_channels", vae_cfg.get("in_channels"), 1)
    _require(errors, "vae out_channels", vae_cfg.get("out_channels"), 1)
    _require(errors, "vae act_fn", vae_cfg.get("act_fn", "silu"), "silu")
    _require(errors, "vae norm_num_groups", vae_cfg.get("norm_num_groups", 32), 32)
    _require(errors, "vae down_block_types", set(vae_cfg.get("down_block_types", [])), {"DownEncoderBlock2D"})
    _require(errors, "vae up_block_types", set(vae_cfg.get("up_block_types", [])), {"UpDecoderBlock2D"})
    for key in ("use_quant_conv", "use_post_quant_conv"):
        _require(errors, f"vae {key}", vae_cfg.get(key, True), True)
    _require(errors, "vae mid_block_add_attention", vae_cfg.get("mid_block_add_attention", True), True)
    vae_channels, vae_mult = _channels(vae_cfg["block_out_channels"], "vae", errors)
    vae = VAEConfig(channels=vae_channels, channel_mult=vae_mult, num_res_blocks=int(vae_cfg["layers_per_block"]),
                    latent_channels=int(vae_cfg["latent_channels"]),
                    scale_factor=float(vae_cfg.get("scaling_factor", 0.18215)), mid_attention=True)
    # ---- vocoder (transformers SpeechT5HifiGan)
    _require(errors, "vocoder model_in_dim", vocoder_cfg.get("model_in_dim"), config.audio.n_mels)
    _require(errors, "vocoder sampling_rate", vocoder_cfg.get("sampling_rate"), config.audio.sample_rate)
    _require(errors, "vocoder leaky_relu_slope", vocoder_cfg.get("leaky_relu_slope", 0.1), 0.1)
    _require(errors, "vocoder normalize_before", vocoder_cfg.get("normalize_before", False), False)
    vocoder = VocoderConfig(
        upsample_initial_channel=int(vocoder_cfg["upsample_initial_channel"]),
        upsample_rates=tuple(int(r) for r in vocoder_cfg["upsample_rates"]),
        upsample_kernel_sizes=tuple(int(k) for k in vocoder_cfg["upsample_kernel_sizes"]),
        resblock_kernel_sizes=tuple(int(k) for k in vocoder_cfg["resblock_kernel_sizes"]),
        resblock_dilations=tuple(tuple(int(d) for d in ds) for ds in vocoder_cfg["resblock_dilation_sizes"]),
        upsample_padding="hifigan",
    )
    # ---- T-UNet (diffusers AudioLDM2UNet2DConditionModel)
    downs = list(unet_cfg.get("down_block_types", []))
    ups = list(unet_cfg.get("up_block_types", []))
    unet_channels, unet_mult = _channels(unet_cfg["block_out_channels"], "unet", errors)
    levels = len(unet_mult)
    for key, allowed in (("in_channels", vae.latent_channels), ("out_channels", vae.latent_channels),
                         ("act_fn", "silu"), ("norm_num_groups", 32), ("flip_sin_to_cos", True), ("freq_shift", 0),
                         ("class_embed_type", None), ("num_class_embeds", None), ("time_embedding_type", "positional"),
                         ("time_cond_proj_dim", None), ("timestep_post_act", None), ("time_embedding_act_fn", None),
                         ("resnet_time_scale_shift", "default"), ("only_cross_attention", False),
                         ("mid_block_type", "UNetMidBlock2DCrossAttn"), ("conv_in_kernel", 3), ("conv_out_kernel", 3),
                         ("downsample_padding", 1), ("mid_block_scale_factor", 1), ("class_embeddings_concat", False),
                         ("time_embedding_dim", None)):
        if key in unet_cfg:
            _require(errors, f"unet {key}", unet_cfg[key], allowed)
    attention_downsample = []
    for level, kind in enumerate(downs):
        _require(errors, f"unet down_block_types[{level}]", kind, ("DownBlock2D", "CrossAttnDownBlock2D"))
        if kind == "CrossAttnDownBlock2D":
            attention_downsample.append(2 ** level)
    expected_ups = ["CrossAttnUpBlock2D" if downs[levels - 1 - i] == "CrossAttnDownBlock2D" else "UpBlock2D"
                    for i in range(levels)]
    _require(errors, "unet up_block_types", ups, expected_ups)
    heads = unet_cfg.get("attention_head_dim", 8)  # diffusers' name for the number of heads
    heads = [heads] * levels if isinstance(heads, int) else list(heads)
    head_channels = {int(unet_cfg["block_out_channels"][i]) // int(h) for i, h in enumerate(heads)
                     if 2 ** i in attention_downsample or i == levels - 1}
    if len(head_channels) != 1:
        errors.append(f"unet attention_head_dim {heads}: channels per head {sorted(head_channels)} differ by level "
                      "(VeM uses one head width)")
    cross = unet_cfg.get("cross_attention_dim")
    per_level = cross if isinstance(cross, list) and cross and isinstance(cross[0], (list, tuple)) else [cross] * levels
    contexts = {tuple(c) if isinstance(c, (list, tuple)) else (c,) for c in per_level}
    loa_dim, context_dim = config.unet.loa_dim, config.unet.context_dim
    if len(contexts) != 1 or len(next(iter(contexts))) != 3 or next(iter(contexts))[0] is not None:
        errors.append(f"unet cross_attention_dim {cross}: VeM's AudioLDM 2 layout needs [null, D1, D2] at every level "
                      "(a self-attention transformer, then two cross-attention transformers)")
    else:
        _, loa_dim, context_dim = next(iter(contexts))
    tlpb = unet_cfg.get("transformer_layers_per_block", 1)
    depths = {tlpb} if isinstance(tlpb, int) else set(tlpb)
    if len(depths) != 1:
        errors.append(f"unet transformer_layers_per_block {tlpb}: VeM uses one depth at every level")
    lpb = unet_cfg.get("layers_per_block", 2)
    if not isinstance(lpb, int):
        errors.append(f"unet layers_per_block {lpb}: VeM uses one count at every level")
    if errors:
        raise AudioLDM2Error("the AudioLDM 2 configs have values VeM does not implement:\n  " + "\n  ".join(errors))
    unet = dataclasses.replace(
        config.unet, model_channels=unet_channels, channel_mult=unet_mult, num_res_blocks=int(lpb),
        attention_downsample=tuple(attention_downsample), head_channels=head_channels.pop(),
        transformer_depth=int(depths.pop()), context_dim=int(context_dim), loa_dim=int(loa_dim),
        layout="audioldm2", norm_eps=float(unet_cfg.get("norm_eps", 1e-5)),
    )
    return dataclasses.replace(config, vae=vae, vocoder=vocoder, unet=unet, diffusion=diffusion)


# ---------------------------------------------------------------------------------------------
# name maps: source (diffusers / transformers) name -> VeM name

def _pair(src: str, dst: str) -> dict[str, str]:
    """A layer's weight and bias: ``src.weight -> dst.weight``, ``src.bias -> dst.bias``."""
    return {f"{src}.{p}": f"{dst}.{p}" for p in ("weight", "bias")}


def _resnet(src: str, dst: str, unet: bool) -> dict[str, str]:
    names = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.2",
             "conv_shortcut": "skip", "time_emb_proj": "emb_layers.1"} if unet else {
             "norm1": "block.0", "conv1": "block.2", "norm2": "block.3", "conv2": "block.5",
             "conv_shortcut": "skip"}
    return {f"{src}.{a}.{p}": f"{dst}.{b}.{p}" for a, b in names.items() for p in ("weight", "bias")}


def _vae_map(config: VemConfig) -> dict[str, str]:
    vcfg = config.vae
    out: dict[str, str] = {}
    # encoder: conv_in, per level resnets (+ downsampler), mid (res, attn, res), norm, conv_out, quant_conv
    i = 0
    out.update(_pair("encoder.conv_in", f"vae.encoder.layers.{i}"))
    i += 1
    for level in range(len(vcfg.channel_mult)):
        for j in range(vcfg.num_res_blocks):
            out.update(_resnet(f"encoder.down_blocks.{level}.resnets.{j}", f"vae.encoder.layers.{i}", unet=False))
            i += 1
        if level != len(vcfg.channel_mult) - 1:
            out.update(_pair(f"encoder.down_blocks.{level}.downsamplers.0.conv", f"vae.encoder.layers.{i}.conv"))
            i += 1
    i = _vae_middle(out, "encoder", "vae.encoder", i)
    for src, step in (("encoder.conv_norm_out", 0), ("encoder.conv_out", 2), ("quant_conv", 3)):
        out.update(_pair(src, f"vae.encoder.layers.{i + step}"))
    # decoder: post_quant_conv, conv_in, mid, up_blocks (deepest first), norm, conv_out
    out.update(_pair("post_quant_conv", "vae.decoder.layers.0"))
    out.update(_pair("decoder.conv_in", "vae.decoder.layers.1"))
    i = _vae_middle(out, "decoder", "vae.decoder", 2)
    levels = len(vcfg.channel_mult)
    for up in range(levels):
        for j in range(vcfg.num_res_blocks + 1):
            out.update(_resnet(f"decoder.up_blocks.{up}.resnets.{j}", f"vae.decoder.layers.{i}", unet=False))
            i += 1
        if up != levels - 1:
            out.update(_pair(f"decoder.up_blocks.{up}.upsamplers.0.conv", f"vae.decoder.layers.{i}.conv"))
            i += 1
    for src, step in (("decoder.conv_norm_out", 0), ("decoder.conv_out", 2)):
        out.update(_pair(src, f"vae.decoder.layers.{i + step}"))
    return out


def _vae_middle(out: dict[str, str], src: str, dst: str, i: int) -> int:
    out.update(_resnet(f"{src}.mid_block.resnets.0", f"{dst}.layers.{i}", unet=False))
    attn = f"{src}.mid_block.attentions.0"
    pairs = {"group_norm": "norm", "to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out.0": "to_out"}
    out.update({f"{attn}.{a}.{p}": f"{dst}.layers.{i + 1}.{b}.{p}" for a, b in pairs.items() for p in ("weight", "bias")})
    out.update(_resnet(f"{src}.mid_block.resnets.1", f"{dst}.layers.{i + 2}", unet=False))
    return i + 3


def _vocoder_map(config: VemConfig) -> dict[str, str]:
    vcfg = config.vocoder
    out = _pair("conv_pre", "vocoder.conv_pre")
    out.update(_pair("conv_post", "vocoder.conv_post"))
    for i in range(len(vcfg.upsample_rates)):
        out.update(_pair(f"upsampler.{i}", f"vocoder.ups.{i}"))
    for k in range(len(vcfg.upsample_rates) * len(vcfg.resblock_kernel_sizes)):
        for j in range(len(vcfg.resblock_dilations[k % len(vcfg.resblock_kernel_sizes)])):
            for conv in ("convs1", "convs2"):
                out.update(_pair(f"resblocks.{k}.{conv}.{j}", f"vocoder.resblocks.{k}.{conv}.{j}"))
    return out


def _transformer(src: str, dst: str, depth: int) -> dict[str, str]:
    out = {f"{src}.{a}.{p}": f"{dst}.{a}.{p}" for a in ("norm", "proj_in", "proj_out") for p in ("weight", "bias")}
    for d in range(depth):
        s, t = f"{src}.transformer_blocks.{d}", f"{dst}.blocks.{d}"
        for n in ("norm1", "norm2", "norm3"):
            out.update(_pair(f"{s}.{n}", f"{t}.{n}"))
        for attn in ("attn1", "attn2"):
            out.update({f"{s}.{attn}.{q}.weight": f"{t}.{attn}.{q}.weight" for q in ("to_q", "to_k", "to_v")})
            out.update(_pair(f"{s}.{attn}.to_out.0", f"{t}.{attn}.to_out"))
        out.update(_pair(f"{s}.ff.net.0.proj", f"{t}.ff.proj_in"))
        out.update(_pair(f"{s}.ff.net.2", f"{t}.ff.proj_out"))
    return out


def _stack(src: str, index: int, dst: str, depth: int) -> dict[str, str]:
    """AudioLDM 2's three Transformer2DModels of one resnet (attentions[3 i .. 3 i + 2])."""
    out: dict[str, str] = {}
    for k in range(3):
        out.update(_transformer(f"{src}.attentions.{3 * index + k}", f"{dst}.transformers.{k}", depth))
    return out


def _unet_map(model: VeM) -> dict[str, str]:
    ucfg = model.config.unet
    unet = model.unet
    depth = ucfg.transformer_depth
    out = _pair("conv_in", "unet.conv_in")
    out.update(_pair("time_embedding.linear_1", "unet.time_embed.0"))
    out.update(_pair("time_embedding.linear_2", "unet.time_embed.2"))
    out.update(_pair("conv_norm_out", "unet.out.0"))
    out.update(_pair("conv_out", "unet.out.2"))
    level, j = 0, 0
    for i, block in enumerate(unet.input_blocks):
        if isinstance(block, EncoderBlock):
            out.update(_resnet(f"down_blocks.{level}.resnets.{j}", f"unet.input_blocks.{i}.res", unet=True))
            if block.transformer is not None:
                out.update(_stack(f"down_blocks.{level}", j, f"unet.input_blocks.{i}.transformer", depth))
            j += 1
        else:
            out.update(_pair(f"down_blocks.{level}.downsamplers.0.conv", f"unet.input_blocks.{i}.conv"))
            level, j = level + 1, 0
    out.update(_resnet("mid_block.resnets.0", "unet.middle_res1", unet=True))
    out.update(_resnet("mid_block.resnets.1", "unet.middle_res2", unet=True))
    out.update(_stack("mid_block", 0, "unet.middle_transformer", depth))
    per_level = ucfg.num_res_blocks + 1
    for i, block in enumerate(unet.output_blocks):
        up, j = divmod(i, per_level)
        out.update(_resnet(f"up_blocks.{up}.resnets.{j}", f"unet.output_blocks.{i}.res", unet=True))
        if block.transformer is not None:
            out.update(_stack(f"up_blocks.{up}", j, f"unet.output_blocks.{i}.transformer", depth))
        if block.upsample is not None:
            out.update(_pair(f"up_blocks.{up}.upsamplers.0.conv", f"unet.output_blocks.{i}.upsample.conv"))
    return out


# ---------------------------------------------------------------------------------------------

def _place(name: str, source: dict[str, torch.Tensor], mapping: dict[str, str], target: dict[str, torch.Tensor],
           ignorable: dict[str, str], report: ConversionReport) -> list[str]:
    """Copy every mapped tensor into ``target`` (reshaping 1x1 convs to linear); returns problems."""
    problems: list[str] = []
    placed = 0
    for key, tensor in source.items():
        if key in ignorable:
            report.ignored.append(f"{name}/{key} {tuple(tensor.shape)}: {ignorable[key]}")
            continue
        dst = mapping.get(key)
        if dst is None or dst not in target:
            problems.append(f"{name}/{key} {tuple(tensor.shape)}: no place in VeM")
            continue
        want = target[dst].shape
        value = tensor
        if value.shape != want and value.dim() == 4 and value.shape[2:] == (1, 1) and value.shape[:2] == want:
            value = value[:, :, 0, 0]  # Transformer2DModel's 1x1 conv proj_in/proj_out -> VeM's Linear
        if value.shape != want:
            problems.append(f"{name}/{key} {tuple(tensor.shape)} -> {dst} {tuple(want)}: shape differs")
            continue
        target[dst] = value.to(target[dst].dtype)
        placed += 1
    for key, dst in mapping.items():
        if key not in source and key not in ignorable and dst in target:
            problems.append(f"{name}/{key}: missing from the checkpoint (VeM needs it for {dst} "
                            f"{tuple(target[dst].shape)})")
    report.placed[name] = placed
    return problems


def load_audioldm2(folder: str | Path, base: VemConfig | None = None) -> tuple[VeM, ConversionReport]:
    """VeM (paper config with the checkpoint's sizes) holding AudioLDM 2's VAE, vocoder and T-UNet
    weights; the VeM-specific parts keep their initialisation (the report lists them)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AudioLDM2Error(f"AudioLDM 2 checkpoint folder not found: {folder}")
    parts = {name: _read_component(folder, name) for name in SUBFOLDERS}
    scheduler_path = folder / "scheduler" / "scheduler_config.json"
    scheduler_cfg = json.loads(scheduler_path.read_text()) if scheduler_path.is_file() else None
    config = config_from_audioldm2(parts["vae"][0], parts["vocoder"][0], parts["unet"][0], base, scheduler_cfg)
    model = VeM(config).eval()
    model.remove_weight_norm()  # SpeechT5HifiGan stores plain conv weights
    target = model.state_dict()
    report = ConversionReport(source=str(folder))
    mappings = {"vae": _vae_map(config), "vocoder": _vocoder_map(config), "unet": _unet_map(model)}
    ignorable = {"vocoder": {"mean": "normalize_before is false: the vocoder does not read it",
                             "scale": "normalize_before is false: the vocoder does not read it"},
                 "vae": {}, "unet": {}}
    problems: list[str] = []
    for name in SUBFOLDERS:
        problems += _place(name, parts[name][1], mappings[name], target, ignorable[name], report)
    mapped = {v for m in mappings.values() for v in m.values()}
    leftover = [k for k in target if k not in mapped and not any(_untrained(k, p) for p, _ in UNTRAINED_PARTS)
                and k.startswith(("vae.", "vocoder.", "unet."))]
    problems += [f"VeM {k} {tuple(target[k].shape)}: nothing in the checkpoint fills it" for k in leftover]
    if problems:
        raise AudioLDM2Error(f"cannot place {len(problems)} tensor(s) of {folder}:\n  " + "\n  ".join(problems))
    model.load_state_dict(target)
    for prefix, desc in UNTRAINED_PARTS:
        count = sum(p.numel() for k, p in model.named_parameters() if _untrained(k, prefix) and k not in mapped)
        report.untrained[desc] = count
    # what vem-export's manifest records as the source (the folder's name, never its path)
    model.source_description = f"AudioLDM 2 checkpoint {folder.name} (vem.model.audioldm2)"
    return model.eval(), report
