"""The cuda-python helpers under the GPU backends (`vem.runtime.backends.cuda`) on a real GPU:
stream-ordered copies, device-to-device copies and a captured CUDA graph replayed on new data.
They need no TensorRT, so they run on any machine with an NVIDIA driver and cuda-python (the
TensorRT tests that use them skip without TensorRT)."""

import numpy as np
import pytest

from vem.runtime.backends.cuda import CudaGraph, DeviceBuffer, Stream, cupy_or_none, device_pointer, gpu_info

GPU = gpu_info()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not GPU.available, reason=GPU.reason)]


@pytest.fixture()
def stream():
    s = Stream()
    yield s
    s.close()


def test_gpu_info_names_a_compute_capability():
    major, minor = (int(part) for part in GPU.compute_capability.split("."))
    assert major >= 5 and minor >= 0
    assert GPU.name and f"sm_{major}{minor}" in GPU.reason


def test_upload_download_and_device_copies(stream):
    data = np.arange(1000, dtype=np.float32) * 0.5
    first, second = DeviceBuffer(data.nbytes), DeviceBuffer(data.nbytes)
    try:
        first.upload(data, stream)
        assert np.array_equal(first.download(data.shape, data.dtype, stream), data)
        second.copy_from_device(first.ptr, data.nbytes, stream)
        assert np.array_equal(second.download(data.shape, data.dtype, stream), data)
        first.upload(np.zeros_like(data), stream)
        second.copy_to_device(first.ptr, data.nbytes, stream)
        assert np.array_equal(first.download(data.shape, data.dtype, stream), data)
        with pytest.raises(ValueError, match="do not fit"):
            first.upload(np.zeros(2000, dtype=np.float32), stream)
    finally:
        first.free()
        second.free()


def test_captured_graph_replays_on_the_data_present_at_launch(stream):
    """Capture records the copy, not the values: a replay after new data arrives copies those."""
    shape = (64, 16)
    source, target = DeviceBuffer(4 * 64 * 16), DeviceBuffer(4 * 64 * 16)
    graph = CudaGraph()
    try:
        source.upload(np.ones(shape, np.float32), stream)
        stream.synchronize()
        graph.capture(stream, lambda: target.copy_from_device(source.ptr, source.nbytes, stream))
        # Nothing ran during capture.
        for step in range(3):
            values = np.full(shape, float(step + 2), np.float32)
            source.upload(values, stream)
            graph.launch(stream)
            assert np.array_equal(target.download(shape, np.float32, stream), values)
    finally:
        graph.close()
        source.free()
        target.free()


@pytest.mark.skipif(cupy_or_none() is None, reason="CuPy is not installed or sees no GPU")
def test_cupy_arrays_are_reached_by_pointer(stream):
    cupy = cupy_or_none()
    array = cupy.arange(256, dtype=cupy.float32)
    buffer = DeviceBuffer(array.nbytes)
    try:
        buffer.copy_from_device(device_pointer(array), array.nbytes, stream)
        assert np.array_equal(buffer.download((256,), np.float32, stream), np.arange(256, dtype=np.float32))
    finally:
        buffer.free()


def test_pinned_buffer_round_trip_and_reuse(stream):
    from vem.runtime.backends.cuda import PinnedBuffer

    pinned, device = PinnedBuffer(4096), DeviceBuffer(4096)
    try:
        for scale in (1.0, -2.0):  # the same pinned buffer carries the next step's data
            data = np.linspace(0, 1, 512, dtype=np.float32) * scale
            pinned.view(data.shape, data.dtype)[...] = data
            device.upload_from(pinned.ptr, data.nbytes, stream)
            pinned.view(data.shape, data.dtype)[...] = 0
            device.download_to(pinned.ptr, data.nbytes, stream)
            stream.synchronize()
            np.testing.assert_array_equal(pinned.view(data.shape, data.dtype), data)
        with pytest.raises(ValueError, match="do not fit"):
            pinned.view((2048,), np.float32)
    finally:
        pinned.free()
        device.free()
