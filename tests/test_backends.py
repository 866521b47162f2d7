"""The backends on this machine: ONNX Runtime on the CPU with real ONNX graphs, backend
selection, damaged graphs, and the engine/manifest compatibility logic (no GPU needed)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from backend_graphs import denoiser_reference, fake_engine, write_bundle, write_denoiser

from vem.runtime.backends import (
    EngineFallbackWarning,
    OnnxRuntimeBackend,
    TensorRTBackend,
    engine_mismatch,
    find_engine,
    physical_cores,
    select_backend,
    tensorrt_status,
)
from vem.runtime.backends.cuda import gpu_info
from vem.runtime.bundle import EngineEntry, load_bundle
from vem.runtime.errors import EXIT_BUNDLE, EXIT_USAGE, BundleError, UsageError
from vem.runtime.sampler import NoiseSchedule, guided_eps, make_sampler

TENSORRT_USABLE = tensorrt_status()[0]


@pytest.fixture(scope="module")
def denoiser_path(tmp_path_factory):
    return write_denoiser(tmp_path_factory.mktemp("graphs") / "denoiser.onnx")


@pytest.fixture(scope="module")
def cpu_runner(denoiser_path):
    return OnnxRuntimeBackend(["CPUExecutionProvider"]).load(denoiser_path, name="denoiser")


def random_inputs(rng, batch=2, frames=37):
    return {
        "latent": rng.standard_normal((batch, 4, frames)).astype(np.float32),
        "timestep": rng.integers(0, 1000, size=batch).astype(np.int64),
        "cond": rng.standard_normal((batch, 4, 1)).astype(np.float32),
    }


# ---- ONNX Runtime on the CPU --------------------------------------------------------------------


def test_run_matches_numpy_at_several_shapes(cpu_runner):
    rng = np.random.default_rng(0)
    for batch, frames in [(1, 5), (2, 37), (3, 256)]:
        feeds = random_inputs(rng, batch, frames)
        eps = cpu_runner.run(feeds)["eps"]
        assert eps.shape == (batch, 4, frames) and eps.dtype == np.float32
        np.testing.assert_allclose(eps, denoiser_reference(**feeds), rtol=1e-6, atol=1e-6)


def test_runner_describes_itself(cpu_runner):
    assert cpu_runner.backend == "onnxruntime"
    assert cpu_runner.provider == "CPUExecutionProvider"
    assert cpu_runner.device == "cpu" and cpu_runner.array_module is np and not cpu_runner.device_resident
    assert cpu_runner.input_names == ["latent", "timestep", "cond"]
    assert cpu_runner.output_names == ["eps"]
    latent = cpu_runner.inputs[0]
    assert latent.dtype == np.float32 and latent.shape == ("batch", 4, "frames")
    assert cpu_runner.inputs[1].dtype == np.int64
    assert "CPUExecutionProvider" in cpu_runner.describe()


def test_session_uses_physical_cores_and_full_optimisation(cpu_runner):
    import onnxruntime

    options = cpu_runner.session.get_session_options()
    assert options.intra_op_num_threads == physical_cores() >= 1
    assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_spinning_is_off_unless_asked_for(denoiser_path, monkeypatch):
    key = "session.intra_op.allow_spinning"
    monkeypatch.delenv("VEM_ORT_SPINNING", raising=False)
    quiet = OnnxRuntimeBackend(["CPUExecutionProvider"]).load(denoiser_path, name="denoiser")
    assert quiet.session.get_session_options().get_session_config_entry(key) == "0"
    monkeypatch.setenv("VEM_ORT_SPINNING", "0")
    assert OnnxRuntimeBackend(["CPUExecutionProvider"]).load(
        denoiser_path, name="denoiser").session.get_session_options().get_session_config_entry(key) == "0"
    monkeypatch.setenv("VEM_ORT_SPINNING", "1")
    spinning = OnnxRuntimeBackend(["CPUExecutionProvider"]).load(denoiser_path, name="denoiser")
    with pytest.raises(RuntimeError, match="does not have configuration"):  # ORT's default (spinning)
        spinning.session.get_session_options().get_session_config_entry(key)
    feed = random_inputs(np.random.default_rng(0))
    np.testing.assert_array_equal(quiet.run(feed)["eps"], spinning.run(feed)["eps"])


def test_python_scalars_and_dtypes_are_converted(cpu_runner):
    feeds = random_inputs(np.random.default_rng(1), batch=1, frames=8)
    feeds["timestep"] = [500]  # a list of ints becomes int64
    feeds["latent"] = feeds["latent"].astype(np.float64)  # float64 becomes the graph's float32
    eps = cpu_runner.run(feeds)["eps"]
    np.testing.assert_allclose(eps, denoiser_reference(feeds["latent"].astype(np.float32), np.array([500]),
                                                       feeds["cond"]), rtol=1e-6, atol=1e-6)


def test_wrong_input_names_are_named(cpu_runner):
    feeds = random_inputs(np.random.default_rng(2))
    with pytest.raises(ValueError, match=r"missing input\(s\) \['cond'\]"):
        cpu_runner.run({k: v for k, v in feeds.items() if k != "cond"})
    with pytest.raises(ValueError, match=r"unknown input\(s\) \['noise'\]"):
        cpu_runner.run({**feeds, "noise": feeds["latent"]})
    with pytest.raises(ValueError, match="unknown input"):
        cpu_runner.bind(conditions=feeds["cond"])
    step = cpu_runner.bind(cond=feeds["cond"])
    with pytest.raises(ValueError, match=r"takes \['latent', 'timestep'\]"):
        step(latent=feeds["latent"])


@pytest.mark.filterwarnings("ignore")  # the TorchScript exporter's deprecation notices
def test_matches_a_torch_module(tmp_path):
    torch = pytest.importorskip("torch")

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(4, 8, 3, padding=1)
            self.norm = torch.nn.GroupNorm(2, 8)
            self.out = torch.nn.Conv1d(8, 4, 1)

        def forward(self, latent):
            return self.out(torch.nn.functional.silu(self.norm(self.conv(latent))))

    torch.manual_seed(0)
    module = Block().eval()
    path = tmp_path / "block.onnx"
    torch.onnx.export(module, (torch.randn(2, 4, 16),), str(path), input_names=["latent"], output_names=["out"],
                      dynamic_axes={"latent": {0: "batch", 2: "frames"}, "out": {0: "batch", 2: "frames"}},
                      opset_version=18, dynamo=False)
    runner = OnnxRuntimeBackend(["CPUExecutionProvider"]).load(path)
    assert runner.component == "block"
    latent = torch.randn(3, 4, 50)
    with torch.no_grad():
        expected = module(latent).numpy()
    np.testing.assert_allclose(runner.run({"latent": latent.numpy()})["out"], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sampler_name", ["ddim", "dpmpp_2m"])
def test_diffusion_loop_through_the_bound_runner(cpu_runner, sampler_name):
    """The loop the pipeline runs: conditions bound once, latent through `step`, sampler
    arithmetic on the runner's arrays; equals the same loop on the numpy reference."""
    rng = np.random.default_rng(3)
    cond = rng.standard_normal((2, 4, 1)).astype(np.float32)  # [conditional, null] branches
    noise = rng.standard_normal((1, 4, 64)).astype(np.float32)
    schedule, guidance = NoiseSchedule(), 3.0

    def generate(eps_of):
        sampler = make_sampler(sampler_name, schedule, 12)
        z = noise
        for index, t in enumerate(sampler.timesteps):
            eps = eps_of(z, t)
            z = sampler.step(guided_eps(eps[0:1], eps[1:2], guidance), index, z)
        return z

    def reference_eps(z, t):
        return denoiser_reference(np.concatenate([z, z]), np.full(2, t, np.int64), cond)

    step = cpu_runner.bind(cond=cond)
    z_device = cpu_runner.to_device(noise)
    sampler = make_sampler(sampler_name, schedule, 12)
    for index, t in enumerate(sampler.timesteps):
        xp = cpu_runner.array_module
        eps = step(latent=xp.concatenate([z_device, z_device]), timestep=np.full(2, t, np.int64))["eps"]
        z_device = sampler.step(guided_eps(eps[0:1], eps[1:2], guidance), index, z_device)
    result = cpu_runner.to_host(z_device)
    expected = generate(reference_eps)
    assert result.shape == (1, 4, 64) and np.isfinite(result).all()
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(result, noise)  # the loop did something


