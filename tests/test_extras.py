"""Commands that need an optional extra name it and exit 2, without a traceback, when its packages
are absent. Absence is made here by blocking the imports in a fresh interpreter (a None entry in
sys.modules, Python's documented way); tests/test_light_install.py checks the same in a real
venv without the extras (slow)."""

import subprocess
import sys

import pytest

from vem.runtime.extras import installed, missing_extra

CASES = [
    ("vem.runtime.cli", "eval_main", ["r.json"], ("librosa", "madmom"), "eval"),  # default tracker: madmom, else librosa
    ("vem.runtime.cli", "run_main", ["x.mp4", "--ray", "local"], ("ray",), "cluster"),
    ("vem.training.cli", "synth_main", ["--out", "x", "--count", "1"], ("scipy", "skimage"), "synth"),
    ("vem.training.cli", "train_main", ["vae", "--data", "x"], ("torch",), "export"),
    ("vem.export.cli", "main", ["--config", "demo", "--out", "x"], ("torch",), "export"),
    ("vem.export.cli", "main", ["--precision", "int8", "--out", "x"], ("skimage",), "export"),
]


@pytest.mark.parametrize("module,function,argv,blocked,extra", CASES)
def test_missing_extra_is_named_with_exit_2(tmp_path, module, function, argv, blocked, extra):
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        f"from {module} import {function}\n"
        f"sys.exit({function}({argv!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 2, done.stderr
    assert f'pip install "vem[{extra}]"' in done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()  # one line (vem-run's form: error, then its hint)
    assert len(lines) == 1 or (len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "))
    assert not (tmp_path / "x").exists()  # nothing was written


def test_missing_extra_lists_only_what_is_absent():
    assert installed("numpy") and not installed("vem_no_such_module")
    assert missing_extra(("numpy",), "eval", "x") is None
    error = missing_extra(("numpy", "vem_no_such_module"), "eval", "vem-eval")
    assert error.exit_code == 2 and "vem_no_such_module" in error.message and "numpy" not in error.message
    assert error.hint == 'pip install "vem[eval]"'
