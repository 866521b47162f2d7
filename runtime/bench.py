"""`vem-bench`: where the time goes, per stage, per precision, per backend, per video length.

Runs the real pipeline (`Pipeline.generate`, then the same writes as `vem-run`: a WAV and an mp4
with the video stream copied) on videos it writes itself (H.264, 640x360, 30 fps, a cut every
~2.3 s, moving content). Per setting: ``--warmup`` untimed runs, then ``--repeats`` timed ones.

Reported per stage -- decode, parse, condition, diffuse (all sampler steps), one denoiser step,
VAE decoder, vocoder, analyse (beats + TBIoU of the result), write -- the median and the spread
(min, max, and (max - min) / median) over the repeats; the end-to-end real-time factor (median
wall seconds, write included, per second of video); the peak resident host memory of each setting
(Linux: the VmHWM high-water mark reset before each setting via /proc/self/clear_refs; elsewhere
the process' peak so far); on a GPU the peak device memory (polled) and the TensorRT engines'
sizes; the bundle's graph sizes; the machine (CPU, cores, load average before and after, a
measured float32 GEMM rate as the CPU's practical matmul ceiling). ``--json`` writes it all.

Without a GPU the device fields are null and say why (``device_memory_note``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

# Stage keys as they appear in the JSON; "step" is diffuse / steps (one guided denoiser call
# plus the sampler's numpy update).
STAGES = ("load", "decode", "parse", "condition", "diffuse", "step", "vae_decoder", "vocoder", "decode_audio",
          "analyse", "write", "total", "cpu")
BENCH_FORMAT = 2


def write_bench_video(path: str | os.PathLike, seconds: float, *, fps: int = 30, size: tuple[int, int] = (640, 360),
                      cut_every_s: float = 2.3, seed: int = 0) -> str:
    """A real H.264 clip with hard cuts between moving coloured scenes."""
    from .media_writer import write_video

    rng = np.random.default_rng(seed)
    width, height = size
    frames = int(round(seconds * fps))
    ys, xs = np.mgrid[0:height, 0:width]

    def pictures():
        colour = rng.integers(0, 256, 3)
        for index in range(frames):
            t = index / fps
            if index and int(t / cut_every_s) != int((index - 1) / fps / cut_every_s):
                colour = rng.integers(0, 256, 3)
            wave = ((np.sin(xs / 23.0 + t * 3.0) + np.cos(ys / 17.0 - t * 2.0)) * 30).astype(np.int16)
            yield np.clip(colour[None, None, :] + wave[..., None], 0, 255).astype(np.uint8)

    write_video(path, pictures(), size=size, rate=fps, options={"preset": "ultrafast", "crf": "28"})
    return str(path)


# ---- the machine ---------------------------------------------------------------------------------
def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def measure_gemm_gflops(n: int = 1024, repeats: int = 5) -> dict[str, Any]:
    """The CPU's practical matmul ceiling: best-of-``repeats`` float32 ``n x n`` GEMM through
    numpy's BLAS, in GFLOP/s (2 n^3 FLOPs per product). Measured, not a datasheet figure, and on
    a shared machine only as good as its share of the cores at that moment."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up: BLAS thread pool start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return {"n": n, "dtype": "float32", "library": "numpy " + np.__version__,
            "best_gflops": 2 * n ** 3 / min(times) / 1e9, "median_gflops": 2 * n ** 3 / statistics.median(times) / 1e9}


def machine_description(*, gemm: bool = True) -> dict[str, Any]:
    import onnxruntime

    from .backends.cuda import gpu_info
    from .backends.onnxruntime import physical_cores

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        match = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        memory_gib = round(int(match.group(1)) / 2 ** 20, 1) if match else None
    except OSError:
        pass
    gpu = gpu_info()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "physical_cores": physical_cores(),
        "memory_gib": memory_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "gpu": gpu.name if gpu.available else None,
        "gpu_compute_capability": gpu.compute_capability if gpu.available else None,
        "gpu_note": gpu.reason,
        "load_average": load_average(),
        "gemm": measure_gemm_gflops() if gemm else None,
    }


