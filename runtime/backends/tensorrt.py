"""Native TensorRT backend: engines from the bundle, cuda-python buffers, CUDA graphs per shape.

Written to the TensorRT 10 name-based API and nothing newer than 10.3 (JetPack 6):
``trt.Runtime.deserialize_cuda_engine``, ``ICudaEngine.num_io_tensors / get_tensor_name /
get_tensor_mode / get_tensor_dtype / create_execution_context(ExecutionContextAllocationStrategy
.USER_MANAGED)``, ``IExecutionContext.set_input_shape / update_device_memory_size_for_shapes /
set_device_memory / set_tensor_address / get_tensor_shape / execute_async_v3`` (the last two
memory calls are 10.1+; on 10.0 the context gets the engine's profile-maximum size).

An engine only runs on the GPU architecture and TensorRT version that built it, so each manifest
`EngineEntry` records both; `engine_mismatch` compares them with this machine and the backend
falls back to ONNX Runtime for that component with a warning (never a crash) when they differ,
when the engine is missing, or when TensorRT refuses to deserialize it.

Each runner owns one execution context for its whole life, with user-managed scratch memory
sized for the shapes in use (`TensorRTRunner`). The diffusion step (`bind`) keeps fixed device
buffers and one captured CUDA graph for the current shapes: TensorRT's guidance for graphs is
to enqueue once after setting shapes (so its lazy set-up runs outside the capture), capture on
a non-default stream, and not change the context's shapes or addresses while the graph is
used; a new shape (the next window) re-sets the context and re-captures. Each call copies the
new latent into the fixed input buffer (device to device, or from a pinned host buffer),
replays the graph, and copies the output into a fresh CuPy array (or through a pinned buffer
to the host without CuPy).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle, EngineEntry
from ..errors import BundleError
from .base import BoundRunner, Runner, TensorInfo, check_finite
from .cuda import (
    CudaGraph,
    DeviceBuffer,
    PinnedBuffer,
    Stream,
    cupy_or_none,
    device_pointer,
    gpu_info,
    is_device_array,
)

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
        # The graph this component runs at `precision` (an int8 bundle keeps some components in
        # fp32): its engine is the one to look for.
        graph_precision = bundle.manifest.component(name, precision).precision
        entry, why = find_engine(bundle, name, graph_precision, tensorrt_version=self.tensorrt_version,
                                 compute_capability=self.compute_capability)
        if entry is not None:
            try:
                runner = TensorRTRunner(bundle.path(entry), name=name, use_cuda_graphs=self.use_cuda_graphs)
                runner.why = f"engine {entry.file} (TensorRT {entry.tensorrt_version}, sm_{entry.compute_capability.replace('.', '')})"
                return runner
            except BundleError as error:
                why = error.message
            except Exception as error:  # noqa: BLE001 - any engine failure must end in the ONNX fallback
                why = f"{type(error).__name__}: {' '.join(str(error).split())}"
        runner = self.fallback.load_component(bundle, name, precision)
        note = f"{name}: TensorRT engine not used ({why}); running ONNX Runtime {runner.provider}"
        runner.why = note
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


class _Staging:
    """Pinned host buffers per tensor name, grown on demand: every per-step host<->device copy
    goes through one of them (`PinnedBuffer`), so the copy is a real asynchronous DMA."""

    def __init__(self) -> None:
        self.buffers: dict[str, PinnedBuffer] = {}

    def upload(self, name: str, array: np.ndarray, target: DeviceBuffer, stream: Stream) -> None:
        array = np.ascontiguousarray(array)
        pinned = self._get(name, array.nbytes)
        pinned.view(array.shape, array.dtype)[...] = array
        target.upload_from(pinned.ptr, array.nbytes, stream)

    def download(self, name: str, source: DeviceBuffer, shape: tuple[int, ...], dtype: Any,
                 stream: Stream) -> np.ndarray:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        pinned = self._get(name, nbytes)
        source.download_to(pinned.ptr, nbytes, stream)
        stream.synchronize()
        return pinned.view(shape, dtype).copy()  # the pinned buffer is reused by the next call

    def _get(self, name: str, nbytes: int) -> PinnedBuffer:
        buffer = self.buffers.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            if buffer is not None:
                buffer.free()
            buffer = self.buffers[name] = PinnedBuffer(nbytes)
        return buffer

    def free(self) -> None:
        for buffer in self.buffers.values():
            buffer.free()
        self.buffers.clear()


class TensorRTRunner(Runner):
    """One engine, one execution context, one stream.

    The context is created with ``ExecutionContextAllocationStrategy.USER_MANAGED``: after input
    shapes are set, ``update_device_memory_size_for_shapes()`` says how much scratch memory those
    shapes need and ``set_device_memory`` hands it over (grown only when a shape needs more), so
    a 10 s window does not reserve the 60 s profile maximum and no second context is ever made.
    `run` (host arrays) and `bind` (the diffusion loop) share that context; each call re-sets
    shapes and tensor addresses only where they changed.
    """

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
        self.context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        if self.context is None:
            raise BundleError(f"component {name}: TensorRT could not create an execution context for {path} "
                              "(out of GPU memory?)")
        self._scratch: DeviceBuffer | None = None
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._addresses: dict[str, int] = {}
        self._output_shapes: dict[str, tuple[int, ...]] = {}
        self._buffers: dict[str, DeviceBuffer] = {}  # run()'s device inputs and outputs
        self._staging = _Staging()
        self.shape_changes = 0  # how often the context's shapes were re-set (tests, the device check)

    @property
    def device(self) -> str:
        return "cuda"

    @property
    def array_module(self) -> Any:
        return self._cupy if self._cupy is not None else np

    @property
    def scratch_bytes(self) -> int:
        return self._scratch.nbytes if self._scratch is not None else 0

    def to_device(self, array: Any) -> Any:
        if self._cupy is not None:
            return self._cupy.asarray(array)
        return np.ascontiguousarray(self.to_host(array))

    # ---- the one context -----------------------------------------------------------------------

    def _set_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> bool:
        """Give the context these input shapes (and enough scratch memory); True if anything
        changed. Output shapes are in ``_output_shapes`` afterwards."""
        shapes = {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}
        if shapes == self._shapes:
            return False
        for name, shape in shapes.items():
            if not self.context.set_input_shape(name, shape):
                self._shapes = {}  # the context may hold a partial update: re-set everything next time
                raise ValueError(f"{self.component}: input {name} shape {shape} is outside the engine's "
                                 "optimisation profile (re-export with larger --max-seconds / --max-storyboards)")
        context = self.context
        if hasattr(context, "update_device_memory_size_for_shapes"):  # TensorRT 10.1+
            needed = int(context.update_device_memory_size_for_shapes())
        else:  # 10.0: the profile maximum
            needed = int(self.engine.device_memory_size)
        if self._scratch is None or self._scratch.nbytes < needed:
            self.stream.synchronize()  # the old scratch may still be in use by queued work
            if self._scratch is not None:
                self._scratch.free()
            self._scratch = DeviceBuffer(needed)
        if hasattr(context, "set_device_memory"):  # TensorRT 10.1+: address and size
            context.set_device_memory(self._scratch.ptr, self._scratch.nbytes)
        else:
            context.device_memory = self._scratch.ptr
        self._shapes = shapes
        self._output_shapes = {info.name: tuple(self.context.get_tensor_shape(info.name)) for info in self.outputs}
        self.shape_changes += 1
        return True

    def _set_addresses(self, addresses: Mapping[str, int]) -> bool:
        changed = False
        for name, pointer in addresses.items():
            if self._addresses.get(name) != int(pointer):
                self.context.set_tensor_address(name, int(pointer))
                self._addresses[name] = int(pointer)
                changed = True
        return changed

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.stream.ptr):
            raise RuntimeError(f"{self.component}: TensorRT execute_async_v3 failed")

    def _nbytes(self, shape: tuple[int, ...], dtype: Any) -> int:
        return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize

    # ---- host path: upload, execute, download ----------------------------------------------

    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        self.check_input_names(inputs)
        stream = self.stream
        host = {name: self.host_input(name, self.to_host(value)) for name, value in inputs.items()}
        self._set_shapes({name: array.shape for name, array in host.items()})
        addresses = {}
        for name, array in host.items():
            buffer = self._grow(self._buffers, name, array.nbytes)
            self._staging.upload(name, array, buffer, stream)
            addresses[name] = buffer.ptr
        for info in self.outputs:
            nbytes = self._nbytes(self._output_shapes[info.name], info.dtype)
            addresses[info.name] = self._grow(self._buffers, info.name, nbytes).ptr
        self._set_addresses(addresses)
        self._execute()
        outputs = {info.name: self._staging.download(info.name, self._buffers[info.name],
                                                     self._output_shapes[info.name], info.dtype, stream)
                   for info in self.outputs}
        check_finite(self.component, outputs)
        return outputs

    def _grow(self, pool: dict[str, DeviceBuffer], name: str, nbytes: int) -> DeviceBuffer:
        buffer = pool.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            if buffer is not None:
                self.stream.synchronize()  # queued work may still read the old buffer
                buffer.free()
            buffer = pool[name] = DeviceBuffer(nbytes)
        return buffer

    # ---- device path ---------------------------------------------------------------------------

    def bind(self, **static_inputs: Any) -> BoundRunner:
        self.check_input_names(static_inputs, partial=True)
        return _TensorRTBound(self, static_inputs)

    def close(self) -> None:
        if getattr(self, "stream", None) is not None:
            self.stream.synchronize()
        for buffer in self._buffers.values():
            buffer.free()
        self._buffers.clear()
        self._staging.free()
        if self._scratch is not None:
            self._scratch.free()
            self._scratch = None
        self.context = None
        if getattr(self, "stream", None) is not None:
            self.stream.close()
            self.stream = None


class _TensorRTBound(BoundRunner):
    """The diffusion step on the runner's one context: static inputs uploaded once, fixed device
    buffers for the per-step inputs and outputs (grown when a shape needs more), and one CUDA
    graph, captured for the current shapes and addresses and re-captured when they change (once
    per generation window: every sampler step of a window has the same shapes)."""

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
        self._buffers: dict[str, DeviceBuffer] = {}
        self._staging = _Staging()
        self._graph: CudaGraph | None = None
        self._graph_key: tuple | None = None
        self._capture_failed: set[tuple] = set()
        self.captures = 0  # CUDA graphs captured so far (one per new shape / address set)
        self.replays = 0  # calls served by replaying the captured graph

    @property
    def graph_count(self) -> int:
        return self.captures

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
        runner._set_shapes(shapes)
        addresses = {name: buffer.ptr for name, buffer in self._static_buffers.items()}
        for name, array in prepared.items():
            buffer = runner._grow(self._buffers, name, int(array.nbytes))
            addresses[name] = buffer.ptr
            if is_device_array(array):
                buffer.copy_from_device(device_pointer(array), array.nbytes, stream)
            else:
                self._staging.upload(name, array, buffer, stream)
        for info in runner.outputs:
            nbytes = runner._nbytes(runner._output_shapes[info.name], info.dtype)
            addresses[info.name] = runner._grow(self._buffers, info.name, nbytes).ptr
        runner._set_addresses(addresses)
        # The graph bakes in every address it saw, the context's scratch memory included (run()
        # at a larger shape may have replaced it since the capture).
        key = (tuple(sorted(shapes.items())), tuple(sorted(addresses.items())), runner._scratch.ptr)
        if not runner.use_cuda_graphs or key in self._capture_failed:
            runner._execute()
        elif self._graph is not None and self._graph_key == key:
            self._graph.launch(stream)
            self.replays += 1
        else:
            # New shapes or buffers: run once normally (TensorRT finishes its lazy set-up for
            # these shapes outside the capture, and the result is this call's answer), then
            # capture the same enqueue for the next calls, replacing the previous graph.
            if self._graph is not None:
                self._graph.close()
                self._graph, self._graph_key = None, None
            runner._execute()
            stream.synchronize()
            graph = CudaGraph()
            try:
                graph.capture(stream, runner._execute)
            except Exception as error:  # noqa: BLE001 - e.g. an engine with data-dependent shapes
                self._capture_failed.add(key)
                runner.notes.append(f"{runner.component}: CUDA graph capture failed at shapes {shapes} "
                                    f"({' '.join(str(error).split())}); running without a graph at those shapes")
            else:
                self._graph, self._graph_key = graph, key
                self.captures += 1
        results = {}
        for info in runner.outputs:
            shape = runner._output_shapes[info.name]
            if cupy is not None:
                out = cupy.empty(shape, dtype=info.dtype)
                self._buffers[info.name].copy_to_device(out.data.ptr, out.nbytes, stream)
                results[info.name] = out
            else:
                results[info.name] = self._staging.download(info.name, self._buffers[info.name], shape,
                                                            info.dtype, stream)
        stream.synchronize()  # outputs complete before CuPy (another stream) touches them
        del prepared  # host arrays may go now that the copies have run
        return results

    def close(self) -> None:
        stream = self.runner.stream
        if stream is not None:
            stream.synchronize()
        if self._graph is not None:
            self._graph.close()
            self._graph = None
        for pool in (self._buffers, self._static_buffers):
            for buffer in pool.values():
                buffer.free()
            pool.clear()
        self._staging.free()
        # The context still points at the freed buffers: make the next call set every address.
        self.runner._addresses.clear()