def test_optimized_model_cache(tmp_path, denoiser_path):
    cache = tmp_path / "cache"
    first = OnnxRuntimeBackend(["CPUExecutionProvider"], cache_dir=cache).load(denoiser_path, name="denoiser")
    written = sorted(cache.glob("denoiser-*-cpu.onnx"))
    assert len(written) == 1 and first.loaded_from == denoiser_path
    assert not list(cache.glob("*.tmp"))
    second = OnnxRuntimeBackend(["CPUExecutionProvider"], cache_dir=cache).load(denoiser_path, name="denoiser")
    assert second.loaded_from == written[0]
    feeds = random_inputs(np.random.default_rng(4))
    np.testing.assert_allclose(second.run(feeds)["eps"], first.run(feeds)["eps"], rtol=1e-6, atol=1e-6)


# ---- damaged and missing graphs -----------------------------------------------------------------


def test_corrupted_graph_is_a_bundle_error(tmp_path):
    path = tmp_path / "denoiser.onnx"
    path.write_bytes(np.random.default_rng(5).bytes(4096))
    with pytest.raises(BundleError) as caught:
        OnnxRuntimeBackend(["CPUExecutionProvider"]).load(path, name="denoiser")
    assert caught.value.exit_code == EXIT_BUNDLE == 4
    assert "component denoiser: not a valid ONNX graph" in caught.value.message
    assert str(path) in caught.value.message and "vem-export" in caught.value.hint
    assert "\n" not in caught.value.message