# ---- memory --------------------------------------------------------------------------------------
def _proc_status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux >= 4.0); False where impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mib() -> float:
    """Peak resident memory: VmHWM since the last `reset_peak_rss` (Linux), else the process' peak."""
    hwm = _proc_status_kib("VmHWM")
    if hwm is not None:
        return hwm / 1024.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / (1024.0 * 1024.0)


def device_memory_used_mib() -> float | None:
    """Memory in use on GPU 0 (all processes: cudaMemGetInfo's total - free), or None without a GPU."""
    from .backends.cuda import _runtime_api, check, gpu_info

    if not gpu_info().available:
        return None
    free, total = check(_runtime_api().cudaMemGetInfo(), "cudaMemGetInfo")
    return (int(total) - int(free)) / 2 ** 20


class DevicePeak:
    """Polls GPU 0's used memory every ``interval_s`` while active; ``peak_mib`` is the highest
    reading minus the reading before (so other processes' steady use is not counted). None (and
    no thread) without a GPU. Polling can miss a spike shorter than the interval: a lower bound."""

    def __init__(self, interval_s: float = 0.01):
        self.interval_s = interval_s
        self.baseline_mib: float | None = None
        self.highest_mib: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DevicePeak:
        self.baseline_mib = device_memory_used_mib()
        if self.baseline_mib is not None:
            self.highest_mib = self.baseline_mib
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            used = device_memory_used_mib()
            if used is not None and self.highest_mib is not None:
                self.highest_mib = max(self.highest_mib, used)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def peak_mib(self) -> float | None:
        if self.baseline_mib is None or self.highest_mib is None:
            return None
        return self.highest_mib - self.baseline_mib


# ---- statistics ----------------------------------------------------------------------------------
def spread(values: list[float]) -> dict[str, float]:
    """Median, min, max and the relative spread (max - min) / median of repeated timings."""
    median = statistics.median(values)
    return {"median_s": median, "min_s": min(values), "max_s": max(values),
            "rel_spread": (max(values) - min(values)) / median if median > 0 else 0.0, "n": len(values)}


def summarise(runs: list[dict[str, float]], steps: int, seconds: float) -> dict[str, Any]:
    """Per-stage statistics over repeated runs' ``timings_s``, the step time and the RTF."""
    runs = [dict(run, step=run["diffuse"] / steps) for run in runs]
    stages = {stage: spread([run[stage] for run in runs]) for stage in STAGES
              if stage != "load" and all(stage in run for run in runs)}
    total = stages["total"]["median_s"]
    return {"stages": stages, "denoiser_step_s": stages["step"], "wall_s": total, "rtf": total / seconds}


# ---- the benchmark -------------------------------------------------------------------------------
def bundle_sizes(pipeline: Any) -> dict[str, Any]:
    """Bytes of the graphs this pipeline loaded (per component) and of the bundle's TensorRT
    engines for this precision (empty without engines)."""
    manifest = pipeline.bundle.manifest
    graphs = {}
    for name in pipeline.runners:
        try:
            graphs[name] = manifest.component(name, pipeline.precision).total_bytes
        except Exception:  # noqa: BLE001 - a component without this precision (transitions' fallback)
            continue
    engines = {f"{e.name}/{e.compute_capability}": e.bytes for e in manifest.engines if e.precision == pipeline.precision}
    return {"graphs_bytes": graphs, "graphs_total_bytes": sum(graphs.values()),
            "engines_bytes": engines, "engines_total_bytes": sum(engines.values())}


