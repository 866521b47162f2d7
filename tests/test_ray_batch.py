"""`vem-run --ray`: a batch on a real local Ray cluster gives the sequential batch's outputs bit for
bit, its exit code and its last line; --skip-existing continues a batch; Ctrl-C shuts the cluster
down and leaves no partial output. Plus the pieces that need no cluster (worker planning, the sweep
of a killed writer's temporary files, --skip-existing and --summary on a local batch).

The cluster runs in a real `vem-run` subprocess (2 workers of 1 CPU, no dashboard, a small object
store), with RAY_TMPDIR set to a fresh folder so that the test can see that none of its processes
outlive the command."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

import pytest

from vem.runtime.errors import EXIT_INPUT, EXIT_OK, EXIT_USAGE
from vem.runtime.run import main as vem_run
from vem.runtime.slideshow import Shot, write_slideshow

GOOD = ("alpha", "bravo", "charlie")
SEED = 5
SIZE = (160, 90)


def _slideshow(path: Path, name: str, seconds: float = 3.0) -> None:
    third = seconds / 3
    write_slideshow(path, [Shot(f"{name}-1", third), Shot(f"{name}-2", third), Shot(f"{name}-3", third)],
                    fps=25, size=SIZE)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """A folder of three short videos and a truncated one, and the sequential run's outputs."""
    root = tmp_path_factory.mktemp("ray-batch")
    folder = root / "in"
    folder.mkdir()
    for name in GOOD:
        _slideshow(folder / f"{name}.mp4", name)
    whole = (folder / "alpha.mp4").read_bytes()
    (folder / "broken.mp4").write_bytes(whole[: len(whole) // 3])  # an interrupted copy: no index
    sequential = root / "sequential"
    sequential.mkdir()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        code = vem_run(["in", "-o", "sequential", "--seed", str(SEED), "-q"])
    finally:
        os.chdir(cwd)
    assert code == EXIT_INPUT
    expected = sorted(f"{name}.vem.{ext}" for name in GOOD for ext in ("wav", "mp4"))
    assert sorted(p.name for p in sequential.iterdir()) == expected
    return root


def _ray_processes(ray_tmp: str) -> dict[int, str]:
    """The running processes of one run, pid -> command line: those whose environment has its
    RAY_TMPDIR (the driver's, inherited by the cluster's processes). The environment, not the command
    line: a Ray worker renames itself (``ray::VideoWorker.generate``), which hides the folder."""
    marker = f"RAY_TMPDIR={ray_tmp}".encode()
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker not in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                continue
            found[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone, or not ours to read
            continue
    return found


def _vem_run_ray(cwd: Path, *argv: str, **popen) -> tuple[subprocess.Popen, str]:
    # A short temporary root: Ray's socket paths must stay under the 107-byte limit of AF_UNIX.
    ray_tmp = tempfile.mkdtemp(prefix="vr", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "vem.runtime.cli", *argv, "--ray", "local", "--ray-workers", "2",
               "--cpus-per-worker", "1"]
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, **popen)
    return process, ray_tmp


def _gone(ray_tmp: str, timeout: float = 20.0) -> list[str]:
    """The run's Ray processes still alive after ``timeout`` seconds (none, when it shut down)."""
    deadline = time.monotonic() + timeout
    while _ray_processes(ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = list(_ray_processes(ray_tmp).values())
    shutil.rmtree(ray_tmp, ignore_errors=True)
    return left


def _hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_ray_batch_matches_sequential_and_skip_existing_continues(batch):
    pytest.importorskip("ray", reason="vem-run --ray needs the cluster extra (pip install -e '.[cluster]')")
    out = batch / "ray"
    out.mkdir()
    process, ray_tmp = _vem_run_ray(batch, "in", "-o", "ray", "--seed", str(SEED), "--summary", "ray.json")
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == EXIT_INPUT, stderr  # the broken video's code, as in the sequential run
    assert stderr.strip().splitlines()[-1] == "1 of 4 videos failed: in/broken.mp4", stderr
    assert "error: in/broken.mp4: not a readable video" in stderr and "Traceback" not in stderr
    for name in GOOD:
        for ext in ("wav", "mp4"):
            produced = out / f"{name}.vem.{ext}"
            assert produced.read_bytes() == (batch / "sequential" / produced.name).read_bytes(), produced.name
        assert f"in/{name}.mp4: 3.0 s video" in stdout  # the per-video summary, printed by the driver
    assert not list(out.glob("broken.vem.*")) and _hidden(out) == []
    assert _gone(ray_tmp) == []  # the local cluster was shut down

    summary = json.loads((batch / "ray.json").read_text())
    assert summary["mode"] == "ray" and summary["workers"] == 2 and summary["exit_code"] == EXIT_INPUT
    assert (summary["done"], summary["failed"], summary["skipped"]) == (3, 1, 0)
    results = {Path(r["video"]).name: r for r in summary["results"]}
    assert results["broken.mp4"]["status"] == "failed" and results["broken.mp4"]["exit_code"] == EXIT_INPUT
    assert results["broken.mp4"]["outputs"] == []
    for name in GOOD:
        entry = results[f"{name}.mp4"]
        assert entry["status"] == "done" and entry["seconds"] > 0
        assert entry["outputs"] == [f"ray/{name}.vem.wav", f"ray/{name}.vem.mp4"]
    # Both workers took videos (one is handed to each as soon as it is ready).
    assert len({r["worker"] for r in summary["results"]}) == 2

    # Continue the batch: every finished video is skipped, the broken one fails again.
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    process, ray_tmp = _vem_run_ray(batch, "in", "-o", "ray", "--seed", str(SEED), "--summary", "ray.json",
                                    "--skip-existing")
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == EXIT_INPUT, stderr
    lines = stderr.strip().splitlines()
    assert lines[-1] == "1 of 4 videos failed: in/broken.mp4"
    assert lines[-2].startswith("4 videos: 0 done, 3 skipped, 1 failed in ")
    for name in GOOD:
        assert f"skip: in/{name}.mp4: its outputs exist" in stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    rerun = json.loads((batch / "ray.json").read_text())  # replaced: --skip-existing continues a run
    assert (rerun["done"], rerun["failed"], rerun["skipped"]) == (0, 1, 3)
    assert _gone(ray_tmp) == []


def _generating_worker(ray_tmp: str, timeout: float = 180.0) -> int:
    """The pid of one of this run's Ray workers while it generates a video (found by its RAY_TMPDIR,
    which the workers inherit from the driver, and its process title)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, title in _ray_processes(ray_tmp).items():
            if title.startswith("ray::VideoWorker.generate"):
                return pid
        time.sleep(0.2)
    raise AssertionError("no Ray worker started generating")


def _read_until(stream, predicate, seen: list[str]) -> str:
    while True:
        line = stream.readline()
        assert line, "".join(seen)  # the run ended first
        seen.append(line)
        if predicate(line):
            return line


def test_a_lost_worker_fails_its_video_alone_and_ctrl_c_shuts_the_cluster_down(tmp_path):
    pytest.importorskip("ray", reason="vem-run --ray needs the cluster extra (pip install -e '.[cluster]')")
    folder = tmp_path / "in"
    folder.mkdir()
    names = ("one", "two", "three", "four", "five")
    for name in names:
        _slideshow(folder / f"{name}.mp4", name, seconds=12.0)
    out = tmp_path / "out"
    out.mkdir()
    process, ray_tmp = _vem_run_ray(tmp_path, "in", "-o", "out", "--summary", "s.json")
    # A node lost mid-video: SIGKILL one worker while it generates. Its video fails, alone.
    victim = _generating_worker(ray_tmp)
    os.kill(victim, signal.SIGKILL)
    seen: list[str] = []
    failed = _read_until(process.stderr, lambda line: line.startswith("[") and " failed " in line, seen)
    lost = failed.split()[2]
    assert f"error: {lost}: the Ray worker " in "".join(seen) and f":{victim} stopped while generating it" \
        in "".join(seen)
    # The other worker goes on; once it has finished a video, Ctrl-C.
    _read_until(process.stderr, lambda line: line.startswith("[") and " done " in line, seen)
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, "".join(seen) + rest
    assert rest.strip().splitlines()[-1] == "error: interrupted; no partial output was left"
    assert _hidden(out) == []  # the killed workers' temporary files were swept
    finished = {p.name for p in out.iterdir()}
    for name in names:  # all of a video's outputs, or none
        both = {f"{name}.vem.wav", f"{name}.vem.mp4"}
        assert both & finished in (set(), both)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["exit_code"] == 130 and summary["failed"] == 1 and summary["done"] >= 1
    assert summary["not_run"] >= 1  # stopped before the end
    entry = next(r for r in summary["results"] if r["status"] == "failed")
    assert entry["video"] == lost and entry["exit_code"] == 1 and entry["worker"].endswith(f":{victim}")
    assert _gone(ray_tmp) == []


def test_skip_existing_and_summary_on_a_local_batch(batch, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    shutil.copytree(batch / "sequential", out)
    for produced in out.glob("bravo.vem.*"):
        produced.unlink()  # bravo was not finished: it is made again, the others are skipped
    monkeypatch.chdir(batch)
    code = vem_run(["in", "-o", str(out), "--seed", str(SEED), "--skip-existing", "--summary",
                    str(tmp_path / "s.json")])
    captured = capsys.readouterr()
    assert code == EXIT_INPUT
    assert "skip: in/alpha.mp4: its outputs exist" in captured.err and "skip: in/bravo.mp4" not in captured.err
    assert captured.err.strip().splitlines()[-1] == "1 of 4 videos failed: in/broken.mp4"
    for ext in ("wav", "mp4"):
        assert (out / f"bravo.vem.{ext}").read_bytes() == (batch / "sequential" / f"bravo.vem.{ext}").read_bytes()
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["mode"] == "local" and (summary["done"], summary["skipped"], summary["failed"]) == (1, 2, 1)
    statuses = {Path(r["video"]).name: (r["status"], r["worker"]) for r in summary["results"]}
    assert statuses == {"alpha.mp4": ("skipped", ""), "bravo.mp4": ("done", "local"),
                        "broken.mp4": ("failed", "local"), "charlie.mp4": ("skipped", "")}

    # Everything there: nothing to do, no model loaded, exit 0 (a single video, too).
    code = vem_run(["in/alpha.mp4", "-o", str(out / "alpha.vem.wav"), "--skip-existing", "-q"])
    assert code == EXIT_OK and capsys.readouterr().err == ""


def test_cluster_flags_need_ray_and_sensible_values(tmp_path, capsys):
    video = tmp_path / "v.mp4"
    for argv, words in ((["--ray-workers", "2"], "only apply with --ray"),
                        (["--ray", "local", "--ray-workers", "0"], "--ray-workers must be at least 1"),
                        (["--ray", "local", "--cpus-per-worker", "nan"], "--cpus-per-worker must be"),
                        (["--ray", " "], "--ray needs an address")):
        assert vem_run([str(video), *argv]) == EXIT_USAGE
        assert words in capsys.readouterr().err


def test_plan_workers_one_per_gpu_or_per_cores():
    from vem.runtime.cluster import plan_workers
    from vem.runtime.errors import UsageError

    def args(**flags):
        return Namespace(**{"ray_workers": None, "cpus_per_worker": None, "gpus_per_worker": None, **flags})

    gpu_nodes = [{"CPU": 16.0, "GPU": 2.0}, {"CPU": 16.0, "GPU": 2.0}]
    assert plan_workers(args(), gpu_nodes, videos=100) == (4, 1.0, 1.0)
    assert plan_workers(args(gpus_per_worker=0.5), gpu_nodes, videos=100) == (8, 1.0, 0.5)
    assert plan_workers(args(), gpu_nodes, videos=3) == (3, 1.0, 1.0)  # no idle pipelines
    cpu_nodes = [{"CPU": 16.0}, {"CPU": 8.0}]
    assert plan_workers(args(), cpu_nodes, videos=100) == (6, 4.0, 0.0)
    assert plan_workers(args(), [{"CPU": 2.0}], videos=6) == (1, 2.0, 0.0)
    assert plan_workers(args(ray_workers=2, cpus_per_worker=1.0), [{"CPU": 2.0}], videos=6) == (2, 1.0, 0.0)
    for flags, nodes in ((dict(ray_workers=3, cpus_per_worker=1.0), [{"CPU": 2.0}]),
                         (dict(gpus_per_worker=1.0), cpu_nodes),
                         (dict(cpus_per_worker=32.0), cpu_nodes)):
        with pytest.raises(UsageError):
            plan_workers(args(**flags), nodes, videos=6)


def test_remove_partials_sweeps_a_killed_writers_temporary_files(tmp_path):
    from vem.runtime.atomic import _create_temp, remove_partials

    final = tmp_path / "clip.vem.mp4"
    temp = _create_temp(str(final))  # what atomic_output made before its process was killed
    nested = _create_temp(temp)  # the muxer's own temporary file inside it
    keep = [tmp_path / "clip.vem.wav", tmp_path / ".clip.vem.notours.partial.mp4", tmp_path / "other.vem.mp4"]
    for path in keep:
        path.write_bytes(b"x")
    assert sorted(remove_partials(final)) == sorted([temp, nested])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in keep)


def test_the_runtime_imports_ray_only_for_a_cluster_run():
    code = ("import sys\n"
            "import vem.runtime.run, vem.runtime.cluster, vem.runtime.cli\n"
            "vem.runtime.run.build_parser().parse_args(['v.mp4', '--ray', 'local'])\n"
            "print('ray' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
