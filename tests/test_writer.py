"""The mp4 writer: the video stream copied bit for bit, the music muxed as AAC, nothing lost."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import av
import numpy as np
import pytest
from media import packet_payloads, write_test_video

from vem.runtime.audio import read_audio
from vem.runtime.errors import EXIT_OUTPUT, InputError, OutputError, UsageError
from vem.runtime.video import probe
from vem.runtime.writer import mux_music

RATE = 16000


def music(seconds=3.0, freq=220.0, channels=1):
    t = np.arange(int(seconds * RATE)) / RATE
    mono = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono, 0.5 * mono])


def stream_durations(path):
    with av.open(str(path)) as container:
        assert len(container.streams.video) == 1
        video, audio = container.streams.video[0], container.streams.audio
        return float(video.duration * video.time_base), [float(a.duration * a.time_base) for a in audio]


def dominant_frequency(samples, rate=RATE):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def no_partials(folder):
    return [name for name in os.listdir(folder) if "partial" in name] == []


@pytest.mark.parametrize("codec", ["h264", "hevc", "libvpx-vp9", "mpeg4", "libsvtav1"])
def test_video_packets_copied_bit_identical_and_audio_fits(tmp_path, codec):
    video = write_test_video(tmp_path / "in.mp4", codec=codec, fps=30, seconds=1.2, cut_times=[0.6], moving_square=True)
    before = sha256(video.path)
    out = tmp_path / "out.mp4"
    result = mux_music(video.path, music(3.0), RATE, out)

    assert packet_payloads(out) == packet_payloads(video.path)  # no re-encode
    video_s, audio_s = stream_durations(out)
    assert len(audio_s) == 1
    assert abs(audio_s[0] - video_s) < 0.05
    assert video_s == pytest.approx(1.2, abs=0.02)
    assert result.video_packets == len(video.frame_times)
    assert result.audio_duration_s == pytest.approx(video_s, abs=1e-3)
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == probe(video.path).codec
        assert container.streams.audio[0].codec_context.name == "aac"
    assert sha256(video.path) == before  # input untouched
    assert no_partials(tmp_path)


def test_input_audio_is_replaced_by_the_music(tmp_path):
    video = write_test_video(tmp_path / "in.mp4", seconds=1.5, with_audio=True)  # 440 Hz tone track
    out = tmp_path / "out.mp4"
    mux_music(video.path, music(3.0, freq=220.0), RATE, out, fade_s=0.2)
    samples, rate = read_audio(out, mono=True)
    assert rate == RATE
    assert dominant_frequency(samples[RATE // 4 : RATE]) == pytest.approx(220.0, abs=5)
    with av.open(str(out)) as container:
        assert len(container.streams.audio) == 1


def test_music_is_faded_out_and_padded_to_the_video(tmp_path):
    video = write_test_video(tmp_path / "in.mp4", seconds=2.0)
    out = tmp_path / "out.mp4"
    # Music shorter than the video: padded with silence, still as long as the video.
    result = mux_music(video.path, music(1.0), RATE, out, fade_s=0.3)
    video_s, audio_s = stream_durations(out)
    assert abs(audio_s[0] - video_s) < 0.05 and result.audio_duration_s == pytest.approx(2.0, abs=1e-3)
    samples, _ = read_audio(out, mono=True)
    rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
    assert rms(samples[1 * RATE + 1600 :]) < 0.01  # the padded second is silent

    out2 = tmp_path / "faded.mp4"
    mux_music(video.path, music(3.0), RATE, out2, fade_s=0.5)
    samples, _ = read_audio(out2, mono=True)
    steady, tail = rms(samples[RATE // 2 : RATE]), rms(samples[-800:])
    assert steady > 0.15 and tail < 0.2 * steady


def test_stereo_music(tmp_path):
    video = write_test_video(tmp_path / "in.mp4", seconds=0.8)
    out = tmp_path / "out.mp4"
    result = mux_music(video.path, music(1.0, channels=2), RATE, out)
    assert result.channels == 2
    samples, _ = read_audio(out)
    assert samples.shape[0] == 2


@pytest.mark.parametrize("codec", ["h264", "libsvtav1"])  # AV1 takes the bare mux-stream path
def test_rotation_metadata_is_kept(tmp_path, codec):
    video = write_test_video(tmp_path / "in.mp4", codec=codec, size=(160, 90), seconds=0.5, rotation=-90)
    out = tmp_path / "out.mp4"
    result = mux_music(video.path, music(1.0), RATE, out)
    assert packet_payloads(out) == packet_payloads(video.path)
    info = probe(out)
    if codec == "libsvtav1":
        # Known limit of PyAV 18 (a bare mux stream takes no display matrix): reported, not hidden.
        assert info.rotation == 0 and "rotation metadata" in result.warnings[0]
        return
    assert result.warnings == ()
    assert info.rotation == -90 and (info.width, info.height) == (90, 160)


def test_never_overwrites_without_force(tmp_path):
    video = write_test_video(tmp_path / "in.mp4", seconds=0.5)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier result")
    with pytest.raises(OutputError, match="already exists") as caught:
        mux_music(video.path, music(1.0), RATE, out)
    assert caught.value.exit_code == EXIT_OUTPUT
    assert out.read_bytes() == b"an earlier result"
    assert no_partials(tmp_path)

    mux_music(video.path, music(1.0), RATE, out, force=True)
    assert packet_payloads(out) == packet_payloads(video.path)


def test_refuses_to_write_over_the_input(tmp_path):
    video = write_test_video(tmp_path / "in.mp4", seconds=0.5)
    before = sha256(video.path)
    for target in (video.path, str(tmp_path / "." / "in.mp4")):
        with pytest.raises(OutputError, match="is the input file"):
            mux_music(video.path, music(1.0), RATE, target, force=True)
    os.symlink(video.path, tmp_path / "link.mp4")
    with pytest.raises(OutputError, match="is the input file"):
        mux_music(video.path, music(1.0), RATE, tmp_path / "link.mp4", force=True)
    assert sha256(video.path) == before
    assert no_partials(tmp_path)


def test_bad_requests(tmp_path):
    video = write_test_video(tmp_path / "in.mp4", seconds=0.5)
    with pytest.raises(UsageError, match="cannot write a video as '.avi'"):
        mux_music(video.path, music(1.0), RATE, tmp_path / "out.avi")
    with pytest.raises(OutputError, match="does not exist"):
        mux_music(video.path, music(1.0), RATE, tmp_path / "missing" / "out.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(InputError, match="not a readable video"):
        mux_music(text, music(1.0), RATE, tmp_path / "out.mp4")
    with pytest.raises(ValueError, match="mono or stereo"):
        mux_music(video.path, np.zeros((3, 100), np.float32), RATE, tmp_path / "out.mp4")
    assert sorted(os.listdir(tmp_path)) == ["in.mp4", "notes.mp4"]


FILE_SIZE_LIMIT_SCRIPT = """
import resource, signal, sys
import numpy as np
from vem.runtime.writer import mux_music
from vem.runtime.errors import OutputError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (30000, 30000))
try:
    noise = (0.3 * np.random.default_rng(0).standard_normal(16000 * 4)).astype(np.float32)
    mux_music(sys.argv[1], noise, 16000, sys.argv[2], force=True)  # ~80 kB of AAC
except OutputError as error:
    print(error.exit_code, error.message)
"""


def test_write_failure_keeps_the_old_output_and_leaves_no_partial(tmp_path):
    # A real write error half way (files may not exceed 30 kB in the child process), as on a
    # full disk: the earlier output must survive even with force, and no temp file may remain.
    video = write_test_video(tmp_path / "in.mp4", seconds=4.0, moving_square=True)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier result")
    result = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMIT_SCRIPT, video.path, str(out)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("5 ") and "cannot be written" in result.stdout, result.stdout
    assert out.read_bytes() == b"an earlier result"
    assert sorted(os.listdir(tmp_path)) == ["in.mp4", "out.mp4"]
