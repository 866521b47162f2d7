"""The floor: how close a denoiser step comes to what this CPU can do at all.

FLOPs of one guided step come from `vem.export.flops` (matrix products and convolutions, 2 per
multiply-accumulate) for demo and paper at 10/30/60 s. The CPU's practical ceiling is measured in
the same run: a float32 1024 x 1024 GEMM through numpy's BLAS and through ONNX Runtime's MatMul
(same thread count as the runtime). `python -m benchmarks.report` divides FLOPs by the measured
step times (this suite's, test_scaling's and test_generation's) and by the GEMM rate.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks._fixtures import checkpoint_bundle, demo_model, denoiser_feeds, pedantic, threads

GEMM_N = 1024


def test_gemm_numpy(benchmark):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((GEMM_N, GEMM_N), dtype=np.float32)
    b = rng.standard_normal((GEMM_N, GEMM_N), dtype=np.float32)
    benchmark.group = "floor: GEMM ceiling"
    benchmark.extra_info.update(kind="gemm", library="numpy", n=GEMM_N, flop=2 * GEMM_N ** 3, threads="BLAS default")
    pedantic(benchmark, lambda: a @ b, rounds=10, warmup=2)


def test_gemm_onnxruntime(benchmark):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from vem.runtime.backends.onnxruntime import OnnxRuntimeBackend

    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [GEMM_N, GEMM_N]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, [GEMM_N, GEMM_N])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [GEMM_N, GEMM_N])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gemm.onnx"
        onnx.save(model, path)
        runner = OnnxRuntimeBackend(providers=["CPUExecutionProvider"], threads=threads()).load(path, name="gemm")
    rng = np.random.default_rng(0)
    feeds = {"a": rng.standard_normal((GEMM_N, GEMM_N), dtype=np.float32),
             "b": rng.standard_normal((GEMM_N, GEMM_N), dtype=np.float32)}
    benchmark.group = "floor: GEMM ceiling"
    benchmark.extra_info.update(kind="gemm", library="onnxruntime", n=GEMM_N, flop=2 * GEMM_N ** 3, threads=threads())
    pedantic(benchmark, lambda: runner.run(feeds), rounds=10, warmup=2)


def test_flop_table(benchmark):
    """FLOPs per guided step, demo and paper at 10/30/60 s (the count itself is what is recorded)."""
    pytest.importorskip("torch")
    from vem.export.flops import denoiser_flops_table

    benchmark.group = "floor: FLOP count"
    table = pedantic(benchmark, lambda: denoiser_flops_table(), rounds=1, warmup=0)
    benchmark.extra_info.update(kind="flop_table", rows=table)
    paper = {row["seconds"]: row["gflop_per_step"] for row in table if row["config"] == "paper"}
    assert paper[60.0] > paper[10.0] > 0


@pytest.mark.parametrize("path", ["onnxruntime", "torch_eager"])
def test_demo_step(benchmark, path):
    """One guided step of the demo denoiser at 10 s, both paths (the generation comparison's core)."""
    torch = pytest.importorskip("torch")
    from vem.export.graphs import component_specs
    from vem.runtime.pipeline import Pipeline

    seconds = 10.0
    torch.set_num_threads(threads())
    benchmark.group = "floor: demo denoiser step, 10 s"
    benchmark.extra_info.update(kind="denoiser_step", config="demo", seconds=seconds, path=path, precision="fp32",
                                threads=threads())
    if path == "onnxruntime":
        pipeline = Pipeline.load(checkpoint_bundle("fp32"), backend="onnxruntime", precision="fp32", threads=threads())
        feeds = denoiser_feeds(pipeline.config, seconds)
        runner = pipeline.runners["denoiser"]
        pedantic(benchmark, lambda: runner.run(feeds), rounds=3)
        return
    model = demo_model()
    spec = component_specs(model.config)["denoiser"]
    module = spec.make_module(model).eval()
    feeds = denoiser_feeds(model.config, seconds)
    args = [torch.from_numpy(feeds[name]) for name in spec.input_names]

    def step():
        with torch.no_grad():
            return module(*args)

    pedantic(benchmark, step, rounds=3)
