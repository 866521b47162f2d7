"""TensorRT engine building and the GPU paths (TensorRT runner, CUDA graphs, ORT IO binding).

The GPU tests skip with a reason on machines without TensorRT or an NVIDIA GPU and run where
one is lent; the pure parts of the build side (profiles, folders, the one-line "not here"
answer) run everywhere.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from backend_graphs import denoiser_reference, write_bundle, write_denoiser

from vem.export.tensorrt import build_engine, check_profiles, engines_folder, tensorrt_available
from vem.runtime.backends import OnnxRuntimeBackend, select_backend
from vem.runtime.backends.cuda import cupy_or_none, gpu_info
from vem.runtime.bundle import load_bundle

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
GPU = gpu_info()
needs_tensorrt = pytest.mark.skipif(not HAS_TENSORRT, reason="TensorRT not installed")
needs_gpu = pytest.mark.skipif(not GPU.available, reason=GPU.reason)  # "no NVIDIA GPU: ..."
needs_cupy = pytest.mark.skipif(GPU.available and cupy_or_none() is None,
                                reason="CuPy not installed (device-resident arrays need it)")

PROFILE = {  # batch 1..4 (guided steps use 2), frames 8..512
    "latent": ((1, 4, 8), (2, 4, 128), (4, 4, 512)),
    "timestep": ((1,), (2,), (4,)),
    "cond": ((1, 4, 1), (2, 4, 1), (4, 4, 1)),
}


# ---- runs everywhere ----------------------------------------------------------------------------


def test_engines_folder_names_the_architecture():
    assert engines_folder("8.7") == "engines/sm_87"
    assert engines_folder("9.0") == "engines/sm_90"
    assert engines_folder("12.0") == "engines/sm_120"
    with pytest.raises(ValueError, match="look like '8.7'"):
        engines_folder("sm_87")


def test_profiles_are_checked_before_anything_is_built():
    assert check_profiles([PROFILE])[0]["latent"][1] == (2, 4, 128)
    with pytest.raises(ValueError, match="at least one optimisation profile"):
        check_profiles([])
    with pytest.raises(ValueError, match="min <= opt <= max"):
        check_profiles([{"latent": ((1, 4, 64), (1, 4, 32), (1, 4, 128))}])
    with pytest.raises(ValueError, match="different ranks"):
        check_profiles([{"latent": ((1, 4), (1, 4, 32), (1, 4, 128))}])
    with pytest.raises(ValueError, match="must be >= 1"):
        check_profiles([{"latent": ((0, 4, 8), (1, 4, 32), (1, 4, 128))}])


def test_tensorrt_available_answers_in_one_line():
    ok, reason = tensorrt_available()
    assert isinstance(ok, bool) and reason and "\n" not in reason
    if not HAS_TENSORRT:
        assert not ok and reason.startswith("TensorRT not installed")


@pytest.mark.skipif(tensorrt_available()[0], reason="TensorRT runs here; this checks a machine without it")
def test_build_engine_without_tensorrt_says_why(tmp_path):
    onnx_path = write_denoiser(tmp_path / "denoiser.onnx")
    with pytest.raises(RuntimeError, match="cannot build TensorRT engines here: "):
        build_engine(onnx_path, tmp_path / "engines/sm_87/denoiser.plan", profiles=[PROFILE])


# ---- TensorRT on a GPU --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not (HAS_TENSORRT and GPU.available):
        pytest.skip("TensorRT not installed" if not HAS_TENSORRT else GPU.reason)
    import tensorrt

    folder = tmp_path_factory.mktemp("bundle")
    write_bundle(folder)
    cache = folder / "timing.cache"
    engine_path = folder / engines_folder(GPU.compute_capability) / "denoiser.fp32.plan"
    entry = build_engine(folder / "denoiser.onnx", engine_path, profiles=[PROFILE], timing_cache_path=cache,
                         name="denoiser", precision="fp32", workspace_bytes=256 << 20)
    write_bundle(folder, [entry])  # same graphs, now with the engine in the manifest
    return folder, entry, cache, tensorrt.__version__


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_gpu
@needs_tensorrt  # nearest the function: its reason is the one reported first
def test_build_engine_records_what_the_runtime_checks(built):
    folder, entry, cache, version = built
    assert entry.file == f"{engines_folder(GPU.compute_capability)}/denoiser.fp32.plan"
    assert entry.compute_capability == GPU.compute_capability and entry.tensorrt_version == version
    assert (folder / entry.file).stat().st_size == entry.bytes > 0
    assert cache.stat().st_size > 0  # the timing cache was written for the next build
    bundle = load_bundle(folder)
    assert bundle.manifest.engines[0].sha256 == entry.sha256


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_gpu
@needs_tensorrt  # nearest the function: its reason is the one reported first
def test_tensorrt_runner_matches_reference(built):
    from vem.runtime.backends.tensorrt import TensorRTRunner

    folder, entry, _, _ = built
    runner = TensorRTRunner(folder / entry.file, name="denoiser")
    rng = np.random.default_rng(0)
    try:
        assert runner.input_names == ["latent", "timestep", "cond"] and runner.output_names == ["eps"]
        for batch, frames in [(1, 8), (2, 100), (4, 512)]:
            feeds = {"latent": rng.standard_normal((batch, 4, frames)).astype(np.float32),
                     "timestep": rng.integers(0, 1000, batch).astype(np.int64),
                     "cond": rng.standard_normal((batch, 4, 1)).astype(np.float32)}
            np.testing.assert_allclose(runner.run(feeds)["eps"], denoiser_reference(**feeds), rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="outside the engine's optimisation profile"):
            runner.run({"latent": np.zeros((1, 4, 600), np.float32), "timestep": np.zeros(1, np.int64),
                        "cond": np.zeros((1, 4, 1), np.float32)})
    finally:
        runner.close()


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_gpu
@needs_tensorrt  # nearest the function: its reason is the one reported first
def test_one_context_and_one_graph_replay_the_same_result(built):
    from vem.runtime.backends.tensorrt import TensorRTRunner

    folder, entry, _, _ = built
    graphs = TensorRTRunner(folder / entry.file, name="denoiser", use_cuda_graphs=True)
    plain = TensorRTRunner(folder / entry.file, name="denoiser", use_cuda_graphs=False)
    context = graphs.context
    rng = np.random.default_rng(1)
    cond = rng.standard_normal((2, 4, 1)).astype(np.float32)
    step, reference_step = graphs.bind(cond=cond), plain.bind(cond=cond)
    try:
        for frames in (64, 64, 64, 128, 64):
            latent = rng.standard_normal((2, 4, frames)).astype(np.float32)
            t = np.array([999, 999], np.int64)
            got = graphs.to_host(step(latent=graphs.to_device(latent), timestep=t)["eps"])
            want = plain.to_host(reference_step(latent=latent, timestep=t)["eps"])
            np.testing.assert_array_equal(got, want)
            np.testing.assert_allclose(got, denoiser_reference(latent, t, cond), rtol=1e-5, atol=1e-5)
        # One execution context for the runner's life; its shapes were re-set at 64 -> 128 -> 64.
        assert graphs.context is context and graphs.shape_changes == 3
        # 64 frames captured on call 1 and replayed on calls 2 and 3; 128 re-captured; 64 again.
        assert step.captures == 3 and step.replays == 2
        assert graphs.scratch_bytes > 0
        # run() shares the context with the bound step and still answers right.
        feeds = {"latent": rng.standard_normal((1, 4, 32)).astype(np.float32),
                 "timestep": np.array([5], np.int64), "cond": cond[:1]}
        np.testing.assert_allclose(graphs.run(feeds)["eps"], denoiser_reference(**feeds), rtol=1e-5, atol=1e-5)
    finally:
        step.close()
        reference_step.close()
        graphs.close()
        plain.close()


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_gpu
@needs_tensorrt  # nearest the function: its reason is the one reported first
@needs_cupy
def test_tensorrt_diffusion_loop_keeps_the_latent_on_the_device(built):
    from vem.runtime.sampler import NoiseSchedule, make_sampler

    folder, _, _, _ = built
    choice = select_backend("auto", load_bundle(folder), precision="fp32")
    assert choice.name == "tensorrt", choice.reason
    runner = choice.backend.load_component(load_bundle(folder), "denoiser", "fp32")
    assert runner.backend == "tensorrt" and runner.device_resident
    rng = np.random.default_rng(2)
    cond = rng.standard_normal((2, 4, 1)).astype(np.float32)
    noise = rng.standard_normal((2, 4, 96)).astype(np.float32)
    sampler = make_sampler("ddim", NoiseSchedule(), 10)
    step = runner.bind(cond=cond)
    z = runner.to_device(noise)
    for index, t in enumerate(sampler.timesteps):
        eps = step(latent=z, timestep=np.full(2, t, np.int64))["eps"]
        assert type(eps) is type(z)  # a device array, not numpy
        z = sampler.step(eps, index, z)
    result = runner.to_host(z)
    expected = noise
    sampler.reset()
    for index, t in enumerate(sampler.timesteps):
        expected = sampler.step(denoiser_reference(expected, np.full(2, t, np.int64), cond), index, expected)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4)


# ---- ONNX Runtime's GPU providers ------------------------------------------------------------


def _ort_has_cuda():
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.mark.gpu
@needs_gpu
@needs_cupy
@pytest.mark.skipif(not _ort_has_cuda(), reason="onnxruntime-gpu not installed (no CUDAExecutionProvider)")
def test_onnxruntime_io_binding_keeps_outputs_on_the_device(tmp_path):
    from vem.runtime.sampler import NoiseSchedule, make_sampler

    runner = OnnxRuntimeBackend(["CUDAExecutionProvider", "CPUExecutionProvider"]).load(
        write_denoiser(tmp_path / "denoiser.onnx"), name="denoiser")
    assert runner.provider == "CUDAExecutionProvider" and runner.device == "cuda" and runner.device_resident
    rng = np.random.default_rng(3)
    cond = rng.standard_normal((2, 4, 1)).astype(np.float32)
    noise = rng.standard_normal((2, 4, 40)).astype(np.float32)
    sampler = make_sampler("dpmpp_2m", NoiseSchedule(), 8)
    step = runner.bind(cond=cond)
    z = runner.to_device(noise)
    for index, t in enumerate(sampler.timesteps):
        eps = step(latent=z, timestep=np.full(2, t, np.int64))["eps"]
        assert not isinstance(eps, np.ndarray)
        z = sampler.step(eps, index, z)
    expected = noise
    sampler.reset()
    for index, t in enumerate(sampler.timesteps):
        expected = sampler.step(denoiser_reference(expected, np.full(2, t, np.int64), cond), index, expected)
    np.testing.assert_allclose(runner.to_host(z), expected, rtol=1e-4, atol=1e-4)
