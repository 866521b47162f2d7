"""Cost growth from 10 s to 60 s of video (goal: linear, 60 s <= 6.5 x 10 s).

Two views in one run: one guided denoiser step at the latent sizes of 10/30/60 s (the T-UNet has
no self-attention over time, so it should grow with the latent frames: 252 -> 1500 for the demo
config, 5.95 x) and the whole pipeline, `Pipeline.generate` on real H.264 clips (decode, parse,
condition, diffusion, VAE, vocoder, beat analysis). The report divides the 60 s by the 10 s time.
The paper config's guided denoiser step (seeded random weights: latency does not depend on weight
values) is timed at the same three lengths, so the full-size model's cost per step is known too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks._fixtures import (
    STEPS,
    checkpoint_bundle,
    denoiser_feeds,
    ort_session,
    paper_component_onnx,
    paper_denoiser_onnx,
    pedantic,
    threads,
)

LENGTHS = (10.0, 30.0, 60.0)


@pytest.fixture(scope="module")
def pipeline():
    from vem.runtime.pipeline import Pipeline

    return Pipeline.load(checkpoint_bundle("fp32"), backend="onnxruntime", precision="fp32")


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[float, Path]:
    from vem.runtime.bench import write_bench_video

    folder = tmp_path_factory.mktemp("videos")
    return {s: Path(write_bench_video(folder / f"bench_{s:g}s.mp4", s)) for s in LENGTHS}


@pytest.mark.parametrize("seconds", LENGTHS)
def test_denoiser_step_scaling(benchmark, pipeline, seconds):
    feeds = denoiser_feeds(pipeline.config, seconds)
    runner = pipeline.runners["denoiser"]
    benchmark.group = "scaling: demo denoiser step"
    benchmark.extra_info.update(kind="scaling_step", config="demo", precision="fp32", seconds=seconds,
                                latent_frames=pipeline.config.latent_frames(seconds), threads=threads())
    pedantic(benchmark, lambda: runner.run(feeds), rounds=3)


@pytest.mark.parametrize("seconds", LENGTHS)
def test_end_to_end_scaling(benchmark, pipeline, videos, seconds):
    benchmark.group = f"scaling: demo end to end, {STEPS} steps"
    benchmark.extra_info.update(kind="scaling_end_to_end", config="demo", precision="fp32", seconds=seconds,
                                steps=STEPS, threads=threads())
    result = pedantic(benchmark, lambda: pipeline.generate(videos[seconds], steps=STEPS, seed=0))
    benchmark.extra_info["timings_s"] = result.report["timings_s"]
    assert abs(len(result.waveform) / result.sample_rate - seconds) < 0.1


@pytest.fixture(scope="module")
def paper_denoiser():
    return ort_session(paper_denoiser_onnx())


@pytest.mark.parametrize("seconds", LENGTHS)
def test_paper_denoiser_step_scaling(benchmark, paper_denoiser, seconds):
    from vem.runtime.config import get_config

    config = get_config("paper")
    feeds = denoiser_feeds(config, seconds)
    benchmark.group = "scaling: paper denoiser step (random weights)"
    benchmark.extra_info.update(kind="scaling_step", config="paper", precision="fp32", seconds=seconds,
                                latent_frames=config.latent_frames(seconds), threads=threads(),
                                weights="random (seed 0)")
    result = pedantic(benchmark, lambda: paper_denoiser.run(feeds), rounds=2)
    assert result["eps"].shape == feeds["latent"].shape


@pytest.mark.parametrize("component", ["vae_decoder", "vocoder"])
@pytest.mark.parametrize("seconds", (10.0, 60.0))
def test_paper_audio_decoder_scaling(benchmark, component, seconds):
    """The paper config's VAE decoder and HiFi-GAN (random weights) once per video, so that with the
    denoiser step above the whole paper generation's cost is known."""
    from vem.export.graphs import Size, component_specs
    from vem.runtime.config import get_config

    config = get_config("paper")
    session = ort_session(paper_component_onnx(component))
    feeds = component_specs(config)[component].make_inputs(config, Size(seconds, 1), np.random.default_rng(0))
    benchmark.group = f"scaling: paper {component} (random weights)"
    benchmark.extra_info.update(kind="paper_audio_decoder", component=component, config="paper", precision="fp32",
                                seconds=seconds, threads=threads(), weights="random (seed 0)")
    pedantic(benchmark, lambda: session.run(feeds), rounds=2)
