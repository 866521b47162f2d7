"""GPU proxy for the paper config: PyTorch CUDA fp16 with a captured CUDA graph, and peak device memory.

What a TensorRT fp16 engine of the paper denoiser would be measured against on a desktop GPU or
a Jetson: one guided step of the paper T-UNet (random weights: latency does not depend on their
values) in half precision, replayed from a CUDA graph (no Python or launch overhead per layer),
at 10/30/60 s, with ``torch.cuda.max_memory_allocated`` as the peak device memory of the step.
Skips with the reason when there is no CUDA device (as on the 2-core CPU machine the recorded
results come from).
"""

from __future__ import annotations

import pytest

from benchmarks._fixtures import denoiser_feeds, pedantic

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="no CUDA device here (torch.cuda.is_available() is False; this torch is "
                       f"{torch.__version__}): the GPU proxy needs an NVIDIA GPU and a CUDA build of torch"),
]


@pytest.fixture(scope="module")
def paper_fp16():
    from vem.export.bundle_writer import load_source
    from vem.export.graphs import component_specs

    model, _ = load_source("paper", seed=0)
    spec = component_specs(model.config)["denoiser"]
    module = spec.make_module(model).eval().to("cuda", dtype=torch.float16)
    return model.config, spec, module


@pytest.mark.parametrize("seconds", (10.0, 30.0, 60.0))
def test_paper_step_cuda_graph_fp16(benchmark, paper_fp16, seconds):
    config, spec, module = paper_fp16
    feeds = denoiser_feeds(config, seconds)
    static = [torch.from_numpy(feeds[name]).to("cuda") for name in spec.input_names]
    static = [t.half() if t.is_floating_point() else t for t in static]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(stream):
        for _ in range(3):  # warm-up on a side stream before capture (cuDNN autotune, allocator)
            module(*static)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.reset_peak_memory_stats()
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        out = module(*static)

    def step():
        graph.replay()
        torch.cuda.synchronize()
        return out

    benchmark.group = "gpu: paper denoiser step, fp16, CUDA graph"
    pedantic(benchmark, step, rounds=10, warmup=3)
    benchmark.extra_info.update(kind="gpu_step", config="paper", seconds=seconds, precision="fp16",
                                device=torch.cuda.get_device_name(0),
                                peak_device_mib=torch.cuda.max_memory_allocated() / 2 ** 20)
    assert torch.isfinite(out).all()
