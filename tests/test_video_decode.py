"""Probe and 16 fps decoding on real files written by PyAV (tests/media.py)."""

from __future__ import annotations

import math
import os
import time
from fractions import Fraction

import numpy as np
import pytest
from media import (
    MARKER_COLOUR,
    PALETTE,
    write_test_audio,
    write_test_video,
    write_truncated_copy,
    write_zeroed_media_copy,
)

from vem.runtime.errors import EXIT_INPUT, InputError
from vem.runtime.video import DEFAULT_SIZES, decode_frames, probe

CODECS = ["h264", "hevc", "libvpx-vp9", "mpeg4"]
CODEC_NAMES = {"h264": "h264", "hevc": "hevc", "libvpx-vp9": "vp9", "mpeg4": "mpeg4"}
RATES = [24000 / 1001, 25.0, 30.0, 60.0]
COLOUR_TOLERANCE = 30  # lossy 4:2:0 coding and scaling move flat colours by a few levels


def expected_source_times(frame_times: list[float], count: int, fps: float = 16.0) -> np.ndarray:
    """For output k, the latest frame time <= k / fps (exact: times are compared as fractions)."""
    exact = [Fraction(t).limit_denominator(1_000_000) for t in frame_times]
    start = exact[0]
    out = []
    for k in range(count):
        target = Fraction(k) / Fraction(fps).limit_denominator(1000)
        chosen = max((t for t in exact if t - start <= target), default=exact[0])
        out.append(float(chosen - start))
    return np.array(out)


