"""Timing MLP f_s / f_d (docs/paper.md §2): continuous in seconds, distinct across seconds."""

from __future__ import annotations

import pytest
import torch

from vem.model.timing import TimingMLP, fourier_frequencies
from vem.runtime.config import get_config


@pytest.fixture(scope="module", params=["demo", "paper"])
def timing(request):
    torch.manual_seed(0)
    config = get_config(request.param)
    return config, TimingMLP(config.condition)


def test_output_shape(timing):
    config, mlp = timing
    out = mlp(torch.rand(3, 5) * 60)
    assert out.shape == (3, 5, config.condition.timing_dim)


def test_nearby_seconds_give_nearby_vectors(timing):
    _, mlp = timing
    seconds = torch.tensor([0.0, 3.3, 17.25, 41.0, 59.9], dtype=torch.float32)
    with torch.no_grad():
        base = mlp(seconds)
        far = (mlp(seconds + 5.0) - base).norm(dim=-1)
        steps = [(mlp(seconds + delta) - base).norm(dim=-1) for delta in (1e-2, 1e-3, 1e-4)]
    # Shrinking the step 10x shrinks the change about 10x (Lipschitz, hence continuous), and
    # 10 ms moves the vector far less than 5 s does.
    assert (steps[0] < 0.2 * far).all()
    assert (steps[1] < 0.15 * steps[0]).all() and (steps[1] > 0.05 * steps[0]).all()
    assert (steps[2] < 0.15 * steps[1]).all() and (steps[2] > 0).all()


def test_different_seconds_give_different_vectors(timing):
    _, mlp = timing
    seconds = torch.arange(0.0, 60.5, 0.5)
    with torch.no_grad():
        vectors = mlp(seconds)
    distances = torch.cdist(vectors, vectors)
    off_diagonal = distances + torch.eye(len(seconds)) * 1e9
    assert off_diagonal.min() > 1e-3


def test_frequencies_are_log_spaced():
    freqs = fourier_frequencies(16)
    ratios = freqs[1:] / freqs[:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-4)
    assert freqs[0] < freqs[-1]
    with pytest.raises(ValueError):
        fourier_frequencies(0)


def test_start_and_duration_are_separate_trainable_mlps():
    from vem.model.conditioning import ConditionBuilder

    builder = ConditionBuilder(get_config("demo"))
    assert builder.start_timing is not builder.duration_timing
    assert all(p.requires_grad for p in builder.start_timing.parameters())
