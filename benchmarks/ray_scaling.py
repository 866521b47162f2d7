"""`vem-run --ray local` against the sequential batch, on the same videos, in one run.

    python -m benchmarks.ray_scaling [--videos 6] [--seconds 10] [--workers 2]
                                     [--json benchmarks/results/ray-scaling.json]

Writes ``--videos`` slideshows (`vem.runtime.slideshow`, 320x180, ``--seconds`` long each), then
times two real `vem-run` processes over that folder with the same seed and the shipped bundle:

- sequential: ``vem-run in/ -o seq/`` (one process, one pipeline, ONNX Runtime on every core);
- ray: ``vem-run in/ -o ray/ --ray local --ray-workers N --cpus-per-worker C`` (C = cores / N, so
  that both runs use the same cores), which starts a local Ray cluster, one pipeline per worker.

Each command's wall time is measured from outside (process start to exit); the JSON keeps both
commands' --summary files (per-video seconds, the cluster's start-up time) and checks that the
two runs wrote the same bytes. With few cores Ray has nothing to add: the numbers are the
overhead of the cluster, not a speed-up. Machine facts (CPU model, cores, load average before each
run, versions) go into the JSON, since the machine may be shared.
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

from vem.runtime.bench import load_average

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "ray-scaling.json"


def machine() -> dict:
    """`vem.runtime.bench.machine_description` (no GEMM measurement) and the Ray version."""
    from vem.runtime.bench import machine_description

    try:
        import ray

        ray_version = ray.__version__
    except ImportError:
        ray_version = None
    return {**machine_description(gemm=False), "ray": ray_version}


def make_videos(folder: Path, count: int, seconds: float) -> list[str]:
    from vem.runtime.slideshow import Shot, write_slideshow

    folder.mkdir(parents=True)
    names = []
    for index in range(count):
        shots = [Shot(f"clip{index}-shot{k}", seconds / 4) for k in range(4)]
        write_slideshow(folder / f"clip{index}.mp4", shots, fps=25, size=(320, 180))
        names.append(f"clip{index}.mp4")
    return names


def timed_run(work: Path, argv: list[str]) -> dict:
    load = (load_average() or [None])[0]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vem.runtime.cli", *argv], cwd=work, capture_output=True,
                          text=True, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"vem-run {' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    return {"command": "vem-run " + " ".join(argv), "wall_s": round(wall, 3), "load_avg_1min_before": load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each video")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (pipelines)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)

    cores = os.cpu_count() or 1
    cpus_per_worker = max(1, cores // args.workers)
    work = Path(tempfile.mkdtemp(prefix="vem-ray-scaling-"))
    try:
        names = make_videos(work / "in", args.videos, args.seconds)
        (work / "seq").mkdir()
        (work / "ray").mkdir()
        sequential = timed_run(work, ["in", "-o", "seq", "-q", "--summary", "seq.json"])
        clustered = timed_run(work, ["in", "-o", "ray", "-q", "--summary", "ray.json", "--ray", "local",
                                     "--ray-workers", str(args.workers), "--cpus-per-worker", str(cpus_per_worker)])
        sequential["summary"] = json.loads((work / "seq.json").read_text())
        clustered["summary"] = json.loads((work / "ray.json").read_text())
        outputs = sorted(p.name for p in (work / "seq").iterdir())
        identical = outputs == sorted(p.name for p in (work / "ray").iterdir()) and all(
            (work / "seq" / name).read_bytes() == (work / "ray" / name).read_bytes() for name in outputs)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def per_video(run: dict) -> float:
        return round(sum(r["seconds"] for r in run["summary"]["results"]), 3)

    result = {
        "what": f"{args.videos} videos of {args.seconds:g} s (320x180), the shipped bundle, seed 0: the sequential "
                f"batch against a local Ray cluster of {args.workers} workers x {cpus_per_worker} CPU",
        "machine": machine(),
        "videos": names,
        "sequential": sequential,
        "ray": clustered,
        "outputs_identical": identical,
        "speedup": round(sequential["wall_s"] / clustered["wall_s"], 3),
        "overhead_s": round(clustered["wall_s"] - sequential["wall_s"], 3),
        "per_video_s_sum": {"sequential": per_video(sequential), "ray": per_video(clustered)},
        "ray_cluster_ready_s": clustered["summary"].get("cluster_ready_s"),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"sequential {sequential['wall_s']:.1f} s, ray ({args.workers} workers) {clustered['wall_s']:.1f} s "
          f"(cluster ready after {result['ray_cluster_ready_s']} s); speed-up x{result['speedup']:.2f}; "
          f"outputs identical: {identical}; wrote {args.json}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
