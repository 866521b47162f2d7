"""The base install is the light runtime: a fresh Python 3.10 venv with `pip install .` holds none
of torch, numba, llvmlite, scipy, scikit-learn or librosa, `vem-run` in it writes a soundtrack
whose report has a rhythm measure, and the tools that need an extra name it (exit 2, no
traceback). Measured by benchmarks/light_install.py; slow (a real pip install, ~1 min).

Size: issue 21 asks for <= 300 MB. Measured 359 MB on Python 3.10 (benchmarks/results/
light_install_py310.json; 708 MB with librosa), and 300 cannot be reached by vem alone: the base
dependencies' own files come to 310 MB (PyAV with its FFmpeg 106 MB, numpy 68 MB, onnxruntime
52 MB plus the sympy and mpmath it requires on 3.10 (1.23.2 is its last release there) 61 MB,
protobuf and the rest ~5 MB, the venv's own pip and setuptools 22 MB); vem adds 49 MB (the
shipped bundle 47 MB; the 17 MB training checkpoint stays out of the wheel: 375 MB and 65 MB
with it). The test holds the measured size, plus a
little, as a ceiling (so librosa and its ~350 MB cannot come back unnoticed); the JSON records
the gap to 300 MB.
"""

import os

import pytest

from benchmarks.light_install import HEAVY, PYTHON310, measure

CEILING_MB = 370


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(PYTHON310), reason=f"no Python 3.10 interpreter at {PYTHON310}")
def test_fresh_310_venv_is_light_and_runs(tmp_path):
    result = measure(PYTHON310, tmp_path)
    assert result["python"].startswith("3.10")
    assert result["heavy_installed"] == [], result["packages"]
    names = {p.split("==")[0] for p in result["packages"]}
    assert not names & set(HEAVY)
    assert {"numpy", "av", "onnxruntime", "tqdm", "vem"} <= names
    assert result["venv_mb"] <= CEILING_MB, result["largest_mb"]
    run = result["vem_run"]
    assert run["exit"] == 0, run["stderr"]
    assert run["beat_tracker"] == "numpy" and run["beats"] >= 4
    assert run["metrics"]["hit_70ms"] is not None and 0.0 <= run["metrics"]["tbiou"] <= 1.0
    assert result["checkpoints_installed"] == []
    for command in ("vem-eval", "vem-synth", "vem-train", "vem-export"):
        done = result["commands"][command]
        assert done["exit"] == 2 and done["names_extra"] and not done["traceback"], (command, done["stderr"])
    assert result["commands"]["vem-eval --beat-tracker numpy"]["exit"] == 0
    engines = result["commands"]["vem-export --from-bundle --engines yes"]
    # the base install has no TensorRT (nor torch): exit 4 naming TensorRT
    assert engines["exit"] == 4 and engines["names_tensorrt"] and not engines["traceback"], engines["stderr"]
