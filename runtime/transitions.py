"""Frame-level parsing (docs/paper.md §1): per-frame transition probabilities and cut times.

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

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FRAME_HEIGHT, FRAME_WIDTH = 27, 48
DEFAULT_FPS = 16.0  # VeM parses video at 16 fps (docs/paper.md §1, §4)
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

    def predict_heads(self, frames: np.ndarray, windows: Sequence[int] | None = None
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-frame (single-frame, many-hot) probabilities, float32 [T] each (many-hot is None
        if the graph has no such output). ``windows``: run only these inference windows (window
        i predicts frames [i * step, (i + 1) * step)); the other frames are NaN."""
        frames = self._check_frames(frames)
        n = frames.shape[0]
        all_windows = sliding_windows(frames, self.window)
        chosen = list(range(len(all_windows))) if windows is None else sorted(set(int(w) for w in windows))
        names = ["single_frame"] + (["many_hot"] if self.has_many_hot else [])
        middle = slice(self.context, self.context + self.step)
        single = np.full(len(all_windows) * self.step, np.nan, np.float32)
        many = np.full(len(all_windows) * self.step, np.nan, np.float32) if self.has_many_hot else None
        for start in range(0, len(chosen), self.batch_windows):
            batch_ids = chosen[start : start + self.batch_windows]
            batch = np.ascontiguousarray(all_windows[batch_ids])
            outputs = self.session.run(names, {self.input_name: batch})
            for row, index in enumerate(batch_ids):
                where = slice(index * self.step, (index + 1) * self.step)
                single[where] = outputs[0][row, middle]
                if many is not None:
                    many[where] = outputs[1][row, middle]
        return single[:n], (many[:n] if many is not None else None)

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
    """The paper's frame-level output (docs/paper.md §1): a binary indicator per frame at ``fps``,
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


# ----------------------------------------------------------------------------------------------
# Frame-accurate transitions: a cheap per-source-frame signal first, TransNetV2 where it is unsure
#
# The decoder keeps a tiny thumbnail of every source frame (`vem.runtime.video.DecodedVideo.signatures`).
# A hard cut is a one-frame jump in it that stands far above the frame-to-frame change around it
# and persists (the new shot stays): such cuts are placed on their exact source frame without the
# network. TransNetV2 runs only on the 100-frame windows whose stretch of video holds something the
# signal cannot settle -- a smaller jump, or a change spread over several frames (a dissolve, a fade,
# fast motion) -- and each of its detections is then placed on source frames by the same signal,
# or dropped when the picture does not really change there. On a slideshow of clean cuts the network
# does not run at all; on footage full of motion it runs everywhere, as before.

# Thresholds on the mean absolute difference of two signatures (0..255 levels of Y, U and V block
# means). Measured on slideshows of real photographs (vem.runtime.slideshow; h264/hevc/vp9/mpeg4,
# 24-60 fps): the change at a hard cut was 12-56, between frames of a shot (slow pans, codec
# noise) below 1.5 in 99 % of frames.
STRONG_CHANGE = 10.0  # a jump this large that stands out and persists is a cut, no network needed
STAND_OUT = 4.0  # ... standing out means at least this many times the change around it (+ 1)
# A smaller jump that still stands out (two photographs of similar colours: 2.1 was measured) is
# worth asking TransNetV2, and becomes a cut where it confirms one.
WEAK_CHANGE = 1.0
WEAK_STAND_OUT = 3.0
SPREAD_CHANGE = 8.0  # change across 0.5 s (without a strong cut inside) that may be a dissolve
REAL_CHANGE = 3.0  # a gradual detection across which the picture changes less than this is dropped
# A medium jump standing far above its surroundings is a cut too (TransNetV2 gave 0.15 and 0.16 to
# two such cuts between photographs, changes 5.1 and 7.9 over backgrounds of 0.1-0.4).
CLEAR_CHANGE = 4.0
CLEAR_STAND_OUT = 8.0
CONFIRM_THRESHOLD = 0.1  # TransNetV2's probability that confirms a smaller cut-like jump of the signal
GRADUAL_SPAN_S = 0.25  # half the span over which a spread change is measured
MIN_SEPARATION_S = DEFAULT_MIN_GAP_S


@dataclass(frozen=True)
class DetectedTransition:
    """One transition on source frames. Times are presentation times from the video's first frame."""

    kind: str  # "cut" or "dissolve" (any gradual transition: dissolve, fade, wipe)
    source_frame: int  # cut: the first frame of the new shot; gradual: the first frame of the change
    start_s: float  # presentation time of source_frame
    end_frame: int  # the first frame showing only the new shot (== source_frame for a cut)
    end_s: float
    found_by: str  # "signal" (the signature alone) or "transnetv2"
    change: float  # signature change across it (0..255)

    @property
    def time_s(self) -> float:
        """The time the parse records: a cut's first new frame, a gradual transition's middle."""
        return self.start_s if self.kind == "cut" else 0.5 * (self.start_s + self.end_s)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class FrameLevelResult:
    transitions: list[DetectedTransition]
    probabilities: np.ndarray  # float32 [T] at the parse rate: TransNetV2's where it ran, else 1 at cuts
    windows_run: int
    windows_total: int


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b).mean(axis=-1)


