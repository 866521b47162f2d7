"""ONNX external data: graphs over protobuf's 2 GiB limit keep their weights in ``<graph>.data``.

The real >2 GB case (a 2.4 GB graph through export, cleaning, fp16 and ONNX Runtime) is
`test_a_graph_over_2_gib_exports_cleans_converts_and_runs` (slow) and benchmarks/external_data.py.
Here a low threshold (`onnx_utils.external_data_above`, what `vem-export --external-data-above`
sets) puts the demo model's larger graphs in the external form, so that every path a >2 GB
graph takes through vem is exercised on real graphs in seconds: the export, the manifest's
record and hash of the data file, vem-run, the optimized-graph cache, combine and int8.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from vem.export import onnx_utils  # noqa: E402
from vem.runtime.bundle import MANIFEST_NAME, BundleError, load_bundle  # noqa: E402
from vem.runtime.run import main as vem_run  # noqa: E402

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from conftest import MAX_SECONDS  # noqa: E402
from media import write_test_video  # noqa: E402

# Above 1 MB: the demo's denoiser, VAE decoder and TransNetV2 graphs (and the fp32 ones of the
# others) go external; the smaller fp16 graphs stay self-contained, so a bundle mixes both forms
# as a real one would.
LOW_THRESHOLD = 1_000_000
STEPS = ["--steps", "3"]


def _matmul_model(weight_values: int, seed: int = 0):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    width = int(np.sqrt(weight_values))
    weight = rng.standard_normal((width, width)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])],
        [numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), weight


@pytest.fixture(scope="module")
def external_bundle(tmp_path_factory, transitions_graph):
    """The same export as conftest's ``exported`` (demo config, seed 0, fp32 + fp16), in the
    external form above 100 kB."""
    from vem.export.bundle_writer import export_bundle

    folder = tmp_path_factory.mktemp("external-bundle")
    with onnx_utils.external_data_above(LOW_THRESHOLD):
        export_bundle("demo", folder, ("fp32", "fp16"), max_seconds=MAX_SECONDS, max_storyboards=8,
                      transitions_onnx=transitions_graph, progress=None)
    return folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("external-video") / "clip.mp4"
    return write_test_video(path, codec="h264", fps=25, size=(160, 96), seconds=3.0, cut_times=[1.0, 2.0],
                            moving_square=True).path


def test_save_model_picks_the_form_by_size_and_removes_a_stale_data_file(tmp_path):
    import onnx
    import onnxruntime as ort

    model, weight = _matmul_model(600 * 600)  # 1.44 MB of weights
    path = tmp_path / "m.onnx"
    with onnx_utils.external_data_above(LOW_THRESHOLD):
        onnx_utils.save_model(model, path)
    data = onnx_utils.data_file_of(path)
    assert data.name == "m.onnx.data" and data.stat().st_size == weight.nbytes
    assert path.stat().st_size < 1000  # the graph alone
    assert data.stat().st_mode & 0o044 == path.stat().st_mode & 0o044  # as readable as the graph
    onnx.checker.check_model(str(path), full_check=True)
    x = np.ones((1, 600), np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x})[0], x @ weight, rtol=1e-4, atol=1e-4)
    # Saved again under the default threshold: one file, and the old data file is gone.
    onnx_utils.save_model(onnx.load(str(path)), path)
    assert not data.exists() and onnx_utils.graph_bytes(path) > weight.nbytes
    np.testing.assert_allclose(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0], x @ weight, rtol=1e-4, atol=1e-4)


def test_copy_graph_under_another_name_rewrites_the_data_reference(tmp_path):
    import onnxruntime as ort

    model, weight = _matmul_model(600 * 600)
    with onnx_utils.external_data_above(LOW_THRESHOLD):
        src = onnx_utils.save_model(model, tmp_path / "a" / "m.onnx")
        same = onnx_utils.copy_graph(src, tmp_path / "b" / "m.onnx")
        renamed = onnx_utils.copy_graph(src, tmp_path / "c" / "renamed.onnx")
    assert onnx_utils.has_external_data(same) and onnx_utils.has_external_data(renamed)
    shutil.rmtree(tmp_path / "a")  # the copies must not read the source's data file
    x = np.ones((1, 600), np.float32)
    for path in (same, renamed):
        out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        np.testing.assert_allclose(out, x @ weight, rtol=1e-4, atol=1e-4)


def test_default_threshold_keeps_every_demo_graph_self_contained(demo_bundle):
    assert not list(Path(demo_bundle).glob("*.data"))
    assert all(entry.external_data is None for entry in load_bundle(demo_bundle).manifest.components)


def test_export_records_and_hashes_each_external_data_file(external_bundle):
    bundle = load_bundle(external_bundle)
    external = {(e.name, e.precision): e for e in bundle.manifest.components if e.external_data}
    inline = [e for e in bundle.manifest.components if not e.external_data]
    assert {("denoiser", "fp32"), ("denoiser", "fp16"), ("vae_decoder", "fp32"), ("transitions", "fp32")} <= set(external)
    assert inline, "graphs under the threshold stay one file"
    for entry in external.values():
        data = external_bundle / entry.external_data["file"]
        assert data.name == Path(entry.file).name + ".data"
        assert entry.external_data["bytes"] == data.stat().st_size
        assert entry.total_bytes == entry.bytes + data.stat().st_size
        assert entry.bytes < LOW_THRESHOLD < entry.external_data["bytes"]  # the weights moved out
        assert onnx_utils.sha256_file(data) == entry.external_data["sha256"]
    for entry in inline:
        assert not onnx_utils.data_file_of(external_bundle / entry.file).exists()
    # The data files are exactly the ones the manifest records (no strays from scratch work).
    recorded = {e.external_data["file"] for e in external.values()}
    gpu = [e.notes["gpu_graph"] for e in bundle.manifest.components if "gpu_graph" in e.notes]
    recorded |= {g["external_data"]["file"] for g in gpu if "external_data" in g}
    assert {p.name for p in external_bundle.glob("*.data")} == recorded


def test_graphs_and_output_are_those_of_the_self_contained_export(external_bundle, demo_bundle, clip, tmp_path):
    """Storage only: every graph of the external-form bundle gives bit-identical outputs to the
    self-contained export's (the same seeded demo model) on the same inputs, and so does vem-run."""
    from vem.export import graphs
    from vem.runtime.audio import read_audio

    ext = load_bundle(external_bundle).manifest
    ref = load_bundle(demo_bundle).manifest
    assert {(e.name, e.precision) for e in ext.components} == {(e.name, e.precision) for e in ref.components}
    specs = graphs.component_specs(ext.config)
    rng = np.random.default_rng(0)
    for entry in ext.components:
        if entry.name == "transitions":
            feeds = {"frames": rng.integers(0, 256, (1, 100, 27, 48, 3), dtype=np.uint8)}
        else:
            feeds = specs[entry.name].make_inputs(ext.config, graphs.Size(2.0, 2, 1), rng)
        outputs = []
        for folder, manifest in ((external_bundle, ext), (demo_bundle, ref)):
            session = onnx_utils.make_session(folder / manifest.component(entry.name, entry.precision).file)
            names = {i.name for i in session.get_inputs()}
            outputs.append(session.run(None, {k: v for k, v in feeds.items() if k in names}))
        for got, want in zip(*outputs):
            np.testing.assert_array_equal(got, want, err_msg=f"{entry.name} {entry.precision}")
    waves = {}
    for name, folder in (("external", external_bundle), ("inline", demo_bundle)):
        out = tmp_path / f"{name}.wav"
        assert vem_run([str(clip), "--bundle", str(folder), "--precision", "fp16", *STEPS, "-o", str(out), "-q"]) == 0
        waves[name] = read_audio(out)[0]
    np.testing.assert_array_equal(waves["external"], waves["inline"])


