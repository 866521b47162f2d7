"""The paper config end to end on this machine: export every component (fp32 and fp16 in one
bundle), then `vem-run --bundle` on a short video at each precision; records the export's and
each run's wall time and peak memory (the child process's max RSS), the runs' per-stage times,
the bundle's sizes and each component's parity (fp16 included) in one JSON file.

    python -m benchmarks.paper_end_to_end --work /tmp/vem-paper \
        [--out benchmarks/results/paper-end-to-end.json] [--video-seconds 3] [--steps 4]

Slow: the paper T-UNet has ~380 M parameters; the export traces it, checks it in float64 and runs
it through the ONNX sampler loop. ``--from-audioldm2 DIR`` exports a converted AudioLDM 2
checkpoint instead of the untrained (seeded) paper config; ``--external-data-above 500`` writes the
1.5 GB fp32 and 0.8 GB fp16 denoisers in ONNX's external-data form (the form of any graph over
2 GB) and runs vem-run on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULT = Path(__file__).resolve().parent / "results" / "paper-end-to-end.json"


def _run_measured(command: list[str], log: Path, timeout_s: float) -> dict:
    """Run ``command``; wall time, exit code and the child's peak RSS (os.wait4's ru_maxrss, KiB)."""
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = start + timeout_s
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.5)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"command": " ".join(command), "exit_code": process.returncode,
            "wall_s": round(time.perf_counter() - start, 2), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3),
            "cpu_user_s": round(usage.ru_utime, 1), "log_tail": log.read_text()[-1500:]}


EXPORT_CHILD = """
import sys
from vem.export.bundle_writer import export_bundle
from vem.export.onnx_utils import external_data_above
source, out, max_seconds, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
above = int(float(sys.argv[5]) * 1e6) if len(sys.argv) > 5 else None
if source != "paper":
    import torch
    from vem.model.audioldm2 import load_audioldm2
    torch.manual_seed(seed)
    source, report = load_audioldm2(source)
    print("\\n".join(report.lines()), flush=True)
with external_data_above(above):
    result = export_bundle(source, out, ("fp32", "fp16"), max_seconds=max_seconds, max_storyboards=4, seed=seed,
                           end_to_end_seconds=min(3.0, max_seconds), end_to_end_steps=2,
                           progress=lambda m: print(m, flush=True))
print("exported in", round(result.seconds), "s", flush=True)
"""


def run(work: Path, out: Path = RESULT, *, video_seconds: float = 3.0, steps: int = 4, max_seconds: float = 4.0,
        source: str = "paper", seed: int = 0, timeout_s: float = 5400.0,
        external_data_above_mb: float | None = None) -> dict:
    from vem.export.parity_inputs import write_parity_video
    from vem.runtime.bundle import load_bundle

    work.mkdir(parents=True, exist_ok=True)
    bundle = work / "bundle"
    result: dict = {
        "what": "paper config exported (fp32 + fp16 in one bundle) and run by vem-run --bundle on a short video",
        "source": source if source == "paper" else f"AudioLDM 2 checkpoint {Path(source).name}",
        "settings": {"video_seconds": video_seconds, "steps": steps, "max_seconds": max_seconds, "max_storyboards": 4,
                     "export_end_to_end_steps": 2, "seed": seed, "guidance": "the bundle's",
                     "external_data_above_mb": external_data_above_mb or 2000.0},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "note": "2 cores shared with other jobs: times are an upper bound"},
    }
    manifest_path = bundle / "manifest.json"
    if not manifest_path.is_file():
        above = [] if external_data_above_mb is None else [str(external_data_above_mb)]
        result["export"] = _run_measured([sys.executable, "-c", EXPORT_CHILD, source, str(bundle), str(max_seconds),
                                          str(seed), *above], work / "export.log", timeout_s)
        if result["export"]["exit_code"] != 0:
            _write(out, result)
            raise RuntimeError(f"export failed: {result['export']['log_tail']}")
    else:
        result["export"] = json.loads((work / "export.json").read_text()) if (work / "export.json").is_file() else {}
    (work / "export.json").write_text(json.dumps(result["export"]))
    manifest = load_bundle(bundle).manifest
    result["bundle"] = {
        "components": [{"name": e.name, "precision": e.precision, "mb": round(e.total_bytes / 1e6, 1),
                        "external_data_mb": round(e.external_data["bytes"] / 1e6, 1) if e.external_data else None,
                        "parity_max_rel": e.parity.get("max_rel"), "bound": e.notes.get("parity_bound"),
                        "storage": e.notes.get("storage")} for e in manifest.components],
        "end_to_end_waveform": manifest.built_with.get("end_to_end_waveform"),
        "unet_layout": manifest.config.unet.layout,
    }
    video = write_parity_video(work / "clip.mp4", seconds=video_seconds)
    result["runs"] = {}
    for precision in ("fp32", "fp16"):
        report = work / f"run-{precision}.json"
        row = _run_measured([sys.executable, "-m", "vem.runtime.cli", str(video), "--bundle", str(bundle),
                             "--precision", precision, "--steps", str(steps), "--seed", str(seed), "--report",
                             str(report), "-o", str(work / f"clip.{precision}.wav"), "--force", "-q"],
                            work / f"run-{precision}.log", timeout_s)
        if row["exit_code"] == 0 and report.is_file():
            data = json.loads(report.read_text())
            row["timings_s"] = {k: round(v, 3) for k, v in data.get("timings_s", {}).items()}
        result["runs"][precision] = row
    _write(out, result)
    return result


def _write(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="folder for the bundle, the clip and the logs (reused: an "
                                                      "existing bundle there is not exported again)")
    parser.add_argument("--out", default=str(RESULT))
    parser.add_argument("--video-seconds", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=4, help="sampler steps of the vem-run runs")
    parser.add_argument("--max-seconds", type=float, default=4.0, help="longest window of the exported graphs")
    parser.add_argument("--from-audioldm2", metavar="DIR", help="export this AudioLDM 2 checkpoint instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--external-data-above", metavar="MB", type=float,
                        help="export graphs over this size in ONNX's external-data form (vem-export's flag; "
                             "default 2000: none of the paper config's graphs)")
    args = parser.parse_args(argv)
    result = run(Path(args.work), Path(args.out), video_seconds=args.video_seconds, steps=args.steps,
                 max_seconds=args.max_seconds, source=args.from_audioldm2 or "paper", seed=args.seed,
                 external_data_above_mb=args.external_data_above)
    print(json.dumps({k: result[k] for k in ("export", "runs")}, indent=2, default=str)[:4000])
    return 0 if all(r["exit_code"] == 0 for r in result["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