def frame_changes(signatures: np.ndarray) -> np.ndarray:
    """float32 [N]: change of each source frame's signature from the previous one (0 for the first)."""
    flat = np.asarray(signatures, dtype=np.float32).reshape(len(signatures), -1)
    changes = np.zeros(len(flat), np.float32)
    if len(flat) > 1:
        changes[1:] = _distance(flat[1:], flat[:-1])
    return changes


def _source_rate(times: np.ndarray) -> float:
    if len(times) < 2:
        return 25.0
    interval = float(np.median(np.diff(times)))
    return 1.0 / interval if interval > 0 else 25.0


class _Signal:
    """The per-source-frame signal and the measures the detector takes of it."""

    def __init__(self, times: np.ndarray, signatures: np.ndarray):
        self.times = np.asarray(times, dtype=np.float64)
        self.x = np.asarray(signatures, dtype=np.float32).reshape(len(signatures), -1)
        self.n = len(self.x)
        self.changes = frame_changes(signatures)
        rate = _source_rate(self.times)
        self.around = max(3, int(round(0.5 * rate)))  # frames each side for the local background
        self.persist = max(2, int(round(0.1 * rate)))  # frames the new shot must stay
        self.spread = max(2, int(round(GRADUAL_SPAN_S * rate)))

    def background(self, j: int) -> float:
        lo, hi = max(1, j - self.around), min(self.n, j + self.around + 1)
        neighbours = np.concatenate([self.changes[lo:max(lo, j - 1)], self.changes[min(hi, j + 2):hi]])
        return float(np.median(neighbours)) if len(neighbours) else 0.0

    def persists(self, j: int) -> bool:
        """The picture after the jump stays nearer the new frame than the old one (not a flash)."""
        later = self.x[j:min(self.n, j + self.persist + 1)]
        before = self.x[j - 1]
        to_old = _distance(later, before[None])
        to_new = _distance(later, self.x[j][None])
        return bool(np.all(to_old >= 0.5 * self.changes[j]) and np.all(to_new < to_old))

    def is_peak(self, j: int) -> bool:
        lo, hi = max(1, j - 1), min(self.n, j + 2)
        return bool(self.changes[j] >= self.changes[lo:hi].max())

    def net_change(self) -> np.ndarray:
        """[N]: change between the frames `spread` before and after each frame."""
        out = np.zeros(self.n, np.float32)
        h = self.spread
        if self.n > 2 * h:
            out[h:self.n - h] = _distance(self.x[2 * h:], self.x[:self.n - 2 * h])
        return out

    def concentrated(self, j: int) -> bool:
        """Most of the change across the half second around frame j happens at j (a cut, not one
        frame of a dissolve or of fast motion)."""
        before, after = self.x[max(0, j - 1 - self.spread)], self.x[min(self.n - 1, j + self.spread)]
        return bool(self.changes[j] >= 0.6 * float(_distance(before, after)))

    def hard_cut(self, j: int, *, change: float, stand_out: float) -> bool:
        return (1 <= j < self.n and self.changes[j] >= change and self.is_peak(j)
                and self.changes[j] >= stand_out * self.background(j) + min(1.0, change / 2)
                and self.persists(j) and self.concentrated(j))

    def frame_at(self, t: float) -> int:
        """The source frame shown at time t (the latest one presented at or before it)."""
        return int(np.clip(np.searchsorted(self.times, t + 1e-9, side="right") - 1, 0, self.n - 1))


