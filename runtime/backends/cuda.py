"""Thin, lazily imported helpers over cuda-python for the GPU backends.

Nothing here imports cuda-python at module import time: `import vem.runtime.backends` must work
on a CPU box. cuda-python's calls return ``(error, *results)`` tuples; `check` turns a failed one
into a `CudaError` that names the call. Without an NVIDIA driver, ``cuInit`` raises (or returns an
error) even though the package imports (docs/toolchain.md); `gpu_info` catches both and says why.

What the TensorRT backend needs, and only that: the compute capability of device 0, one
non-blocking stream, raw device buffers (``cudaMalloc``) with host/device copies on that stream,
page-locked host buffers (``cudaMallocHost``) for the copies made at every step (a pageable
source makes the driver stage the copy through its own pinned buffer and the "async" copy
synchronous), and CUDA graphs captured from a stream (``cudaStreamBeginCapture`` ...
``cudaGraphLaunch``).

Versions: cuda-python / cuda-bindings 13.x link the CUDA 13 runtime, which needs a CUDA 13
driver; JetPack 6 and most desktops run CUDA 12 drivers. The ``gpu`` extra holds both below 13,
and `gpu_info` refuses a 13.x binding on an older driver with a message saying so (instead of
every later runtime call failing with cudaErrorInsufficientDriver).
Device arrays that the sampler does arithmetic on are CuPy arrays when CuPy is installed
(`cupy_or_none`); the runners copy into and out of them device-to-device, never via the host.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np


class CudaError(RuntimeError):
    """A CUDA runtime or driver call failed."""


def _runtime_api() -> Any:
    """cuda-python's runtime API module: ``cuda.bindings.runtime`` (12.6+), else the older
    ``cuda.cudart`` (removed in cuda-python 13)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime  # cuda-python < 12.6
    return runtime


def _driver_api() -> Any:
    try:
        from cuda.bindings import driver
    except ImportError:
        from cuda import cuda as driver  # cuda-python < 12.6
    return driver


