"""INT8: calibration from real runtime runs, Q/DQ graphs, manifest facts, the quality gate.

All on the shared seeded demo bundle (conftest `demo_bundle`), calibrated on a real mp4 written
by PyAV with few sampler steps so that the module stays fast; the recipe's numbers at full size
are in the docs/precision.md."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime.quantization")
onnx = pytest.importorskip("onnx")

from vem.calibration import quantize as q  # noqa: E402
from vem.calibration.recorder import CalibrationSet, record_calibration  # noqa: E402
from vem.runtime.bundle import load_bundle  # noqa: E402
from vem.runtime.pipeline import Pipeline  # noqa: E402
from vem.runtime.sampler import NoiseSchedule, make_sampler  # noqa: E402

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from media import write_test_video  # noqa: E402

CALIB_STEPS = 3


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("int8-clips")
    write_test_video(folder / "clip.mp4", codec="h264", fps=25, size=(160, 96), seconds=3.0,
                     cut_times=[1.0, 2.0], moving_square=True)
    return folder


@pytest.fixture(scope="module")
def calibration(demo_bundle, clip_folder):
    """One recorded fp32 run of the clip (every sampler step), shared by the tests below."""
    return record_calibration(demo_bundle, [clip_folder / "clip.mp4"], steps=CALIB_STEPS, seed=3)


@pytest.fixture(scope="module")
def saved_calibration(calibration, tmp_path_factory) -> Path:
    return calibration.save(tmp_path_factory.mktemp("calibration-set"))


@pytest.fixture(scope="module")
def int8_bundle(demo_bundle, calibration, tmp_path_factory):
    """The demo bundle's fp32 graphs + int8 denoiser and vocoder (kept whatever their speed: the
    demo graphs at test sizes are too small for int8 to pay; the real decision is measured in the
    export)."""
    from vem.export.int8 import export_int8_bundle

    out = tmp_path_factory.mktemp("int8-bundle")
    result = export_int8_bundle(None, out, fp32_bundle=demo_bundle, progress=None, calibration=calibration,
                                components=("denoiser", "vocoder"), sensitivity=False,
                                gate=False, min_speedup=0.0, target=1.0)
    return out, result


def test_recorder_captures_every_sampler_step(demo_bundle, calibration):
    steps = CALIB_STEPS
    denoiser = calibration.samples["denoiser"]
    assert len(denoiser) == steps
    assert [s.step for s in calibration.denoiser_steps] == list(range(steps))
    manifest = load_bundle(demo_bundle).manifest
    schedule = NoiseSchedule.from_config(manifest.config.diffusion)
    expected = make_sampler(manifest.sampler["name"], schedule, steps).timesteps
    recorded = [float(np.ravel(feed["timestep"])[0]) for feed in denoiser]
    np.testing.assert_allclose(recorded, np.asarray(expected, dtype=np.float64), rtol=0, atol=1e-3)
    # the latent changes from step to step; the conditions stay
    assert not np.allclose(denoiser[0]["latent"], denoiser[-1]["latent"])
    np.testing.assert_array_equal(denoiser[0]["caption"], denoiser[-1]["caption"])
    # every other component was recorded from the same run, with the graph's input names
    for name in ("transitions", "visual", "aligner", "vae_decoder", "vocoder"):
        assert calibration.count(name) >= 1, name
    assert set(calibration.samples["vocoder"][0]) == {"mel"}


def test_calibration_set_round_trips(calibration, saved_calibration):
    loaded = CalibrationSet.load(saved_calibration)
    assert loaded.steps == CALIB_STEPS and loaded.count("denoiser") == CALIB_STEPS
    np.testing.assert_array_equal(loaded.samples["denoiser"][1]["latent"], calibration.samples["denoiser"][1]["latent"])
    assert [s.step for s in loaded.denoiser_steps] == list(range(CALIB_STEPS))
    assert loaded.videos == calibration.videos
    for name in calibration.samples:
        assert loaded.count(name) == calibration.count(name), name


def test_int8_graphs_have_qdq_and_exclusions_are_float(int8_bundle):
    folder, _ = int8_bundle
    manifest = load_bundle(folder).manifest
    for name in ("denoiser", "vocoder"):
        entry = manifest.component(name, "int8")
        assert entry.precision == "int8"
        path = folder / entry.file
        counts = q.count_qdq(path)
        assert counts["QuantizeLinear"] > 0 and counts["DequantizeLinear"] > 0, counts
        quantized = q.quantized_node_names(path)
        assert quantized, f"{name}: no layer reads int8 activations"
        excluded = {n for names in entry.notes["excluded_nodes"].values() for n in names}
        assert excluded, name
        assert not quantized & excluded, f"{name}: excluded layers were quantised: {sorted(quantized & excluded)[:3]}"
        model = onnx.load(str(path))
        producers = {o: n for n in model.graph.node for o in n.output}
        for node in model.graph.node:
            if node.op_type in ("Softmax", "InstanceNormalization", "LayerNormalization", "Sin", "Cos"):
                parents = {producers[i].op_type for i in node.input if i in producers}
                assert "DequantizeLinear" not in parents, f"{name}: {node.op_type} {node.name} was quantised"
        assert _int32_dequantized(model) == [], f"{name}: int32 bias Q/DQ (TensorRT cannot parse it)"
    denoiser = manifest.component("denoiser", "int8").notes["excluded_nodes"]
    assert {"conditioning", "first_layer", "last_layer", "attention_bmm"} <= set(denoiser)
    assert denoiser["first_layer"] == ["/unet/conv_in/Conv"]
    # the time embedding is among the conditioning exclusions
    assert any("time_embed" in n for n in denoiser["conditioning"])


def _int32_dequantized(model) -> list[str]:
    """DequantizeLinear nodes whose quantised input is int32 (an initializer or a constant)."""
    int32 = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT32}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].t.data_type == onnx.TensorProto.INT32:
            int32.update(node.output)
    return [n.name for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int32]


def _conv_graph(path: Path) -> Path:
    """Two 3x3 convs with biases (what the recipe quantises), written with the onnx helpers."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights, x = [], [], "x"
    for i in range(2):
        weights += [numpy_helper.from_array((rng.standard_normal((8, 8, 3, 3)) * 0.1).astype(np.float32), f"w{i}"),
                    numpy_helper.from_array((rng.standard_normal(8) * 0.1).astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1], name=f"conv{i}"),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        x = f"r{i}"
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 8, 16, 16])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_quantized_graphs_keep_float_biases_for_tensorrt(tmp_path):
    src = _conv_graph(tmp_path / "convs.onnx")
    feed = {"x": np.random.default_rng(1).standard_normal((1, 8, 16, 16)).astype(np.float32)}
    names = [n.name for n in q.weighted_nodes(q._load(src))]
    ranges = q.activation_ranges(src, [feed], names, percentile=100).ranges
    default = q.quantize_graph(src, tmp_path / "int8.onnx", ranges)
    model = onnx.load(str(default))
    assert _int32_dequantized(model) == []
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    producers = {o: n for n in model.graph.node for o in n.output}
    assert len(convs) == 2
    for conv in convs:  # int8 activations and weights in, the float bias straight from an initializer
        assert [producers[i].op_type for i in conv.input[:2]] == ["DequantizeLinear", "DequantizeLinear"]
        assert conv.input[2] in {t.name for t in model.graph.initializer}
    # The old form, for contrast: int32 biases behind DequantizeLinear.
    old = onnx.load(str(q.quantize_graph(src, tmp_path / "int8-int32.onnx", ranges, quantize_bias=True)))
    assert len(_int32_dequantized(old)) == 2
    # ONNX Runtime runs the float-bias graph with the same error as the int32-bias one.
    reference = q.run_graph(src, [feed])
    assert q.relative_l2(q.run_graph(default, [feed]), reference) < 0.05
    assert q.relative_l2(q.run_graph(default, [feed]), reference) == pytest.approx(
        q.relative_l2(q.run_graph(tmp_path / "int8-int32.onnx", [feed]), reference), rel=0.05)


