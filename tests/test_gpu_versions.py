"""GPU set-up checks that run on any machine: the cuda-bindings / driver version rule, the ONNX
Runtime TensorRT EP's options and cache folder. (The GPU itself: tests/test_cuda_helpers.py,
tests/test_backends_tensorrt.py, benchmarks/device_check.py.)"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from vem.runtime.backends import ort_tensorrt_cache_dir
from vem.runtime.backends.cuda import bindings_driver_mismatch, driver_version_text, gpu_info
from vem.runtime.backends.onnxruntime import TENSORRT_EP, _provider_options, available_providers
from vem.runtime.bundle import load_bundle
from vem.runtime.pipeline import default_bundle_path


def test_cuda_13_bindings_on_a_cuda_12_driver_are_refused_with_the_fix():
    message = bindings_driver_mismatch("13.0.1", 12060)
    assert message is not None
    assert "cuda-bindings 13.0.1 needs a CUDA 13 driver" in message and "CUDA 12.6" in message
    assert "'cuda-python>=12,<13'" in message
    assert bindings_driver_mismatch("12.9.2", 12020) is None  # CUDA 12 bindings on a 12.2 driver (JetPack 6)
    assert bindings_driver_mismatch("13.0.1", 13000) is None
    assert bindings_driver_mismatch(None, 12020) is None
    assert driver_version_text(12020) == "12.2" and driver_version_text(13010) == "13.1"


def test_the_gpu_extra_holds_cuda_python_below_13():
    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    gpu = text.split("\ngpu = [", 1)[1].split("]", 1)[0]
    assert '"cuda-python>=12,<13"' in gpu and '"cuda-bindings>=12,<13"' in gpu


def test_gpu_info_says_why_in_one_line():
    info = gpu_info()
    assert info.reason and "\n" not in info.reason
    if not info.available:
        assert info.reason.startswith(("cuda-python is not installed", "no NVIDIA GPU", "NVIDIA GPU"))


def test_tensorrt_ep_options_follow_the_graph_precision(tmp_path):
    folder = tmp_path / "engines" / "sm_87" / "onnxruntime-tensorrt"
    fp16 = _provider_options(TENSORRT_EP, None, "fp16", folder)
    assert fp16["trt_engine_cache_enable"] == "True" and fp16["trt_engine_cache_path"] == str(folder)
    assert fp16["trt_timing_cache_path"] == str(folder) and folder.is_dir()
    assert (fp16["trt_fp16_enable"], fp16["trt_int8_enable"]) == ("True", "False")
    int8 = _provider_options(TENSORRT_EP, None, "int8", folder)
    assert (int8["trt_fp16_enable"], int8["trt_int8_enable"]) == ("False", "True")
    fp32 = _provider_options(TENSORRT_EP, None, "fp32", folder)
    assert (fp32["trt_fp16_enable"], fp32["trt_int8_enable"]) == ("False", "False")
    assert _provider_options("CPUExecutionProvider", None, "fp16", folder) == {}


def test_tensorrt_ep_cache_lives_in_the_bundle_per_gpu_architecture(tmp_path):
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), bundle_dir)
    bundle = load_bundle(bundle_dir)
    folder = ort_tensorrt_cache_dir(bundle)
    if TENSORRT_EP not in available_providers() or not gpu_info().available:
        assert folder is None  # the EP is not offered: no folder, nothing written
        pytest.skip("no TensorRT EP or no GPU here: the folder is only chosen where the EP runs")
    arch = "sm_" + gpu_info().compute_capability.replace(".", "")
    assert folder == bundle_dir / "engines" / arch / "onnxruntime-tensorrt"
    os.chmod(bundle_dir, 0o555)  # a read-only bundle (site-packages): the user's cache instead
    try:
        assert ort_tensorrt_cache_dir(bundle).parts[-2:] == (arch, "onnxruntime-tensorrt")
        assert bundle_dir not in ort_tensorrt_cache_dir(bundle).parents
    finally:
        os.chmod(bundle_dir, 0o755)
