"""The T-UNet traces to ONNX with dynamic time and storyboard axes (the export's premise)."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch

from vem.model.attention import storyboard_mask
from vem.model.testing import randomize_zero_init_
from vem.model.unet import TUNet
from vem.runtime.config import get_config

pytest.importorskip("onnx")
NAMES = ["z", "timestep", "tokens", "storyboard_mask", "global_tokens", "aligner_features"]


def _inputs(config, batch, frames, storyboards, seed):
    g = torch.Generator().manual_seed(seed)
    seconds = frames / config.latent_frames_per_second
    start = torch.sort(torch.rand(batch, storyboards, generator=g) * seconds, dim=1).values
    duration = torch.full((batch, storyboards), seconds / storyboards)
    ctx = config.unet.context_dim
    tokens = torch.randn(batch, storyboards * 6, ctx, generator=g)
    return (
        torch.randn(batch, config.vae.latent_channels, frames, config.latent_mel_bins, generator=g),
        torch.full((batch,), 321.0),
        tokens,
        storyboard_mask(start, duration, frames, config.latent_frames_per_second),
        tokens[:, :2].contiguous(),
        torch.randn(batch, frames, config.aligner.feature_dim, generator=g),
    )


def test_unet_exports_with_dynamic_time_and_storyboards(tmp_path):
    config = get_config("demo")
    torch.manual_seed(0)
    unet = randomize_zero_init_(TUNet(config).eval(), std=0.05)
    path = tmp_path / "unet.onnx"
    dynamic = {
        "z": {0: "batch", 2: "time"},
        "timestep": {0: "batch"},
        "tokens": {0: "batch", 1: "tokens"},
        "storyboard_mask": {0: "batch", 1: "time", 2: "storyboards"},
        "global_tokens": {0: "batch"},
        "aligner_features": {0: "batch", 1: "time"},
        "eps": {0: "batch", 2: "time"},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            unet, _inputs(config, 1, 32, 3, 0), str(path), dynamo=False, opset_version=18,
            input_names=NAMES, output_names=["eps"], dynamic_axes=dynamic,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, frames, storyboards in [(1, 32, 3), (2, 80, 7), (1, 12, 1)]:
        inputs = _inputs(config, batch, frames, storyboards, seed=frames)
        with torch.no_grad():
            expected = unet(*inputs).numpy()
        (got,) = session.run(None, {name: t.numpy() for name, t in zip(NAMES, inputs)})
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
