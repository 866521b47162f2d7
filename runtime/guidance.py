"""One classifier-free-guided denoiser step from the bundle's denoiser graph.

The denoiser graph returns the noise prediction of the guidance branch each sample asks for
(input ``branch``: 1 = conditional, 0 = the learned null condition with the TB adapters off, as
`vem.export.graphs.BranchDenoiser`); guidance eps_u + g (eps_c - eps_u) is applied here, so each
backend can run the two branches the way its hardware likes:

- as one batch of two (GPUs, TensorRT, a single CPU thread): one call per step;
- on a CPU with two or more threads, as two concurrent calls of one session, each branch on its
  own core(s) (`OnnxRuntimeRunner.split_branches`). ONNX Runtime spreads a single call's ops over
  the threads poorly for this graph's many small element-wise and Q/DQ ops; one branch per core
  made the guided step about 1.2x (fp32) and 1.5x (int8) faster on the 2-core CPU
  (`python -m benchmarks.probe_split_guidance`, docs/precision.md), with the same numbers.

Bundles exported before the branch graph take ``guidance`` and return the guided eps themselves;
`bind_guided` runs those unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .sampler import guided_eps

BRANCH_INPUT = "branch"
COND, NULL = 1.0, 0.0


class GuidedStep:
    """``step(latent, timestep) -> eps``: the guided noise prediction for a [1, ...] latent.
    `close` releases what the bound conditions hold (device memory, the worker thread)."""

    def __call__(self, latent: Any, timestep: float) -> Any:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover
        raise NotImplementedError


def bind_guided(runner: Any, static_inputs: Mapping[str, np.ndarray], guidance: float) -> GuidedStep:
    """Bind the conditions ([1, ...] host arrays) once for a whole sampling loop."""
    if BRANCH_INPUT not in runner.input_names:  # a bundle whose graph applies guidance itself
        return _InGraph(runner, static_inputs, guidance)
    if getattr(runner, "split_branches", False):
        return _SplitBranches(runner, static_inputs, guidance)
    return _BatchOfTwo(runner, static_inputs, guidance)


class _InGraph(GuidedStep):
    def __init__(self, runner, static_inputs, guidance):
        self._bound = runner.bind(**static_inputs, guidance=np.array([guidance], dtype=np.float32))

    def __call__(self, latent, timestep):
        return self._bound(latent=latent, timestep=np.array([timestep], dtype=np.float32))["eps"]

    def close(self):
        self._bound.close()


class _BatchOfTwo(GuidedStep):
    """Both branches in one call: conditions stacked [conditional, null] along the batch."""

    def __init__(self, runner, static_inputs, guidance):
        stacked = {name: np.concatenate([value, value]) for name, value in static_inputs.items()}
        stacked[BRANCH_INPUT] = np.array([COND, NULL], dtype=np.float32)
        self._bound = runner.bind(**stacked)
        self._xp = runner.array_module
        self._guidance = float(guidance)

    def __call__(self, latent, timestep):
        xp = self._xp
        eps = self._bound(latent=xp.concatenate([latent, latent]),
                          timestep=np.array([timestep, timestep], dtype=np.float32))["eps"]
        return guided_eps(eps[0:1], eps[1:2], self._guidance)

    def close(self):
        self._bound.close()


class _SplitBranches(GuidedStep):
    """The null branch on a worker thread while the conditional one runs on the caller's; the
    session releases the GIL while it runs, so the two calls use two cores."""

    def __init__(self, runner, static_inputs, guidance):
        self._cond = runner.bind(**static_inputs, branch=np.array([COND], dtype=np.float32))
        self._null = runner.bind(**static_inputs, branch=np.array([NULL], dtype=np.float32))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vem-null-branch")
        self._guidance = float(guidance)

    def __call__(self, latent, timestep):
        t = np.array([timestep], dtype=np.float32)
        null = self._pool.submit(self._null, latent=latent, timestep=t)
        eps_cond = self._cond(latent=latent, timestep=t)["eps"]
        return guided_eps(eps_cond, null.result()["eps"], self._guidance)

    def close(self):
        self._pool.shutdown(wait=True)
        self._cond.close()
        self._null.close()


__all__ = ["BRANCH_INPUT", "GuidedStep", "bind_guided"]