def _parse_index_of_cut(time_s: float, fps: float) -> int:
    """The parse-rate frame TransNetV2 would mark for a cut whose first new frame is at time_s:
    the last sample still showing the old shot (sample k shows the frame presented at k / fps)."""
    return max(0, int(math.ceil(time_s * fps - 1e-9)) - 1)


def _gradual_span(signal: _Signal, begin_s: float, end_s: float) -> tuple[int, int, float] | None:
    """First changed and first clean source frame of a gradual transition believed to lie in
    [begin_s, end_s], and the change across it; None when the picture does not change there.

    Each frame's signature is projected on the line from the old picture to the new one (a
    dissolve moves along it) and a ramp -- 0 up to the last old frame, 1 from the first clean
    frame, straight between -- is fitted to the projections by least squares."""
    a = signal.frame_at(max(begin_s, float(signal.times[0])))
    b = signal.frame_at(end_s)
    if b <= a + 1:
        return None
    old, new = signal.x[a], signal.x[b]
    total = float(_distance(old, new))
    if total < REAL_CHANGE:
        return None
    direction = new - old
    alpha = (signal.x[a:b + 1] - old) @ direction / float(direction @ direction)
    positions = np.arange(b - a + 1, dtype=np.float64)
    best, best_error = (1, b - a), math.inf
    for last_old in range(0, b - a):
        for first_clean in range(last_old + 1, b - a + 1):
            ramp = np.clip((positions - last_old) / (first_clean - last_old), 0.0, 1.0)
            error = float(np.square(alpha - ramp).sum())
            if error < best_error:
                best, best_error = (last_old + 1, first_clean), error
    first, clean = a + best[0], a + best[1]
    return first, max(clean, first), total