def timed_run(pipeline: Any, video: str, out_dir: Path, steps: int, seed: int) -> dict[str, float]:
    """One `generate` plus the writes `vem-run` does by default (WAV + mp4 with the music muxed)."""
    from .audio import write_audio
    from .writer import mux_music

    cpu_start = time.process_time()
    result = pipeline.generate(video, steps=steps, seed=seed)
    timings = dict(result.report["timings_s"])
    started = time.perf_counter()
    write_audio(out_dir / "bench.vem.wav", result.waveform, result.sample_rate, force=True)
    mux_music(video, result.waveform, result.sample_rate, out_dir / "bench.vem.mp4", force=True, fade_s=0.0)
    timings["write"] = time.perf_counter() - started
    timings["total"] += timings["write"]
    # CPU seconds of this process (all threads): on a shared machine wall time includes waiting
    # for a core, CPU time does not -- the pair shows how much of a slow run was contention.
    timings["cpu"] = time.process_time() - cpu_start
    return timings


def run_bench(bundle: str | None, precisions: list[str | None], backends: list[str], lengths: list[float],
              steps: int | None, repeats: int, *, warmup: int = 1, threads: int | None = None,
              quiet: bool = False, gemm: bool = True) -> dict[str, Any]:
    from .pipeline import Pipeline

    started_load = load_average()
    results = []
    with tempfile.TemporaryDirectory(prefix="vem-bench-") as folder:
        videos = {s: write_bench_video(Path(folder) / f"bench_{s:g}s.mp4", s) for s in lengths}
        for backend in backends:
            for precision in precisions:
                load_start = time.perf_counter()
                pipeline = Pipeline.load(bundle, backend=backend, precision=precision, threads=threads)
                load_s = time.perf_counter() - load_start
                used_steps = int(steps or pipeline.bundle.manifest.sampler["steps"])
                for seconds in sorted(lengths):
                    before = load_average()
                    exact_peak = reset_peak_rss()
                    with DevicePeak() as device:
                        for index in range(warmup):
                            timed_run(pipeline, videos[seconds], Path(folder), used_steps, seed=1000 + index)
                        runs = [timed_run(pipeline, videos[seconds], Path(folder), used_steps, seed=repeat)
                                for repeat in range(repeats)]
                    row = {"backend": pipeline.backend_name, "provider": pipeline.runners["denoiser"].provider,
                           "backend_reason": pipeline.backend_reason, "precision": pipeline.precision,
                           "config": pipeline.config.name, "seconds": seconds, "steps": used_steps,
                           "warmup": warmup, "repeats": repeats, "threads": threads, "load_s": load_s,
                           **summarise(runs, used_steps, seconds),
                           "peak_rss_mib": peak_rss_mib(),
                           "peak_rss_scope": "this setting (VmHWM reset)" if exact_peak else "process so far",
                           "peak_device_mib": device.peak_mib,
                           "device_memory_note": None if device.peak_mib is not None else "no GPU: not measured",
                           **bundle_sizes(pipeline),
                           "load_average_before": before, "load_average_after": load_average(),
                           "runs": runs}
                    results.append(row)
                    if not quiet:
                        print(format_row(row), flush=True)
                for runner in pipeline.runners.values():
                    runner.close()
    machine = machine_description(gemm=gemm)
    machine["load_average_at_start"] = started_load
    return {"format": BENCH_FORMAT, "tool": "vem-bench", "machine": machine,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "bundle": str(bundle) if bundle else "shipped", "results": results}


# ---- the front end and whole processes -------------------------------------------------------------
# What a user waits for and how much memory the machine must have: separate processes, timed from
# outside (wall clock, and the kernel's peak resident set of that process via wait4).
FRONT_END_FORMAT = 1
_BARE_DECODE = """
import sys, av
with av.open(sys.argv[1]) as container:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    frames = sum(1 for _ in container.decode(stream))
print(frames)
"""
_VEM_RUN = "import sys; from vem.runtime.run import main; sys.exit(main())"