def test_truncated_graph_is_a_bundle_error(tmp_path, denoiser_path):
    path = tmp_path / "vocoder.onnx"
    path.write_bytes(denoiser_path.read_bytes()[:40])
    with pytest.raises(BundleError, match="component vocoder: not a valid ONNX graph") as caught:
        OnnxRuntimeBackend(["CPUExecutionProvider"]).load(path, name="vocoder")
    assert caught.value.exit_code == 4


def test_missing_graph_is_a_bundle_error(tmp_path):
    with pytest.raises(BundleError, match="component aligner: graph file not found") as caught:
        OnnxRuntimeBackend().load(tmp_path / "aligner.onnx", name="aligner")
    assert caught.value.exit_code == 4


def test_unknown_provider_is_refused():
    with pytest.raises(BundleError, match="has no NoSuchExecutionProvider"):
        OnnxRuntimeBackend(["NoSuchExecutionProvider", "CPUExecutionProvider"])


# ---- selection on this machine ----------------------------------------------------------------


@pytest.fixture()
def bundle(tmp_path):
    write_bundle(tmp_path / "bundle")
    return load_bundle(tmp_path / "bundle")


@pytest.mark.skipif(TENSORRT_USABLE, reason="TensorRT runs here; this checks a machine without it")
def test_auto_picks_onnxruntime_here_and_says_why(bundle):
    choice = select_backend("auto", bundle, precision="fp16")
    assert choice.name == "onnxruntime"
    assert isinstance(choice.backend, OnnxRuntimeBackend)
    assert choice.reason.startswith("onnxruntime with CPUExecutionProvider")
    assert "TensorRT unavailable" in choice.reason
    runner = choice.backend.load_component(bundle, "denoiser", "fp16")  # only fp32 exported: falls back
    feeds = random_inputs(np.random.default_rng(6))
    np.testing.assert_allclose(runner.run(feeds)["eps"], denoiser_reference(**feeds), rtol=1e-6, atol=1e-6)


def test_onnxruntime_on_request(bundle):
    choice = select_backend("onnxruntime", bundle)
    assert choice.name == "onnxruntime" and choice.reason.endswith("requested")


