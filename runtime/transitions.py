"""Frame-level parsing (PAPER.md §1): per-frame transition probabilities and cut times.

Runs the TransNetV2 graph that ``vem.export.transitions`` writes (input uint8
[batch, 100, 27, 48, 3], outputs ``single_frame`` and ``many_hot`` probabilities [batch, 100])
with ONNX Runtime. numpy + onnxruntime only: no torch here.

Inference follows TransNetV2's own scheme (``predict_frames`` in the reference implementation):
the frame sequence is padded with 25 copies of the first frame in front and 25-74 copies of the
last frame behind (so that the padded length is 25 + a multiple of 50 + 25), 100-frame windows
are taken every 50 frames, and each window contributes its middle 50 predictions (frames 25..74),
i.e. every frame is predicted with at least 25 frames of context on each side. Windows are run in
batches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

FRAME_HEIGHT, FRAME_WIDTH = 27, 48
DEFAULT_FPS = 16.0  # VeM parses video at 16 fps (PAPER.md §1, §4)
# TransNetV2's own default, kept at 16 fps. Measured on PyAV-written videos of panning photo shots
# (tests/test_transitions.py, `-m slow`): at 16 fps 0.5 found 49/49 hard cuts with no false cut
# (0.4: one false cut; 0.6: 47/49); on another 65-cut draw 0.5 found 62/65, 0.4 63/65, both with
# no false cut. Parsing at 16 fps lowers TransNetV2's confidence on some cuts compared with the
# source's native 24-30 fps (where 0.3-0.7 were all perfect), so thresholds above 0.6 lose cuts.
DEFAULT_THRESHOLD = 0.5
# Two detections closer than this are one transition (the stronger one is kept): 4 frames at
# 16 fps; a "shot" this short is a flash or a detector double-fire, not a storyboard.
DEFAULT_MIN_GAP_S = 0.25


class TransitionDetector:
    """TransNetV2 through ONNX Runtime: uint8 RGB frames [T, 27, 48, 3] -> probabilities [T].

    ``providers``: ONNX Runtime execution providers in order of preference (default: CPU).
    ``batch_windows``: how many 100-frame windows one ``run`` call takes.
    """

    def __init__(
        self,
        onnx_path: str | os.PathLike | Any,
        providers: Sequence[str] | None = None,
        batch_windows: int = 4,
        threads: int | None = None,
    ):
        if batch_windows < 1:
            raise ValueError(f"batch_windows must be >= 1, got {batch_windows}")
        if hasattr(onnx_path, "run") and hasattr(onnx_path, "inputs"):
            # A backend Runner (vem.runtime.backends): the pipeline's own ONNX Runtime or TensorRT
            # component, so the detector runs wherever the rest of the bundle runs.
            self.session = _RunnerSession(onnx_path)
            onnx_path = f"bundle component {onnx_path.component}"
        else:
            import onnxruntime as ort

            if not os.path.isfile(onnx_path):
                raise ValueError(f"transition model not found: {onnx_path}")
            options = ort.SessionOptions()
            if threads is not None:
                options.intra_op_num_threads = threads
            self.session = ort.InferenceSession(
                str(onnx_path), options, providers=list(providers or ["CPUExecutionProvider"])
            )
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{onnx_path}: expected one input (frames), found {[i.name for i in inputs]}")
        shape = inputs[0].shape
        if inputs[0].type != "tensor(uint8)" or len(shape) != 5 or list(shape[2:]) != [FRAME_HEIGHT, FRAME_WIDTH, 3]:
            raise ValueError(
                f"{onnx_path}: not a TransNetV2 graph (input {inputs[0].name} {inputs[0].type} {shape}; "
                f"expected uint8 [batch, window, {FRAME_HEIGHT}, {FRAME_WIDTH}, 3])"
            )
        if not isinstance(shape[1], int) or shape[1] % 4 != 0:
            raise ValueError(f"{onnx_path}: the window length must be a fixed multiple of 4, got {shape[1]}")
        outputs = [o.name for o in self.session.get_outputs()]
        if "single_frame" not in outputs:
            raise ValueError(f"{onnx_path}: no 'single_frame' output (outputs: {outputs})")
        self.input_name = inputs[0].name
        self.has_many_hot = "many_hot" in outputs
        self.window = int(shape[1])  # 100 for TransNetV2
        self.context = self.window // 4  # 25 frames each side
        self.step = self.window // 2  # 50 frames predicted per window
        self.batch_windows = batch_windows

    def _check_frames(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[1:] != (FRAME_HEIGHT, FRAME_WIDTH, 3):
            raise ValueError(
                f"frames must be RGB images [T, {FRAME_HEIGHT}, {FRAME_WIDTH}, 3] (height 27, width 48), "
                f"got shape {frames.shape}; resize the decoded video to 48x27 first"
            )
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (0..255), got {frames.dtype}")
        if frames.shape[0] == 0:
            raise ValueError("no frames: the video decoded to zero frames")
        return frames

    def windows(self, frames: np.ndarray) -> np.ndarray:
        """See :func:`sliding_windows` (with this graph's window length)."""
        return sliding_windows(self._check_frames(frames), self.window)

    def predict_heads(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-frame (single-frame, many-hot) probabilities, float32 [T] each (many-hot is None
        if the graph has no such output)."""
        frames = self._check_frames(frames)
        n = frames.shape[0]
        windows = sliding_windows(frames, self.window)
        names = ["single_frame"] + (["many_hot"] if self.has_many_hot else [])
        middle = slice(self.context, self.context + self.step)
        single_parts, many_parts = [], []
        for start in range(0, len(windows), self.batch_windows):
            batch = np.ascontiguousarray(windows[start : start + self.batch_windows])
            outputs = self.session.run(names, {self.input_name: batch})
            single_parts.append(outputs[0][:, middle].reshape(-1))
            if self.has_many_hot:
                many_parts.append(outputs[1][:, middle].reshape(-1))
        single = np.concatenate(single_parts)[:n].astype(np.float32)
        many = np.concatenate(many_parts)[:n].astype(np.float32) if self.has_many_hot else None
        return single, many

    def predict(self, frames: np.ndarray) -> np.ndarray:
        """Per-frame transition probability, float32 [T], for uint8 frames [T, 27, 48, 3]."""
        return self.predict_heads(frames)[0]


class _RunnerSession:
    """The slice of onnxruntime.InferenceSession's interface the detector uses, over a Runner."""

    _TYPES = {"uint8": "tensor(uint8)", "float32": "tensor(float)", "float16": "tensor(float16)"}

    class _Arg:
        def __init__(self, name: str, type_: str, shape: list):
            self.name, self.type, self.shape = name, type_, shape

    def __init__(self, runner: Any):
        self.runner = runner

    def _args(self, infos: Any) -> list:
        return [
            self._Arg(i.name, self._TYPES.get(np.dtype(i.dtype).name, str(i.dtype)), list(i.shape))
            for i in infos
        ]

    def get_inputs(self) -> list:
        return self._args(self.runner.inputs)

    def get_outputs(self) -> list:
        return self._args(self.runner.outputs)

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs = self.runner.run(feeds)
        return [np.asarray(outputs[name]) for name in names]


def sliding_windows(frames: np.ndarray, window: int = 100) -> np.ndarray:
    """TransNetV2's inference windows over ``frames`` [T, ...]: [ceil(T / (window/2)), window, ...].

    The sequence is padded with ``window/4`` copies of the first frame in front and with copies
    of the last frame behind up to ``window/4`` + a multiple of ``window/2``; windows start every
    ``window/2`` frames, and window ``i``'s frames ``[window/4, 3*window/4)`` are frames
    ``[i*window/2, (i+1)*window/2)`` of the input. Returned as a strided view (no copy beyond
    the padded array).
    """
    frames = np.asarray(frames)
    if window % 4 != 0 or window <= 0:
        raise ValueError(f"window must be a positive multiple of 4, got {window}")
    if frames.shape[0] == 0:
        raise ValueError("no frames to window")
    context, step = window // 4, window // 2
    n = frames.shape[0]
    tail = context + (-n) % step  # padded length = context + ceil(n/step)*step + context
    padded = np.concatenate(
        [np.repeat(frames[:1], context, axis=0), frames, np.repeat(frames[-1:], tail, axis=0)]
    )
    view = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)[::step]
    # sliding_window_view puts the window axis last: move it next to the batch axis
    return np.moveaxis(view, -1, 1)


def transition_frames(
    probabilities: np.ndarray, threshold: float = DEFAULT_THRESHOLD, min_gap_frames: int = 0
) -> np.ndarray:
    """Indices of the peak frame of each transition.

    A transition is a run of consecutive frames with probability > ``threshold`` (a gradual
    transition spans several frames); its frame is the run's most probable one. Peaks closer
    than ``min_gap_frames`` are merged, keeping the more probable.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 1:
        raise ValueError(f"probabilities must be one value per frame [T], got shape {probabilities.shape}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    above = probabilities > threshold
    if not above.any():
        return np.zeros(0, dtype=np.int64)
    edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    peaks = [int(s + np.argmax(probabilities[s:e])) for s, e in zip(starts, ends)]
    merged: list[int] = []
    for peak in peaks:
        if merged and peak - merged[-1] < min_gap_frames:
            if probabilities[peak] > probabilities[merged[-1]]:
                merged[-1] = peak
            continue
        merged.append(peak)
    return np.asarray(merged, dtype=np.int64)


def detect_cuts(
    probabilities: np.ndarray,
    fps: float = DEFAULT_FPS,
    threshold: float = DEFAULT_THRESHOLD,
    min_gap_s: float = DEFAULT_MIN_GAP_S,
) -> np.ndarray:
    """Transition times in seconds, float64, ascending.

    Convention: TransNetV2 marks the *last frame of the outgoing shot* of a hard cut (its
    training labels do; measured on our test videos, see tests/test_transitions.py), so with
    frame ``i`` shown at ``i / fps`` the cut time is ``(peak + 1) / fps``: the boundary between
    the transition frame and the first frame of the new shot, i.e. the time at which the new
    shot is first seen in the 16 fps sequence. For a gradual transition the peak is its most
    probable frame.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if min_gap_s < 0:
        raise ValueError(f"min_gap_s must be >= 0, got {min_gap_s}")
    peaks = transition_frames(probabilities, threshold, int(np.ceil(min_gap_s * fps - 1e-9)))
    return (peaks + 1).astype(np.float64) / fps


def cut_indicator(cut_times: np.ndarray, n_frames: int, fps: float = DEFAULT_FPS) -> np.ndarray:
    """The paper's frame-level output (PAPER.md §1): a binary indicator per frame at ``fps``,
    uint8 [n_frames], 1 on the first frame of each new shot (frame ``round(t * fps)`` for a cut
    at ``t`` seconds). Cuts outside the frame range are dropped.

    With :func:`detect_cuts` at the same fps this marks frame ``peak + 1``; cut times from a
    detector run at another rate (say the video's native rate) map onto the 16 fps grid here.
    """
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    indicator = np.zeros(n_frames, dtype=np.uint8)
    frames = np.rint(np.asarray(cut_times, dtype=np.float64) * fps).astype(np.int64)
    indicator[frames[(frames >= 0) & (frames < n_frames)]] = 1
    return indicator
