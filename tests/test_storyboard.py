import numpy as np
import pytest

from vem.runtime.storyboard import (
    Span,
    frame_storyboard_index,
    resample_to_latent,
    segment_storyboards,
    storyboard_mask,
)


def covers(spans, duration):
    assert spans[0].start_s == 0.0
    assert spans[-1].end_s == pytest.approx(duration)
    for a, b in zip(spans, spans[1:]):
        assert a.end_s == pytest.approx(b.start_s)


def test_cuts_become_shots():
    spans = segment_storyboards([2.0, 5.5], 10.0)
    covers(spans, 10.0)
    assert [round(s.start_s, 6) for s in spans] == [0.0, 2.0, 5.5]


def test_short_shots_merge_into_shorter_neighbour():
    spans = segment_storyboards([3.0, 3.3, 8.0], 10.0, min_s=0.75)
    covers(spans, 10.0)
    assert all(s.duration_s >= 0.75 for s in spans)
    assert len(spans) == 3


def test_long_shots_split_and_cap():
    spans = segment_storyboards([], 30.0, max_s=12.0)
    covers(spans, 30.0)
    assert len(spans) == 3 and all(s.duration_s == pytest.approx(10.0) for s in spans)
    many = segment_storyboards(np.arange(1, 100) * 1.0, 100.0, max_storyboards=32)
    covers(many, 100.0)
    assert len(many) == 32


def test_degenerate_inputs():
    assert segment_storyboards([0.0, 5.0, 5.0, 99.0, float("nan")], 0.3) == [Span(0.0, 0.3)]
    with pytest.raises(ValueError):
        segment_storyboards([], 0.0)


def test_mask_marks_frames_by_centre_time():
    mask = storyboard_mask(np.array([[0.0, 1.0]]), np.array([[1.0, 1.0]]), 8, latent_fps=4.0)
    # centres 0.125, 0.375, ..., 1.875: first four in storyboard 0, last four in 1
    assert mask.shape == (1, 8, 2)
    assert mask[0, :, 0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert mask[0, :, 1].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_resample_linear_and_edges():
    features = np.arange(4, dtype=np.float32).reshape(1, 4, 1)  # frames at 16 fps
    out = resample_to_latent(features, 10, video_fps=16.0, latent_fps=25.0)
    assert out.shape == (1, 10, 1)
    assert out[0, 0, 0] == 0.0 and out[0, -1, 0] == 3.0  # past the end repeats the last frame
    assert np.all(np.diff(out[0, :, 0]) >= 0)


def test_frame_index():
    spans = [Span(0.0, 1.0), Span(1.0, 1.0)]
    assert frame_storyboard_index(np.array([0.5, 1.5, 2.5]), spans).tolist() == [0, 1, -1]