# The kernel's peak resident set of a child (wait4's ru_maxrss) starts from the memory of the
# process that forked it, which exec does not reset: started from the benchmark (hundreds of MB)
# it would hide the child's own figure. So a fresh, small Python (~10 MB) starts the command and
# reports what wait4 says of it.
_MEASURE = """
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL if sys.argv[1] == "-" else open(sys.argv[1], "wb"))
_, status, usage = os.wait4(child.pid, 0)
print(json.dumps({"wall_s": time.perf_counter() - started, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "maxrss": usage.ru_maxrss, "exit": os.waitstatus_to_exitcode(status)}))
"""


def run_process(argv: list[str]) -> dict[str, Any]:
    """Run ``argv`` to completion: its wall time, CPU time and peak resident memory (Linux, macOS;
    the figure includes the ~10 MB of the small Python that starts it)."""
    import subprocess

    with tempfile.NamedTemporaryFile() as stdout:
        done = subprocess.run([sys.executable, "-c", _MEASURE, stdout.name, *argv], capture_output=True, text=True)
        out = Path(stdout.name).read_bytes()
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"measuring {' '.join(argv[:4])} ... failed: {done.stderr[-800:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    if measured["exit"] != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... exited {measured['exit']}: {done.stderr[-800:]}")
    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0
    return {"wall_s": measured["wall_s"], "cpu_s": measured["cpu_s"], "peak_rss_mib": measured["maxrss"] / scale,
            "stdout": out.decode(errors="replace")[-400:]}


def write_front_end_videos(folder: Path) -> dict[str, Any]:
    """The front end's material: 60 s of 1080p and 10 s of 720p H.264 at 30 fps, slideshows of
    photographs (scikit-image's; procedural pictures without it) with known cut frames."""
    from .slideshow import free_shots, write_slideshow

    long = write_slideshow(folder / "front_60s_1080p.mp4", free_shots(60, seed=2), fps=30, size=(1920, 1080))
    short = write_slideshow(folder / "front_10s_720p.mp4", free_shots(10, seed=1), fps=30, size=(1280, 720))
    return {"60s_1080p": long, "10s_720p": short}


