"""benchmarks/RESULTS.md's benchmark tables and plot, generated from the recorded JSON (never typed by hand).

    python -m benchmarks.report                  # rewrite benchmarks/RESULTS.md between the markers + the PNG
    python -m benchmarks.report --check          # exit 1 if RESULTS.md is not what the JSON gives
    python -m benchmarks.report --print          # the Markdown block only

Reads every ``benchmarks/results/*.json``: `vem-bench --json` records (whole pipeline, per
precision, per video length) and ``pytest benchmarks/ --benchmark-json`` records (the side-by-side
comparisons: ONNX Runtime vs PyTorch eager, 10 -> 60 s growth, the paper config, the FLOP floor).
The Markdown goes between ``<!-- bench:start -->`` and ``<!-- bench:end -->`` in benchmarks/RESULTS.md; the plot
(wall time vs video length per precision) to ``benchmarks/results/time_vs_length.png``.
Standard library only, except matplotlib for the plot.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "benchmarks" / "RESULTS.md"  # the generated tables live here, not in the user README
PLOT = RESULTS / "time_vs_length.png"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


# ---- reading -------------------------------------------------------------------------------------
Files = list[tuple[Path, dict]]  # (path, parsed JSON) of every record, by file name
Source = Path | Files  # a folder to read, or its files already read


def load_files(folder: Path = RESULTS) -> Files:
    """Every ``*.json`` of the folder, by file name, read and parsed once (`render` passes the list
    to each table instead of every table reading the folder again)."""
    return [(path, json.loads(path.read_text())) for path in sorted(folder.glob("*.json"))]


def _files(source: Source) -> Files:
    return load_files(source) if isinstance(source, Path) else source


def load_records(source: Source = RESULTS) -> tuple[list[dict], list[dict]]:
    """(vem-bench records, pytest-benchmark records) from the folder's JSON files, by file name."""
    bench, pytest_records = [], []
    for path, data in _files(source):
        data = {**data, "_file": path.name}
        if data.get("tool") == "vem-bench":
            bench.append(data)
        elif data.get("tool") == "vem-bench --front-end":
            continue  # front_end_lines reads these
        elif "benchmarks" in data:
            pytest_records.append(data)
    return bench, pytest_records


def machine_text(machine: dict) -> str:
    cpus = machine.get("usable_cpus") or machine.get("logical_cpus")
    load = machine.get("load_average_at_start") or machine.get("load_average")
    text = f"{machine.get('cpu', '?')}, {cpus} CPUs"
    if load:
        text += f", load {load[0]:g}"
    return text


def _pytest_machine_text(record: dict) -> str:
    """CPU and core count from pytest-benchmark's machine_info, the 1-minute load average range
    over the run from each benchmark's extra_info (recorded by benchmarks._fixtures.pedantic)."""
    info = record.get("machine_info", {})
    cpu = info.get("cpu", {})
    name = cpu.get("brand_raw") or info.get("processor") or info.get("machine", "?")
    count = cpu.get("count")
    text = f"{name}, {count} CPUs" if count else name
    loads = [b["extra_info"]["load_average"][0] for b in record["benchmarks"] if b["extra_info"].get("load_average")]
    if loads:
        text += f", load {min(loads):g}–{max(loads):g}"
    return text


# ---- the vem-bench table -------------------------------------------------------------------------
def results_rows(records: list[dict]) -> list[dict]:
    rows = []
    for record in records:
        for result in record["results"]:
            rows.append({"machine": machine_text(record["machine"]), "file": record["_file"], **result})
    rows.sort(key=lambda r: (r["machine"], r["config"], r["backend"], r["precision"], r["seconds"]))
    return rows


def results_table(records: list[dict]) -> str:
    lines = ["| machine | config | precision | backend | video (s) | steps | wall time (s), median [min–max] "
             "| RTF | peak RAM (MiB) | load avg (1 min) | record |",
             "|---|---|---|---|---:|---:|---|---:|---:|---:|---|"]
    for r in results_rows(records):
        total = r["stages"]["total"]
        load = r.get("load_average_before")
        load_text = f"{load[0]:g}" if load else "–"
        lines.append(f"| {r['machine']} | {r['config']} | {r['precision']} | {r['backend']} ({r['provider']}) | "
                     f"{r['seconds']:g} | {r['steps']} | {total['median_s']:.1f} [{total['min_s']:.1f}–"
                     f"{total['max_s']:.1f}] | {r['rtf']:.2f} | {r['peak_rss_mib']:.0f} | {load_text} | {r['file']} |")
    return "\n".join(lines)


