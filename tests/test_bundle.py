"""Manifest validation and bundle loading (hashes, missing files, bad fields)."""

import json

import pytest

from vem.runtime.bundle import (
    COMPONENTS,
    ComponentEntry,
    Manifest,
    TensorSpec,
    load_bundle,
    sha256_file,
    validate_manifest_data,
)
from vem.runtime.config import demo_config
from vem.runtime.errors import BundleError


def make_bundle(folder):
    components = []
    for name in COMPONENTS:
        path = folder / f"{name}.onnx"
        path.write_bytes(name.encode() * 100)
        components.append(ComponentEntry(
            name=name, precision="fp32", file=path.name, sha256=sha256_file(path), bytes=path.stat().st_size,
            inputs=[TensorSpec("x", "float32", ["batch", 8, "frames", 16])],
            outputs=[TensorSpec("y", "float32", ["batch", "frames"])],
        ))
    manifest = Manifest(
        config=demo_config(), sampler={"name": "dpmpp_2m", "steps": 25, "guidance": 3.0},
        text_encoder={"kind": "hashed-bow", "version": 1, "dim": 128}, tags=["calm", "dark"],
        components=components,
    )
    manifest.write(folder)
    return manifest


def test_round_trip(tmp_path):
    written = make_bundle(tmp_path)
    bundle = load_bundle(tmp_path)
    assert bundle.manifest.to_dict() == written.to_dict()
    assert bundle.manifest.component("denoiser", "fp16").precision == "fp32"  # falls back to fp32


def test_hash_mismatch_is_refused(tmp_path):
    make_bundle(tmp_path)
    (tmp_path / "vocoder.onnx").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="vocoder.*does not match its manifest hash"):
        load_bundle(tmp_path)


def test_missing_component_file(tmp_path):
    make_bundle(tmp_path)
    (tmp_path / "aligner.onnx").unlink()
    with pytest.raises(BundleError, match="aligner.*missing"):
        load_bundle(tmp_path)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not readable JSON"):
        load_bundle(tmp_path)


def test_validation_names_every_problem(tmp_path):
    data = make_bundle(tmp_path).to_dict()
    data["format_version"] = 99
    data["sampler"]["steps"] = "many"
    data["components"][0]["precision"] = "int4"
    data["components"][1]["file"] = "../../etc/passwd"
    data["components"][2]["inputs"][0]["shape"] = [-1]
    del data["components"][3]
    problems = "\n".join(validate_manifest_data(data))
    assert "format_version" in problems
    assert "sampler.steps: expected an integer" in problems
    assert "components[0].precision" in problems
    assert "components[1].file: must be a relative path" in problems
    assert "components[2].inputs[0].shape" in problems
    assert f"required component {COMPONENTS[3]!r}" in problems
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="invalid manifest"):
        load_bundle(tmp_path)
