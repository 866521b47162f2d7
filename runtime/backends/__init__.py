"""Backends that run the bundle's components: ONNX Runtime everywhere, native TensorRT on NVIDIA GPUs.

Usage (what the pipeline does)::

    from vem.runtime.backends import select_backend
    choice = select_backend("auto", bundle, precision="fp16")   # or "onnxruntime" / "tensorrt"
    report["backend"] = choice.reason                             # one line, says what and why
    vocoder = choice.backend.load_component(bundle, "vocoder", "fp16")
    wave = vocoder.run({"mel": mel})["wave"]                     # host numpy in and out
    denoiser = choice.backend.load_component(bundle, "denoiser", "fp16")
    step = denoiser.bind(tokens=tokens, mask=mask)                # conditions uploaded once
    z = denoiser.to_device(noise)                                 # stays on the GPU on a GPU backend
    for i, t in enumerate(sampler.timesteps):
        eps = step(latent=z, timestep=np.full(2, t, np.int64))["eps"]
        z = sampler.step(eps, i, z)
    latent = denoiser.to_host(z)

Choices (`select_backend`):

- ``auto``: TensorRT when the tensorrt package imports, an NVIDIA GPU is present and the bundle
  has an engine built for this GPU and TensorRT version (for the denoiser at the precision);
  otherwise ONNX Runtime with its best installed provider: the TensorRT EP (onnxruntime-gpu
  built with it, and a GPU; its engine cache is ``<bundle>/engines/sm_XX/onnxruntime-tensorrt``,
  `ort_tensorrt_cache_dir`), the CUDA EP, or the CPU.
- ``onnxruntime``: ONNX Runtime with its best installed provider.
- ``tensorrt``: an error (`BundleError`, exit 4) where TensorRT or a GPU is missing: the user
  asked for something this machine cannot do, so we say why instead of silently running slower.
  Where TensorRT runs but an engine does not fit (other GPU, other TensorRT version, missing),
  that component falls back to ONNX Runtime with an `EngineFallbackWarning` and a note in the
  reason: the engines are a per-component acceleration, the ONNX graphs are always there.

Nothing falls back silently: every runner carries the reason it runs where it does and the
fallbacks it took (`Runner.placement`), and `component_placement` gathers them for the run
report (``report["components"]``: backend, provider, device, why, fallbacks per component).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

from ..bundle import Bundle
from ..errors import BundleError, UsageError
from .base import BoundRunner, Runner, TensorInfo
from .onnxruntime import (
    OnnxRuntimeBackend,
    OnnxRuntimeRunner,
    available_providers,
    ort_tensorrt_cache_dir,
    physical_cores,
)
from .tensorrt import (
    EngineFallbackWarning,
    TensorRTBackend,
    engine_mismatch,
    find_engine,
    tensorrt_status,
)

BACKENDS = ("auto", "onnxruntime", "tensorrt")

__all__ = [
    "BACKENDS", "BackendChoice", "BoundRunner", "EngineFallbackWarning", "OnnxRuntimeBackend",
    "OnnxRuntimeRunner", "Runner", "TensorInfo", "TensorRTBackend", "available_providers",
    "component_placement", "engine_mismatch", "find_engine", "ort_tensorrt_cache_dir", "physical_cores",
    "select_backend", "tensorrt_status",
]


@dataclass
class BackendChoice:
    backend: Any  # OnnxRuntimeBackend or TensorRTBackend: both have load_component / describe
    reason: str  # one line for the run report and the terminal summary

    @property
    def name(self) -> str:
        return self.backend.name


def select_backend(requested: str, bundle: Bundle | None = None, *, precision: str = "fp32",
                   key_component: str = "denoiser", cache_dir: str | os.PathLike | None = None,
                   threads: int | None = None, use_cuda_graphs: bool = True) -> BackendChoice:
    """Pick the backend for `requested` ('auto' | 'onnxruntime' | 'tensorrt'), with the reason.

    `key_component` is the component whose engine decides 'auto' (the denoiser: it runs once per
    sampler step and dominates the time). `cache_dir` enables ONNX Runtime's optimized-model cache.
    """
    if requested not in BACKENDS:
        raise UsageError(f"unknown backend {requested!r}; choose one of {', '.join(BACKENDS)}")

    def onnxruntime(why: str = "") -> BackendChoice:
        backend = OnnxRuntimeBackend(cache_dir=cache_dir, threads=threads,
                                     tensorrt_cache_dir=ort_tensorrt_cache_dir(bundle))
        text = f"onnxruntime with {backend.best_provider} ({backend.threads} threads)"
        return BackendChoice(backend, f"{text}: {why}" if why else text)

    if requested == "onnxruntime":
        return onnxruntime("requested")

    ok, status, version = tensorrt_status()
    if not ok:
        if requested == "tensorrt":
            raise BundleError(f"--backend tensorrt cannot run here: {status}",
                              hint="use --backend auto or onnxruntime, or install TensorRT 10 "
                                   "(pip install 'vem[gpu]') on a machine with an NVIDIA GPU")
        return onnxruntime(f"TensorRT unavailable: {status}")

    from .cuda import gpu_info

    capability = gpu_info().compute_capability
    engine, why = (None, "no bundle given") if bundle is None else find_engine(
        bundle, key_component, bundle.manifest.component(key_component, precision).precision,
        tensorrt_version=version, compute_capability=capability)
    if engine is None and requested == "auto":
        return onnxruntime(f"no usable TensorRT engine: {why}")
    fallback = OnnxRuntimeBackend(cache_dir=cache_dir, threads=threads,
                                  tensorrt_cache_dir=ort_tensorrt_cache_dir(bundle))
    backend = TensorRTBackend(fallback, use_cuda_graphs=use_cuda_graphs, tensorrt_version=version,
                              compute_capability=capability)
    if engine is None:
        note = f"tensorrt requested but {why}; components without an engine run on onnxruntime"
        warnings.warn(note, EngineFallbackWarning, stacklevel=2)
        return BackendChoice(backend, f"{backend.describe()}: {note}")
    graphs = "CUDA graphs" if use_cuda_graphs else "no CUDA graphs"
    return BackendChoice(backend, f"{backend.describe()}: {status}; {why} ({graphs})")


def component_placement(runners: dict[str, Runner], backend_reason: str) -> dict[str, dict[str, Any]]:
    """Per component: where it runs and why (`Runner.placement`); components without a reason of
    their own carry the backend choice's one-line reason."""
    return {name: runner.placement(backend_reason) for name, runner in runners.items()}
