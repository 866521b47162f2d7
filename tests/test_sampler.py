"""The numpy schedule and samplers (used by both the torch reference and the runtime)."""

import math

import numpy as np
import pytest

from vem.runtime.config import DiffusionConfig
from vem.runtime.sampler import (
    DDIMSampler,
    DPMSolverPP2MSampler,
    NoiseSchedule,
    guided_eps,
    make_sampler,
    sampling_timesteps,
)


def test_schedule_matches_closed_form():
    schedule = NoiseSchedule.from_config(DiffusionConfig())
    assert schedule.betas.shape == (1000,)
    # LDM "linear": sqrt(beta) is linear between the end points.
    assert schedule.betas[0] == pytest.approx(0.0015, rel=1e-12)
    assert schedule.betas[-1] == pytest.approx(0.0195, rel=1e-12)
    t = 417
    expected_beta = (math.sqrt(0.0015) + t / 999 * (math.sqrt(0.0195) - math.sqrt(0.0015))) ** 2
    assert schedule.betas[t] == pytest.approx(expected_beta, rel=1e-12)
    expected_abar = math.prod(1 - (math.sqrt(0.0015) + s / 999 * (math.sqrt(0.0195) - math.sqrt(0.0015))) ** 2
                              for s in range(t + 1))
    assert schedule.alphas_cumprod[t] == pytest.approx(expected_abar, rel=1e-10)
    assert np.all(np.diff(schedule.alphas_cumprod) < 0)
    assert schedule.alpha_sigma(-1) == (1.0, 0.0)


def test_timesteps_descend_from_last_training_step():
    ts = sampling_timesteps(1000, 25)
    assert ts[0] == 999 and ts[-1] == 0 and len(ts) == 25
    assert np.all(np.diff(ts) < 0)
    with pytest.raises(ValueError):
        sampling_timesteps(1000, 0)


@pytest.mark.parametrize("sampler_cls", [DDIMSampler, DPMSolverPP2MSampler])
@pytest.mark.parametrize("steps", [1, 4, 25])
def test_sampler_with_exact_eps_recovers_known_z0(sampler_cls, steps):
    """If the network predicted the exact noise of z_t = a z0 + s eps for a fixed (z0, eps)
    pair, the sampler must land on z0 (the DDPM posterior is deterministic here)."""
    rng = np.random.default_rng(0)
    schedule = NoiseSchedule()
    z0 = rng.standard_normal((2, 8, 16, 16))
    noise = rng.standard_normal(z0.shape)
    sampler = sampler_cls(schedule, steps)
    z = schedule.add_noise(z0, noise, int(sampler.timesteps[0]))
    for index, t in enumerate(sampler.timesteps):
        alpha, sigma = schedule.alpha_sigma(int(t))
        exact_eps = (z - alpha * z0) / sigma  # the eps that makes z consistent with z0
        z = sampler.step(exact_eps, index, z)
    np.testing.assert_allclose(z, z0, atol=1e-9)


def test_dpm_solver_is_second_order_on_a_linear_drift():
    """On a sample whose x0-prediction changes with t, 2M must differ from first order (DDIM)."""
    schedule = NoiseSchedule()
    z_init = np.ones(4)
    results = {}
    for name in ("ddim", "dpmpp_2m"):
        sampler = make_sampler(name, schedule, 10)
        z = z_init.copy()
        for index, t in enumerate(sampler.timesteps):
            eps = z * (0.5 + t / 2000.0)  # a toy eps model that depends on t
            z = sampler.step(eps, index, z)
        results[name] = z
    assert not np.allclose(results["ddim"], results["dpmpp_2m"])
    assert np.all(np.isfinite(results["dpmpp_2m"]))


def test_sampler_works_on_float32_without_upcasting():
    schedule = NoiseSchedule()
    sampler = DPMSolverPP2MSampler(schedule, 5)
    z = np.ones((1, 8, 4, 4), dtype=np.float32)
    for index in range(len(sampler.timesteps)):
        z = sampler.step(np.zeros_like(z), index, z)
    assert z.dtype == np.float32


def test_guidance():
    cond, uncond = np.array([2.0]), np.array([1.0])
    assert guided_eps(cond, uncond, 1.0)[0] == 2.0
    assert guided_eps(cond, uncond, 3.0)[0] == 4.0


def test_unknown_sampler():
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("euler", NoiseSchedule(), 10)
