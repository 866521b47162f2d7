"""The resumable training loop behind `vem-train`.

A run folder holds:
- ``state.pt``       everything needed to continue: model weights, config (with the latent scale),
                     current phase, its step, CPU-seconds spent in it, optimizer state, the
                     finished phases and the numpy RNG state; written atomically every
                     ``checkpoint_seconds`` and at the end of every phase;
- ``losses.jsonl``   one JSON line per logged step: phase, step, seconds, loss and its parts;
- ``vem-<phase>.safetensors``  the full model after each finished phase (`save_checkpoint`).

A phase ends at ``max_steps`` or when its time budget (wall seconds spent in its steps, summed
over resumed sessions) is used up, whichever comes first.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vem.model import VeM, save_checkpoint
from vem.runtime.config import VemConfig

from .data import Clip
from .phases import DEFAULT_SETTINGS, PHASE_ORDER, PhaseSettings, make_phase

STATE_FILE = "state.pt"
LOSS_LOG = "losses.jsonl"


@dataclass
class RunState:
    config: VemConfig
    done: list[str] = field(default_factory=list)
    phase: str | None = None
    step: int = 0
    seconds: float = 0.0
    optimizer: dict | None = None
    rng: dict | None = None
    seed: int = 0
    summary: dict = field(default_factory=dict)  # per finished phase: steps, seconds, final losses


def save_state(path: Path, model: VeM, state: RunState) -> None:
    payload = {
        "model": model.state_dict(),
        "config": model.config.to_json(),
        "done": state.done,
        "phase": state.phase,
        "step": state.step,
        "seconds": state.seconds,
        "optimizer": state.optimizer,
        "rng": state.rng,
        "seed": state.seed,
        "summary": state.summary,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> tuple[VeM, RunState]:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    config = VemConfig.from_json(payload["config"])
    model = VeM(config)
    model.load_state_dict(payload["model"])
    state = RunState(config=config, done=list(payload["done"]), phase=payload["phase"], step=int(payload["step"]),
                     seconds=float(payload["seconds"]), optimizer=payload["optimizer"], rng=payload["rng"],
                     seed=int(payload.get("seed", 0)), summary=dict(payload.get("summary", {})))
    return model, state


def init_model(path: str | os.PathLike) -> VeM:
    """Weights to start a new run from: another run's ``state.pt`` (full precision) or a
    `save_checkpoint` file (the shipped checkpoint stores float16; training continues in float32)."""
    from vem.model import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--init: not found: {path}")
    if path.suffix == ".pt":
        return load_state(path)[0]
    return load_checkpoint(path).float()


def open_run(out_dir: str | os.PathLike, config: VemConfig, resume: bool, seed: int = 0,
             init: str | os.PathLike | None = None, fresh_diffusion: bool = False,
             plain_cross_attention: bool = False, beat_grid: bool = False) -> tuple[VeM, RunState]:
    """A fresh model (refusing to overwrite an existing run unless ``resume``) or the saved one.

    ``init``: start the fresh run from these weights (and their config, latent scale included)
    instead of random ones, so finished phases can be trained further in a new run folder; the
    source is recorded in ``init.json``.
    ``fresh_diffusion`` (with ``init``): keep phase 1's VAE, vocoder, aligner and encoders but
    give the T-UNet (with its TB adapters) and the condition builder new random weights, so
    phases 2 and 3 can be trained again under another recipe against the same frozen parts.
    ``plain_cross_attention``: SG-CAtt without its storyboard mask (`UNetConfig.use_storyboard_mask`
    False, recorded in the checkpoint's config): the paper's "without SG-CAtt" ablation trained
    as such. With ``init`` it needs ``fresh_diffusion``: weights trained with the mask are not
    that ablation.
    ``beat_grid``: give the TB adapters the beat-grid channel (`UNetConfig.beat_grid`); from
    ``init`` weights without it, each adapter's input weights are widened by one zero column,
    so the new run starts as exactly the old model and the adapter phase teaches the channel."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / STATE_FILE
    if path.is_file():
        if not resume:
            raise ValueError(f"{out} already holds a run ({STATE_FILE}); pass --resume to continue it or pick another --out")
        if fresh_diffusion or plain_cross_attention or beat_grid:
            raise ValueError("--fresh-diffusion, --plain-cross-attention and --beat-grid start a run; "
                             "a resumed run keeps the weights and config it was started with")
        return load_state(path)
    if fresh_diffusion and init is None:
        raise ValueError("--fresh-diffusion needs --init (the weights whose phase-1 parts to keep)")
    if plain_cross_attention and init is not None and not fresh_diffusion:
        raise ValueError("--plain-cross-attention with --init needs --fresh-diffusion: the T-UNet in "
                         f"{init} was trained with the storyboard mask")
    torch.manual_seed(seed)
    if init is not None:
        model = init_model(init)
        if fresh_diffusion:
            from vem.model.conditioning import ConditionBuilder
            from vem.model.unet import TUNet

            # In place on the loaded config: it is the object the checkpoint and RunState record.
            model.config.unet.use_storyboard_mask = not plain_cross_attention
            model.config.unet.beat_grid = beat_grid or model.config.unet.beat_grid
            model.unet = TUNet(model.config)
            model.condition = ConditionBuilder(model.config)
        elif beat_grid and not model.config.unet.beat_grid:
            add_beat_grid_channel(model)
        (out / "init.json").write_text(json.dumps({"init": str(init), "config": model.config.name,
                                                   "fresh_diffusion": fresh_diffusion,
                                                   "plain_cross_attention": plain_cross_attention,
                                                   "beat_grid": model.config.unet.beat_grid}))
        return model, RunState(config=model.config, seed=seed)
    if plain_cross_attention or beat_grid:
        config = dataclasses.replace(config, unet=dataclasses.replace(
            config.unet, use_storyboard_mask=not plain_cross_attention, beat_grid=beat_grid or config.unet.beat_grid))
    return VeM(config), RunState(config=config, seed=seed)


@torch.no_grad()
def add_beat_grid_channel(model: VeM) -> None:
    """Turn ``model`` into a beat-grid model (`UNetConfig.beat_grid`) that computes exactly what
    it did: every TB adapter's two convolutions get one more input channel with zero weights."""
    from vem.model.adapter import TBAdapter

    model.config.unet.beat_grid = True  # the config object the T-UNet, checkpoint and RunState read
    for module in model.unet.modules():
        if isinstance(module, TBAdapter):
            module.add_inputs(1)


def train_phase(
    model: VeM,
    state: RunState,
    name: str,
    clips: list[Clip],
    out_dir: str | os.PathLike,
    settings: PhaseSettings | None = None,
    checkpoint_seconds: float = 180.0,
    log_every: int = 5,
    progress: bool = True,
    device: str = "cpu",
    stop_after: int | None = None,
    prepared: str | os.PathLike | None = None,
) -> dict | None:
    """Run (or continue) phase ``name`` until its step or time budget is spent; returns its summary.

    ``stop_after``: end this session after that many steps without finishing the phase (state
    saved, returns None); a later call with the loaded state continues it.
    ``prepared``: diffusion/adapter phases: load their precomputed conditions from this file, or
    compute and save them there (`make_phase`)."""
    from tqdm import tqdm

    out = Path(out_dir)
    settings = settings or DEFAULT_SETTINGS[name]
    if name in state.done:
        return state.summary.get(name, {})
    resuming = state.phase == name
    phase = make_phase(name, clips, model, settings, prepared=prepared)
    # Preparation runs on the CPU (its inputs are numpy clips; the results stay in host memory
    # and each batch is moved to ``device``); then the model moves for the steps.
    model.to("cpu")
    t_prep = time.perf_counter()
    phase.prepare(model)
    model.to(device)
    optimizer = torch.optim.AdamW(phase.param_groups(model), betas=(0.9, 0.99), weight_decay=0.0)
    # Everything that does not train in this phase is frozen (no gradients computed for it).
    trainable = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in trainable)
    if resuming and state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
        rng = np.random.default_rng()
        rng.bit_generator.state = state.rng
    else:
        state.phase, state.step, state.seconds = name, 0, 0.0
        rng = np.random.default_rng([state.seed, PHASE_ORDER.index(name)])
    budget = settings.minutes * 60.0
    log_path = out / LOSS_LOG
    bar = tqdm(total=settings.max_steps, initial=state.step, desc=name, disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    last_save = time.perf_counter()
    recent: list[dict] = []
    prep_seconds = time.perf_counter() - t_prep

    def checkpoint() -> None:
        state.optimizer = optimizer.state_dict()
        state.rng = rng.bit_generator.state
        save_state(out / STATE_FILE, model, state)

    session_steps = 0
    with open(log_path, "a") as log:
        while state.step < settings.max_steps and state.seconds < budget:
            if stop_after is not None and session_steps >= stop_after:
                bar.close()
                checkpoint()
                return None
            session_steps += 1
            t0 = time.perf_counter()
            phase.train_mode(model)
            batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in phase.sample_batch(rng).items()}
            loss, parts = phase.loss(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"phase {name}: loss is {float(loss)} at step {state.step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
            optimizer.step()
            state.step += 1
            state.seconds += time.perf_counter() - t0
            record = {"phase": name, "step": state.step, "seconds": round(state.seconds, 2), "loss": float(loss.detach()), **parts}
            recent = (recent + [record])[-20:]
            if state.step % log_every == 0 or state.step == 1:
                log.write(json.dumps(record) + "\n")
                log.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", min=f"{state.seconds / 60:.1f}/{settings.minutes:g}")
            if time.perf_counter() - last_save > checkpoint_seconds:
                checkpoint()
                last_save = time.perf_counter()
    bar.close()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    keys = [k for k in (recent[-1] if recent else {}) if k not in ("phase", "step", "seconds")]
    summary = {
        "steps": state.step,
        "minutes": round(state.seconds / 60.0, 2),
        "prepare_seconds": round(prep_seconds, 1),
        "batch": settings.batch,
        "lr": settings.lr,
        **({"cut_weight": settings.cut_weight, "rhythm_dropout": settings.rhythm_dropout} if name == "adapter" else {}),
        "final": {k: float(np.mean([r[k] for r in recent])) for k in keys},  # mean of the last 20 steps
    }
    state.summary[name] = summary
    state.done.append(name)
    state.phase, state.step, state.seconds, state.optimizer, state.rng = None, 0, 0.0, None, None
    save_state(out / STATE_FILE, model, state)
    save_checkpoint(model, out / f"vem-{name}.safetensors")
    return summary


def train_phases(
    model: VeM,
    state: RunState,
    phases: list[str],
    clips: list[Clip],
    out_dir: str | os.PathLike,
    settings: dict[str, PhaseSettings] | None = None,
    **kwargs,
) -> dict:
    """Run ``phases`` in the paper's order (skipping finished ones); returns all summaries."""
    settings = {**DEFAULT_SETTINGS, **(settings or {})}
    for name in PHASE_ORDER:
        if name in phases:
            train_phase(model, state, name, clips, out_dir, settings[name], **kwargs)
    (Path(out_dir) / "summary.json").write_text(json.dumps(state.summary, indent=2))
    return state.summary
