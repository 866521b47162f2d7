"""Native TensorRT backend: engines from the bundle, cuda-python buffers, CUDA graphs per shape.

Written to the TensorRT 10 name-based API and nothing newer than 10.3 (JetPack 6):
``trt.Runtime.deserialize_cuda_engine``, ``ICudaEngine.num_io_tensors / get_tensor_name /
get_tensor_mode / get_tensor_dtype``, ``IExecutionContext.set_input_shape / set_tensor_address /
get_tensor_shape / execute_async_v3``.

An engine only runs on the GPU architecture and TensorRT version that built it, so each manifest
`EngineEntry` records both; `engine_mismatch` compares them with this machine and the backend
falls back to ONNX Runtime for that component with a warning (never a crash) when they differ,
when the engine is missing, or when TensorRT refuses to deserialize it.

The diffusion step (`bind`) keeps one execution context, one set of device buffers and one
captured CUDA graph per input-shape combination: TensorRT's guidance for graphs is to enqueue
once after setting shapes (so its lazy set-up runs outside the capture), capture on a
non-default stream, and never change the context's shapes or addresses afterwards. Each call
then copies the new latent into the fixed input buffer (device to device), replays the graph,
and copies the output into a fresh CuPy array (or to the host without CuPy).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle, EngineEntry
from ..errors import BundleError
from .base import BoundRunner, Runner, TensorInfo
from .cuda import CudaGraph, DeviceBuffer, Stream, cupy_or_none, device_pointer, gpu_info, is_device_array

log = logging.getLogger(__name__)


class EngineFallbackWarning(UserWarning):
    """An engine in the bundle cannot run here; ONNX Runtime runs that component instead."""


def tensorrt_status() -> tuple[bool, str, str | None]:
    """(usable, reason, version): TensorRT imports and an NVIDIA GPU is present."""
    try:
        import tensorrt
    except ImportError as error:
        return False, f"TensorRT not installed ({error})", None
    except Exception as error:  # noqa: BLE001 - a broken install raises OSError from its loader
        return False, f"TensorRT does not load ({' '.join(str(error).split())})", None
    version = str(tensorrt.__version__)
    gpu = gpu_info()
    if not gpu.available:
        return False, gpu.reason, version
    return True, f"TensorRT {version} on {gpu.reason}", version


def _version_key(version: str) -> tuple[str, ...]:
    """major.minor.patch: engines are tied to the TensorRT release that built them."""
    return tuple(version.strip().split(".")[:3])


def engine_mismatch(entry: EngineEntry, *, tensorrt_version: str | None,
                    compute_capability: str | None) -> str | None:
    """Why `entry` cannot run here, or None when its TensorRT version and GPU match."""
    if tensorrt_version is None:
        return "TensorRT is not installed"
    if compute_capability is None:
        return "no NVIDIA GPU"
    if entry.compute_capability.strip() != compute_capability.strip():
        return (f"engine {entry.file} was built for compute capability {entry.compute_capability}, "
                f"this GPU is {compute_capability}")
    if _version_key(entry.tensorrt_version) != _version_key(tensorrt_version):
        return (f"engine {entry.file} was built with TensorRT {entry.tensorrt_version}, "
                f"this machine has TensorRT {tensorrt_version}")
    return None


def find_engine(bundle: Bundle, name: str, precision: str, *, tensorrt_version: str | None,
                compute_capability: str | None) -> tuple[EngineEntry | None, str]:
    """The bundle's engine for component `name` at `precision` that runs here, else (None, why)."""
    candidates = [e for e in bundle.manifest.engines if e.name == name and e.precision == precision]
    if not candidates:
        return None, f"the bundle has no TensorRT engine for {name} at {precision}"
    reasons = []
    for entry in candidates:
        reason = engine_mismatch(entry, tensorrt_version=tensorrt_version, compute_capability=compute_capability)
        if reason is None:
            if not bundle.path(entry).is_file():
                reasons.append(f"engine file missing: {bundle.path(entry)}")
                continue
            return entry, f"engine {entry.file}"
        reasons.append(reason)
    return None, "; ".join(reasons)


