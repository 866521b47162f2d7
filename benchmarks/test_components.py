"""Per-component latency of the runtime on ONNX Runtime (demo checkpoint bundle, fp32 and fp16),
at the sizes a 10 s video gives: PyAV decode, TransNetV2, visual encoder, TB aligner, one guided
denoiser step, VAE decoder, vocoder. The end-to-end suite and `vem-bench` time the same stages
inside the pipeline; here each runs alone, so a regression points at its component."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks._fixtures import checkpoint_bundle, pedantic, threads

SECONDS = 10.0
ROUNDS = 3
PRECISIONS = ("fp32", "fp16")


@pytest.fixture(scope="module", params=PRECISIONS)
def pipeline(request):
    from vem.runtime.pipeline import Pipeline

    return Pipeline.load(checkpoint_bundle(request.param), backend="onnxruntime", precision=request.param)


@pytest.fixture(scope="module")
def bench_video(tmp_path_factory) -> Path:
    from vem.runtime.bench import write_bench_video

    return Path(write_bench_video(tmp_path_factory.mktemp("video") / "bench_10s.mp4", SECONDS))


def _info(benchmark, pipeline, component: str) -> None:
    benchmark.group = f"component {component}: {SECONDS:g} s"
    benchmark.extra_info.update(kind="component", component=component, config=pipeline.config.name,
                                precision=pipeline.precision, seconds=SECONDS, threads=threads())


def test_decode(benchmark, bench_video):
    """PyAV: 10 s of 640x360 H.264 at 30 fps -> 16 fps frames at the three parser sizes."""
    from vem.runtime.config import get_config
    from vem.runtime.video import decode_frames

    config = get_config("demo")
    sizes = {"transitions": tuple(config.video.transition_size),
             "visual": (config.visual.frame_size, config.visual.frame_size),
             "aligner": (config.aligner.frame_size, config.aligner.frame_size)}
    benchmark.group = f"component decode: {SECONDS:g} s"
    benchmark.extra_info.update(kind="component", component="decode", seconds=SECONDS)
    decoded = pedantic(benchmark, lambda: decode_frames(bench_video, fps=16.0, sizes=sizes), rounds=ROUNDS)
    assert decoded.num_frames == 160


@pytest.mark.parametrize("component", ["transitions", "visual", "aligner", "denoiser", "vae_decoder", "vocoder"])
def test_component(benchmark, pipeline, component):
    from vem.export.graphs import Size, component_specs

    config = pipeline.config
    rng = np.random.default_rng(0)
    _info(benchmark, pipeline, component)
    if component == "transitions":
        width, height = config.video.transition_size
        frames = rng.integers(0, 256, size=(int(SECONDS * config.video.fps), height, width, 3), dtype=np.uint8)
        out = pedantic(benchmark, lambda: pipeline.detector.predict(frames), rounds=ROUNDS)
        assert out.shape == (len(frames),)
        return
    # The denoiser at batch 2 = both guidance branches: one guided step.
    batch = 2 if component == "denoiser" else 1
    feeds = component_specs(config)[component].make_inputs(config, Size(SECONDS, 8, batch=batch), rng)
    runner = pipeline.runners[component]
    out = pedantic(benchmark, lambda: runner.run(feeds), rounds=ROUNDS)
    assert all(np.isfinite(value).all() for value in out.values())
