"""What a user imports from `vem.runtime`, and `vem-export`'s readable output.

- every public name imports from the package itself (`from vem.runtime import Pipeline`), is the
  object its module defines, and loading the package alone does not load the pipeline (the names
  are lazy: `vem-run --help` and `import vem.runtime` stay light);
- a real export (`vem-export`, a real subprocess) shows none of ONNX Runtime's optimiser warnings or
  torch's tracer warnings unless ``--verbose``; its manifest records the source without a path.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import vem.runtime

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "model" / "weights" / "vem-demo.safetensors"


def test_every_public_name_imports_from_the_package():
    from vem.runtime import (  # noqa: F401  (the import is the test)
        BundleError,
        Generation,
        InputError,
        OutputError,
        Pipeline,
        Progress,
        UsageError,
        VemError,
        load_bundle,
        write_audio,
    )

    assert set(vem.runtime.__all__) == {*vem.runtime._LAZY, "VemConfig", "demo_config", "get_config",
                                        "paper_config"}
    for name in vem.runtime.__all__:
        value = getattr(vem.runtime, name)
        module = vem.runtime._LAZY.get(name, "config")
        assert value is getattr(importlib.import_module(f"vem.runtime.{module}"), name), name
    assert Pipeline.__module__ == "vem.runtime.pipeline" and issubclass(UsageError, VemError)
    assert set(dir(vem.runtime)) >= set(vem.runtime.__all__)
    with pytest.raises(AttributeError, match="no_such_name"):
        vem.runtime.no_such_name  # noqa: B018


def test_the_docstring_example_names_resolve():
    """The module docstrings' `from vem.runtime import ...` lines name real public objects."""
    for module in ("vem.runtime", "vem.runtime.pipeline"):
        doc = importlib.import_module(module).__doc__
        lines = [line.strip() for line in doc.splitlines() if line.strip().startswith("from vem.runtime import")]
        assert lines, module
        for line in lines:
            for name in line.split("import", 1)[1].split(","):
                assert name.strip() in vem.runtime.__all__, (module, name)


def test_importing_the_package_loads_neither_the_pipeline_nor_onnxruntime():
    code = ("import sys, vem.runtime\n"
            "heavy = sorted(m for m in sys.modules if m in ('vem.runtime.pipeline', 'vem.runtime.backends', "
            "'onnxruntime', 'av', 'torch'))\n"
            "print(heavy)\n"
            "from vem.runtime import Pipeline\n"
            "print('vem.runtime.pipeline' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True"]


NOISE = ("[W:onnxruntime", "UnsqueezeElimination", "TracerWarning", "Warning:")


def test_a_real_export_is_quiet_and_records_no_build_machine_path(tmp_path):
    """The cheapest whole export: the shipped checkpoint (given by its absolute path) at fp32 with
    a 3 s window (~50 s on 2 cores). Without the quieting, its stderr had ~30 coloured ONNX Runtime
    `UnsqueezeElimination cannot remove node` lines and torch's "Constant folding" UserWarnings."""
    out = tmp_path / "bundle"
    done = subprocess.run(
        [sys.executable, "-m", "vem.export.cli", "--checkpoint", str(CHECKPOINT), "--precision", "fp32", "--max-seconds", "3",
         "--max-storyboards", "3", "--engines", "no", "--out", str(out)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "bundle:" in done.stdout and "parity error" in done.stdout
    noisy = [line for line in done.stderr.splitlines() if any(mark in line for mark in NOISE)]
    assert noisy == [], noisy[:5]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["built_with"]["source"] == "vem-demo.safetensors"  # not the path given
    assert str(ROOT) not in (out / "manifest.json").read_text()