@pytest.mark.parametrize("damage", ["flip", "truncate", "missing"])
def test_a_damaged_data_file_is_refused_with_its_name(external_bundle, tmp_path, clip, damage, capsys):
    folder = tmp_path / "bundle"
    shutil.copytree(external_bundle, folder)
    data = folder / "denoiser.fp16.onnx.data"
    if damage == "flip":
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
    elif damage == "truncate":
        with open(data, "r+b") as handle:
            handle.truncate(data.stat().st_size - 4)
    else:
        data.unlink()
    with pytest.raises(BundleError, match="denoiser.fp16.onnx.data|external data"):
        load_bundle(folder)
    code = vem_run([str(clip), "--bundle", str(folder), *STEPS, "-o", str(tmp_path / "o.wav"), "-q"])
    assert code == BundleError.exit_code
    assert "external data" in capsys.readouterr().err
    assert not (tmp_path / "o.wav").exists()


def test_manifest_external_data_must_sit_beside_its_graph(external_bundle, tmp_path):
    folder = tmp_path / "bundle"
    shutil.copytree(external_bundle, folder)
    data = json.loads((folder / MANIFEST_NAME).read_text())
    entry = next(c for c in data["components"] if c.get("external_data"))
    entry["external_data"]["file"] = "../elsewhere.data"
    (folder / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="relative path inside the bundle"):
        load_bundle(folder)


