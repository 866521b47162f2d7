"""`vem-bench`: where the time goes, per stage, per precision, per video length.

Runs the real pipeline (`Pipeline.generate`) on videos it writes itself (H.264, 640x360, 30 fps,
a cut every ~2.3 s, moving content), one warm-up run and then `--repeats` timed runs per setting.
Reports per stage the median and the spread (min..max) over the repeats, the denoiser's time per
step, the end-to-end real-time factor (wall seconds per second of video), and the process' peak
resident memory (a high-water mark: settings run shortest first, so each row's figure includes
everything before it). Writes a table and, with --json, the numbers with the machine's description.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

STAGES = ("decode", "parse", "condition", "diffuse", "vae_decoder", "vocoder", "decode_audio", "analyse", "total")


def write_bench_video(path: str | os.PathLike, seconds: float, *, fps: int = 30, size: tuple[int, int] = (640, 360),
                      cut_every_s: float = 2.3, seed: int = 0) -> str:
    """A real H.264 clip with hard cuts between moving coloured scenes."""
    import av

    rng = np.random.default_rng(seed)
    width, height = size
    frames = int(round(seconds * fps))
    ys, xs = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}
        colour = rng.integers(0, 256, 3)
        for index in range(frames):
            t = index / fps
            if index and int(t / cut_every_s) != int((index - 1) / fps / cut_every_s):
                colour = rng.integers(0, 256, 3)
            wave = ((np.sin(xs / 23.0 + t * 3.0) + np.cos(ys / 17.0 - t * 2.0)) * 30).astype(np.int16)
            image = np.clip(colour[None, None, :] + wave[..., None], 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def machine_description() -> dict[str, Any]:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from .backends.cuda import gpu_info

    gpu = gpu_info()
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "gpu": gpu.name if gpu.available else None,
        "gpu_compute_capability": gpu.compute_capability if gpu.available else None,
    }


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / (1024.0 * 1024.0)


def summarise(runs: list[dict[str, float]], steps: int, seconds: float) -> dict[str, Any]:
    stages = {}
    for stage in STAGES:
        values = [run[stage] for run in runs if stage in run]
        if values:
            stages[stage] = {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values)}
    diffuse = [run["diffuse"] / steps for run in runs]
    return {
        "stages": stages,
        "denoiser_step_s": {"median_s": statistics.median(diffuse), "min_s": min(diffuse), "max_s": max(diffuse)},
        "rtf": statistics.median(run["total"] for run in runs) / seconds,
    }


def run_bench(bundle: str | None, precisions: list[str], backends: list[str], lengths: list[float],
              steps: int | None, repeats: int, quiet: bool = False) -> dict[str, Any]:
    from .pipeline import Pipeline

    results = []
    with tempfile.TemporaryDirectory(prefix="vem-bench-") as folder:
        videos = {s: write_bench_video(Path(folder) / f"bench_{s:g}s.mp4", s) for s in lengths}
        for backend in backends:
            for precision in precisions:
                pipeline = Pipeline.load(bundle, backend=backend, precision=precision)
                used_steps = steps or pipeline.bundle.manifest.sampler["steps"]
                for seconds in sorted(lengths):
                    pipeline.generate(videos[seconds], steps=used_steps, seed=0)  # warm-up
                    runs = []
                    for repeat in range(repeats):
                        report = pipeline.generate(videos[seconds], steps=used_steps, seed=repeat).report
                        runs.append(report["timings_s"])
                    row = {"backend": pipeline.backend_name, "provider": pipeline.runners["denoiser"].provider,
                           "precision": precision, "config": pipeline.config.name, "seconds": seconds,
                           "steps": used_steps, "repeats": repeats, "peak_rss_mib": peak_rss_mib(),
                           **summarise(runs, used_steps, seconds)}
                    results.append(row)
                    if not quiet:
                        print(format_row(row), flush=True)
    return {"machine": machine_description(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "results": results}


HEADER = (f"{'backend':<12} {'prec':<5} {'video':>6} {'steps':>5} {'decode':>7} {'parse':>7} {'cond':>6} "
          f"{'step':>7} {'diffuse':>8} {'vae':>6} {'vocoder':>7} {'total':>7} {'RTF':>6} {'peak MiB':>8}")


def format_row(row: dict[str, Any]) -> str:
    stage = {name: value["median_s"] for name, value in row["stages"].items()}
    return (f"{row['backend']:<12} {row['precision']:<5} {row['seconds']:>5.0f}s {row['steps']:>5} "
            f"{stage.get('decode', 0):>7.2f} {stage.get('parse', 0):>7.2f} {stage.get('condition', 0):>6.2f} "
            f"{row['denoiser_step_s']['median_s']:>7.3f} {stage.get('diffuse', 0):>8.2f} "
            f"{stage.get('vae_decoder', 0):>6.2f} {stage.get('vocoder', 0):>7.2f} {stage.get('total', 0):>7.2f} "
            f"{row['rtf']:>6.2f} {row['peak_rss_mib']:>8.0f}")


def main(argv: list[str] | None = None) -> int:
    from .cli import build_bench_parser
    from .errors import UsageError, VemError

    args = build_bench_parser().parse_args(argv)
    try:
        try:
            lengths = [float(s) for s in args.seconds.split(",") if s.strip()]
        except ValueError:
            raise UsageError(f"--seconds {args.seconds}: expected comma-separated numbers, e.g. 10,30,60") from None
        if not lengths or min(lengths) <= 0:
            raise UsageError("--seconds needs positive lengths")
        if args.repeats < 1:
            raise UsageError("--repeats must be >= 1")
        precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
        backends = [b.strip() for b in args.backend.split(",") if b.strip()]
        print("time per stage in seconds (median over repeats); step = one guided denoiser call", flush=True)
        print(HEADER, flush=True)
        result = run_bench(args.bundle, precisions, backends, lengths, args.steps, args.repeats)
    except VemError as error:
        print(error.user_message(), file=sys.stderr)
        return error.exit_code
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0
