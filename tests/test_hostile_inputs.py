"""vem-run against hostile files, bad values and signals (issue 22).

Every input is made here: mp4/mkv/ts files written with PyAV and, where the defect lives in the
container's tables, patched byte by byte (tests/hostile_media.py); fifos and devices are the real
thing; bundles are copies of the shipped one broken in one way each; signals are sent to a real
`vem-run` process. For each case the README's contract is checked: the exit code, one ``error:``
line naming the file and what is wrong (plus at most a ``hint:``), no traceback, nothing left
behind, and a bounded time.

Refusals that need no model pass a bundle path that does not exist (reaching the bundle load
would give exit 4): that pins "cheap checks first".
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from hostile_media import (  # noqa: E402
    concatenated_ts,
    patch_mkv_duration,
    patch_mp4_durations,
    write_plain_codec_video,
    write_raw_h264,
    write_still_image,
    write_with_packet_times,
    zero_mp4_sample_deltas,
)
from media import write_test_video  # noqa: E402

from vem.runtime.audio import read_audio  # noqa: E402
from vem.runtime.errors import EXIT_BUNDLE, EXIT_INPUT, EXIT_OK, EXIT_OUTPUT, EXIT_USAGE  # noqa: E402
from vem.runtime.pipeline import DEFAULT_BUNDLE  # noqa: E402
from vem.runtime.run import main as vem_run  # noqa: E402
from vem.runtime.writer import mux_music  # noqa: E402

NO_BUNDLE = "/nonexistent/vem-bundle"
VEM_RUN = shutil.which("vem-run") or "vem-run"


def run(capsys, *argv) -> tuple[int, str]:
    code = vem_run([*map(str, argv), "-q"])
    return code, capsys.readouterr().err


def assert_one_error(code: int, err: str, expected: int, *phrases: str) -> str:
    assert code == expected, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line and not line.startswith("warning: ")]
    assert lines and lines[0].startswith("error: "), err
    assert len(lines) <= 2 and all(line.startswith(("error: ", "hint: ")) for line in lines), err
    for phrase in phrases:
        assert phrase in lines[0], (phrase, err)
    return lines[0]


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ---- timestamps, stills, non-files: exit 3 before the bundle loads ----------------------------


def _outlier_lying_header(tmp: Path) -> Path:
    """10 frames 40 ms apart, the last at 45,000 s; the header says 0.4 s (FFmpeg's mp4 muxer
    writes that by itself for these frames; the patch makes sure)."""
    path = tmp / "outlier.mp4"
    write_test_video(path, frame_times=[i * 0.04 for i in range(9)] + [45000.0])
    return Path(patch_mp4_durations(path, 0.4))


def _outlier_honest_header(tmp: Path) -> Path:
    """The same frames in an mkv, whose header agrees (45,000 s; an mp4's says 0.4 s by itself)."""
    return Path(write_test_video(tmp / "outlier2.mkv", frame_times=[i * 0.04 for i in range(9)] + [45000.0]).path)


def _outlier_within_limit(tmp: Path) -> Path:
    """The outlier inside the 1 h limit (at 600 s) and a header that says 0.4 s."""
    path = tmp / "outlier3.mp4"
    write_test_video(path, frame_times=[i * 0.04 for i in range(9)] + [600.0])
    return Path(patch_mp4_durations(path, 0.4))


def _concatenated_ts(tmp: Path) -> Path:
    return Path(concatenated_ts(tmp / "joined.ts", tmp))


def _duplicate_mkv(tmp: Path) -> Path:
    return Path(write_with_packet_times(tmp / "dup.mkv", [0, 40, 80, 80, 160, 200, 240, 280], "matroska"))


def _zero_deltas_mp4(tmp: Path) -> Path:
    path = tmp / "zero.mp4"
    write_test_video(path, seconds=1.0)
    return Path(zero_mp4_sample_deltas(path))


def _raw_h264(tmp: Path) -> Path:
    return Path(write_raw_h264(tmp / "clip.h264"))


def _png(tmp: Path) -> Path:
    return Path(write_still_image(tmp / "photo.mp4", "png"))


def _jpeg(tmp: Path) -> Path:
    return Path(write_still_image(tmp / "photo.mp4", "mjpeg"))


def _fifo(tmp: Path) -> Path:
    path = tmp / "pipe.mp4"
    os.mkfifo(path)
    return path


REFUSED = {
    # name: (make, extra argv, phrases in the error line)
    "outlier, header says 0.4 s": (_outlier_lying_header, [], ["outlier", "45000.000 s", "0.40 s"]),
    "outlier, header agrees, limit raised": (_outlier_honest_header, ["--max-seconds", "1e6"],
                                             ["outlier", "45000.000 s", "header says 45000.04 s"]),
    "outlier, header agrees": (_outlier_honest_header, [], ["longer than the limit"]),
    "outlier within the limit": (_outlier_within_limit, [], ["outlier", "600.000 s"]),
    "concatenated ts": (_concatenated_ts, [], ["go back from 0.960 s to 0.000 s", "packet 26"]),
    "mkv, duplicate pts": (_duplicate_mkv, [], ["packets 3 and 4", "same timestamp 0.080 s"]),
    "mp4, zero sample durations": (_zero_deltas_mp4, [], ["same timestamp"]),
    "raw h264 into an mp4": (_raw_h264, [], ["raw h264 stream without timestamps", "mp4"]),
    "png renamed .mp4": (_png, [], ["single still image (png)"]),
    "jpeg renamed .mp4": (_jpeg, [], ["single still image (mjpeg)"]),
    "fifo": (_fifo, [], ["named pipe (fifo), not a regular file"]),
    "/dev/zero": (lambda tmp: Path("/dev/zero"), [], ["character device, not a regular file"]),
    "/dev/urandom": (lambda tmp: Path("/dev/urandom"), [], ["character device, not a regular file"]),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_unplaceable_or_uncopyable_video_is_exit_3_before_the_bundle(case, tmp_path, capsys, monkeypatch):
    make, extra, phrases = REFUSED[case]
    source = tmp_path / "in"
    source.mkdir()
    video = make(source)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    started = time.perf_counter()
    code, err = run(capsys, video, "--bundle", NO_BUNDLE, *extra)
    seconds = time.perf_counter() - started
    line = assert_one_error(code, err, EXIT_INPUT, str(video), *phrases)
    assert seconds < 5.0, (seconds, line)  # bounded: a demux pass, nothing decoded on the grid
    assert names(out) == set()


@pytest.mark.parametrize("codec, fmt, name", [("flv", "flv", "old.flv"), ("cinepak", "avi", "old.avi")])
def test_codec_an_mp4_cannot_hold_fails_before_the_bundle(codec, fmt, name, tmp_path, capsys, monkeypatch):
    """The dry-run mux finds, before the bundle loads, what the real mux would find after the
    generation: exit 5 with the muxer's reason and the hint to write the music alone; with
    ``-o music.wav`` the same file passes every cheap check (and reaches the missing bundle)."""
    video = write_plain_codec_video(tmp_path / name, codec, fmt)
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, video, "--bundle", NO_BUNDLE)
    assert_one_error(code, err, EXIT_OUTPUT, name, "cannot be copied into an mp4", "does not support")
    assert "-o NAME.wav" in err
    code, err = run(capsys, video, "--bundle", NO_BUNDLE, "-o", "music.wav")
    assert_one_error(code, err, EXIT_BUNDLE)
    assert names(tmp_path) == {name}


def test_raw_stream_writes_the_music_alone(tmp_path, capsys, monkeypatch):
    """A raw .h264 (no timestamps) is usable for the music: frames at its nominal 25 fps."""
    video = Path(write_raw_h264(tmp_path / "clip.h264", frames=25))
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, video, "-o", "music.wav", "--steps", "1")
    assert code == EXIT_OK, err
    assert "has no timestamps (a raw h264 stream)" in err
    waveform, rate = read_audio(tmp_path / "music.wav")
    assert abs(waveform.shape[-1] / rate - 1.0) < 0.05  # 25 frames at 25 fps
    assert not any(name.startswith(".") for name in names(tmp_path))


