"""benchmarks/RESULTS.md's benchmark block is what `python -m benchmarks.report` makes of the committed JSON,
and the generator puts the recorded numbers where the table says they are."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _report():
    # benchmarks/ is not an installed package: load the script by path.
    spec = importlib.util.spec_from_file_location("vem_bench_report", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = _report()


def test_readme_block_matches_the_recorded_results():
    bench, pytest_records = report.load_records(ROOT / "benchmarks" / "results")
    assert bench, "no vem-bench record in benchmarks/results/"
    assert pytest_records, "no pytest-benchmark record in benchmarks/results/"
    readme = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    assert report.readme_block(readme) == report.render(ROOT / "benchmarks" / "results"), \
        "benchmarks/RESULTS.md's benchmark block is stale: run `python -m benchmarks.report`"


def _stage(median, low, high):
    return {"median_s": median, "min_s": low, "max_s": high, "rel_spread": (high - low) / median, "n": 2}


def test_table_rows_come_from_the_record(tmp_path):
    result = {"backend": "onnxruntime", "provider": "CPUExecutionProvider", "precision": "fp16", "config": "demo",
              "seconds": 30.0, "steps": 10, "warmup": 1, "repeats": 2, "rtf": 1.2345, "peak_rss_mib": 2048.4,
              "load_average_before": [3.5, 2.0, 1.0],
              "stages": {"total": _stage(37.0, 36.0, 38.5), "parse": _stage(5.0, 4.0, 6.0), "step": _stage(1.5, 1.4, 1.6)}}
    record = {"tool": "vem-bench", "format": 2, "results": [result],
              "machine": {"cpu": "Test CPU", "usable_cpus": 4, "load_average_at_start": [3.5, 2.0, 1.0]}}
    (tmp_path / "vem-bench-test.json").write_text(json.dumps(record))
    block = report.render(tmp_path)
    row = next(line for line in block.splitlines() if line.startswith("| Test CPU"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells == ["Test CPU, 4 CPUs, load 3.5", "demo", "fp16", "onnxruntime (CPUExecutionProvider)", "30", "10",
                     "37.0 [36.0–38.5]", "1.23", "2048", "3.5", "vem-bench-test.json"]
    stage_row = next(line for line in block.splitlines() if line.startswith("| fp16 | 30 |"))
    assert "| 5.00 |" in stage_row and "| 1.50 |" in stage_row and "| – |" in stage_row  # decode not recorded


def test_replace_block_keeps_the_rest_and_needs_markers():
    text = "# title\n\nbefore\n<!-- bench:start -->\nold\n<!-- bench:end -->\nafter\n"
    new = report.replace_block(text, "new table\n")
    assert new == "# title\n\nbefore\n<!-- bench:start -->\nnew table\n<!-- bench:end -->\nafter\n"
    assert report.readme_block(new) == "new table\n"
    with pytest.raises(ValueError, match="markers"):
        report.replace_block("no markers here", "x")


def test_plot_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = report.write_plot(tmp_path / "plot.png", ROOT / "benchmarks" / "results")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rhythm_rows_come_from_the_record(tmp_path):
    summary = {"videos": 3, "cuts": 17, "hit_70ms": 0.941, "chance_70ms": 0.262, "grid_hit_70ms": 0.97,
               "follow_median_s": 0.0021, "tempo_cv_median": 0.018, "tempo_cv_max": 0.031}
    record = {"command": "python -m benchmarks.rhythm_real --videos 3", "precision": "int8", "tracker": "madmom",
              "sets": {"free": {"summary": summary, "videos": []}}}
    (tmp_path / "rhythm.json").write_text(json.dumps(record))
    text = "\n".join(report.rhythm_lines(tmp_path))
    assert "| free | 3 | 17 | 0.941 | 0.262 | 0.970 | +2.1 | 0.018 / 0.031 |" in text
    assert "madmom" in text and "--videos 3" in text
