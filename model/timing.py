"""Continuous-time embedder for storyboard start and duration (docs/paper.md §2, f_s and f_d of Eq. 6).

The paper calls it "a learnable continuous-time MLP over seconds" and keeps it trainable while
every other encoder is frozen. Here: seconds -> fixed log-spaced Fourier features (sin, cos) ->
two-layer MLP -> ``timing_dim``. The features are smooth functions of the input, so nearby
times give nearby embeddings and the embedding is defined for any real number of seconds (no
bucketing, no maximum index).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vem.runtime.config import ConditionConfig

# Periods of the Fourier features span this range of seconds: the shortest (0.25 s, an eighth
# note at 120 BPM) resolves musical subdivisions -- frame-exact boundaries are the storyboard
# mask's job, not the timing token's -- and the longest covers a whole 60 s clip without wrapping.
_MIN_PERIOD_S = 0.25
_MAX_PERIOD_S = 200.0


def fourier_frequencies(count: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``count`` angular frequencies (rad/s), log-spaced between 2π/200 s and 2π/0.25 s, made on
    ``device`` (no host-to-device copy: that would break CUDA graph capture)."""
    if count < 1:
        raise ValueError(f"timing_frequencies must be >= 1, got {count}")
    periods = torch.logspace(math.log10(_MAX_PERIOD_S), math.log10(_MIN_PERIOD_S), count, dtype=torch.float64,
                             device=device)
    return (2.0 * math.pi / periods).to(torch.float32)


class TimingMLP(nn.Module):
    """f(seconds) -> [..., timing_dim]; one instance for start (f_s), one for duration (f_d)."""

    def __init__(self, config: ConditionConfig):
        super().__init__()
        self.num_frequencies = config.timing_frequencies
        hidden = config.timing_dim
        self.mlp = nn.Sequential(
            nn.Linear(2 * config.timing_frequencies, hidden),
            nn.SiLU(),
            nn.Linear(hidden, config.timing_dim),
        )

    def fourier_features(self, seconds: torch.Tensor) -> torch.Tensor:
        """[...] seconds -> [..., 2 * timing_frequencies] (sin then cos), computed in fp32.

        The frequencies are built here rather than kept as a buffer so that ``model.half()``
        cannot round them (they are a constant in an exported graph either way)."""
        frequencies = fourier_frequencies(self.num_frequencies, seconds.device)
        angles = seconds.float().unsqueeze(-1) * frequencies
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)

    def forward(self, seconds: torch.Tensor) -> torch.Tensor:
        features = self.fourier_features(seconds)
        return self.mlp(features.to(self.mlp[0].weight.dtype))
