"""DDPM noise schedule and the inference samplers, in numpy.

Written once here and used by both the torch reference (`vem.model`) and the runtime, so the
two can never disagree about a coefficient. The samplers are array-agnostic: ``step`` only
multiplies and adds its array arguments with Python floats, so the same code drives numpy
arrays, torch tensors and device arrays (CuPy, IO-bound ORT values) without copying the latent
to the host between steps.

Schedule (docs/paper.md §5, Eqs. 1-5): 1000 training steps, epsilon prediction,
q(z_t | z_0) = N(sqrt(abar_t) z_0, (1 - abar_t) I). Betas are LDM's "linear" schedule
(linear in sqrt space) with AudioLDM 2's end points.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .config import DiffusionConfig


class NoiseSchedule:
    """Closed-form DDPM quantities for `num_train_steps` steps."""

    def __init__(self, num_train_steps: int = 1000, beta_start: float = 0.0015, beta_end: float = 0.0195):
        self.num_train_steps = int(num_train_steps)
        self.betas = np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), self.num_train_steps) ** 2
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = np.cumprod(self.alphas)

    @classmethod
    def from_config(cls, config: DiffusionConfig) -> NoiseSchedule:
        return cls(config.num_train_steps, config.beta_start, config.beta_end)

    def alpha_sigma(self, t: int) -> tuple[float, float]:
        """(sqrt(abar_t), sqrt(1 - abar_t)); t = -1 means the clean end point (1, 0)."""
        abar = 1.0 if t < 0 else float(self.alphas_cumprod[t])
        return math.sqrt(abar), math.sqrt(1.0 - abar)

    def add_noise(self, z0: Any, noise: Any, t: int) -> Any:
        alpha, sigma = self.alpha_sigma(t)
        return alpha * z0 + sigma * noise


def sampling_timesteps(num_train_steps: int, steps: int) -> np.ndarray:
    """Evenly spaced, descending, starting at the last training step ("trailing" spacing,
    which starts from pure noise unlike the original DDIM "leading" spacing)."""
    if not 1 <= steps <= num_train_steps:
        raise ValueError(f"steps must be in 1..{num_train_steps}, got {steps}")
    return np.round(np.linspace(num_train_steps - 1, 0, steps)).astype(np.int64)


class Sampler:
    """Iterate ``for i, t in enumerate(sampler.timesteps): z = sampler.step(eps(z, t), i, z)``."""

    name = "base"

    def __init__(self, schedule: NoiseSchedule, steps: int):
        self.schedule = schedule
        self.steps = int(steps)
        self.timesteps = sampling_timesteps(schedule.num_train_steps, self.steps)

    def previous_timestep(self, index: int) -> int:
        return int(self.timesteps[index + 1]) if index + 1 < len(self.timesteps) else -1

    def reset(self) -> None:
        """Forget multistep history (call before each new generation)."""

    def step(self, eps: Any, index: int, sample: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class DDIMSampler(Sampler):
    """Deterministic DDIM (eta = 0): z_prev = a_prev * x0_hat + s_prev * eps."""

    name = "ddim"

    def step(self, eps: Any, index: int, sample: Any) -> Any:
        t = int(self.timesteps[index])
        alpha, sigma = self.schedule.alpha_sigma(t)
        alpha_prev, sigma_prev = self.schedule.alpha_sigma(self.previous_timestep(index))
        # z_prev = alpha_prev * (z - sigma * eps) / alpha + sigma_prev * eps, folded into two terms.
        return (alpha_prev / alpha) * sample + (sigma_prev - alpha_prev * sigma / alpha) * eps


class DPMSolverPP2MSampler(Sampler):
    """DPM-Solver++(2M) (Lu et al. 2022), data-prediction multistep, second order after the
    first step and first order on the last step (for stability at few steps)."""

    name = "dpmpp_2m"

    def __init__(self, schedule: NoiseSchedule, steps: int):
        super().__init__(schedule, steps)
        self._previous_x0: Any = None
        self._previous_h: float | None = None

    def reset(self) -> None:
        self._previous_x0 = None
        self._previous_h = None

    @staticmethod
    def _lambda(alpha: float, sigma: float) -> float:
        return math.log(alpha) - math.log(sigma) if sigma > 0 else math.inf

    def step(self, eps: Any, index: int, sample: Any) -> Any:
        if index == 0:
            self.reset()
        t = int(self.timesteps[index])
        alpha, sigma = self.schedule.alpha_sigma(t)
        x0 = (1.0 / alpha) * sample - (sigma / alpha) * eps
        t_prev = self.previous_timestep(index)
        alpha_prev, sigma_prev = self.schedule.alpha_sigma(t_prev)
        if sigma_prev == 0.0:
            # The clean end point: the data prediction is the answer.
            self._previous_x0 = x0
            return x0
        h = self._lambda(alpha_prev, sigma_prev) - self._lambda(alpha, sigma)
        first_order = self._previous_x0 is None or index == len(self.timesteps) - 1
        if first_order:
            d = x0
        else:
            r = self._previous_h / h
            d = (1.0 + 1.0 / (2.0 * r)) * x0 - (1.0 / (2.0 * r)) * self._previous_x0
        out = (sigma_prev / sigma) * sample - (alpha_prev * math.expm1(-h)) * d
        self._previous_x0 = x0
        self._previous_h = h
        return out


SAMPLERS = {cls.name: cls for cls in (DDIMSampler, DPMSolverPP2MSampler)}


def make_sampler(name: str, schedule: NoiseSchedule, steps: int) -> Sampler:
    try:
        return SAMPLERS[name](schedule, steps)
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}") from None


def guided_eps(eps_cond: Any, eps_uncond: Any, guidance: float) -> Any:
    """Classifier-free guidance: eps_u + g (eps_c - eps_u)."""
    return eps_uncond + guidance * (eps_cond - eps_uncond)