def check(result: Any, call: str) -> Any:
    """Unpack a cuda-python ``(error, *values)`` tuple; raise CudaError when error is not success.
    Returns None, the single value, or the tuple of values."""
    if not isinstance(result, tuple):
        result = (result,)
    error, values = result[0], result[1:]
    code = int(error)
    if code != 0:
        raise CudaError(f"{call} failed: {_error_text(error)} (code {code})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _error_text(error: Any) -> str:
    name = getattr(error, "name", str(error))
    try:
        runtime = _runtime_api()
        if isinstance(error, runtime.cudaError_t):
            text = runtime.cudaGetErrorString(error)[1]
            return f"{name}: {text.decode() if isinstance(text, bytes) else text}"
    except Exception:  # noqa: BLE001 - best effort text for an error we are already reporting
        pass
    return name


def bindings_version() -> str | None:
    """The installed cuda-bindings (or, before 12.6, cuda-python) version, or None."""
    from importlib.metadata import PackageNotFoundError, version

    for package in ("cuda-bindings", "cuda-python"):
        try:
            return version(package)
        except PackageNotFoundError:
            continue
    return None


def driver_version_text(version: int) -> str:
    """cuDriverGetVersion's integer (12020) as CUDA's "12.2"."""
    return f"{version // 1000}.{(version % 1000) // 10}"


def bindings_driver_mismatch(bindings: str | None, driver_version: int) -> str | None:
    """Why these CUDA Python bindings cannot drive this driver, or None: a 13.x (or later) binding
    links the CUDA 13 runtime and needs a driver of at least that major version."""
    if not bindings:
        return None
    try:
        major = int(bindings.split(".")[0])
    except ValueError:
        return None
    if major >= 13 and driver_version // 1000 < major:
        return (f"cuda-bindings {bindings} needs a CUDA {major} driver, this driver is CUDA "
                f"{driver_version_text(driver_version)}: pip install 'cuda-python>=12,<13' 'cuda-bindings>=12,<13' "
                f"(the gpu extra's pins)")
    return None


@dataclass(frozen=True)
class GpuInfo:
    available: bool
    reason: str  # why not, or a description of the device ("NVIDIA H100 (sm_90)")
    compute_capability: str | None = None  # "8.7" for Orin, "9.0" for H100
    name: str | None = None
    driver_version: str | None = None  # "12.2": the CUDA version the driver supports
    bindings_version: str | None = None  # cuda-bindings / cuda-python


@functools.lru_cache(maxsize=1)
def gpu_info() -> GpuInfo:
    """Whether device 0 is a usable NVIDIA GPU, and its compute capability (cached)."""
    try:
        driver = _driver_api()
    except ImportError:
        return GpuInfo(False, "cuda-python is not installed (pip install 'vem[gpu]')")
    try:
        check(driver.cuInit(0), "cuInit")
        driver_version = int(check(driver.cuDriverGetVersion(), "cuDriverGetVersion"))
        count = check(driver.cuDeviceGetCount(), "cuDeviceGetCount")
        if not count:
            return GpuInfo(False, "no NVIDIA GPU: the CUDA driver reports 0 devices")
        device = check(driver.cuDeviceGet(0), "cuDeviceGet")
        attribute = driver.CUdevice_attribute
        major = check(driver.cuDeviceGetAttribute(attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device),
                      "cuDeviceGetAttribute")
        minor = check(driver.cuDeviceGetAttribute(attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device),
                      "cuDeviceGetAttribute")
        raw_name = check(driver.cuDeviceGetName(64, device), "cuDeviceGetName")
    except Exception as error:  # noqa: BLE001 - no driver raises a loader error, not CudaError
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return GpuInfo(False, f"no NVIDIA GPU: CUDA driver unavailable ({first_line})")
    name = raw_name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(raw_name, bytes) else str(raw_name)
    capability = f"{major}.{minor}"
    bindings = bindings_version()
    mismatch = bindings_driver_mismatch(bindings, driver_version)
    if mismatch is not None:
        return GpuInfo(False, f"NVIDIA GPU {name} (sm_{major}{minor}) unusable: {mismatch}", capability, name,
                       driver_version_text(driver_version), bindings)
    return GpuInfo(True, f"{name} (sm_{major}{minor})", capability, name, driver_version_text(driver_version), bindings)


def cupy_or_none() -> Any:
    """CuPy when it is installed and sees a GPU, else None (then device outputs come back to the
    host, and the latent makes a round trip per step: install cupy-cuda12x to avoid it)."""
    try:
        import cupy
    except ImportError:
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # noqa: BLE001 - cupy raises its own error class without a driver
        return None
    return cupy


def is_device_array(array: Any) -> bool:
    """True for a CuPy-like array living on the GPU (it exposes ``__cuda_array_interface__``)."""
    return hasattr(array, "__cuda_array_interface__")


def device_pointer(array: Any) -> int:
    return int(array.__cuda_array_interface__["data"][0])


class Stream:
    """A non-blocking CUDA stream (required for graph capture: the legacy stream cannot capture)."""

    def __init__(self) -> None:
        runtime = _runtime_api()
        self._runtime = runtime
        self.handle = check(runtime.cudaStreamCreateWithFlags(runtime.cudaStreamNonBlocking),
                            "cudaStreamCreateWithFlags")

    @property
    def ptr(self) -> int:
        return int(self.handle)

    def synchronize(self) -> None:
        check(self._runtime.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def close(self) -> None:
        if self.handle is not None:
            check(self._runtime.cudaStreamDestroy(self.handle), "cudaStreamDestroy")
            self.handle = None


class DeviceBuffer:
    """``nbytes`` of device memory from cudaMalloc, with copies on a stream. Freed by `free`."""

    def __init__(self, nbytes: int):
        self._runtime = _runtime_api()
        self.nbytes = max(int(nbytes), 1)  # cudaMalloc(0) gives a null pointer TensorRT rejects
        self.ptr = int(check(self._runtime.cudaMalloc(self.nbytes), "cudaMalloc"))

    def upload(self, array: np.ndarray, stream: Stream) -> None:
        """Host -> device. The host array must stay alive until the stream is synchronised."""
        array = np.ascontiguousarray(array)
        self._fits(array.nbytes)
        check(self._runtime.cudaMemcpyAsync(self.ptr, array.ctypes.data, array.nbytes,
                                            self._runtime.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.handle),
              "cudaMemcpyAsync(host to device)")

    def upload_from(self, host_ptr: int, nbytes: int, stream: Stream) -> None:
        """Host -> device from a raw host address (a `PinnedBuffer`'s: truly asynchronous)."""
        self._fits(nbytes)
        check(self._runtime.cudaMemcpyAsync(self.ptr, int(host_ptr), int(nbytes),
                                            self._runtime.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.handle),
              "cudaMemcpyAsync(host to device)")

    def download_to(self, host_ptr: int, nbytes: int, stream: Stream) -> None:
        """Device -> host into a raw host address, not synchronised (the caller synchronises)."""
        self._fits(nbytes)
        check(self._runtime.cudaMemcpyAsync(int(host_ptr), self.ptr, int(nbytes),
                                            self._runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.handle),
              "cudaMemcpyAsync(device to host)")

    def copy_from_device(self, source_ptr: int, nbytes: int, stream: Stream) -> None:
        self._fits(nbytes)
        check(self._runtime.cudaMemcpyAsync(self.ptr, int(source_ptr), int(nbytes),
                                            self._runtime.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream.handle),
              "cudaMemcpyAsync(device to device)")

    def copy_to_device(self, target_ptr: int, nbytes: int, stream: Stream) -> None:
        check(self._runtime.cudaMemcpyAsync(int(target_ptr), self.ptr, int(nbytes),
                                            self._runtime.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream.handle),
              "cudaMemcpyAsync(device to device)")

    def download(self, shape: tuple[int, ...], dtype: Any, stream: Stream) -> np.ndarray:
        """Device -> host, synchronising the stream so the result is ready."""
        out = np.empty(shape, dtype=dtype)
        self._fits(out.nbytes)
        check(self._runtime.cudaMemcpyAsync(out.ctypes.data, self.ptr, out.nbytes,
                                            self._runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.handle),
              "cudaMemcpyAsync(device to host)")
        stream.synchronize()
        return out

    def _fits(self, nbytes: int) -> None:
        if nbytes > self.nbytes:
            raise ValueError(f"{nbytes} bytes do not fit a {self.nbytes}-byte device buffer")

    def free(self) -> None:
        if self.ptr:
            check(self._runtime.cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


class PinnedBuffer:
    """``nbytes`` of page-locked host memory (``cudaMallocHost``), seen as numpy arrays by `view`.

    Copies between it and the device are truly asynchronous and run at full bus speed; the
    runners keep one per per-step input and output and reuse it (grown when a shape needs
    more). Freed by `free`."""

    def __init__(self, nbytes: int):
        self._runtime = _runtime_api()
        self.nbytes = max(int(nbytes), 1)
        self.ptr = int(check(self._runtime.cudaMallocHost(self.nbytes), "cudaMallocHost"))

    def view(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A numpy array of `shape` and `dtype` over the start of the buffer (no copy)."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes > self.nbytes:
            raise ValueError(f"{nbytes} bytes do not fit a {self.nbytes}-byte pinned buffer")
        raw = (ctypes.c_uint8 * max(nbytes, 1)).from_address(self.ptr)
        return np.frombuffer(raw, dtype=np.uint8, count=nbytes).view(dtype).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            check(self._runtime.cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


class CudaGraph:
    """Work enqueued on a stream, captured once and replayed with one launch.

    `capture(stream, enqueue)` records what ``enqueue()`` puts on the stream (nothing runs during
    capture) and instantiates it; `launch(stream)` replays it. The captured work keeps the device
    addresses it saw, so the caller must keep those buffers alive and fixed.
    """

    def __init__(self) -> None:
        self._runtime = _runtime_api()
        self._graph: Any = None
        self._exec: Any = None

    def capture(self, stream: Stream, enqueue: Any) -> None:
        runtime = self._runtime
        # Thread-local mode: other threads (ONNX Runtime's, CuPy's allocator) may keep calling
        # CUDA while this thread captures; only this thread's unsafe calls are refused.
        check(runtime.cudaStreamBeginCapture(stream.handle,
                                             runtime.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture")
        try:
            enqueue()
        except BaseException:
            # Leave capture mode (discarding the partial graph) or the stream stays unusable.
            result = runtime.cudaStreamEndCapture(stream.handle)
            if int(result[0]) == 0 and result[1] is not None:
                runtime.cudaGraphDestroy(result[1])
            raise
        self._graph = check(runtime.cudaStreamEndCapture(stream.handle), "cudaStreamEndCapture")
        self._exec = check(runtime.cudaGraphInstantiate(self._graph, 0), "cudaGraphInstantiate")

    def launch(self, stream: Stream) -> None:
        check(self._runtime.cudaGraphLaunch(self._exec, stream.handle), "cudaGraphLaunch")

    def close(self) -> None:
        if self._exec is not None:
            check(self._runtime.cudaGraphExecDestroy(self._exec), "cudaGraphExecDestroy")
            self._exec = None
        if self._graph is not None:
            check(self._runtime.cudaGraphDestroy(self._graph), "cudaGraphDestroy")
            self._graph = None