class TensorRTBackend:
    """Runs components from the bundle's engines; components without a usable engine run on
    `fallback` (an OnnxRuntimeBackend), with a warning and a note on the runner."""

    name = "tensorrt"

    def __init__(self, fallback: Any, *, use_cuda_graphs: bool = True, tensorrt_version: str | None = None,
                 compute_capability: str | None = None):
        self.fallback = fallback
        self.use_cuda_graphs = use_cuda_graphs
        if tensorrt_version is None or compute_capability is None:
            ok, reason, version = tensorrt_status()
            if not ok:
                raise BundleError(f"the tensorrt backend cannot run here: {reason}",
                                  hint="use --backend onnxruntime (or auto), or install TensorRT 10 and "
                                       "cuda-python on a machine with an NVIDIA GPU")
            tensorrt_version = tensorrt_version or version
            compute_capability = compute_capability or gpu_info().compute_capability
        self.tensorrt_version = tensorrt_version
        self.compute_capability = compute_capability

    def describe(self) -> str:
        return f"tensorrt (TensorRT {self.tensorrt_version}, sm_{self.compute_capability.replace('.', '')})"

    def load(self, source: str | os.PathLike | EngineEntry | Any, *, bundle: Bundle | None = None,
             name: str | None = None) -> Runner:
        """A runner for an engine file (``.plan``/``.engine``) or `EngineEntry`; ONNX graphs and
        `ComponentEntry`s go to the ONNX Runtime fallback."""
        if isinstance(source, EngineEntry):
            if bundle is None:
                raise ValueError("loading an EngineEntry needs the bundle it belongs to (bundle=...)")
            return TensorRTRunner(bundle.path(source), name=name or source.name, use_cuda_graphs=self.use_cuda_graphs)
        if isinstance(source, (str, os.PathLike)) and Path(source).suffix in (".plan", ".engine", ".trt"):
            return TensorRTRunner(source, name=name or Path(source).stem.split(".")[0],
                                  use_cuda_graphs=self.use_cuda_graphs)
        return self.fallback.load(source, bundle=bundle, name=name)

    def load_component(self, bundle: Bundle, name: str, precision: str) -> Runner:
        entry, why = find_engine(bundle, name, precision, tensorrt_version=self.tensorrt_version,
                                 compute_capability=self.compute_capability)
        if entry is not None:
            try:
                return TensorRTRunner(bundle.path(entry), name=name, use_cuda_graphs=self.use_cuda_graphs)
            except BundleError as error:
                why = error.message
            except Exception as error:  # noqa: BLE001 - any engine failure must end in the ONNX fallback
                why = f"{type(error).__name__}: {' '.join(str(error).split())}"
        runner = self.fallback.load_component(bundle, name, precision)
        note = f"{name}: TensorRT engine not used ({why}); running ONNX Runtime {runner.provider}"
        warnings.warn(note, EngineFallbackWarning, stacklevel=2)
        runner.notes.append(note)
        return runner


def _trt_logger(trt: Any) -> Any:
    # One logger per process: TensorRT keeps a pointer to it.
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


_LOGGER: Any = None


