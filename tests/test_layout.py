"""Package layout rules from docs/architecture.md that a refactor could silently break."""

import subprocess
import sys

import pytest

SCRIPTS = ["vem-run", "vem-export", "vem-bench", "vem-synth", "vem-eval", "vem-train"]


def test_runtime_does_not_import_torch():
    code = (
        "import sys, vem.runtime, vem.runtime.sampler, vem.runtime.cli;"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.') "
        "or (m.startswith('vem.') and not m.startswith('vem.runtime')));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"vem.runtime pulled in: {result.stdout} {result.stderr}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_console_script_help(script):
    import os
    import shutil

    # Prefer the script beside this interpreter (a venv that is not activated), then PATH.
    beside = os.path.join(os.path.dirname(sys.executable), script)
    path = beside if os.path.exists(beside) else shutil.which(script)
    assert path, f"{script} is not installed on PATH (pip install -e . declares it)"
    result = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