def test_optimized_graph_cache_writes_and_reuses_external_weights(external_bundle, tmp_path):
    from vem.runtime.backends.onnxruntime import OnnxRuntimeBackend

    bundle = load_bundle(external_bundle)
    entry = bundle.manifest.component("vae_decoder", "fp32")
    assert entry.external_data
    rng = np.random.default_rng(0)
    shape = [16 if isinstance(d, str) else d for d in entry.inputs[0].shape]  # batch and frames: 16
    latent = rng.standard_normal(shape).astype(np.float32)
    outputs = []
    for _ in range(2):
        runner = OnnxRuntimeBackend(cache_dir=tmp_path / "cache", threads=1).load(entry, bundle=bundle)
        outputs.append(runner.run({"latent": latent}))
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert any(name.endswith(".onnx") for name in cached) and any(name.endswith(".onnx.data") for name in cached)
    assert runner.loaded_from != runner.path and runner.loaded_from.parent == tmp_path / "cache"
    for key in outputs[0]:
        np.testing.assert_array_equal(outputs[0][key], outputs[1][key])


def test_combine_copies_a_graph_with_its_data_file(external_bundle, tmp_path):
    from vem.export.combine import combine

    target = tmp_path / "target"
    shutil.copytree(external_bundle, target)
    data = json.loads((target / MANIFEST_NAME).read_text())
    dropped = [c for c in data["components"] if c["precision"] == "fp16"]
    data["components"] = [c for c in data["components"] if c["precision"] != "fp16"]
    for entry in dropped:
        for item in [entry] + ([entry["external_data"]] if entry.get("external_data") else []):
            (target / item["file"]).unlink()
    (target / MANIFEST_NAME).write_text(json.dumps(data))
    load_bundle(target)
    added = combine(target, external_bundle, [("denoiser", "fp16")])
    assert added == ["denoiser.fp16.onnx"]
    entry = load_bundle(target).manifest.component("denoiser", "fp16")
    assert entry.precision == "fp16" and entry.external_data
    assert (target / "denoiser.fp16.onnx.data").read_bytes() == (external_bundle / "denoiser.fp16.onnx.data").read_bytes()