@dataclass
class _ShapeSlot:
    """Everything fixed for one combination of input shapes: the context, buffers, graph."""

    context: Any
    buffers: dict[str, DeviceBuffer]
    output_shapes: dict[str, tuple[int, ...]]
    graph: CudaGraph | None = None
    replays: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class TensorRTRunner(Runner):
    def __init__(self, path: str | os.PathLike, *, name: str, use_cuda_graphs: bool = True):
        import tensorrt as trt

        self._trt = trt
        path = Path(path)
        if not path.is_file():
            raise BundleError(f"component {name}: engine file not found: {path}")
        runtime = trt.Runtime(_trt_logger(trt))
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BundleError(f"component {name}: TensorRT could not deserialize {path} "
                              "(built by another TensorRT version or for another GPU, or damaged)")
        self._runtime, self.engine = runtime, engine
        inputs, outputs = [], []
        for index in range(engine.num_io_tensors):
            tensor = engine.get_tensor_name(index)
            info = TensorInfo(tensor, np.dtype(trt.nptype(engine.get_tensor_dtype(tensor))),
                              tuple(d if d >= 0 else None for d in engine.get_tensor_shape(tensor)))
            (inputs if engine.get_tensor_mode(tensor) == trt.TensorIOMode.INPUT else outputs).append(info)
        super().__init__(component=name, backend="tensorrt", provider=f"TensorRT {trt.__version__}",
                         inputs=inputs, outputs=outputs)
        self.path = path
        self.use_cuda_graphs = use_cuda_graphs
        self.stream = Stream()
        self._cupy = cupy_or_none()
        self._host_context = engine.create_execution_context()
        self._host_buffers: dict[str, DeviceBuffer] = {}

    @property
    def device(self) -> str:
        return "cuda"

    @property
    def array_module(self) -> Any:
        return self._cupy if self._cupy is not None else np

    def to_device(self, array: Any) -> Any:
        if self._cupy is not None:
            return self._cupy.asarray(array)
        return np.ascontiguousarray(self.to_host(array))

    # ---- host path: upload, execute, download ----------------------------------------------

    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        self.check_input_names(inputs)
        context, stream = self._host_context, self.stream
        host = {name: self.host_input(name, self.to_host(value)) for name, value in inputs.items()}
        for name, array in host.items():
            self._set_shape(context, name, array.shape)
            buffer = self._grow(self._host_buffers, name, array.nbytes)
            buffer.upload(array, stream)
            context.set_tensor_address(name, buffer.ptr)
        shapes = {}
        for info in self.outputs:
            shapes[info.name] = tuple(context.get_tensor_shape(info.name))
            nbytes = int(np.prod(shapes[info.name], dtype=np.int64)) * info.dtype.itemsize
            context.set_tensor_address(info.name, self._grow(self._host_buffers, info.name, nbytes).ptr)
        self._execute(context)
        # download() synchronises the stream, so `host` stays alive until the uploads are done.
        return {info.name: self._host_buffers[info.name].download(shapes[info.name], info.dtype, stream)
                for info in self.outputs}

    def _set_shape(self, context: Any, name: str, shape: tuple[int, ...]) -> None:
        if not context.set_input_shape(name, tuple(int(d) for d in shape)):
            raise ValueError(f"{self.component}: input {name} shape {tuple(shape)} is outside the engine's "
                             "optimisation profile (re-export with larger --max-seconds / --max-storyboards)")

    def _execute(self, context: Any) -> None:
        if not context.execute_async_v3(self.stream.ptr):
            raise RuntimeError(f"{self.component}: TensorRT execute_async_v3 failed")

    @staticmethod
    def _grow(pool: dict[str, DeviceBuffer], name: str, nbytes: int) -> DeviceBuffer:
        buffer = pool.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            if buffer is not None:
                buffer.free()
            buffer = pool[name] = DeviceBuffer(nbytes)
        return buffer

    # ---- device path ---------------------------------------------------------------------------

    def bind(self, **static_inputs: Any) -> BoundRunner:
        self.check_input_names(static_inputs, partial=True)
        return _TensorRTBound(self, static_inputs)

    def close(self) -> None:
        for buffer in self._host_buffers.values():
            buffer.free()
        self._host_buffers.clear()
        if getattr(self, "stream", None) is not None:
            self.stream.close()
            self.stream = None