def test_manifest_records_calibration_and_fp32_fallbacks(int8_bundle):
    folder, result = int8_bundle
    manifest = load_bundle(folder).manifest
    assert manifest.precisions() == ["fp32", "int8"]
    facts = manifest.calibration
    assert facts["sampler_steps"] == CALIB_STEPS
    assert facts["denoiser_steps_covered"] == list(range(CALIB_STEPS))
    assert facts["videos"] == ["clip.mp4"] and facts["source"] == "a recorded calibration set"
    assert set(facts["int8_components"]) == {"denoiser", "vocoder"}
    notes = manifest.component("denoiser", "int8").notes
    assert notes["excluded_why"]["first_layer"] and notes["speedup_cpu"] > 0
    # the skip convs were smoothed (default) and the manifest says which, with which alpha
    assert notes["smoothing"]["alpha"] == 0.8 and facts["smoothquant"]["alpha"] == 0.8
    assert notes["smoothing"]["nodes"] and all("skip" in n["node"] for n in notes["smoothing"]["nodes"])
    assert 0 <= notes["rel_l2"] < 1.0
    # components not tried stay fp32: the runtime falls back per component
    assert manifest.component("visual", "int8").precision == "fp32"
    assert {c.name for c in result.components} == {"denoiser", "vocoder"}