@pytest.mark.skipif(TENSORRT_USABLE, reason="TensorRT runs here; this checks a machine without it")
def test_tensorrt_on_request_without_tensorrt_is_exit_4(bundle):
    with pytest.raises(BundleError) as caught:
        select_backend("tensorrt", bundle)
    error = caught.value
    assert error.exit_code == EXIT_BUNDLE
    assert error.message.startswith("--backend tensorrt cannot run here:")
    assert ("TensorRT not installed" in error.message) or ("no NVIDIA GPU" in error.message)
    assert "--backend auto" in error.hint


def test_unknown_backend_is_a_usage_error(bundle):
    with pytest.raises(UsageError, match="unknown backend 'cuda'") as caught:
        select_backend("cuda", bundle)
    assert caught.value.exit_code == EXIT_USAGE


def test_gpu_probe_says_why_not():
    info = gpu_info()
    if not info.available:
        assert info.compute_capability is None
        assert "no NVIDIA GPU" in info.reason or "cuda-python is not installed" in info.reason
    else:
        major, minor = info.compute_capability.split(".")
        assert major.isdigit() and minor.isdigit()


def test_importing_backends_loads_no_gpu_library():
    code = ("import sys, vem.runtime.backends;"
            "bad = [m for m in ('tensorrt', 'cupy', 'cuda.bindings', 'cuda.cudart', 'torch') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- engine / manifest compatibility (pure logic) -------------------------------------------


def engine(cc="8.7", version="10.3.0.30"):
    return EngineEntry(name="denoiser", precision="fp16", file=f"engines/sm_{cc.replace('.', '')}/denoiser.plan",
                       sha256="0" * 64, bytes=1, tensorrt_version=version, compute_capability=cc)


def test_engine_mismatch_rules():
    assert engine_mismatch(engine(), tensorrt_version="10.3.0.30", compute_capability="8.7") is None
    # Same release, other build number: the same engine format.
    assert engine_mismatch(engine(), tensorrt_version="10.3.0.26", compute_capability="8.7") is None
    other_gpu = engine_mismatch(engine(), tensorrt_version="10.3.0.30", compute_capability="9.0")
    assert "compute capability 8.7, this GPU is 9.0" in other_gpu
    other_trt = engine_mismatch(engine(), tensorrt_version="10.7.0.23", compute_capability="8.7")
    assert "built with TensorRT 10.3.0.30, this machine has TensorRT 10.7.0.23" in other_trt
    assert engine_mismatch(engine(), tensorrt_version=None, compute_capability="8.7") == "TensorRT is not installed"
    assert engine_mismatch(engine(), tensorrt_version="10.3.0", compute_capability=None) == "no NVIDIA GPU"


def test_find_engine_picks_the_one_for_this_gpu(tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    engines = [fake_engine(folder, compute_capability="9.0", tensorrt_version="10.7.0"),
               fake_engine(folder, compute_capability="8.7", tensorrt_version="10.3.0.30")]
    write_bundle(folder, engines)
    bundle = load_bundle(folder)
    found, why = find_engine(bundle, "denoiser", "fp32", tensorrt_version="10.3.0.30", compute_capability="8.7")
    assert found is not None and found.file == "engines/sm_87/denoiser.fp32.plan"
    found, why = find_engine(bundle, "denoiser", "fp32", tensorrt_version="10.3.0.30", compute_capability="8.9")
    assert found is None and "this GPU is 8.9" in why
    found, why = find_engine(bundle, "vocoder", "fp32", tensorrt_version="10.3.0.30", compute_capability="8.7")
    assert found is None and "no TensorRT engine for vocoder at fp32" in why


def test_missing_engine_file_is_not_found(tmp_path):
    folder = tmp_path / "bundle"
    write_bundle(folder, [fake_engine(folder, compute_capability="8.7", tensorrt_version="10.3.0", content=None)])
    found, why = find_engine(load_bundle(folder), "denoiser", "fp32", tensorrt_version="10.3.0",
                             compute_capability="8.7")
    assert found is None and "engine file missing" in why


@pytest.mark.parametrize("cc, version, expected", [
    ("9.0", "10.3.0", "this GPU is 8.7"),  # engine for an H100 on an Orin
    ("8.7", "10.7.0", "this machine has TensorRT 10.3.0"),  # engine from a newer TensorRT
])
def test_mismatched_engine_falls_back_to_onnxruntime_with_a_warning(tmp_path, cc, version, expected):
    folder = tmp_path / "bundle"
    folder.mkdir()
    write_bundle(folder, [fake_engine(folder, compute_capability=cc, tensorrt_version=version)])
    bundle = load_bundle(folder)
    backend = TensorRTBackend(OnnxRuntimeBackend(["CPUExecutionProvider"]), tensorrt_version="10.3.0",
                              compute_capability="8.7")
    with pytest.warns(EngineFallbackWarning, match=expected):
        runner = backend.load_component(bundle, "denoiser", "fp32")
    assert runner.backend == "onnxruntime"
    assert any(expected in note for note in runner.notes)
    feeds = random_inputs(np.random.default_rng(7))
    np.testing.assert_allclose(runner.run(feeds)["eps"], denoiser_reference(**feeds), rtol=1e-6, atol=1e-6)


def test_unloadable_engine_falls_back_instead_of_crashing(tmp_path):
    """A matching entry whose file TensorRT cannot load (here: TensorRT itself is absent, on a
    GPU machine: bytes that are not an engine) still ends on ONNX Runtime."""
    folder = tmp_path / "bundle"
    folder.mkdir()
    write_bundle(folder, [fake_engine(folder, compute_capability="8.7", tensorrt_version="10.3.0")])
    backend = TensorRTBackend(OnnxRuntimeBackend(["CPUExecutionProvider"]), tensorrt_version="10.3.0",
                              compute_capability="8.7")
    with pytest.warns(EngineFallbackWarning, match="TensorRT engine not used"):
        runner = backend.load_component(load_bundle(folder), "denoiser", "fp32")
    assert runner.backend == "onnxruntime"


def simulate_tensorrt(monkeypatch, version="10.3.0.30", cc="8.7"):
    """Pretend TensorRT `version` and a GPU of compute capability `cc` are present: the selection
    logic only reads these two facts (the real probes run in test_gpu_probe_says_why_not)."""
    import vem.runtime.backends as backends
    from vem.runtime.backends import cuda

    monkeypatch.setattr(backends, "tensorrt_status", lambda: (True, f"TensorRT {version} on Orin (sm_87)", version))
    monkeypatch.setattr(cuda, "gpu_info", lambda: cuda.GpuInfo(True, "Orin (sm_87)", cc, "Orin"))


def test_auto_selection_with_tensorrt_present(tmp_path, monkeypatch):
    simulate_tensorrt(monkeypatch)
    folder = tmp_path / "bundle"
    folder.mkdir()
    write_bundle(folder, [fake_engine(folder, compute_capability="8.7", tensorrt_version="10.3.0.30")])
    choice = select_backend("auto", load_bundle(folder), precision="fp32")
    assert choice.name == "tensorrt"
    assert "engines/sm_87/denoiser.fp32.plan" in choice.reason and "CUDA graphs" in choice.reason

    other = tmp_path / "other"
    other.mkdir()
    write_bundle(other, [fake_engine(other, compute_capability="9.0", tensorrt_version="10.3.0.30")])
    choice = select_backend("auto", load_bundle(other), precision="fp32")
    assert choice.name == "onnxruntime"
    assert "no usable TensorRT engine" in choice.reason and "this GPU is 8.7" in choice.reason

    with pytest.warns(EngineFallbackWarning, match="tensorrt requested but"):
        choice = select_backend("tensorrt", load_bundle(other), precision="fp32")
    assert choice.name == "tensorrt" and "run on onnxruntime" in choice.reason
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EngineFallbackWarning)
        runner = choice.backend.load_component(load_bundle(other), "denoiser", "fp32")
    assert runner.backend == "onnxruntime"
