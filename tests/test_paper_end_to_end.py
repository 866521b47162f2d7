"""The paper config (AudioLDM 2's layout, ~530 M parameters) exported at fp32 and fp16 and run by
`vem-run --bundle` on a short PyAV video (benchmarks/paper_end_to_end.py). Slow: tens of minutes
and several GiB on a 2-core CPU; `pytest -m slow tests/test_paper_end_to_end.py`."""

from __future__ import annotations

import wave

import numpy as np
import pytest

pytest.importorskip("torch")


@pytest.mark.slow
def test_paper_end_to_end_export_then_vem_run_at_both_precisions(tmp_path):
    from benchmarks.paper_end_to_end import run

    # Over 500 MB in ONNX's external-data form: the denoisers (1.5 GB fp32, 0.8 GB fp16) take the path
    # of a graph over protobuf's 2 GiB limit (a larger AudioLDM 2) through export, parity and vem-run.
    result = run(tmp_path / "work", tmp_path / "paper-end-to-end.json", video_seconds=2.0, steps=2, max_seconds=4.0,
                 external_data_above_mb=500)
    assert result["export"]["exit_code"] == 0
    assert result["bundle"]["unet_layout"] == "audioldm2"
    components = {(c["name"], c["precision"]) for c in result["bundle"]["components"]}
    assert {("denoiser", "fp32"), ("denoiser", "fp16"), ("vae_decoder", "fp16"), ("vocoder", "fp16")} <= components
    for row in result["bundle"]["components"]:
        assert row["parity_max_rel"] <= row["bound"], row
        assert (row["external_data_mb"] is not None) == (row["mb"] > 500), row
    for precision in ("fp32", "fp16"):
        run_row = result["runs"][precision]
        assert run_row["exit_code"] == 0, run_row["log_tail"]
        assert "total" in run_row["timings_s"] and len(run_row["timings_s"]) > 3
        with wave.open(str(tmp_path / "work" / f"clip.{precision}.wav")) as handle:
            frames = handle.getnframes()
            rate = handle.getframerate()
            pcm = np.frombuffer(handle.readframes(frames), dtype=np.int16)
        assert abs(frames / rate - 2.0) < 0.05
        assert np.abs(pcm).max() > 0
