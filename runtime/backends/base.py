"""The backend interface: a Backend loads a bundle component into a Runner; a Runner runs it.

Two ways to call a runner:

- ``runner.run({"x": array, ...}) -> {"y": array, ...}``: host numpy in, host numpy out. For the
  one-shot components (transitions, visual, aligner, VAE decoder, vocoder).
- The diffusion loop, where the latent must stay on the device between sampler steps::

      step = runner.bind(tokens=tokens, mask=mask, ...)   # conditions: uploaded once
      z = runner.to_device(noise)                          # numpy on CPU, CuPy on a GPU
      for i, t in enumerate(sampler.timesteps):
          eps = step(latent=z, timestep=np.array([t, t], np.int64))["eps"]
          z = sampler.step(eps, i, z)                        # a * z + b * eps, on the device
      latent = runner.to_host(z)

  ``step(...)`` returns arrays of ``runner.array_module`` (numpy or CuPy), which support the
  ``float * array + float * array`` arithmetic the samplers in `vem.runtime.sampler` use. Small
  per-step inputs (the timestep) may be host numpy arrays; they are copied each step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BundleError

HINT_BUNDLE = "re-export the bundle with `vem-export`, or pass --bundle to a valid bundle"


class GraphMismatch(BundleError, ValueError):
    """A graph's inputs are not what the bundle's manifest or this runtime says (exit 4)."""


class NonFiniteOutput(BundleError):
    """A graph produced NaN or infinity: damaged weights, or a precision that overflows (exit 4)."""


def check_finite(component: str, outputs: Mapping[str, Any], xp: Any = np) -> None:
    """NonFiniteOutput naming ``component`` and the output when any floating value is NaN or inf.

    Each runner checks its own outputs, so the first component that makes such values is the one
    named (the later ones would only pass them on, and the soundtrack would be silence or noise)."""
    for name, value in outputs.items():
        if getattr(value, "dtype", None) is None or value.dtype.kind != "f":
            continue
        if not bool(xp.isfinite(value).all()):
            bad = int((~xp.isfinite(value)).sum())
            raise NonFiniteOutput(
                f"component {component}: its output {name!r} has {bad} NaN/inf value(s) of {value.size}: "
                "the graph's weights are damaged or overflow at this precision",
                hint="re-export the bundle with `vem-export` (or try --precision fp32)")

# ONNX tensor type strings (as ONNX Runtime reports them) and manifest dtypes -> numpy.
ORT_TYPE_TO_NUMPY = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8, "tensor(bool)": np.bool_,
}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: Any  # numpy dtype
    shape: tuple[int | str | None, ...]  # None or a symbol name where the axis is dynamic


@dataclass
class Runner:
    """A loaded component. Subclasses implement `run`, `bind`, `to_device`, `to_host`."""

    component: str
    backend: str  # "onnxruntime" or "tensorrt"
    provider: str  # "CPUExecutionProvider", "CUDAExecutionProvider", "TensorRT 10.3.0", ...
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # fallbacks taken while loading, for the report
    why: str = ""  # why this component runs here (an engine file, a GPU graph); the report's line

    @property
    def input_names(self) -> list[str]:
        return [info.name for info in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [info.name for info in self.outputs]

    @property
    def device(self) -> str:
        """"cuda" when the graph runs on the GPU, else "cpu"."""
        return "cpu"

    @property
    def array_module(self) -> Any:
        """numpy, or cupy when bound outputs stay on the GPU."""
        return np

    @property
    def device_resident(self) -> bool:
        """True when `bind`'s outputs stay on the GPU (no host round trip between steps)."""
        return self.array_module is not np

    def describe(self) -> str:
        where = "device-resident" if self.device_resident else "host arrays"
        return f"{self.component}: {self.backend} ({self.provider}, {where})"

    def placement(self, default_why: str = "") -> dict[str, Any]:
        """Where this component runs and why, for the run report: backend, provider, device, the
        reason, and every fallback taken while loading (``fallbacks``: empty when none)."""
        return {"backend": self.backend, "provider": self.provider, "device": self.device,
                "why": self.why or default_why, "fallbacks": list(self.notes)}

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def bind(self, **static_inputs: Any) -> BoundRunner:  # pragma: no cover
        raise NotImplementedError

    def to_device(self, array: np.ndarray) -> Any:
        return np.ascontiguousarray(array)

    def to_host(self, array: Any) -> np.ndarray:
        if isinstance(array, np.ndarray):
            return array
        if hasattr(array, "get"):  # CuPy
            return array.get()
        return np.asarray(array)

    def close(self) -> None:
        """Release sessions, engines and device memory (also done when garbage collected)."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- shared checks ---------------------------------------------------------------------

    def check_input_names(self, given: Mapping[str, Any], *, partial: bool = False) -> None:
        """Raise ValueError naming unknown inputs (and missing ones unless `partial`)."""
        expected = self.input_names
        unknown = sorted(set(given) - set(expected))
        if unknown:
            raise GraphMismatch(f"{self.component}: unknown input(s) {unknown}: the graph does not take what this "
                                f"runtime gives (it takes {expected})", hint=HINT_BUNDLE)
        if not partial:
            missing = [name for name in expected if name not in given]
            if missing:
                raise GraphMismatch(f"{self.component}: missing input(s) {missing}: the graph wants what this "
                                    f"runtime does not give (it takes {expected})", hint=HINT_BUNDLE)

    def host_input(self, name: str, value: Any) -> np.ndarray:
        """A contiguous host array of the graph's dtype for input `name` (Python scalars too)."""
        dtype = next(info.dtype for info in self.inputs if info.name == name)
        return np.ascontiguousarray(np.asarray(value, dtype=dtype))


class BoundRunner:
    """A runner with its static inputs (the conditions) already on the device.

    Call it with the remaining inputs; it returns ``{output_name: array}`` with arrays of the
    runner's `array_module`. Subclasses implement `__call__`.
    """

    def __init__(self, runner: Runner, static_names: list[str]):
        self.runner = runner
        self.static_names = list(static_names)
        self.dynamic_names = [name for name in runner.input_names if name not in static_names]

    def check_dynamic(self, given: Mapping[str, Any]) -> None:
        wrong = sorted(set(given) - set(self.dynamic_names))
        missing = [name for name in self.dynamic_names if name not in given]
        if wrong or missing:
            raise GraphMismatch(
                f"{self.runner.component}: this bound call takes {self.dynamic_names} "
                f"(static: {self.static_names}); got {sorted(given)}")

    def __call__(self, **dynamic_inputs: Any) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        """Release device memory held for the static inputs."""