def centre_colour(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    return frame[h // 2 - h // 8 : h // 2 + h // 8 + 1, w // 2 - w // 8 : w // 2 + w // 8 + 1].reshape(-1, 3).mean(0)


def assert_colours_follow_source(decoded, video) -> None:
    for name, frames in decoded.frames.items():
        for k, frame in enumerate(frames):
            expected = np.array(video.colour_at(decoded.source_times_s[k]))
            got = centre_colour(frame)
            assert np.abs(got - expected).max() < COLOUR_TOLERANCE, (name, k, got, expected)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("fps", RATES, ids=["23.976", "25", "30", "60"])
def test_codecs_and_rates_sample_16fps_by_timestamp(tmp_path, codec, fps):
    video = write_test_video(tmp_path / "clip.mp4", codec=codec, fps=fps, seconds=1.0, cut_times=[0.5])
    info = probe(video.path)
    assert info.codec == CODEC_NAMES[codec]
    assert info.fps == pytest.approx(video.fps, rel=1e-3)
    assert (info.width, info.height, info.rotation) == (96, 64, 0)
    assert info.duration_s == pytest.approx(video.duration_s, abs=0.02)
    assert info.frame_count == len(video.frame_times)
    assert not info.has_audio

    decoded = decode_frames(video.path)
    expected_count = math.ceil(video.duration_s * 16 - 1e-9)
    assert decoded.num_frames == expected_count
    assert decoded.frames_decoded == len(video.frame_times)
    for name, (width, height) in DEFAULT_SIZES.items():
        assert decoded.frames[name].shape == (expected_count, height, width, 3)
        assert decoded.frames[name].dtype == np.uint8
    np.testing.assert_allclose(decoded.times_s, np.arange(expected_count) / 16.0)
    np.testing.assert_allclose(decoded.source_times_s, expected_source_times(video.frame_times, expected_count), atol=1e-6)
    assert_colours_follow_source(decoded, video)
    assert decoded.warnings == []


@pytest.mark.parametrize(
    "fps,cut,first_new_index",
    [
        (30.0, 0.5, 8),  # a frame sits exactly at 0.5 s = 8 / 16: output 8 shows the new shot
        (25.0, 0.52, 9),  # the cut frame at 0.52 s is after 8 / 16 = 0.5 s: output 9 is the first
        # At 23.976 fps frame 24 is shown at 1.001 s, just after 16 / 16 = 1.0 s: output 16 still
        # shows the old shot. Picking by frame index (24 * 16 / 23.976 = 16.02 -> 16) would be wrong.
        (24000 / 1001, 1.0, 17),
    ],
)
def test_cut_lands_on_the_16fps_index_given_by_its_timestamp(tmp_path, fps, cut, first_new_index):
    video = write_test_video(tmp_path / "cut.mp4", fps=fps, seconds=1.5, cut_times=[cut])
    frames = decode_frames(video.path, sizes={"small": (32, 32)}).frames["small"]
    first, second = (np.array(c) for c in video.shot_colours)
    is_new = [np.abs(centre_colour(f) - second).max() < COLOUR_TOLERANCE for f in frames]
    is_old = [np.abs(centre_colour(f) - first).max() < COLOUR_TOLERANCE for f in frames]
    assert all(is_old[:first_new_index]) and not any(is_new[:first_new_index])
    assert all(is_new[first_new_index:])


def test_variable_frame_rate_uses_real_timestamps(tmp_path):
    video = write_test_video(
        tmp_path / "vfr.mp4", fps=30, seconds=2.0, variable_frame_rate=True, cut_times=[0.7, 1.3], seed=3
    )
    intervals = np.diff(video.frame_times)
    assert intervals.max() > 2 * intervals.min()  # really irregular
    decoded = decode_frames(video.path)
    count = decoded.num_frames
    np.testing.assert_allclose(decoded.source_times_s, expected_source_times(video.frame_times, count), atol=1e-6)
    assert_colours_follow_source(decoded, video)
    # Three shots seen in order.
    shots = [video.shot_index_at(t) for t in decoded.source_times_s]
    assert shots == sorted(shots) and set(shots) == {0, 1, 2}


@pytest.mark.parametrize("codec", ["h264", "libvpx-vp9", "mpeg4"])
def test_odd_frame_size(tmp_path, codec):
    video = write_test_video(tmp_path / "odd.mp4", codec=codec, size=(161, 97), seconds=0.4, cut_times=[0.2])
    info = probe(video.path)
    assert (info.width, info.height) == (161, 97)
    decoded = decode_frames(video.path, sizes={"odd": (33, 19), "native": (161, 97)})
    assert decoded.frames["odd"].shape[1:] == (19, 33, 3)
    assert decoded.frames["native"].shape[1:] == (97, 161, 3)
    assert_colours_follow_source(decoded, video)


def corner_is_marker(frame: np.ndarray, corner: str) -> bool:
    h, w = frame.shape[:2]
    ys = slice(0, h // 10 + 1) if corner[0] == "t" else slice(h - h // 10 - 1, h)
    xs = slice(0, w // 10 + 1) if corner[1] == "l" else slice(w - w // 10 - 1, w)
    return bool(np.abs(frame[ys, xs].reshape(-1, 3).mean(0) - MARKER_COLOUR).max() < COLOUR_TOLERANCE)


@pytest.mark.parametrize(
    "rotation,upright_size,marker_corner",
    [
        (0, (320, 180), "tl"),
        # Counter-clockwise quarter turn: the stored top-left corner ends bottom-left.
        (90, (180, 320), "bl"),
        # A phone's portrait clip (FFmpeg reads its matrix as -90): top-left ends top-right.
        (-90, (180, 320), "tr"),
        (180, (320, 180), "br"),
    ],
)
def test_rotation_metadata_gives_upright_frames(tmp_path, rotation, upright_size, marker_corner):
    video = write_test_video(tmp_path / "rot.mp4", size=(320, 180), seconds=0.3, rotation=rotation)
    info = probe(video.path)
    assert info.rotation == rotation
    assert (info.width, info.height) == upright_size
    assert (info.coded_width, info.coded_height) == (320, 180)
    width, height = upright_size
    decoded = decode_frames(video.path, sizes={"upright": (width // 4, height // 4), "model": (48, 27)})
    frames = decoded.frames["upright"]
    assert frames.shape[1:] == (height // 4, width // 4, 3)
    assert decoded.frames["model"].shape[1:] == (27, 48, 3)  # requested size always honoured
    for frame in frames:
        for corner in ("tl", "tr", "bl", "br"):
            assert corner_is_marker(frame, corner) == (corner == marker_corner), (corner, rotation)


def test_ten_bit_hevc(tmp_path):
    video = write_test_video(tmp_path / "hevc10.mp4", codec="hevc", pix_fmt="yuv420p10le", seconds=0.5, cut_times=[0.25])
    info = probe(video.path)
    assert info.pix_fmt == "yuv420p10le"
    assert_colours_follow_source(decode_frames(video.path), video)


def test_single_frame_video_gives_one_frame(tmp_path):
    video = write_test_video(tmp_path / "one.mp4", frame_times=[0.0], fps=25)
    decoded = decode_frames(video.path)
    assert decoded.num_frames == 1
    assert decoded.frames_decoded == 1
    assert np.abs(centre_colour(decoded.frames["visual"][0]) - PALETTE[0]).max() < COLOUR_TOLERANCE


def test_short_video_gives_its_frames(tmp_path):
    video = write_test_video(tmp_path / "short.mp4", fps=25, seconds=0.3)  # 8 frames, 0.32 s
    decoded = decode_frames(video.path)
    assert decoded.num_frames == math.ceil(0.32 * 16) == 6


def test_tiny_and_8k_frames(tmp_path):
    tiny = write_test_video(tmp_path / "tiny.mp4", size=(16, 16), seconds=0.5, cut_times=[0.25])
    decoded = decode_frames(tiny.path, sizes={"up": (64, 64)})
    assert decoded.frames["up"].shape == (8, 64, 64, 3)
    assert_colours_follow_source(decoded, tiny)

    huge = write_test_video(tmp_path / "8k.mp4", size=(7680, 4320), frame_times=[0.0], fps=25)
    info = probe(huge.path)
    assert (info.width, info.height) == (7680, 4320)
    decoded = decode_frames(huge.path)
    assert decoded.frames["transitions"].shape == (1, 27, 48, 3)
    assert np.abs(centre_colour(decoded.frames["visual"][0]) - PALETTE[0]).max() < COLOUR_TOLERANCE


def test_time_limit_on_a_three_hour_video_stops_early(tmp_path):
    # 3 hours at 1 fps, 16x16: a real 10,800-frame file written in about a second.
    video = write_test_video(tmp_path / "3h.mp4", size=(16, 16), fps=1, seconds=3 * 3600, cut_times=[3.0])
    started = time.perf_counter()
    info = probe(video.path)
    assert info.duration_s == pytest.approx(3 * 3600, rel=1e-3)
    decoded = decode_frames(video.path, max_seconds=5.0)
    elapsed = time.perf_counter() - started
    assert decoded.stopped_at_limit
    assert decoded.num_frames == 80 and decoded.duration_s == 5.0
    assert decoded.frames_decoded < 50  # read a few seconds (plus codec delay), not 10,800 frames
    assert elapsed < 3.0
    assert_colours_follow_source(decoded, video)


def test_limit_longer_than_the_video_changes_nothing(tmp_path):
    video = write_test_video(tmp_path / "clip.mp4", fps=25, seconds=1.0)
    decoded = decode_frames(video.path, max_seconds=60)
    assert not decoded.stopped_at_limit and decoded.num_frames == 16


def test_file_with_audio_decodes_its_video(tmp_path):
    video = write_test_video(tmp_path / "av.mp4", seconds=0.5, with_audio=True, cut_times=[0.25])
    assert probe(video.path).has_audio
    assert_colours_follow_source(decode_frames(video.path), video)


def assert_input_error(path, *phrases):
    with pytest.raises(InputError) as caught:
        probe(path)
    error = caught.value
    assert error.exit_code == EXIT_INPUT == 3
    assert str(path) in error.message and "\n" not in error.message
    for phrase in phrases:
        assert phrase in error.message, error.message
    # decode_frames refuses the same way.
    with pytest.raises(InputError):
        decode_frames(path)
    return error


def test_bad_inputs_give_clear_input_errors(tmp_path):
    assert_input_error(tmp_path / "missing.mp4", "no such file")

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert_input_error(empty, "empty (0 bytes)")

    text = tmp_path / "notes.mp4"
    text.write_text("these are my holiday notes, not a video\n" * 20)
    assert_input_error(text, "not a readable video", "not a media file")

    assert_input_error(write_test_audio(tmp_path / "song.mp4"), "only audio, no video stream")

    assert_input_error(tmp_path, "is a folder")

    source = write_test_video(tmp_path / "whole.mp4", seconds=1.0, moving_square=True)
    # Index at the end (the usual mp4 layout): cutting the file loses the index.
    assert_input_error(write_truncated_copy(source.path, tmp_path / "cut.mp4", 0.6), "truncated")
    # Index first (web-optimised mp4): the header survives, its samples point past the end.
    faststart = write_test_video(tmp_path / "fast.mp4", seconds=1.0, moving_square=True, faststart=True)
    assert_input_error(write_truncated_copy(faststart.path, tmp_path / "fastcut.mp4", 0.6), "truncated")
    # Headers intact, media data zeroed: a video stream with nothing decodable in it.
    assert_input_error(write_zeroed_media_copy(source.path, tmp_path / "zeroed.mp4"), "no decodable frames")


def test_bad_arguments_are_value_errors(tmp_path):
    video = write_test_video(tmp_path / "clip.mp4", seconds=0.2)
    with pytest.raises(ValueError, match="fps"):
        decode_frames(video.path, fps=0)
    with pytest.raises(ValueError, match="width and height"):
        decode_frames(video.path, sizes={"bad": (0, 10)})
    with pytest.raises(ValueError, match="max_seconds"):
        decode_frames(video.path, max_seconds=-1)
    assert os.path.exists(video.path)
