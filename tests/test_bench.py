"""`vem-bench` (vem.runtime.bench): statistics, memory high-water marks, argument errors, and one
real run on the seeded demo bundle whose JSON is checked for internal consistency."""

from __future__ import annotations

import json

import pytest

from vem.runtime import bench


def test_summarise_median_spread_step_and_rtf():
    runs = [{"decode": 1.0, "diffuse": 4.0, "total": 10.0}, {"decode": 3.0, "diffuse": 6.0, "total": 14.0},
            {"decode": 2.0, "diffuse": 8.0, "total": 12.0}]
    summary = bench.summarise(runs, steps=4, seconds=6.0)
    assert summary["stages"]["decode"] == {"median_s": 2.0, "min_s": 1.0, "max_s": 3.0, "rel_spread": 1.0, "n": 3}
    assert summary["denoiser_step_s"]["median_s"] == 1.5  # 6 s of diffusion / 4 steps
    assert summary["denoiser_step_s"]["min_s"] == 1.0
    assert summary["rtf"] == pytest.approx(12.0 / 6.0)
    assert "parse" not in summary["stages"]  # absent from the runs: not invented


def test_peak_rss_is_reset_per_setting():
    """In a fresh process: the test suite's own process carries whatever earlier tests left
    resident (in CI a 1.9 GiB high-water mark the reset could not be told apart from)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import numpy as np\n"
        "from vem.runtime import bench\n"
        "if not bench.reset_peak_rss(): sys.exit(3)\n"
        "block = np.ones(300 * 2 ** 20 // 8)  # 300 MiB, touched\n"
        "high = bench.peak_rss_mib()\n"
        "del block\n"
        "assert bench.reset_peak_rss()\n"
        "print(high - bench.peak_rss_mib())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if done.returncode == 3:
        pytest.skip("this kernel does not allow resetting VmHWM (/proc/self/clear_refs)")
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) > 200


def test_no_gpu_means_no_device_numbers():
    from vem.runtime.backends.cuda import gpu_info

    if gpu_info().available:
        pytest.skip("a GPU is present")
    with bench.DevicePeak() as peak:
        pass
    assert peak.peak_mib is None
    assert bench.device_memory_used_mib() is None


def test_gemm_ceiling_is_measured():
    gemm = bench.measure_gemm_gflops(n=256, repeats=3)
    assert gemm["best_gflops"] >= gemm["median_gflops"] > 0.1


@pytest.mark.parametrize("argv, message", [
    (["--seconds", "ten"], "comma-separated numbers"),
    (["--seconds", "0"], "positive"),
    (["--precision", "fp64"], "unknown precision"),
    (["--backend", "cuda"], "unknown backend"),
    (["--repeats", "0"], "--repeats"),
    (["--steps", "0"], "--steps"),
])
def test_bad_arguments_exit_2_with_a_message(capsys, argv, message):
    assert bench.main(argv) == 2
    assert message in capsys.readouterr().err


def test_real_run_writes_consistent_json(demo_bundle, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = bench.main(["--bundle", str(demo_bundle), "--seconds", "2", "--steps", "2", "--repeats", "2",
                       "--warmup", "0", "--no-gemm", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "onnxruntime" in printed and "RTF" in printed
    record = json.loads(out.read_text())
    assert record["tool"] == "vem-bench" and record["machine"]["usable_cpus"] >= 1
    assert len(record["machine"]["load_average"]) == 3
    (row,) = record["results"]
    assert (row["precision"], row["seconds"], row["steps"], row["repeats"]) == ("fp32", 2.0, 2, 2)
    stages = row["stages"]
    for stage in ("decode", "parse", "condition", "diffuse", "step", "vae_decoder", "vocoder", "analyse", "write",
                  "total", "cpu"):
        assert stages[stage]["n"] == 2 and 0 <= stages[stage]["min_s"] <= stages[stage]["median_s"] <= stages[stage]["max_s"]
    # every run: the top-level stages add up to no more than its total
    for run in row["runs"]:
        parts = sum(run[s] for s in ("decode", "parse", "condition", "diffuse", "decode_audio", "analyse", "write"))
        assert parts <= run["total"] + 1e-6
        assert run["vae_decoder"] + run["vocoder"] <= run["decode_audio"] + 1e-6
    assert row["rtf"] == pytest.approx(stages["total"]["median_s"] / 2.0)
    assert stages["step"]["median_s"] == pytest.approx(stages["diffuse"]["median_s"] / 2)
    assert row["peak_rss_mib"] > 50
    from vem.runtime.bundle import load_bundle

    manifest = load_bundle(demo_bundle).manifest
    expected = sum(manifest.component(name, "fp32").bytes
                   for name in ("transitions", "visual", "aligner", "denoiser", "vae_decoder", "vocoder"))
    assert row["graphs_total_bytes"] == expected
    assert row["engines_total_bytes"] == 0 and row["peak_device_mib"] is None


def test_default_precision_is_the_bundles_own(tmp_path, capsys):
    """A plain `vem-bench` times the precision `vem-run` would pick: on a CPU the shipped bundle's int8
    set (its fp16 graphs are for GPUs)."""
    from vem.runtime.pipeline import DEFAULT_BUNDLE

    out = tmp_path / "bench.json"
    code = bench.main(["--bundle", str(DEFAULT_BUNDLE), "--seconds", "2", "--steps", "1", "--repeats", "1",
                       "--warmup", "0", "--no-gemm", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    rows = json.loads(out.read_text())["results"]
    assert [row["precision"] for row in rows] == ["int8"]
