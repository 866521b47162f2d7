"""The torch-free half of the frame-level parser: TransNetV2's windowing and cut extraction."""

import numpy as np
import pytest

from vem.runtime.transitions import detect_cuts, sliding_windows, transition_frames


def _numbered_frames(n: int) -> np.ndarray:
    # frame i carries the value i (mod 256) everywhere, so windows can be read back
    return (np.arange(n, dtype=np.int64) % 256).astype(np.uint8)[:, None, None, None] * np.ones(
        (1, 27, 48, 3), np.uint8
    )


@pytest.mark.parametrize("n", [1, 49, 50, 51, 100, 149, 230])
def test_windows_follow_transnetv2_padding_and_stride(n):
    frames = _numbered_frames(n)
    windows = sliding_windows(frames, 100)
    assert windows.shape == (int(np.ceil(n / 50)), 100, 27, 48, 3)
    middles = windows[:, 25:75, 0, 0, 0].reshape(-1)[:n]
    # the middle 50 frames of window i are input frames [50 i, 50 i + 50): every frame once
    np.testing.assert_array_equal(middles, np.arange(n) % 256)
    # 25 copies of the first frame in front, the last frame repeated behind
    np.testing.assert_array_equal(windows[0, :25, 0, 0, 0], np.zeros(25))
    assert (windows[-1, :, 0, 0, 0][-25:] == (n - 1) % 256).all()


def test_windows_reject_bad_window_and_empty_input():
    with pytest.raises(ValueError, match="multiple of 4"):
        sliding_windows(_numbered_frames(10), 98)
    with pytest.raises(ValueError, match="no frames"):
        sliding_windows(_numbered_frames(0), 100)


def test_cut_time_is_the_first_frame_of_the_new_shot():
    # TransNetV2 fires on the last frame of the outgoing shot: frame 31 -> new shot from frame 32
    probabilities = np.zeros(64, np.float32)
    probabilities[31] = 0.97
    np.testing.assert_allclose(detect_cuts(probabilities, fps=16.0), [32 / 16.0])


def test_a_run_of_frames_is_one_transition_at_its_peak():
    probabilities = np.zeros(80, np.float32)
    probabilities[40:46] = [0.55, 0.7, 0.9, 0.8, 0.6, 0.52]  # a dissolve
    np.testing.assert_array_equal(transition_frames(probabilities, 0.5), [42])
    np.testing.assert_allclose(detect_cuts(probabilities, fps=16.0), [43 / 16.0])


def test_min_gap_merges_close_detections_keeping_the_stronger():
    probabilities = np.zeros(100, np.float32)
    probabilities[[10, 12, 50]] = [0.6, 0.95, 0.8]
    np.testing.assert_array_equal(transition_frames(probabilities, 0.5, min_gap_frames=4), [12, 50])
    np.testing.assert_array_equal(transition_frames(probabilities, 0.5, min_gap_frames=0), [10, 12, 50])
    assert len(detect_cuts(probabilities, fps=16.0, min_gap_s=0.25)) == 2
    assert len(detect_cuts(probabilities, fps=16.0, min_gap_s=0.0)) == 3


def test_threshold_is_strict_and_validated():
    probabilities = np.full(20, 0.5, np.float32)
    assert detect_cuts(probabilities, threshold=0.5).size == 0
    with pytest.raises(ValueError, match="threshold"):
        detect_cuts(probabilities, threshold=1.0)
    with pytest.raises(ValueError, match="fps"):
        detect_cuts(probabilities, fps=0)
    with pytest.raises(ValueError, match="one value per frame"):
        detect_cuts(probabilities.reshape(4, 5))


def test_cut_indicator_marks_the_first_frame_of_each_new_shot():
    from vem.runtime.transitions import cut_indicator

    probabilities = np.zeros(64, np.float32)
    probabilities[[15, 40]] = 0.9
    indicator = cut_indicator(detect_cuts(probabilities, fps=16.0), 64, fps=16.0)
    assert indicator.dtype == np.uint8
    np.testing.assert_array_equal(np.flatnonzero(indicator), [16, 41])
    # times from another rate land on the nearest 16 fps frame; out-of-range ones are dropped
    np.testing.assert_array_equal(np.flatnonzero(cut_indicator([1.0, 2.52, 9.0], 40)), [16])
    np.testing.assert_array_equal(np.flatnonzero(cut_indicator([1.0, 2.52, 9.0], 41)), [16, 40])


def test_runtime_transitions_module_is_torch_free():
    import subprocess
    import sys

    code = (
        "import sys, vem.runtime.transitions;"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.') or m.startswith('vem.export'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
