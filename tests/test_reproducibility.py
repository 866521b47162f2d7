"""Reproducibility (issue #9): on the CPU the same bundle, seed and settings give the same audio bit
for bit, across separately loaded pipelines and across vem-run runs; and a run's report holds
everything needed to make that run again, which is checked by doing it from the report alone."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from media import write_minimal_parse, write_test_video  # noqa: E402

import vem.runtime  # noqa: E402
from vem.runtime.audio import to_pcm16  # noqa: E402
from vem.runtime.parse_schema import load_parse  # noqa: E402
from vem.runtime.pipeline import Pipeline  # noqa: E402
from vem.runtime.run import main as vem_run  # noqa: E402


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("repro")
    return write_test_video(folder / "clip.mp4", seconds=1.5, size=(96, 64), cut_times=[0.75], moving_square=True)


def test_same_seed_same_backend_bit_identical_across_pipelines(demo_bundle, clip):
    """Two pipelines loaded separately (new ONNX Runtime sessions), one after the other."""
    first = Pipeline.load(demo_bundle, backend="onnxruntime").generate(clip.path, steps=2, seed=11)
    second = Pipeline.load(demo_bundle, backend="onnxruntime").generate(clip.path, steps=2, seed=11)
    assert first.waveform.dtype == np.float32
    assert first.waveform.tobytes() == second.waveform.tobytes()
    assert first.report["parse"]["transitions_s"] == second.report["parse"]["transitions_s"]
    assert first.report["metrics"] == second.report["metrics"]


def test_report_records_everything_to_reproduce_the_run(demo_bundle, clip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parse_path = write_minimal_parse(tmp_path / "edited.json", 1.5, tags=("calm", "piano"), transitions_s=(0.75,))
    argv = [clip.path, "--bundle", str(demo_bundle), "--precision", "fp32", "--backend", "onnxruntime",
            "--seed", "5", "--steps", "2", "--guidance", "2.5", "--tags", "dark,synth", "--caption", "night drive",
            "--parse", parse_path, "-q"]
    assert vem_run([*argv, "-o", "a.wav", "--report", "a.json"]) == 0
    report = json.loads((tmp_path / "a.json").read_text())

    manifest = Path(demo_bundle) / "manifest.json"
    assert report["vem_version"] == vem.runtime.__version__
    assert report["bundle"]["path"] == str(demo_bundle)
    assert report["bundle"]["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert (report["precision"], report["backend"], report["seed"], report["steps"], report["guidance"]) == \
        ("fp32", "onnxruntime", 5, 2, 2.5)
    assert report["sampler"] == json.loads(manifest.read_text())["sampler"]["name"]
    assert report["overrides"] == {"tags": ["dark", "synth"], "caption": "night drive", "bpm": None}
    assert report["parse"]["source"] == "user"
    assert report["parse"]["source_file"] == {"file": parse_path,
                                              "sha256": hashlib.sha256(Path(parse_path).read_bytes()).hexdigest()}
    assert {"python", "numpy", "onnxruntime", "av"} <= set(report["environment"])

    # The same command again: the same file, byte for byte.
    assert vem_run([*argv, "-o", "b.wav"]) == 0
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()

    # And the run made again from the report alone (no argv), through the Python API.
    pipeline = Pipeline.load(report["bundle"]["path"], backend=report["backend"], precision=report["precision"])
    again = pipeline.generate(
        report["video"]["path"], parse=load_parse(report["parse"]["source_file"]["file"]),
        tags=report["overrides"]["tags"], caption=report["overrides"]["caption"], steps=report["steps"],
        guidance=report["guidance"], seed=report["seed"], sampler=report["sampler"])
    # The file holds 16-bit PCM: compare its samples with the regenerated waveform quantised the same way.
    with wave.open(str(tmp_path / "a.wav"), "rb") as written:
        assert written.getframerate() == report["music"]["sample_rate"]
        samples = np.frombuffer(written.readframes(written.getnframes()), dtype="<i2")
    assert np.array_equal(to_pcm16(again.waveform).reshape(-1), samples)
    assert again.report["parse"]["global"] == report["parse"]["global"]