def test_runtime_runs_int8_bundle_end_to_end(int8_bundle, clip_folder):
    folder, _ = int8_bundle
    pipeline = Pipeline.load(folder)  # an int8 bundle defaults to int8
    assert pipeline.precision == "int8"
    result = pipeline.generate(clip_folder / "clip.mp4", steps=2, seed=1)
    assert result.report["precision"] == "int8"
    assert result.report["bundle"]["denoiser_sha256"] == load_bundle(folder).manifest.component("denoiser", "int8").sha256
    assert result.waveform.size == pytest.approx(3.0 * result.sample_rate, rel=0.02)
    assert np.isfinite(result.waveform).all() and np.abs(result.waveform).max() > 0


def test_gate_failure_exits_non_zero_with_message(demo_bundle, clip_folder, saved_calibration, tmp_path, capsys):
    from vem.export.cli import main

    out = tmp_path / "int8"
    code = main(["--precision", "int8", "--fp32-bundle", str(demo_bundle), "--out", str(out),
                 "--calib-set", str(saved_calibration),
                 "--int8-components", "denoiser", "--no-sensitivity", "--int8-min-speedup", "0",
                 "--int8-target", "1", "--gate-videos", str(clip_folder), "--gate-steps", "2",
                 "--gate-mel-ratio", "0"])
    captured = capsys.readouterr()
    assert code == 1
    assert "failed its quality gate" in captured.err and "mel distance" in captured.err
    assert "FAILED" in captured.out and "TBIoU" in captured.out
    gate = load_bundle(out).manifest.calibration["gate"]
    assert gate["passed"] is False and gate["bounds"]["mel_ratio"] == 0
    assert gate["summary"]["mel_int8"] > 0


def test_bad_calibration_folder_is_a_usage_error(demo_bundle, tmp_path, capsys):
    from vem.export.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["--precision", "int8", "--fp32-bundle", str(demo_bundle), "--out", str(tmp_path / "o"),
                 "--calib", str(empty)])
    assert code == 2
    assert "no videos" in capsys.readouterr().err


def test_bad_smoothing_alpha_is_a_usage_error(demo_bundle, saved_calibration, tmp_path, capsys):
    from vem.export.cli import main

    code = main(["--precision", "int8", "--fp32-bundle", str(demo_bundle), "--out", str(tmp_path / "o"),
                 "--calib-set", str(saved_calibration), "--smooth-alpha", "1.5"])
    assert code == 2
    assert "--smooth-alpha must be in [0, 1]" in capsys.readouterr().err


def test_recipe_exclusions_find_structure_not_names(demo_bundle, tmp_path):
    """Renaming every node must not change what the recipe excludes (it reads the graph)."""
    manifest = load_bundle(demo_bundle).manifest
    src = demo_bundle / manifest.component("denoiser", "fp32").file
    model = onnx.load(str(src))
    before = q.recipe_exclusions(model, "denoiser")
    index = {node.name: f"n{i}" for i, node in enumerate(model.graph.node)}
    for node in model.graph.node:
        node.name = index[node.name]
    after = q.recipe_exclusions(model, "denoiser")
    assert {k: sorted(index[n] for n in v) for k, v in before.items()} == {k: sorted(v) for k, v in after.items()}
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_sensitivity_excludes_the_most_sensitive_group_first(demo_bundle, calibration, tmp_path):
    manifest = load_bundle(demo_bundle).manifest
    src = demo_bundle / manifest.component("vae_decoder", "fp32").file
    feeds = calibration.samples["vae_decoder"]
    model = onnx.load(str(src))
    ranges = q.activation_ranges(src, feeds, [n.name for n in q.weighted_nodes(model)], percentile=100.0)
    baseline = q.choose_exclusions("vae_decoder", src, tmp_path / "a.onnx", ranges.ranges, feeds, target=1.0,
                                   work_dir=tmp_path)
    assert baseline.sensitivity == [] and baseline.excluded_groups == []  # recipe alone meets a loose target
    choice = q.choose_exclusions("vae_decoder", src, tmp_path / "b.onnx", ranges.ranges, feeds,
                                 target=baseline.error_all * 0.9, work_dir=tmp_path)
    errors = [s.error for s in choice.sensitivity]
    assert len(errors) > 1 and errors == sorted(errors, reverse=True)
    assert choice.excluded_groups and choice.excluded_groups[0] == choice.sensitivity[0].group
    assert choice.error < choice.error_all
    excluded = {n for names in choice.excluded.values() for n in names}
    assert f"sensitive:{choice.excluded_groups[0]}" in choice.excluded
    assert not q.quantized_node_names(choice.path) & excluded
    assert len(q.quantized_node_names(choice.path)) == choice.quantized_nodes
    # max_abs is the final graph's (not an intermediate candidate's), against fp32
    final = q.max_abs_error(q.run_graph(choice.path, feeds), q.run_graph(src, feeds))
    assert choice.max_abs == final > 0