class _TensorRTBound(BoundRunner):
    def __init__(self, runner: TensorRTRunner, static_inputs: Mapping[str, Any]):
        super().__init__(runner, list(static_inputs))
        self._static_buffers: dict[str, DeviceBuffer] = {}
        self._static_shapes: dict[str, tuple[int, ...]] = {}
        for name, value in static_inputs.items():
            array = runner.host_input(name, runner.to_host(value))
            buffer = DeviceBuffer(array.nbytes)
            buffer.upload(array, runner.stream)
            self._static_buffers[name] = buffer
            self._static_shapes[name] = array.shape
        runner.stream.synchronize()  # the host copies above may now be freed
        self._slots: dict[tuple, _ShapeSlot] = {}

    @property
    def graph_count(self) -> int:
        return sum(1 for slot in self._slots.values() if slot.graph is not None)

    def _slot(self, shapes: dict[str, tuple[int, ...]]) -> tuple[_ShapeSlot, bool]:
        key = tuple(sorted(shapes.items()))
        slot = self._slots.get(key)
        if slot is not None:
            return slot, False
        runner = self.runner
        context = runner.engine.create_execution_context()
        buffers: dict[str, DeviceBuffer] = {}
        for name, shape in shapes.items():
            runner._set_shape(context, name, shape)
            if name in self._static_buffers:
                context.set_tensor_address(name, self._static_buffers[name].ptr)
            else:
                dtype = next(info.dtype for info in runner.inputs if info.name == name)
                buffers[name] = DeviceBuffer(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
                context.set_tensor_address(name, buffers[name].ptr)
        output_shapes = {}
        for info in runner.outputs:
            output_shapes[info.name] = tuple(context.get_tensor_shape(info.name))
            buffers[info.name] = DeviceBuffer(int(np.prod(output_shapes[info.name], dtype=np.int64))
                                              * info.dtype.itemsize)
            context.set_tensor_address(info.name, buffers[info.name].ptr)
        slot = self._slots[key] = _ShapeSlot(context, buffers, output_shapes)
        return slot, True

    def __call__(self, **dynamic_inputs: Any) -> dict[str, Any]:
        self.check_dynamic(dynamic_inputs)
        runner, stream, cupy = self.runner, self.runner.stream, self.runner._cupy
        prepared: dict[str, Any] = {}
        for name, value in dynamic_inputs.items():
            dtype = next(info.dtype for info in runner.inputs if info.name == name)
            if cupy is not None and is_device_array(value):
                prepared[name] = cupy.ascontiguousarray(value, dtype=dtype)
            else:
                prepared[name] = runner.host_input(name, runner.to_host(value))
        if cupy is not None:
            cupy.cuda.get_current_stream().synchronize()  # the sampler wrote z on CuPy's stream
        shapes = dict(self._static_shapes)
        shapes.update({name: tuple(array.shape) for name, array in prepared.items()})
        slot, new = self._slot(shapes)
        for name, array in prepared.items():
            if is_device_array(array):
                slot.buffers[name].copy_from_device(device_pointer(array), array.nbytes, stream)
            else:
                slot.buffers[name].upload(array, stream)
        if not runner.use_cuda_graphs:
            runner._execute(slot.context)
        elif slot.graph is not None:
            slot.graph.launch(stream)
            slot.replays += 1
        else:
            # First call at this shape: run it normally (TensorRT finishes its lazy set-up and the
            # result is this call's answer), then capture the same enqueue for later calls.
            runner._execute(slot.context)
            stream.synchronize()
            if not slot.extra.get("capture_failed"):
                graph = CudaGraph()
                try:
                    graph.capture(stream, lambda: runner._execute(slot.context))
                except Exception as error:  # noqa: BLE001 - e.g. an engine with data-dependent shapes
                    slot.extra["capture_failed"] = True
                    runner.notes.append(f"{runner.component}: CUDA graph capture failed at shapes "
                                        f"{shapes} ({error}); running without a graph")
                else:
                    slot.graph = graph
        results = {}
        for info in runner.outputs:
            shape = slot.output_shapes[info.name]
            if cupy is not None:
                out = cupy.empty(shape, dtype=info.dtype)
                slot.buffers[info.name].copy_to_device(out.data.ptr, out.nbytes, stream)
                results[info.name] = out
            else:
                results[info.name] = slot.buffers[info.name].download(shape, info.dtype, stream)
        stream.synchronize()  # outputs complete before CuPy (another stream) touches them
        del prepared  # host arrays may go now that the copies have run
        return results

    def close(self) -> None:
        for slot in self._slots.values():
            if slot.graph is not None:
                slot.graph.close()
            for buffer in slot.buffers.values():
                buffer.free()
        self._slots.clear()
        for buffer in self._static_buffers.values():
            buffer.free()
        self._static_buffers.clear()
