"""vem.runtime.guidance: the guided step from the branch denoiser graph, as a batch of two or as
two concurrent single-threaded calls (real exported graph, real ONNX Runtime sessions), and a
graph of the older kind that applies guidance itself."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from vem.runtime.backends.onnxruntime import OnnxRuntimeBackend
from vem.runtime.bundle import load_bundle
from vem.runtime.guidance import bind_guided

GUIDANCE = 3.0


@pytest.fixture(scope="module")
def denoiser_feeds(demo_bundle):
    from vem.export.graphs import Size, component_specs

    bundle = load_bundle(demo_bundle)
    spec = component_specs(bundle.manifest.config)["denoiser"]
    feeds = spec.make_inputs(bundle.manifest.config, Size(4.0, storyboards=2), np.random.default_rng(4))
    static = {k: v for k, v in feeds.items() if k not in ("latent", "timestep", "branch")}
    return bundle, static, feeds["latent"]


def load_denoiser(bundle, threads):
    backend = OnnxRuntimeBackend(["CPUExecutionProvider"], threads=threads)
    return backend.load_component(bundle, "denoiser", "fp32")


def test_split_branches_equal_the_batch_of_two_and_apply_guidance(denoiser_feeds):
    bundle, static, latent = denoiser_feeds
    split_runner, batched_runner = load_denoiser(bundle, 2), load_denoiser(bundle, 1)
    assert split_runner.split_branches and not batched_runner.split_branches
    split, batched = bind_guided(split_runner, static, GUIDANCE), bind_guided(batched_runner, static, GUIDANCE)
    try:
        for t in (999.0, 500.0, 10.0):
            eps_split, eps_batched = split(latent, t), batched(latent, t)
            assert eps_split.shape == latent.shape and np.isfinite(eps_split).all()
            np.testing.assert_allclose(eps_split, eps_batched, rtol=1e-5, atol=1e-5)
        # Guidance really is eps_u + g (eps_c - eps_u) of the graph's two branches.
        session = batched_runner.session
        one = {**static, "latent": latent, "timestep": np.array([500.0], np.float32)}
        eps_c = session.run(None, {**one, "branch": np.array([1.0], np.float32)})[0]
        eps_u = session.run(None, {**one, "branch": np.array([0.0], np.float32)})[0]
        assert np.abs(eps_c - eps_u).max() > 1e-3  # the branches differ
        np.testing.assert_allclose(split(latent, 500.0), eps_u + GUIDANCE * (eps_c - eps_u), rtol=1e-4, atol=1e-4)
    finally:
        split.close()
        batched.close()


def test_recording_runner_keeps_one_call_per_step(denoiser_feeds):
    """Calibration counts one denoiser call per sampler step: the recorder never splits."""
    from vem.calibration.recorder import RecordingRunner

    bundle, static, latent = denoiser_feeds
    calls = []
    recording = RecordingRunner(load_denoiser(bundle, 2), calls.append)
    step = bind_guided(recording, static, GUIDANCE)
    step(latent, 900.0)
    step(latent, 400.0)
    step.close()
    assert len(calls) == 2 and all(c["latent"].shape[0] == 2 for c in calls)
    assert [list(c["branch"]) for c in calls] == [[1.0, 0.0], [1.0, 0.0]]


def test_graph_that_applies_guidance_itself_still_runs(tmp_path):
    """Bundles exported before the branch graph take ``guidance`` and return the guided eps."""
    nodes = [helper.make_node("Mul", ["latent", "guidance"], ["scaled"]),
             helper.make_node("Add", ["scaled", "cond"], ["eps"])]
    graph = helper.make_graph(
        nodes, "old_denoiser",
        [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["batch", 4, "frames"]),
         helper.make_tensor_value_info("timestep", TensorProto.FLOAT, ["batch"]),
         helper.make_tensor_value_info("cond", TensorProto.FLOAT, ["batch", 4, 1]),
         helper.make_tensor_value_info("guidance", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("eps", TensorProto.FLOAT, ["batch", 4, "frames"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path = tmp_path / "denoiser.onnx"
    onnx.save(model, str(path))
    runner = OnnxRuntimeBackend(["CPUExecutionProvider"], threads=2).load(path)
    assert not runner.split_branches
    cond = np.arange(4, dtype=np.float32).reshape(1, 4, 1)
    latent = np.ones((1, 4, 6), dtype=np.float32)
    step = bind_guided(runner, {"cond": cond}, 2.5)
    np.testing.assert_allclose(step(latent, 10.0), 2.5 * latent + cond)
    step.close()
