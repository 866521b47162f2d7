"""benchmarks/device_check.py: the one GPU check, run here for real (a CPU machine: every GPU
section skips, each with the reason this machine gives), and its input maker checked against the
shipped bundle's graphs on ONNX Runtime's CPU provider (the GPU sections compare with those)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import device_check
from vem.runtime.backends.cuda import gpu_info
from vem.runtime.bundle import load_bundle
from vem.runtime.pipeline import default_bundle_path

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("device-check") / "check.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.device_check", "--out", str(out), "--budget-s", "200"],
                            cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(out.read_text()), out.with_suffix(".md").read_text(), result


def test_json_has_every_section_with_a_status_and_a_reason_when_not_ok(record):
    data, _, result = record
    assert data["tool"] == "vem-device-check" and data["version"] == 1
    assert list(data["sections"]) == list(device_check.SECTIONS)
    assert 0 < data["total_s"] < 300
    for name, section in data["sections"].items():
        assert section["status"] in device_check.STATUSES, name
        assert section["seconds"] >= 0
        if section["status"] != "ok":
            assert section["reason"] and "\n" not in section["reason"], name
    environment = data["sections"]["environment"]
    assert environment["status"] == "ok" and "CPUExecutionProvider" in environment["onnxruntime_providers"]
    assert environment["gpu"]["reason"] == gpu_info().reason
    assert result.returncode == (1 if any(s["status"] == "failed" for s in data["sections"].values()) else 0)


@pytest.mark.skipif(gpu_info().available, reason="a GPU is here: the GPU sections run instead of skipping")
def test_without_a_gpu_every_gpu_section_skips_with_this_machines_reason(record):
    sections = record[0]["sections"]
    assert sections["cuda_helpers"] == {"status": "skipped", "reason": gpu_info().reason,
                                        "seconds": sections["cuda_helpers"]["seconds"]}
    assert sections["torch_cuda_proxy"]["status"] == "skipped"
    assert "torch" in sections["torch_cuda_proxy"]["reason"]
    assert sections["tensorrt_engines"]["status"] == "skipped"
    if importlib.util.find_spec("tensorrt") is None:
        assert sections["tensorrt_engines"]["reason"].startswith("TensorRT not installed")
    assert sections["onnxruntime_gpu"]["status"] == "skipped"


def test_table_has_a_row_per_section(record):
    data, table, _ = record
    lines = table.strip().splitlines()
    assert lines[0].startswith("| check | status |")
    for name, section in data["sections"].items():
        assert any(line.startswith(f"| {name} | {section['status']} |") for line in lines), name


def test_the_committed_cpu_record_has_the_same_shape():
    data = json.loads((ROOT / "benchmarks" / "results" / "device-check-cpu.json").read_text())
    assert data["tool"] == "vem-device-check" and list(data["sections"]) == list(device_check.SECTIONS)
    assert all(s["status"] in device_check.STATUSES and (s["status"] == "ok" or s["reason"])
               for s in data["sections"].values())


def test_inputs_fit_every_shipped_graph_at_its_typical_shapes():
    """The GPU sections feed every component these inputs and compare with ONNX Runtime's CPU
    provider: here the CPU side runs them for real and gives finite outputs of the graph's types."""
    bundle = load_bundle(default_bundle_path())
    manifest = bundle.manifest
    precision = manifest.precisions()[0]
    for entry in [e for e in manifest.components if e.precision == precision]:
        feeds = device_check._feeds(entry, manifest)
        assert set(feeds) == {spec.name for spec in entry.inputs}
        outputs, ms = device_check._cpu_reference(bundle, entry.name, precision, feeds)
        assert set(outputs) == {spec.name for spec in entry.outputs} and ms > 0
        assert all(np.isfinite(value).all() for value in outputs.values()), entry.name
        assert device_check._relative(outputs, outputs) == 0.0


def test_budget_skips_a_step_that_would_start_too_late():
    clock = device_check.Clock(budget_s=0.0)
    with pytest.raises(device_check.Skip, match="time budget"):
        clock.need(10, "an engine")


def test_table_lists_every_component_row_of_a_gpu_record():
    """The GPU sections cannot run here; their rows are formatted from a record of their shape."""
    section = {"status": "ok", "reason": "", "seconds": 3.0, "precision": "fp16", "tensorrt": "TensorRT 10.3.0",
               "components": {"visual": {"status": "ok", "max_rel_vs_cpu": 1e-3, "trt_ms": 0.5, "cpu_ms": 20.0,
                                         "build_s": 3.0},
                              "denoiser": {"status": "failed", "reason": "RuntimeError: engine build failed"}},
               "end_to_end": {"status": "ok", "components": {"visual": {"backend": "tensorrt",
                                                                       "provider": "TensorRT 10.3.0"}},
                              "timings_s": {"diffuse": 0.2, "total": 1.0}}}
    groups = device_check._component_groups("tensorrt_engines", section)
    assert [row["status"] for rows in groups.values() for row in rows.values()] == ["ok", "failed", "ok"]
    text = device_check.table({"sections": {"tensorrt_engines": section}})
    assert "| tensorrt_engines / TensorRT / visual | ok | | max_rel_vs_cpu 0.001, trt_ms 0.5" in text
    assert "| tensorrt_engines / TensorRT / denoiser | failed | | RuntimeError: engine build failed |" in text
    assert "visual tensorrt (TensorRT 10.3.0); diffuse 0.20 s, total 1.00 s" in text