STAGE_COLUMNS = (("decode", "decode"), ("parse", "parse"), ("condition", "condition"), ("step", "1 step"),
                 ("diffuse", "diffusion"), ("vae_decoder", "VAE"), ("vocoder", "vocoder"), ("analyse", "analyse"),
                 ("write", "write"), ("total", "total"), ("cpu", "CPU s"))


def stages_table(records: list[dict]) -> str:
    head = " | ".join(label for _, label in STAGE_COLUMNS)
    lines = [f"| precision | video (s) | {head} |", "|---|---:|" + "---:|" * len(STAGE_COLUMNS)]
    for r in results_rows(records):
        cells = []
        for key, _ in STAGE_COLUMNS:
            value = r["stages"].get(key)
            cells.append(f"{value['median_s']:.2f}" if value else "–")
        lines.append(f"| {r['precision']} | {r['seconds']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- the comparisons (pytest-benchmark) ----------------------------------------------------------
def _benchmarks(records: list[dict]) -> list[dict]:
    out = []
    for record in records:
        for bench in record["benchmarks"]:
            out.append({**bench["extra_info"], "median_s": bench["stats"]["median"], "min_s": bench["stats"]["min"],
                        "max_s": bench["stats"]["max"], "rounds": bench["stats"]["rounds"], "name": bench["name"],
                        "file": record["_file"]})
    return out


def _find(benches: list[dict], **match: Any) -> dict | None:
    for bench in benches:
        if all(bench.get(key) == value for key, value in match.items()):
            return bench
    return None


def _t(bench: dict) -> str:
    text = f"{bench['median_s']:.3g} s [{bench['min_s']:.3g}–{bench['max_s']:.3g}], n={bench['rounds']}"
    if bench.get("cpu_s_median") is not None:
        text += f"; CPU {bench['cpu_s_median']:.3g} s"
    return text


def comparison_lines(records: list[dict]) -> list[str]:
    """A/B rows: ONNX Runtime vs PyTorch eager (per thread count and record), 10 s vs 60 s."""
    lines = ["| comparison (one run, side by side) | threads | A | B | B / A wall | B / A CPU | record |",
             "|---|---:|---|---|---:|---:|---|"]

    def pair(label: str, a: dict | None, b: dict | None) -> None:
        if not (a and b):
            return
        cpu = (f"{b['cpu_s_median'] / a['cpu_s_median']:.2f}×"
               if a.get("cpu_s_median") and b.get("cpu_s_median") else "–")
        lines.append(f"| {label} | {a.get('threads', '–')} | {_t(a)} | {_t(b)} | "
                     f"{b['median_s'] / a['median_s']:.2f}× | {cpu} | {a['file']} |")

    for record in records:
        benches = _benchmarks([record])
        for kind, config in (("generation", "demo"), ("denoiser_step", "demo"), ("denoiser_step", "paper")):
            ort = _find(benches, kind=kind, config=config, path="onnxruntime")
            eager = _find(benches, kind=kind, config=config, path="torch_eager")
            if ort and eager:
                what = (f"{config} generation, {ort['seconds']:g} s, {ort.get('steps')} steps" if kind == "generation"
                        else f"{config} denoiser step, {ort['seconds']:g} s")
                pair(f"{what}: A = ONNX Runtime, B = PyTorch eager (fp32)", ort, eager)
        for kind, config, label in (("scaling_step", "demo", "demo denoiser step"),
                                    ("scaling_end_to_end", "demo", "demo end to end"),
                                    ("scaling_step", "paper", "paper denoiser step (random weights)")):
            short = _find(benches, kind=kind, config=config, seconds=10.0)
            long = _find(benches, kind=kind, config=config, seconds=60.0)
            if short and long:
                pair(f"{label}: A = 10 s, B = 60 s of video (linear ≈ 6)", short, long)
    return lines if len(lines) > 2 else []


def floor_lines(records: list[dict]) -> list[str]:
    """Achieved FLOP rates of the measured denoiser steps against the GEMM ceiling measured on the
    same machine: in wall time (same thread count) and per CPU second (contention-free)."""
    benches = _benchmarks(records)
    table = _find(benches, kind="flop_table")
    gemms = [b for b in benches if b.get("kind") == "gemm"]
    if not table or not gemms:
        return []
    flops = {(row["config"], row["seconds"]): row["gflop_per_step"] for row in table["rows"]}

    def wall_rate(b: dict) -> float:
        return 2 * b["n"] ** 3 / b["min_s"] / 1e9

    def cpu_rate(b: dict) -> float | None:
        return 2 * b["n"] ** 3 / b["cpu_s_median"] / 1e9 if b.get("cpu_s_median") else None

    lines = ["GEMM ceiling (float32 1024 × 1024 products; wall rate = best of the rounds; numpy runs at its "
             "BLAS default threads; each step below is compared with the GEMM of its own run when that run "
             "measured one):", ""]
    for b in gemms:
        per_cpu = cpu_rate(b)
        lines.append(f"- {b['library']}, threads {b.get('threads', 'BLAS default')}: {wall_rate(b):.1f} GFLOP/s wall"
                     + (f", {per_cpu:.1f} GFLOP per CPU second" if per_cpu else "") + f" ({b['file']})")
    cpu_ceiling = max((cpu_rate(b) for b in gemms if cpu_rate(b)), default=None)
    lines += ["", "| denoiser step | threads | GFLOP / step | measured | GFLOP/s (wall) | of GEMM wall rate, same "
              "threads | GFLOP per CPU s | of GEMM per CPU s | record |", "|---|---:|---:|---|---:|---:|---:|---:|---|"]
    for bench in benches:
        if bench.get("kind") not in ("denoiser_step", "scaling_step"):
            continue
        key = (bench["config"], float(bench["seconds"]))
        if key not in flops:
            continue
        gflop = flops[key]
        achieved = gflop / bench["median_s"]
        # The ceiling from the same run when it measured one (same load), else any run's.
        local = [b for b in gemms if b.get("file") == bench.get("file")] or gemms
        same = ([wall_rate(b) for b in local if b.get("threads") == bench.get("threads")]
                or [wall_rate(b) for b in gemms if b.get("threads") == bench.get("threads")]
                or [wall_rate(b) for b in gemms])
        row_ceiling = max((cpu_rate(b) for b in local if cpu_rate(b)), default=cpu_ceiling)
        per_cpu = gflop / bench["cpu_s_median"] if bench.get("cpu_s_median") else None
        lines.append(f"| {bench['config']}, {bench['seconds']:g} s, {bench.get('path', 'onnxruntime')} | "
                     f"{bench.get('threads', '–')} | {gflop:.1f} | {_t(bench)} | {achieved:.1f} | "
                     f"{achieved / max(same):.0%} | {f'{per_cpu:.1f}' if per_cpu else '–'} | "
                     f"{f'{per_cpu / row_ceiling:.0%}' if per_cpu and row_ceiling else '–'} | {bench['file']} |")
    lines.append("")
    lines.append("| config | " + " | ".join(f"{s:g} s" for s in (10.0, 30.0, 60.0)) + " |")
    lines.append("|---|---:|---:|---:|")
    for config in ("demo", "paper"):
        cells = [f"{flops[(config, s)]:.1f}" if (config, s) in flops else "–" for s in (10.0, 30.0, 60.0)]
        lines.append(f"| GFLOP per guided step, {config} | " + " | ".join(cells) + " |")
    return lines


def gpu_lines(records: list[dict]) -> list[str]:
    """The GPU proxy (`benchmarks/test_gpu.py`): PyTorch CUDA fp16 steps replayed from a captured
    CUDA graph, with the FLOP rate where the FLOP table (`vem.export.flops`) has the size."""
    benches = _benchmarks(records)
    table = _find(benches, kind="flop_table")
    flops = {(row["config"], row["seconds"]): row["gflop_per_step"] for row in table["rows"]} if table else {}
    lines = ["| GPU proxy step | device | precision | median [min–max] | TFLOP/s | peak device memory (MiB) | record |",
             "|---|---|---|---|---:|---:|---|"]
    for bench in benches:
        if bench.get("kind") != "gpu_step":
            continue
        gflop = flops.get((bench["config"], float(bench["seconds"])))
        rate = f"{gflop / bench['median_s'] / 1e3:.1f}" if gflop else "–"
        lines.append(f"| {bench['config']} denoiser, guided, {bench['seconds']:g} s | {bench.get('device', '?')} | "
                     f"{bench['precision']} | {bench['median_s'] * 1e3:.2f} ms [{bench['min_s'] * 1e3:.2f}–"
                     f"{bench['max_s'] * 1e3:.2f}], n={bench['rounds']} | {rate} | "
                     f"{bench.get('peak_device_mib', float('nan')):.0f} | {bench['file']} |")
    return lines if len(lines) > 2 else []


def growth_lines(bench_records: list[dict]) -> list[str]:
    lines = []
    for r in results_rows(bench_records):
        if r["seconds"] != 60.0:
            continue
        short = next((s for s in results_rows(bench_records) if s["seconds"] == 10.0 and s["precision"] == r["precision"]
                      and s["machine"] == r["machine"] and s["backend"] == r["backend"]), None)
        if short:
            ratio = r["stages"]["total"]["median_s"] / short["stages"]["total"]["median_s"]
            cpu = ""
            if "cpu" in r["stages"] and "cpu" in short["stages"]:
                cpu = f", {r['stages']['cpu']['median_s'] / short['stages']['cpu']['median_s']:.2f}× in CPU seconds"
            lines.append(f"- vem-bench {r['precision']}: 60 s of video takes {ratio:.2f}× the 10 s wall time{cpu} "
                         f"(goal ≤ 6.5×; 6× is linear).")
    return lines


FRONT_END_ROWS = (
    ("bare_decode_60s_1080p", "bare PyAV decode (threaded), 60 s 1080p"),
    ("parse_only_60s_1080p", "`vem-run --parse-only`, 60 s 1080p"),
    ("generate_60s_1080p", "`vem-run`, 60 s 1080p"),
    ("generate_60s_1080p_compared", "`vem-run` of the compared install, 60 s 1080p"),
    ("generate_10s_720p", "`vem-run`, 10 s 720p"),
    ("generate_10s_720p_compared", "`vem-run` of the compared install, 10 s 720p"),
)


def front_end_lines(source: Source = RESULTS) -> list[str]:
    """Whole processes timed from outside (`vem-bench --front-end` records)."""
    lines: list[str] = []
    for path, data in _files(source):
        if data.get("tool") != "vem-bench --front-end":
            continue
        summary = data["summary"]
        lines += [f"Whole processes, default settings (`vem-bench --front-end`, {path.name}; "
                  f"{machine_text(data['machine'])}; median of {data['repeats']} processes each"
                  + (f"; compared install: `{data['compare_python']}`" if data.get("compare_python") else "") + "):",
                  "", "| process | wall (s) | CPU (s) | peak RSS (MiB) |", "|---|---:|---:|---:|"]
        for key, label in FRONT_END_ROWS:
            row = data["results"].get(key)
            if row:
                lines.append(f"| {label} | {row['wall_s']:.2f} | {row['cpu_s']:.2f} | {row['peak_rss_mib']:.0f} |")
        lines += ["", f"`--parse-only` / bare decode: {summary['parse_only_over_bare_decode']:.2f}x; "
                      f"10 s 720p RTF {summary['rtf_10s_720p']:.2f}; 60 s 1080p generation peak "
                      f"{summary['peak_rss_60s_1080p_mib']:.0f} MiB.", ""]
    return lines


def _rhythm_real_caption(command: str, name: str, data: dict) -> str:
    before = ("Before (the previous version's behaviour: one steady tempo from all transitions, no "
              "onset compensation): " if "--raw" in command else "")
    return (f"{before}Beats on the true cuts of held-out real-photo slideshows (`{command}`, {name}; "
            f"{data['precision']} bundle, beats tracked by {data['tracker']} in the written waveform; "
            f"grid = share of cuts the asked grid puts within 70 ms of a beat, follow = median tracked "
            f"beat - asked beat):")


def _synth_tempo_maps_caption(command: str, name: str, data: dict) -> str:
    return (f"Steady against tempo-map music, vem-synth clips with their true parses (`{command}`, "
            f"{name}; beats by {data['tracker']}):")


class RhythmTable(NamedTuple):
    """One table per record whose command starts with ``prefix``: its caption, the summary key
    (and column) of a set's size, and the two columns after the six all rhythm tables share."""

    prefix: str
    caption: Callable[[str, str, dict], str]  # (command, file name, record)
    size: str
    last_headers: tuple[str, str]
    last_cells: Callable[[dict], tuple[str, str]]  # from a set's summary


RHYTHM_TABLES = (
    RhythmTable("python -m benchmarks.rhythm_real", _rhythm_real_caption, "videos",
                ("follow (ms)", "beat-interval CV (median / max)"),
                lambda s: (f"{s['follow_median_s'] * 1000:+.1f}", f"{s['tempo_cv_median']:.3f} / {s['tempo_cv_max']:.3f}")),
    RhythmTable("python -m benchmarks.synth_tempo_maps", _synth_tempo_maps_caption, "clips",
                ("asked beats followed", "reference beats matched"),
                lambda s: (f"{s['asked_beats_followed']:.3f}", f"{s['reference_beats_matched']:.3f}")),
)


def _rhythm_table(table: RhythmTable, path: Path, data: dict) -> list[str]:
    headers = ("set", table.size, "hard cuts", "beat within 70 ms", "random cut times", "grid", *table.last_headers)
    lines = [table.caption(str(data["command"]), path.name, data), "",
             "| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    for kind, item in data["sets"].items():
        s = item["summary"]
        cells = (kind, str(s[table.size]), str(s["cuts"]), f"{s['hit_70ms']:.3f}", f"{s['chance_70ms']:.3f}",
                 f"{s['grid_hit_70ms']:.3f}", *table.last_cells(s))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def rhythm_lines(source: Source = RESULTS) -> list[str]:
    """Beats on held-out cuts (`python -m benchmarks.rhythm_real` and `.synth_tempo_maps` records)."""
    lines: list[str] = []
    for path, data in _files(source):
        command = str(data.get("command", ""))
        table = next((t for t in RHYTHM_TABLES if command.startswith(t.prefix)), None)
        if table is not None:
            lines += _rhythm_table(table, path, data)
    return lines


def external_data_lines(source: Source = RESULTS) -> list[str]:
    """A graph over 2 GiB through the export's steps (`python -m benchmarks.external_data` records)."""
    lines: list[str] = []
    for path, data in _files(source):
        if not str(data.get("command", "")).startswith("python -m benchmarks.external_data"):
            continue
        steps = data["steps"]
        lines += [f"A {data['weights_bytes'] / 1e9:.2f} GB graph ({data['layers']} x Linear({data['width']}) + GELU) "
                  f"through the export's steps (`{data['command']}`, {path.name}; process peak "
                  f"{data['peak_rss_gib']:.1f} GiB):", "",
                  "| step | seconds | graph file (MB) | external data (MB) |", "|---|---:|---:|---:|"]
        for step in ("export_onnx", "clean_graph", "convert_to_fp16", "store_weights_fp16"):
            row = steps[step]
            lines.append(f"| {step} | {row['seconds']:.1f} | {row['graph_bytes'] / 1e6:.2f} "
                         f"| {row['external_data_bytes'] / 1e6:.0f} |")
        lines += ["", "ONNX Runtime vs PyTorch, max relative error: " + ", ".join(
            f"{kind} {steps[f'run_{kind}']['max_rel']:.1e}" for kind in ("fp32", "fp16_compute", "fp16_storage")
            if f"run_{kind}" in steps) + ".", ""]
    return lines


def render(folder: Path = RESULTS) -> str:
    """The whole Markdown block that goes between the markers of benchmarks/RESULTS.md."""
    files = load_files(folder)  # read once, passed to every table
    bench, pytest_records = load_records(files)
    parts = ["<!-- generated by `python -m benchmarks.report` from benchmarks/results/*.json; do not edit -->", ""]
    parts += front_end_lines(files)
    parts += rhythm_lines(files)
    parts += external_data_lines(files)
    if bench:
        steps = sorted({r["steps"] for r in results_rows(bench)})
        repeats = sorted({(r["warmup"], r["repeats"]) for r in results_rows(bench)})
        parts += [f"Whole pipeline (`vem-bench`: real H.264 clips, {', '.join(map(str, steps))} sampler steps, "
                  f"{'; '.join(f'{w} warm-up + {n} timed runs' for w, n in repeats)}; wall time includes "
                  "decoding, parsing, diffusion, VAE, vocoder, beat analysis and writing the WAV and mp4; "
                  "RTF = wall time / video length):", "", results_table(bench), "",
                  "Median seconds per stage (same runs):", "", stages_table(bench), ""]
        parts += growth_lines(bench)
        parts.append("")
    comparison = comparison_lines(pytest_records)
    if comparison:
        machines = "; ".join(f"{r['_file']}: {_pytest_machine_text(r)}" for r in pytest_records)
        parts += [f"Side-by-side comparisons (`pytest benchmarks/`; {machines}):", "", *comparison, ""]
    floor = floor_lines(pytest_records)
    if floor:
        parts += ["The floor (`vem.export.flops`: matrix products and convolutions of one guided step, 2 FLOPs "
                  "per multiply-add; the GEMM ceiling measured on this machine in the records named):", "", *floor, ""]
    gpu = gpu_lines(pytest_records)
    if gpu:
        parts += ["GPU proxy (`pytest benchmarks/test_gpu.py`: the paper config's guided denoiser step in PyTorch "
                  "CUDA fp16, random weights, replayed from a captured CUDA graph; no TensorRT on that machine, "
                  "so this stands in for the engine path):", "", *gpu, ""]
    return "\n".join(parts).rstrip() + "\n"


def replace_block(text: str, block: str) -> str:
    if START not in text or END not in text:
        raise ValueError(f"{README.name} has no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block}{END}{tail}"


def readme_block(text: str) -> str:
    """What the results file currently has between the markers."""
    return text.split(START, 1)[1].split(END, 1)[0].lstrip("\n")


# ---- the plot ------------------------------------------------------------------------------------
def write_plot(path: Path = PLOT, folder: Path = RESULTS) -> Path:
    """Wall time vs video length, one line per (config, precision, backend), min–max as error bars,
    and the straight line through the origin and the 10 s point (linear cost) for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bench, _ = load_records(folder)
    rows = results_rows(bench)
    series: dict[tuple, list[dict]] = {}
    for r in rows:
        series.setdefault((r["config"], r["precision"], r["backend"], r["steps"]), []).append(r)
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for (config, precision, backend, steps), points in sorted(series.items()):
        points.sort(key=lambda r: r["seconds"])
        xs = [p["seconds"] for p in points]
        ys = [p["stages"]["total"]["median_s"] for p in points]
        low = [y - p["stages"]["total"]["min_s"] for y, p in zip(ys, points)]
        high = [p["stages"]["total"]["max_s"] - y for y, p in zip(ys, points)]
        line = axes.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=3,
                             label=f"{config} {precision} {backend}, {steps} steps")
        if xs and xs[0] > 0:
            slope = ys[0] / xs[0]
            axes.plot([0, max(xs)], [0, slope * max(xs)], linestyle=":", color=line[0].get_color(), alpha=0.6)
    axes.plot([0, 60], [0, 60], color="grey", linewidth=0.8, label="real time (RTF 1)")
    axes.set_xlabel("video length (s)")
    axes.set_ylabel("wall time (s), median, min–max")
    machines = sorted({r["machine"] for r in rows})
    axes.set_title(f"vem-bench: {'; '.join(machines)}\n(dotted: linear from the shortest point)", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(RESULTS), help="folder of recorded JSON")
    parser.add_argument("--readme", default=str(README))
    parser.add_argument("--check", action="store_true", help="exit 1 if the benchmarks/RESULTS.md block is out of date")
    parser.add_argument("--print", action="store_true", help="print the Markdown block and stop")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    block = render(Path(args.results))
    if args.print:
        print(block, end="")
        return 0
    readme = Path(args.readme)
    text = readme.read_text()
    if args.check:
        if readme_block(text) != block:
            print(f"{readme}: the benchmark block differs from `python -m benchmarks.report`; run it", file=sys.stderr)
            return 1
        print(f"{readme}: benchmark block up to date")
        return 0
    readme.write_text(replace_block(text, block))
    print(f"wrote the benchmark block of {readme}")
    if not args.no_plot:
        print(f"wrote {write_plot(folder=Path(args.results))}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