def test_int8_from_an_external_fp32_bundle(external_bundle, clip, tmp_path):
    """--fp32-bundle copies the fp32 graphs with their data; calibration and quantisation read the
    external form and write the int8 graphs in it; vem-run runs the result."""
    from vem.calibration.recorder import record_calibration
    from vem.export.int8 import export_int8_bundle

    calibration = record_calibration(external_bundle, [clip], steps=3, seed=3)
    out = tmp_path / "int8"
    with onnx_utils.external_data_above(LOW_THRESHOLD):
        export_int8_bundle(None, out, fp32_bundle=external_bundle, progress=None, calibration=calibration,
                           components=("denoiser", "vocoder"), sensitivity=False, gate=False, min_speedup=0.0,
                           target=1.0)
    bundle = load_bundle(out)
    denoiser = bundle.manifest.component("denoiser", "int8")
    assert denoiser.precision == "int8" and denoiser.external_data
    assert bundle.manifest.component("denoiser", "fp32").external_data
    assert {p.name for p in out.glob("*.data")} >= {"denoiser.onnx.data", "denoiser.int8.onnx.data"}
    code = vem_run([str(clip), "--bundle", str(out), "--precision", "int8", *STEPS, "-o", str(tmp_path / "o.wav"),
                    "-q"])
    assert code == 0 and (tmp_path / "o.wav").stat().st_size > 1000


def test_engine_source_falls_back_when_the_gpu_graph_data_is_damaged(external_bundle, tmp_path):
    from vem.export.engines import engine_source

    folder = tmp_path / "bundle"
    shutil.copytree(external_bundle, folder)
    entry = load_bundle(folder).manifest.component("transitions", "fp16")
    gpu = entry.notes.get("gpu_graph")
    if not gpu or "external_data" not in gpu:
        pytest.skip("the fp16 TransNetV2 GPU graph was rejected by its parity check on this machine")
    path, why = engine_source(folder, entry)
    assert path.name == gpu["file"]
    data = folder / gpu["external_data"]["file"]
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0xFF
    data.write_bytes(bytes(raw))
    path, why = engine_source(folder, entry)
    assert path.name == entry.file and "do not match" in why


def test_cli_refuses_a_non_positive_threshold(capsys):
    from vem.export.cli import main

    assert main(["--config", "demo", "--external-data-above", "0", "--out", os.devnull]) == 2
    assert "--external-data-above" in capsys.readouterr().err


@pytest.mark.slow
def test_a_graph_over_2_gib_exports_cleans_converts_and_runs(tmp_path):
    """The real case, at the default threshold: benchmarks/external_data.py's 2.4 GB graph."""
    from benchmarks.external_data import run

    result = run(9, tmp_path / "work")
    steps = result["steps"]
    assert result["weights_bytes"] > 2**31
    for step in ("export_onnx", "clean_graph"):
        assert steps[step]["external_data"] and steps[step]["graph_bytes"] < 10**6
    for step in ("convert_to_fp16", "store_weights_fp16"):  # half the size: one file again
        assert not steps[step]["external_data"] and steps[step]["graph_bytes"] > 10**9
    assert steps["run_fp32"]["max_rel"] < 1e-4
    assert steps["run_fp16_storage"]["max_rel"] < 3e-3
    assert steps["run_fp16_compute"]["max_rel"] < 3e-2


def test_cleaning_in_the_external_form_folds_as_much(external_bundle, demo_bundle):
    """clean_graph infers shapes from the file for an external-form graph (in memory it would not
    fit over 2 GiB): the cleaned graphs have the node counts of the self-contained export."""
    ext = load_bundle(external_bundle).manifest
    ref = load_bundle(demo_bundle).manifest
    compared = [e for e in ext.components if e.external_data and "nodes_clean" in e.notes]
    assert {e.name for e in compared} >= {"denoiser", "vae_decoder"}
    for entry in compared:
        want = ref.component(entry.name, entry.precision).notes
        assert (entry.notes["nodes_traced"], entry.notes["nodes_clean"]) == (want["nodes_traced"], want["nodes_clean"])
