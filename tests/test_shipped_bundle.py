"""The default bundle shipped inside the package (`vem.runtime.pipeline.DEFAULT_BUNDLE`).

It is what `vem-run video.mp4` uses with no --bundle, so it must exist, validate, fit the 65 MB
budget and never drift from the shipped checkpoint: its manifest names the checkpoint's sha256,
and a fresh export from that checkpoint must compute the same outputs, graph by graph.
"""

from pathlib import Path

import numpy as np
import pytest

from vem.runtime.bundle import load_bundle, sha256_file
from vem.runtime.pipeline import DEFAULT_BUNDLE

CHECKPOINT = Path(__file__).resolve().parents[1] / "model" / "weights" / "vem-demo.safetensors"
# The fp16 set for GPUs (32.7 MB; +15 MB with TransNetV2's fp16-compute graph once re-exported)
# and the CPU set (int8 denoiser and aligner, fp32 visual encoder, VAE decoder and vocoder: 15.8 MB).
SIZE_BUDGET_BYTES = 65 * 1000 * 1000


def test_shipped_bundle_validates_fits_the_budget_and_names_the_shipped_checkpoint():
    bundle = load_bundle(DEFAULT_BUNDLE)  # checks every file's sha256 against the manifest
    total = sum(p.stat().st_size for p in Path(DEFAULT_BUNDLE).rglob("*") if p.is_file())
    assert total <= SIZE_BUDGET_BYTES, f"shipped bundle is {total / 1e6:.1f} MB"
    assert bundle.manifest.built_with.get("checkpoint_sha256") == sha256_file(CHECKPOINT), (
        "the shipped bundle was exported from another checkpoint: re-export it with "
        "`vem-export --precision fp16 --out runtime/assets/bundle --force`"
    )
    names = {entry.name for entry in bundle.manifest.components}
    assert names == {"transitions", "visual", "aligner", "denoiser", "vae_decoder", "vocoder"}


def test_a_fresh_export_of_the_checkpoint_computes_what_the_shipped_bundle_computes(tmp_path, transitions_graph):
    pytest.importorskip("torch")
    import onnxruntime as ort

    from vem.export.bundle_writer import export_bundle
    from vem.export.graphs import Size, component_specs

    shipped = load_bundle(DEFAULT_BUNDLE)
    config = shipped.manifest.config
    # int8 graphs come from a calibration run (vem-export --precision int8), not from export_bundle:
    # they are compared with the fresh fp32 graph of their component, within int8's error.
    precisions = [p for p in shipped.manifest.precisions() if p != "int8"]
    result = export_bundle(CHECKPOINT, tmp_path / "fresh", tuple(precisions), max_seconds=config.max_seconds,
                           max_storyboards=config.condition.max_storyboards, transitions_onnx=transitions_graph,
                           progress=None)
    fresh = load_bundle(result.folder)
    if "fp16" in precisions:
        # The fp16 export adds TransNetV2's fp16-compute graph for GPUs; a refreshed shipped
        # bundle with it still fits the budget.
        gpu = fresh.manifest.component("transitions", "fp16").notes["gpu_graph"]
        assert sha256_file(fresh.folder / gpu["file"]) == gpu["sha256"] and gpu["parity"]["max_abs"] < 3e-3
        # The refreshed shipped bundle: the fresh fp16 graphs (and that GPU graph) in place of the
        # shipped fp16 ones, the CPU set as shipped.
        total = sum((fresh.folder / fresh.manifest.component(e.name, "fp16").file).stat().st_size
                    if e.precision == "fp16" else e.bytes for e in shipped.manifest.components)
        total += (fresh.folder / gpu["file"]).stat().st_size
        assert total <= SIZE_BUDGET_BYTES, f"a refreshed bundle would be {total / 1e6:.1f} MB"
    specs = component_specs(config)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    for entry in shipped.manifest.components:
        if entry.name == "transitions":
            feeds = {"frames": np.random.default_rng(0).integers(0, 256, (1, 100, 27, 48, 3), dtype=np.uint8)}
        else:
            feeds = specs[entry.name].make_inputs(config, Size(seconds=2.0, storyboards=2), np.random.default_rng(0))
        outputs = []
        for bundle in (shipped, fresh):
            precision = "fp32" if bundle is fresh and entry.precision == "int8" else entry.precision
            path = bundle.path(bundle.manifest.component(entry.name, precision))
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            wanted = {i.name for i in session.get_inputs()}
            outputs.append(session.run(None, {k: v for k, v in feeds.items() if k in wanted}))
        # int8: the export's gate measured 0.010 (aligner) and 0.031 (denoiser) relative error.
        bound = 0.1 if entry.precision == "int8" else 1e-5
        for old, new in zip(*outputs):
            scale = max(float(np.abs(old).max()), 1e-6)
            assert float(np.abs(old - new).max()) <= bound * scale, f"{entry.name} ({entry.precision}) drifted"


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_the_manifest_records_no_path_of_the_build_machine():
    """Where the bundle came from is the checkpoint's file name and sha256, not a folder on the
    machine that exported it (`built_with.source`, and the same inside `built_with.added`)."""
    import json

    data = json.loads((DEFAULT_BUNDLE / "manifest.json").read_text())
    recorded = [*_strings(data.get("built_with")), *_strings(data.get("calibration"))]
    assert recorded and not [s for s in recorded if Path(s).is_absolute() or "/" in s or "\\" in s]
    assert data["built_with"]["source"] == CHECKPOINT.name
    assert all(added["source_built_with"]["source"] == CHECKPOINT.name for added in data["built_with"]["added"])
