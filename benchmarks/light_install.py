"""The light runtime install, measured: a fresh virtual environment, `pip install .` (no extras),
then what it holds, how big it is, and what its commands do.

    python benchmarks/light_install.py [--python /root/.pyenv/versions/3.10.13/bin/python]
                                       [--json benchmarks/results/light_install_py310.json]

Checks (each recorded in the JSON, with the measured figures):

- none of the heavy packages is installed (torch, numba, llvmlite, scipy, scikit-learn, librosa);
- the venv's size (``du -sm``), and the largest packages in it;
- `vem-run` on a small real mp4 (the shipped bundle, 2 steps) exits 0 and its report has a rhythm
  measure (beats from the numpy tracker, TBIoU, the 70 ms hit rate) and the "analyse" stage's time;
- the tools that need an extra say which and exit 2 without a traceback: `vem-eval` (librosa's
  tracker: extra ``eval``; ``--beat-tracker numpy`` works without it), `vem-synth` (``synth``),
  `vem-train` and `vem-export` (``export``); the wheel holds no training checkpoint;
  `vem-export --from-bundle DIR --engines yes` (no torch needed) exits 4 naming TensorRT when it is absent.

pip resolves against the machine's configured indexes (its cache and local wheel folders make it
work offline here). tests/test_light_install.py runs it (slow-marked).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON310 = "/root/.pyenv/versions/3.10.13/bin/python"
HEAVY = ("torch", "numba", "llvmlite", "scipy", "scikit-learn", "librosa")
SIZE_BUDGET_MB = 300  # issue 21's target for the venv of `pip install .` on Python 3.10
# Which extra each command must name when its packages are absent (vem.runtime.extras).
EXTRA_COMMANDS = {
    "vem-eval": ("eval", ["REPORT"]),
    "vem-synth": ("synth", ["--out", "OUT", "--count", "1"]),
    "vem-train": ("export", ["vae", "--data", "OUT"]),
    "vem-export": ("export", ["--config", "demo", "--out", "OUT"]),
}


def _du_mb(path: Path) -> int:
    return int(subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def _largest(site_packages: Path, count: int = 12) -> dict[str, int]:
    sizes = {entry.name: _du_mb(entry) for entry in site_packages.iterdir()}
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:count])


def measure(python: str, work: Path, repo: Path = ROOT) -> dict:
    """Build the venv under ``work`` with ``python`` and measure it (module docstring)."""
    sys.path.insert(0, str(repo / "tests"))
    from media import write_test_video  # the tests' real-mp4 writer (PyAV, in this interpreter)

    venv = work / "venv"
    started = time.perf_counter()
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(repo)], capture_output=True, text=True)
    if pip.returncode != 0:
        raise RuntimeError(f"pip install failed:\n{pip.stderr[-4000:]}")
    install_s = time.perf_counter() - started
    listing = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import importlib.metadata as m, json, sys; "
         "print(json.dumps({'python': sys.version.split()[0], 'packages': sorted("
         "f\"{d.metadata['Name'].lower()}=={d.version}\" for d in m.distributions())}))"],
        capture_output=True, text=True, check=True, cwd=work)  # not the repository: its egg-info would count
    env = json.loads(listing.stdout)
    names = {p.split("==")[0] for p in env["packages"]}
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    result: dict = {
        "python": env["python"], "install_s": round(install_s, 1), "packages": env["packages"],
        "heavy_installed": sorted(h for h in HEAVY if h in names),
        "venv_mb": _du_mb(venv), "size_budget_mb": SIZE_BUDGET_MB, "largest_mb": _largest(site_packages),
        "vem_package_mb": _du_mb(site_packages / "vem"),
        # the training checkpoint stays out of the wheel (the runtime reads only the bundle)
        "checkpoints_installed": sorted(p.name for p in (site_packages / "vem").rglob("*.safetensors")),
    }
    # What the venv would weigh with no vem files at all: the floor that the dependencies set.
    result["without_vem_mb"] = result["venv_mb"] - result["vem_package_mb"]
    result["over_budget_mb"] = max(0, result["venv_mb"] - SIZE_BUDGET_MB)

    video = write_test_video(work / "clip.mp4", codec="h264", fps=25, size=(160, 90), seconds=6.0,
                             cut_times=[1.5, 3.0, 4.5], moving_square=True)
    run_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VEM_BUNDLE")}
    started = time.perf_counter()
    run = subprocess.run([str(venv / "bin" / "vem-run"), str(video.path), "--steps", "2", "-o", str(work / "clip.wav"),
                          "--report", str(work / "r.json"), "-q"], capture_output=True, text=True, env=run_env,
                         cwd=work, timeout=900)
    result["vem_run"] = {"exit": run.returncode, "seconds": round(time.perf_counter() - started, 1),
                         "stderr": run.stderr[-2000:]}
    if run.returncode == 0:
        report = json.loads((work / "r.json").read_text())
        result["vem_run"].update({
            "beat_tracker": report["music"].get("beat_tracker"), "beats": len(report["music"]["beats_s"]),
            "metrics": report["metrics"], "analyse_s": round(report["timings_s"].get("analyse", float("nan")), 3),
            "total_s": round(report["timings_s"]["total"], 2),
        })
    commands = {}
    for command, (extra, argv) in EXTRA_COMMANDS.items():
        argv = [str(work / "r.json") if a == "REPORT" else str(work / "out") if a == "OUT" else a for a in argv]
        done = subprocess.run([str(venv / "bin" / command), *argv], capture_output=True, text=True, env=run_env,
                              cwd=work, timeout=300)
        commands[command] = {"exit": done.returncode, "stderr": done.stderr.strip()[-600:],
                             "names_extra": f'pip install "vem[{extra}]"' in done.stderr,
                             "traceback": "Traceback" in done.stderr}
    numpy_eval = subprocess.run([str(venv / "bin" / "vem-eval"), str(work / "r.json"), "--beat-tracker", "numpy",
                                 "--quiet"], capture_output=True, text=True, env=run_env, cwd=work, timeout=300)
    commands["vem-eval --beat-tracker numpy"] = {"exit": numpy_eval.returncode, "stdout": numpy_eval.stdout.strip()}
    # The engines of a bundle need TensorRT, never torch: without TensorRT, exit 4 naming it.
    bundle = next(site_packages.glob("vem/runtime/assets/bundle"))
    engines = subprocess.run([str(venv / "bin" / "vem-export"), "--from-bundle", str(bundle), "--engines", "yes",
                              "--out", str(work / "engines")], capture_output=True, text=True, env=run_env,
                             cwd=work, timeout=300)
    commands["vem-export --from-bundle --engines yes"] = {
        "exit": engines.returncode, "stderr": engines.stderr.strip()[-600:], "names_tensorrt": "TensorRT" in engines.stderr,
        "traceback": "Traceback" in engines.stderr}
    result["commands"] = commands
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=PYTHON310, help=f"interpreter of the venv (default: {PYTHON310})")
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="vem-light-"))
    try:
        result = measure(args.python, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