def test_smoothing_is_an_exact_float_rewrite_of_the_skip_convs(demo_bundle, calibration, tmp_path):
    """SmoothQuant's rewrite (x / s into a Mul, s into the conv weights) must not change the
    float graph; it must find the up-path skip convs by structure and shrink their input range."""
    manifest = load_bundle(demo_bundle).manifest
    src = demo_bundle / manifest.component("denoiser", "fp32").file
    feeds = calibration.samples["denoiser"]
    model = onnx.load(str(src))
    targets = q.smoothing_targets(model)
    assert targets and all("skip" in n for n in targets), targets
    maxima = q.channel_absmax(src, feeds, targets)
    assert all(m.shape[0] == len(feeds) and m.shape[1] > 1 for m in maxima.values())
    smoothed = tmp_path / "smoothed.onnx"
    ranges, done = q.smooth_graph(src, smoothed, maxima, alpha=0.5)
    assert [d.node for d in done] == targets and len(ranges) == len(targets)
    graph = onnx.load(str(smoothed)).graph
    assert sum(n.op_type == "Mul" and n.name.endswith("/smooth_mul") for n in graph.node) == len(targets)
    reference, rewritten = q.run_graph(src, feeds), q.run_graph(smoothed, feeds)
    assert q.relative_l2(rewritten, reference) < 1e-5
    # the int8 range handed to the quantiser for each smoothed input is the one the graph computes
    after = q.channel_absmax(smoothed, feeds, targets)
    for d in done:
        smoothed_input = f"{d.node}/smoothed_input"
        assert ranges[smoothed_input] == pytest.approx(np.percentile(after[d.node].max(axis=1), 99.0), rel=1e-4)
        assert 0 < d.scale_min <= d.scale_max
    with pytest.raises(ValueError, match="alpha"):
        q.smooth_graph(src, smoothed, maxima, alpha=1.5)


def test_transnetv2_int8_finds_the_same_cuts(demo_bundle, calibration, clip_folder, tmp_path):
    """TransNetV2 (2D convs since 2026-11-26) quantised at its default target: every conv but the
    recipe's first layer int8, its own target recorded, the probabilities within a few hundredths
    of fp32's and the same cut frames on the real clip."""
    from vem.export.int8 import COMPONENT_TARGETS, export_int8_bundle
    from vem.runtime.transitions import transition_frames

    out = tmp_path / "int8-transitions"
    export_int8_bundle(None, out, fp32_bundle=demo_bundle, progress=None, calibration=calibration,
                       components=("transitions",), sensitivity=False, gate=False, min_speedup=0.0)
    entry = load_bundle(out).manifest.component("transitions", "int8")
    notes = entry.notes
    assert notes["target_rel_l2"] == COMPONENT_TARGETS["transitions"]
    assert notes["rel_l2"] <= notes["target_rel_l2"]
    assert notes["max_abs_vs_fp32"] < 0.05
    assert notes["excluded_nodes"].keys() <= {"first_layer", "last_layer", "attention_bmm"}
    int8_graph = onnx.load(str(out / entry.file))
    assert sum(n.op_type == "QuantizeLinear" for n in int8_graph.graph.node) >= 25
    fp32_probs, int8_probs = (
        Pipeline.load(out, backend="onnxruntime", precision=p).generate(clip_folder / "clip.mp4", seed=0, steps=1)
        .transition_probabilities for p in ("fp32", "int8"))
    assert np.abs(fp32_probs - int8_probs).max() < 0.05
    assert list(transition_frames(fp32_probs)) == list(transition_frames(int8_probs))
    assert len(transition_frames(fp32_probs)) == 2  # the clip's two cuts