# ---- what the mp4 holds: the frames' length, one fade, the input's own sound ------------------


def _audio_of(path: Path, index: int = 0) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[index]
        chunks = [frame.to_ndarray().mean(axis=0) for frame in container.decode(stream)]
        return np.concatenate(chunks), stream.rate


def test_header_that_lies_about_the_length_does_not_pad_the_mp4(tmp_path, capsys, monkeypatch):
    """An mkv whose header claims 50 minutes over 3 s of frames: the mp4's music lasts 3 s, as
    the wav does, and its last second is the wav's (no second fade-out in the mux)."""
    video = tmp_path / "lying.mkv"
    write_test_video(video, seconds=3.0, cut_times=[1.5])
    patch_mkv_duration(video, 3000.0)
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, video, "--steps", "1")
    assert code == EXIT_OK, err
    wav, rate = read_audio(tmp_path / "lying.vem.wav")
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    mp4, mp4_rate = _audio_of(tmp_path / "lying.vem.mp4")
    assert mp4_rate == rate
    assert abs(len(mp4) / rate - 3.0) < 0.1 and abs(len(wav) / rate - 3.0) < 0.01
    # AAC's priming delay shifts the decoded track by 1024 samples (up to 2048): align, then compare
    # the last second's loudness. A second fade-out would take it to under half.
    shift = max(range(0, 2049, 64), key=lambda s: float(np.dot(mp4[s:s + rate], wav[:rate])))
    tail_wav = wav[-rate:-rate // 10]
    tail_mp4 = mp4[shift:shift + len(wav)][-rate:-rate // 10]
    ratio = float(np.sqrt(np.mean(tail_mp4 ** 2)) / max(np.sqrt(np.mean(tail_wav ** 2)), 1e-9))
    assert 0.8 < ratio < 1.25, ratio


def _tone_video(tmp: Path) -> Path:
    return Path(write_test_video(tmp / "speech.mp4", seconds=2.0, with_audio=True).path)


def _tone_level(signal_: np.ndarray, rate: int, freq: float = 440.0) -> float:
    spectrum = np.abs(np.fft.rfft(signal_ * np.hanning(len(signal_))))
    bins = np.fft.rfftfreq(len(signal_), 1 / rate)
    near = (bins > freq - 5) & (bins < freq + 5)
    return float(spectrum[near].max() / (spectrum.mean() + 1e-12))


def test_input_audio_mix_and_track(tmp_path):
    """mux_music keeps the video's own sound on request: mixed under the music, or as a second
    track (a real 440 Hz AAC track in, silence as the music)."""
    video = _tone_video(tmp_path)
    rate = 16000
    music = np.zeros(2 * rate, dtype=np.float32)
    dropped = mux_music(video, music, rate, tmp_path / "drop.mp4")
    mixed = mux_music(video, music, rate, tmp_path / "mix.mp4", input_audio="mix")
    track = mux_music(video, music, rate, tmp_path / "track.mp4", input_audio="track")
    assert dropped.path and mixed.path and track.path
    with av.open(str(tmp_path / "drop.mp4")) as c:
        assert len(c.streams.audio) == 1
    with av.open(str(tmp_path / "mix.mp4")) as c:
        assert len(c.streams.audio) == 1
    with av.open(str(tmp_path / "track.mp4")) as c:
        assert len(c.streams.audio) == 2
    silent, _ = _audio_of(tmp_path / "drop.mp4")
    heard, _ = _audio_of(tmp_path / "mix.mp4")
    music_track, _ = _audio_of(tmp_path / "track.mp4", 0)
    own_track, _ = _audio_of(tmp_path / "track.mp4", 1)
    assert float(np.abs(silent).max()) < 1e-3 and float(np.abs(music_track).max()) < 1e-3
    assert _tone_level(heard[rate // 2: 3 * rate // 2], rate) > 50  # the tone, 6 dB down
    assert _tone_level(own_track[rate // 2: 3 * rate // 2], rate) > 50
    # "mix" puts it 6 dB under: half the amplitude of the kept track.
    level = np.sqrt(np.mean(heard[rate // 2: 3 * rate // 2] ** 2)) / np.sqrt(np.mean(own_track[rate // 2: 3 * rate // 2] ** 2))
    assert 0.4 < level < 0.6, level


def test_dropped_audio_track_is_said_and_kept_on_request(tmp_path, capsys, monkeypatch):
    video = _tone_video(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, video, "--steps", "1", "--input-audio", "track", "--report", "r.json")
    assert code == EXIT_OK, err
    with av.open(str(tmp_path / "speech.vem.mp4")) as c:
        assert len(c.streams.audio) == 2
    assert json.loads((tmp_path / "r.json").read_text())["input_audio"] == "track"
    # Without the flag: the warning says the track is left out, before the bundle is even loaded.
    code, err = run(capsys, video, "--bundle", NO_BUNDLE, "-o", "other.mp4")
    assert code == EXIT_BUNDLE
    assert "warning: " in err and "its own audio track is left out of the mp4" in err and "--input-audio" in err


# ---- flag values: exit 2 before anything loads -------------------------------------------------


BAD_FLAGS = [
    (["--steps", "0"], "--steps must be between 1 and 1000, got 0"),
    (["--steps", "100000"], "--steps must be between 1 and 1000"),
    (["--seed", "-1"], "--seed must be between 0"),
    (["--guidance", "nan"], "--guidance must be a number between 0 and 100, got nan"),
    (["--guidance", "inf"], "got inf"),
    (["--guidance", "1e30"], "got 1e+30"),
    (["--guidance=-1e9"], "got -1e+09"),
    (["--bpm", "0"], "--bpm must be between 30 and 300"),
    (["--bpm", "nan"], "--bpm must be between"),
    (["--max-seconds", "inf"], "--max-seconds must be a positive number"),
    (["--max-seconds", "-5"], "--max-seconds must be a positive number"),
    (["--tags", "calm,polka"], "unknown tag(s) polka"),
]


@pytest.mark.parametrize("argv, phrase", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_value_is_exit_2_before_anything_loads(argv, phrase, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # The video does not even exist: the flags are judged first.
    code, err = run(capsys, "nothing.mp4", "--bundle", NO_BUNDLE, *argv)
    assert_one_error(code, err, EXIT_USAGE, phrase)


# ---- outputs: beside the videos, missing folders, long names, full disks -----------------------


def test_folder_outputs_go_beside_the_videos_and_long_names_work(tmp_path, capsys, monkeypatch):
    """A folder argument without -o writes beside each video (not in the current folder), and a
    243-character name works: the hidden temporary name is shortened to fit NAME_MAX."""
    folder = tmp_path / "clips"
    folder.mkdir()
    stem = "x" * 243
    write_test_video(folder / f"{stem}.mp4", seconds=1.0)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, err = run(capsys, folder, "--steps", "1")
    assert code == EXIT_OK, err
    assert names(folder) == {f"{stem}.mp4", f"{stem}.vem.wav", f"{stem}.vem.mp4"}
    assert names(elsewhere) == set()


def test_long_output_name_fails_before_any_work(tmp_path, capsys, monkeypatch):
    video = write_test_video(tmp_path / "v.mp4", seconds=0.5).path
    monkeypatch.chdir(tmp_path)
    name = "y" * 252 + ".wav"  # 256 bytes: one more than ext4/tmpfs allow
    code, err = run(capsys, video, "--bundle", NO_BUNDLE, "-o", name)
    assert_one_error(code, err, EXIT_OUTPUT, "file name is too long (256 bytes")
    assert names(tmp_path) == {"v.mp4"}


def test_missing_output_folder_is_exit_5(tmp_path, capsys, monkeypatch):
    a = write_test_video(tmp_path / "a.mp4", seconds=0.5).path
    b = write_test_video(tmp_path / "b.mp4", seconds=0.5).path
    monkeypatch.chdir(tmp_path)
    for argv in ([a, b, "-o", "missing/"], [a, b, "-o", "missing"], [a, "-o", "missing/"]):
        code, err = run(capsys, *argv, "--bundle", NO_BUNDLE)
        assert_one_error(code, err, EXIT_OUTPUT, "missing", "folder does not exist")
    (tmp_path / "file").write_text("x")
    code, err = run(capsys, a, b, "-o", "file", "--bundle", NO_BUNDLE)
    assert_one_error(code, err, EXIT_USAGE, "must be an existing folder")


def _mount_tmpfs(folder: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    folder.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def test_full_disk_is_found_before_the_bundle_loads(tmp_path, capsys, monkeypatch):
    """A real tmpfs filled to 0 bytes free: refused at once (exit 5), nothing written."""
    full = tmp_path / "full"
    if not _mount_tmpfs(full, "64k"):
        pytest.skip("cannot mount a small tmpfs here (needs root and mount permission)")
    try:
        fd = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            with pytest.raises(OSError):
                while True:
                    os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
        assert os.statvfs(full).f_bavail == 0
        video = write_test_video(tmp_path / "v.mp4", seconds=0.5).path
        monkeypatch.chdir(tmp_path)
        code, err = run(capsys, video, "--bundle", NO_BUNDLE, "-o", full / "music.wav")
        assert_one_error(code, err, EXIT_OUTPUT, "music.wav", "no space left on the device (0 kB free")
        assert names(full) == {"filler"}
    finally:
        subprocess.run(["umount", str(full)], check=False)


# ---- bundles broken in one way each: exit 4 ----------------------------------------------------


def _broken_bundle(tmp: Path, component: str, edit) -> Path:
    """A copy of the shipped bundle (other graphs linked) whose ``component`` graph is rewritten by
    ``edit(model)``, with the manifest's hash and size updated, so only the graph is at fault."""
    import onnx

    from vem.runtime.bundle import sha256_file

    folder = tmp / "bundle"
    folder.mkdir()
    manifest = json.loads((DEFAULT_BUNDLE / "manifest.json").read_text())
    for entry in DEFAULT_BUNDLE.iterdir():
        if entry.name != "manifest.json" and not entry.name.startswith(f"{component}."):
            os.symlink(entry, folder / entry.name)
    for item in manifest["components"]:
        if item["name"] == component:
            model = onnx.load(str(DEFAULT_BUNDLE / item["file"]))
            edit(model)
            onnx.save(model, str(folder / item["file"]))
            item["sha256"] = sha256_file(folder / item["file"])
            item["bytes"] = (folder / item["file"]).stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _rename_first_input(model) -> None:
    old = model.graph.input[0].name
    model.graph.input[0].name = "renamed_input"
    for node in model.graph.node:
        node.input[:] = ["renamed_input" if name == old else name for name in node.input]


def _nan_weights(model) -> None:
    from onnx import numpy_helper

    for initializer in model.graph.initializer:
        array = numpy_helper.to_array(initializer)
        if array.dtype.kind == "f" and array.ndim >= 2:
            initializer.CopyFrom(numpy_helper.from_array(np.full_like(array, np.nan), initializer.name))
            return


def test_graph_whose_inputs_differ_from_the_manifest_is_exit_4_at_load(tmp_path, capsys, monkeypatch):
    bundle = _broken_bundle(tmp_path, "vocoder", _rename_first_input)
    video = write_test_video(tmp_path / "v.mp4", seconds=0.5).path
    monkeypatch.chdir(tmp_path)
    started = time.perf_counter()
    code, err = run(capsys, video, "--bundle", bundle, "--steps", "1")
    assert_one_error(code, err, EXIT_BUNDLE, "component vocoder", "renamed_input", "'mel'", "manifest")
    assert time.perf_counter() - started < 30  # at load: no generation happened
    assert names(tmp_path) == {"v.mp4", "bundle"}


def test_weights_that_make_nan_are_exit_4_naming_the_component(tmp_path, capsys, monkeypatch):
    bundle = _broken_bundle(tmp_path, "vae_decoder", _nan_weights)
    video = write_test_video(tmp_path / "v.mp4", seconds=0.5).path
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, video, "--bundle", bundle, "--steps", "1")
    assert_one_error(code, err, EXIT_BUNDLE, "component vae_decoder", "NaN/inf")
    assert "report it" not in err  # not called a bug
    assert names(tmp_path) == {"v.mp4", "bundle"}


# ---- signals -----------------------------------------------------------------------------------


def _start(tmp: Path, *argv: str) -> tuple[subprocess.Popen, list[tuple[float, str]]]:
    process = subprocess.Popen([VEM_RUN, *argv], cwd=tmp, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               text=True)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in process.stderr:
            lines.append((time.perf_counter(), line.rstrip("\n")))

    threading.Thread(target=read, daemon=True).start()
    return process, lines


@pytest.mark.parametrize("signum, code, word", [
    (signal.SIGTERM, 143, "stopped by SIGTERM"),
    (signal.SIGHUP, 129, "stopped by SIGHUP"),
    (signal.SIGINT, 130, "interrupted"),
], ids=["SIGTERM", "SIGHUP", "SIGINT twice"])
def test_signal_during_a_run_stops_it_promptly_leaving_nothing(signum, code, word, tmp_path):
    """A real vem-run in its diffusion (1000 steps: minutes), stopped by a real signal: the exit
    code of that signal, one line, within 2 s, no traceback (a second Ctrl-C included), and no
    file (hidden temporary ones included) left in the output folder."""
    video = write_test_video(tmp_path / "clip.mp4", seconds=4.0, cut_times=[2.0]).path
    out = tmp_path / "out"
    out.mkdir()
    process, lines = _start(out, video, "--steps", "1000", "--force", "--report", "r.json")
    try:
        time.sleep(8.0)  # the bundle loads, the video is parsed, the sampler runs
        assert process.poll() is None, lines
        sent = time.perf_counter()
        process.send_signal(signum)
        if signum == signal.SIGINT:
            time.sleep(0.05)
            process.send_signal(signum)  # the impatient second Ctrl-C
        process.wait(timeout=30)
        took = time.perf_counter() - sent
    finally:
        if process.poll() is None:
            process.kill()
    text = "\n".join(line for _, line in lines)
    assert process.returncode == code, text
    assert took < 2.0, (took, text)
    assert "Traceback" not in text
    errors = [line for _, line in lines if line.startswith(("error: ", "hint: "))]  # (progress lines aside)
    assert len(errors) == 1 and errors[0].startswith(f"error: {word}"), text
    assert names(out) == set()


def test_ort_run_is_terminated_by_a_signal_within_a_second(tmp_path):
    """A real ONNX Runtime run of several seconds (a chain of 1024x1024 matrix products), with
    SIGINT sent to this process while it runs: the run stops within a second, as Interrupted."""
    import onnx
    from onnx import TensorProto, helper

    from vem.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from vem.runtime.interrupt import Interrupted, handling_signals

    size, depth = 1024, 300
    weight = helper.make_tensor("w", TensorProto.FLOAT, [size, size],
                                (np.eye(size, dtype=np.float32)).reshape(-1).tolist())
    nodes = [helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", "w"], [f"h{i + 1}"]) for i in range(depth)]
    nodes.append(helper.make_node("Identity", [f"h{depth}"], ["y"]))
    graph = helper.make_graph(nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])], [weight])
    path = tmp_path / "slow.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    runner = OnnxRuntimeBackend(["CPUExecutionProvider"]).load(path)
    x = np.ones((size, size), dtype=np.float32)

    previous = signal.getsignal(signal.SIGINT)
    try:
        with handling_signals():
            timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            started = time.perf_counter()
            with pytest.raises(Interrupted) as stopped:
                runner.run({"x": x})
            stopped_after = time.perf_counter() - started
    finally:
        signal.signal(signal.SIGINT, previous)  # after a stop vem-run ignores further signals
    assert stopped.value.exit_code == 130
    assert stopped_after < 1.5, stopped_after  # 0.5 s, then the signal
    # Unstopped, the same run takes far longer: the signal, not the graph's end, stopped it.
    started = time.perf_counter()
    runner.run({"x": x})
    assert time.perf_counter() - started > 2 * stopped_after


@pytest.mark.slow
def test_sigterm_at_every_stage_stops_within_two_seconds(tmp_path):
    """SIGTERM sent 0.4, 0.8, ... 4.8 s into a short run (a 10 s clip, 2 steps: about 5 s on a
    2-core CPU, so loading, decoding, parsing, diffusion, decoding audio, beat analysis and writing
    are each hit on such a machine): every time the
    process ends within 2 s with exit 143 and leaves nothing; a run that finished first is fine.
    Prints the times (pytest -s)."""
    video = write_test_video(tmp_path / "clip.mp4", seconds=10.0, cut_times=[3.0, 6.0]).path
    took_all = []
    for delay in [0.4 * k for k in range(1, 13)]:
        out = tmp_path / f"out{delay}"
        out.mkdir()
        process, lines = _start(out, video, "--steps", "2", "-q")
        time.sleep(delay)
        if process.poll() is not None:  # done before the signal
            assert process.returncode == 0
            continue
        sent = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        took = time.perf_counter() - sent
        took_all.append((round(delay, 1), round(took, 2), process.returncode))
        text = "\n".join(line for _, line in lines)
        if process.returncode == 0:  # it finished between the check and the signal
            continue
        assert process.returncode == 143 and "Traceback" not in text, text
        assert took < 2.0, (delay, took, text)
        assert names(out) == set()
    print("delay s, stop s, exit code:", took_all)
    assert took_all
