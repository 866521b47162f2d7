"""The FLOP counter behind the benchmark floor (vem.export.flops), checked against counts done by hand."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from vem.export.flops import count_flops, denoiser_step_flops  # noqa: E402
from vem.runtime.config import get_config  # noqa: E402


def test_linear_layer_counts_two_flops_per_multiply_accumulate():
    # y = x W^T + b for x [5, 3], W [4, 3]: 5 * 4 outputs, each 3 multiply-adds -> 2 * 60 FLOPs.
    layer = torch.nn.Linear(3, 4)
    count = count_flops(layer, torch.zeros(5, 3))
    assert count.total == 2 * 5 * 4 * 3
    assert count.by_operator == {"addmm": 120}


def test_convolution_counts_by_output_element_and_kernel_volume():
    # Conv2d 2 -> 3 channels, 3x3 kernel, padding 1 on a 5x5 map: 3*5*5 = 75 outputs, each
    # 2 input channels * 9 taps = 18 multiply-adds -> 2 * 75 * 18 = 2700 FLOPs (bias not counted).
    layer = torch.nn.Conv2d(2, 3, kernel_size=3, padding=1)
    assert count_flops(layer, torch.zeros(1, 2, 5, 5)).total == 2 * 75 * 18


def test_attention_product_counts_both_matmuls():
    # softmax(q k^T) v with q [1, 4, 8], k, v [1, 6, 8]: q k^T is 4*6 outputs * 8, attn v is
    # 4*8 outputs * 6 -> 2 * (192 + 192) FLOPs; the softmax itself is not counted.
    q, k, v = torch.zeros(1, 4, 8), torch.zeros(1, 6, 8), torch.zeros(1, 6, 8)

    def attention(q, k, v):
        return torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v

    assert count_flops(attention, q, k, v).total == 2 * (4 * 6 * 8 + 4 * 8 * 6)


def test_denoiser_step_grows_linearly_with_length():
    """The T-UNet has no self-attention over time (README decisions), so a guided step's FLOPs are
    proportional to the latent frames (up to the constant condition builder)."""
    config = get_config("demo")
    short, long = denoiser_step_flops(config, 10.0), denoiser_step_flops(config, 60.0)
    frames_ratio = config.latent_frames(60.0) / config.latent_frames(10.0)
    assert short.total > 1e9
    assert long.total / short.total == pytest.approx(frames_ratio, rel=0.02)
    assert set(short.by_operator) >= {"convolution", "addmm"}
