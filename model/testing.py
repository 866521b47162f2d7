"""Helpers for exercising an untrained model (tests, export checks, latency runs).

A fresh T-UNet follows LDM's zero-initialisation: every residual branch ends in a zero layer,
so its output is 0 and the conditioning paths have no visible effect. `randomize_zero_init_`
gives those layers small random weights so that tests can see every path at work.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def randomize_zero_init_(module: nn.Module, std: float = 0.02, seed: int = 0, skip: tuple[str, ...] = ()) -> nn.Module:
    """Refill every all-zero parameter of ``module`` with N(0, std^2) (seeded), except those
    whose qualified name contains one of ``skip`` (e.g. ``("adapter",)`` to keep the TB
    adapter at its zero init). Returns the module."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in module.named_parameters():
        if any(part in name for part in skip):
            continue
        if parameter.numel() and not parameter.any():
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32) * std
            parameter.copy_(noise.to(parameter.dtype))
    return module