def run_front_end_bench(bundle: str | None, repeats: int = 3, quiet: bool = False,
                        videos_dir: str | None = None, compare_python: str | None = None) -> dict[str, Any]:
    """Bare PyAV decoding vs `vem-run --parse-only` (60 s 1080p), a full `vem-run` of the same
    video (its peak memory), and the 10 s 720p whole-process real-time factor with the defaults.
    Every figure is the median of ``repeats`` separate processes. ``compare_python``: the Python
    of another vem install (an older version, say) whose `vem-run` is timed on the same videos in
    the same run, its default bundle and settings (rows ``*_compared``)."""
    python = sys.executable
    bundle_args = ["--bundle", bundle] if bundle else []
    started_load = load_average()

    def say(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    with tempfile.TemporaryDirectory(prefix="vem-front-") as scratch:
        folder = Path(videos_dir) if videos_dir else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        say("writing the videos (60 s 1080p, 10 s 720p H.264) ...")
        videos = write_front_end_videos(folder)
        out = Path(scratch) / "out"
        out.mkdir()

        def medians(label: str, argv: list[str]) -> dict[str, Any]:
            runs = [run_process(argv) for _ in range(repeats)]
            row = {key: statistics.median(run[key] for run in runs) for key in ("wall_s", "cpu_s", "peak_rss_mib")}
            row["runs"] = [{k: v for k, v in run.items() if k != "stdout"} for run in runs]
            say(f"{label:<42} wall {row['wall_s']:6.2f} s  cpu {row['cpu_s']:6.2f} s  "
                f"peak {row['peak_rss_mib']:7.0f} MiB")
            return row

        long, short = videos["60s_1080p"], videos["10s_720p"]
        run_args = ["-q", "--force", "-o", str(out)]
        results = {
            "bare_decode_60s_1080p": medians("bare PyAV decode, 60 s 1080p", [python, "-c", _BARE_DECODE, long.path]),
            "parse_only_60s_1080p": medians("vem-run --parse-only, 60 s 1080p",
                                            [python, "-c", _VEM_RUN, long.path, "--parse-only", *run_args,
                                             *bundle_args]),
            "generate_60s_1080p": medians("vem-run (defaults), 60 s 1080p",
                                          [python, "-c", _VEM_RUN, long.path, *run_args, *bundle_args]),
            "generate_10s_720p": medians("vem-run (defaults), 10 s 720p",
                                         [python, "-c", _VEM_RUN, short.path, *run_args, *bundle_args]),
        }
        if compare_python:
            for name, video in (("generate_60s_1080p", long), ("generate_10s_720p", short)):
                results[f"{name}_compared"] = medians(f"{name} with {compare_python}",
                                                      [compare_python, "-c", _VEM_RUN, video.path, *run_args])
    ratio = results["parse_only_60s_1080p"]["wall_s"] / results["bare_decode_60s_1080p"]["wall_s"]
    rtf = results["generate_10s_720p"]["wall_s"] / short.duration_s
    summary = {"parse_only_over_bare_decode": ratio, "rtf_10s_720p": rtf,
               "peak_rss_60s_1080p_mib": results["generate_60s_1080p"]["peak_rss_mib"]}
    say(f"parse-only / bare decode {ratio:.2f}x (bar 2.0); 10 s 720p RTF {rtf:.2f} (bar 0.4); "
        f"60 s 1080p generation peak {summary['peak_rss_60s_1080p_mib']:.0f} MiB (bar 1024)")
    machine = machine_description(gemm=False)
    machine["load_average_at_start"] = started_load
    return {"format": FRONT_END_FORMAT, "tool": "vem-bench --front-end", "machine": machine,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "repeats": repeats,
            "bundle": str(bundle) if bundle else "shipped", "compare_python": compare_python,
            "videos": {name: {"codec": v.codec, "fps": float(v.fps), "size": list(v.size), "seconds": v.duration_s,
                              "cuts": len(v.transitions)} for name, v in videos.items()},
            "results": results, "summary": summary}


HEADER = (f"{'backend':<12} {'prec':<5} {'video':>6} {'steps':>5} {'decode':>7} {'parse':>6} {'cond':>6} "
          f"{'step':>7} {'diffuse':>8} {'vae':>6} {'vocoder':>7} {'write':>6} {'total':>7} {'spread':>6} "
          f"{'RTF':>6} {'peak MiB':>8}")


def format_row(row: dict[str, Any]) -> str:
    stage = {name: value["median_s"] for name, value in row["stages"].items()}
    return (f"{row['backend']:<12} {row['precision']:<5} {row['seconds']:>5.0f}s {row['steps']:>5} "
            f"{stage.get('decode', 0):>7.2f} {stage.get('parse', 0):>6.2f} {stage.get('condition', 0):>6.2f} "
            f"{stage.get('step', 0):>7.3f} {stage.get('diffuse', 0):>8.2f} "
            f"{stage.get('vae_decoder', 0):>6.2f} {stage.get('vocoder', 0):>7.2f} {stage.get('write', 0):>6.2f} "
            f"{stage.get('total', 0):>7.2f} {row['stages']['total']['rel_spread']:>5.0%} "
            f"{row['rtf']:>6.2f} {row['peak_rss_mib']:>8.0f}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vem-bench",
        description="Time the real pipeline per stage on generated videos of several lengths: median and "
        "spread over repeats after warm-up, real-time factor, peak memory; a table and, with --json, a record "
        "with the machine's description (README results: python -m benchmarks.report).",
    )
    parser.add_argument("--bundle", help="bundle folder (default: the shipped bundle)")
    parser.add_argument("--precision", default=None,
                        help="comma-separated precisions (fp32, fp16, int8; default: the bundle's own, as vem-run picks)")
    parser.add_argument("--backend", default="auto", help="comma-separated backends (auto, onnxruntime, tensorrt)")
    parser.add_argument("--seconds", default="10,30,60", help="comma-separated video lengths in seconds")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the bundle's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per setting (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before the repeats (default 1)")
    parser.add_argument("--threads", type=int,
                        help="ONNX Runtime intra-op threads (default: physical cores); with 2 or more the denoiser "
                             "runs its two guidance branches concurrently with half of them each")
    parser.add_argument("--no-gemm", action="store_true", help="skip the GEMM ceiling measurement")
    parser.add_argument("--json", metavar="PATH", help="write results as JSON")
    parser.add_argument("--front-end", action="store_true",
                        help="instead: whole processes timed from outside -- bare PyAV decoding vs `vem-run "
                             "--parse-only` of 60 s of 1080p H.264, a full `vem-run` of it (peak memory), and the "
                             "10 s 720p real-time factor with the defaults (--repeats processes each)")
    parser.add_argument("--compare-python", metavar="PYTHON",
                        help="with --front-end: also time the full runs with this Python's vem install (another "
                             "version), in the same run")
    return parser


def parse_list(text: str, what: str) -> list[str]:
    from .errors import UsageError

    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UsageError(f"--{what} needs at least one value")
    return items


def main(argv: list[str] | None = None) -> int:
    from .errors import UsageError, VemError

    args = build_parser().parse_args(argv)
    try:
        try:
            lengths = [float(s) for s in parse_list(args.seconds, "seconds")]
        except ValueError:
            raise UsageError(f"--seconds {args.seconds}: expected comma-separated numbers, e.g. 10,30,60") from None
        if min(lengths) <= 0:
            raise UsageError("--seconds needs positive lengths")
        if args.repeats < 1:
            raise UsageError("--repeats must be >= 1")
        if args.warmup < 0:
            raise UsageError("--warmup must be >= 0")
        if args.steps is not None and args.steps < 1:
            raise UsageError("--steps must be >= 1")
        if args.threads is not None and args.threads < 1:
            raise UsageError("--threads must be >= 1")
        precisions = parse_list(args.precision, "precision") if args.precision else [None]
        unknown = [p for p in precisions if p is not None and p not in ("fp32", "fp16", "int8")]
        if unknown:
            raise UsageError(f"unknown precision(s) {', '.join(unknown)}; choose from fp32, fp16, int8")
        backends = parse_list(args.backend, "backend")
        unknown = [b for b in backends if b not in ("auto", "onnxruntime", "tensorrt")]
        if unknown:
            raise UsageError(f"unknown backend(s) {', '.join(unknown)}; choose from auto, onnxruntime, tensorrt")
        if args.front_end:
            result = run_front_end_bench(args.bundle, repeats=args.repeats, compare_python=args.compare_python)
            if args.json:
                Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
                print(f"wrote {args.json}")
            return 0
        print(f"time per stage in seconds: median of {args.repeats} run(s) after {args.warmup} warm-up; "
              "step = one guided denoiser call + sampler update; spread = (max - min) / median of total",
              flush=True)
        print(HEADER, flush=True)
        result = run_bench(args.bundle, precisions, backends, lengths, args.steps, args.repeats,
                           warmup=args.warmup, threads=args.threads, gemm=not args.no_gemm)
    except VemError as error:
        print(error.user_message(), file=sys.stderr)
        return error.exit_code
    machine = result["machine"]
    print(f"machine: {machine['cpu']}, {machine['usable_cpus']} usable CPUs, load average "
          f"{machine['load_average_at_start']} -> {machine['load_average']}"
          + (f", numpy GEMM {machine['gemm']['best_gflops']:.0f} GFLOP/s" if machine.get("gemm") else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0
