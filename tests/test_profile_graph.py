"""benchmarks.profile_graph: per-module kernel time from ONNX Runtime's profiler, on a real graph."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from benchmarks.profile_graph import module_key, profile_graph


def test_module_key_groups_by_module_path():
    assert module_key("/unet/res/in_layers/in_layers.2_3/Conv", 2) == "unet/res"
    assert module_key("/unet/res_4/in_layers/Conv", 2) == "unet/res"
    assert module_key("/unet/res/in_layers/Conv", 3) == "unet/res/in_layers"
    assert module_key("Add", 2) == "(graph)"


def test_profile_graph_sums_kernel_time_per_module(tmp_path):
    rng = np.random.default_rng(0)
    big = numpy_helper.from_array(rng.standard_normal((256, 256)).astype(np.float32), "w_big")
    small = numpy_helper.from_array(rng.standard_normal((256, 8)).astype(np.float32), "w_small")
    nodes = [helper.make_node("MatMul", ["x", "w_big"], ["h1"], name="/net/heavy/MatMul"),
             helper.make_node("MatMul", ["h1", "w_big"], ["h2"], name="/net/heavy/MatMul_1"),
             helper.make_node("MatMul", ["h2", "w_small"], ["y"], name="/net/light/MatMul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [512, 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [512, 8])], [big, small])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    times = profile_graph(path, {"x": rng.standard_normal((512, 256)).astype(np.float32)}, runs=3)
    assert set(times) == {"net/heavy", "net/light"}
    assert times["net/heavy"] > times["net/light"] > 0  # two 256-wide products vs one 8-wide
    by_op = profile_graph(path, {"x": rng.standard_normal((512, 256)).astype(np.float32)}, runs=3, by="op")
    assert set(by_op) == {"MatMul"} and by_op["MatMul"] > 0