def find_transitions(
    times_s: np.ndarray,
    signatures: np.ndarray,
    parse_frames: np.ndarray,
    detector: TransitionDetector | None,
    fps: float = DEFAULT_FPS,
    threshold: float = DEFAULT_THRESHOLD,
    network_everywhere: bool = False,
) -> FrameLevelResult:
    """Transitions on exact source frames from the decoder's signal, asking ``detector``
    (TransNetV2, on the parse-rate frames ``parse_frames`` [T, 27, 48, 3]) only where the signal
    is unsure. ``detector`` None: the signal alone (hard cuts only). ``network_everywhere``: run
    TransNetV2 on every window all the same (int8 calibration records what it sees of a video)."""
    signal = _Signal(times_s, signatures)
    count = len(parse_frames)
    probabilities = np.zeros(count, np.float32)
    found: list[DetectedTransition] = []

    # 1. Hard cuts the signal settles alone; jumps it cannot settle.
    unsure_times: list[float] = []
    weak_cuts: list[int] = []  # jumps that look like cuts but too small to trust without the network
    for j in np.flatnonzero(signal.changes >= WEAK_CHANGE):
        j = int(j)
        if (signal.hard_cut(j, change=STRONG_CHANGE, stand_out=STAND_OUT)
                or signal.hard_cut(j, change=CLEAR_CHANGE, stand_out=CLEAR_STAND_OUT)):
            t = float(signal.times[j])
            found.append(DetectedTransition("cut", j, t, j, t, "signal", float(signal.changes[j])))
        elif (signal.is_peak(j) and signal.changes[j] >= WEAK_STAND_OUT * signal.background(j) + 0.5
              and signal.concentrated(j)):
            unsure_times.append(float(signal.times[j]))
            if signal.hard_cut(j, change=WEAK_CHANGE, stand_out=WEAK_STAND_OUT):
                weak_cuts.append(j)
    # 2. Changes spread over several frames, away from the cuts found.
    cut_frames = np.array([c.source_frame for c in found], dtype=np.int64)
    net = signal.net_change()
    for j in np.flatnonzero(net >= SPREAD_CHANGE):
        if len(cut_frames) and np.min(np.abs(cut_frames - j)) <= signal.spread + 1:
            continue
        unsure_times.append(float(signal.times[j]))

    for cut in found:
        k = _parse_index_of_cut(cut.start_s, fps)
        if k < count:
            probabilities[k] = 1.0

    windows_total = max(1, math.ceil(count / 50)) if count else 0
    windows_run = 0
    if detector is not None and (unsure_times or network_everywhere) and count:
        stripes = sorted({min(int(t * fps) // detector.step, windows_total - 1) for t in unsure_times}
                         | {min(max(0, int(t * fps) - 2) // detector.step, windows_total - 1) for t in unsure_times})
        if network_everywhere:
            stripes = list(range(windows_total))
        windows_run = len(stripes)
        single, _ = detector.predict_heads(parse_frames, windows=stripes)
        ran = ~np.isnan(single)
        probabilities[ran] = single[ran]
        # A cut-like jump the network also sees, if less surely than its own threshold: a cut
        # between two pictures of similar colours (TransNetV2 gave 0.43 to one, change 3.5).
        for j in weak_cuts:
            t = float(signal.times[j])
            k = _parse_index_of_cut(t, fps)
            nearby = np.nan_to_num(single[max(0, k - 2):k + 3], nan=0.0)
            if len(nearby) and nearby.max() >= CONFIRM_THRESHOLD:
                found.append(DetectedTransition("cut", j, t, j, t, "transnetv2", float(signal.changes[j])))
        for peak in transition_frames(np.nan_to_num(single, nan=0.0), threshold):
            begin_s, end_s = (peak - 1) / fps, (peak + 3) / fps
            if any(abs(c.time_s - (peak + 1) / fps) < MIN_SEPARATION_S + 1 / fps for c in found):
                continue
            # A jump inside: a hard cut TransNetV2 confirms.
            lo, hi = signal.frame_at(begin_s) + 1, signal.frame_at(end_s) + 1
            window = np.arange(lo, min(hi, signal.n))
            if len(window):
                j = int(window[np.argmax(signal.changes[window])])
                if signal.hard_cut(j, change=WEAK_CHANGE, stand_out=WEAK_STAND_OUT):
                    t = float(signal.times[j])
                    found.append(DetectedTransition("cut", j, t, j, t, "transnetv2", float(signal.changes[j])))
                    continue
            # Otherwise a gradual transition: its span is where the probability stays up.
            low = np.nan_to_num(single, nan=0.0) > 0.1
            a = peak
            while a > 0 and low[a - 1]:
                a -= 1
            b = peak
            while b + 1 < count and low[b + 1]:
                b += 1
            # The network's run can be narrower than the blend: look half a second beyond it,
            # but not across a cut already found.
            begin_s, end_s = (a - 2) / fps - 0.5, (b + 3) / fps + 0.5
            for cut in found:
                if cut.end_s <= (peak + 1) / fps:
                    begin_s = max(begin_s, cut.end_s)
                elif cut.start_s > (peak + 1) / fps:
                    end_s = min(end_s, cut.start_s - 1e-6)
            span = _gradual_span(signal, begin_s, end_s)
            if span is None:
                continue  # the picture does not change there: not a transition
            first, clean, total = span
            found.append(DetectedTransition("dissolve", first, float(signal.times[first]), clean,
                                            float(signal.times[clean]), "transnetv2", total))

    found.sort(key=lambda c: c.time_s)
    kept: list[DetectedTransition] = []
    for transition in found:
        if kept and transition.time_s - kept[-1].time_s < MIN_SEPARATION_S:
            if transition.change > kept[-1].change:
                kept[-1] = transition
            continue
        kept.append(transition)
    return FrameLevelResult(kept, probabilities, windows_run, windows_total)
