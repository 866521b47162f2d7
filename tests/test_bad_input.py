"""vem-run against the videos, outputs and bundles people really have (issue #9).

Every file here is made by the test itself (PyAV; tests/media.py). For each case the contract of
README "Errors and exit codes" is checked: the exit code, a one-line ``error:`` message (plus at
most one ``hint:`` line) that names the problem, no traceback, no output file left behind, and
the input unchanged. Cases that must *work* (a single frame, 8K, 16x16, odd sizes, VFR, rotation,
10-bit) are run end to end and their outputs checked.

Cheap refusals (bad file, bad output path, bad parse, over-long video) happen before the bundle
is loaded, so those tests pass a bundle path that does not exist: they also pin that order.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from media import (  # noqa: E402
    write_flat_yuv_video,
    write_hours_long_video,
    write_minimal_parse,
    write_test_audio,
    write_test_video,
    write_truncated_copy,
    write_zeroed_media_copy,
)

from vem.runtime.audio import read_audio  # noqa: E402
from vem.runtime.errors import EXIT_BUNDLE, EXIT_INPUT, EXIT_OK, EXIT_OUTPUT, EXIT_USAGE  # noqa: E402
from vem.runtime.run import main as vem_run  # noqa: E402
from vem.runtime.video import probe  # noqa: E402

NO_BUNDLE = "/nonexistent/vem-bundle"  # reaching the bundle load would give exit 4, not the expected code
STEPS = ["--steps", "1"]


def run(capsys, *argv) -> tuple[int, str]:
    code = vem_run([*map(str, argv), "-q"])
    return code, capsys.readouterr().err


def assert_one_error(code: int, err: str, expected_code: int, *phrases: str) -> str:
    """The README's contract: the code, ``error: <one line>`` and at most a ``hint:`` line."""
    assert code == expected_code, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line]
    assert lines and lines[0].startswith("error: "), err
    assert len(lines) <= 2 and all(line.startswith(("error: ", "hint: ")) for line in lines), err
    for phrase in phrases:
        assert phrase in lines[0], (phrase, err)
    return lines[0]


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def leftovers(folder: Path, before: set[str]) -> set[str]:
    """Files that appeared in ``folder`` (hidden temporary files included)."""
    return {p.name for p in folder.iterdir()} - before


# ---- unusable videos: exit 3, refused before the bundle loads -------------------------------


def _truncated(tmp: Path) -> Path:
    source = write_test_video(tmp / "src.mp4", seconds=1.0, moving_square=True)
    path = Path(write_truncated_copy(source.path, tmp / "v.mp4", 0.6))
    os.unlink(source.path)
    return path


def _truncated_faststart(tmp: Path) -> Path:
    source = write_test_video(tmp / "src.mp4", seconds=1.0, moving_square=True, faststart=True)
    path = Path(write_truncated_copy(source.path, tmp / "v.mp4", 0.6))
    os.unlink(source.path)
    return path


def _empty(tmp: Path) -> Path:
    (tmp / "v.mp4").write_bytes(b"")
    return tmp / "v.mp4"


def _text(tmp: Path) -> Path:
    (tmp / "v.mp4").write_text("my holiday notes, not a video\n" * 40)
    return tmp / "v.mp4"


def _audio_only(tmp: Path) -> Path:
    return Path(write_test_audio(tmp / "v.mp4", seconds=0.5))


def _no_decodable_frames(tmp: Path) -> Path:
    source = write_test_video(tmp / "src.mp4", seconds=1.0, moving_square=True)
    path = Path(write_zeroed_media_copy(source.path, tmp / "v.mp4"))
    os.unlink(source.path)
    return path


UNUSABLE = {
    "truncated": (_truncated, "truncated"),
    "truncated-faststart": (_truncated_faststart, "truncated"),
    "zero-bytes": (_empty, "is empty (0 bytes)"),
    "text-named-mp4": (_text, "not a readable video"),
    "audio-only": (_audio_only, "has only audio, no video stream"),
    "no-decodable-frames": (_no_decodable_frames, "no decodable frames"),
}


@pytest.mark.parametrize("case", sorted(UNUSABLE))
def test_unusable_video_is_exit_3_named_and_left_alone(case, tmp_path, capsys, monkeypatch):
    make, phrase = UNUSABLE[case]
    video = make(tmp_path)
    monkeypatch.chdir(tmp_path)
    before_files, before_digest = {p.name for p in tmp_path.iterdir()}, digest(video)
    code, err = run(capsys, video, "--bundle", NO_BUNDLE)
    line = assert_one_error(code, err, EXIT_INPUT, phrase)
    assert str(video) in line
    assert digest(video) == before_digest
    assert leftovers(tmp_path, before_files) == set()


def test_missing_video_is_exit_3(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, tmp_path / "nope.mp4", "--bundle", NO_BUNDLE)
    assert_one_error(code, err, EXIT_INPUT, "nope.mp4: no such file")


@pytest.mark.parametrize("limit", [["--max-seconds", "60"], []], ids=["max-seconds-60", "default-limit"])
def test_three_hour_video_is_refused_at_once_from_its_header(limit, tmp_path, capsys, monkeypatch):
    video = write_hours_long_video(tmp_path / "long.mp4", hours=3.0)
    monkeypatch.chdir(tmp_path)
    started = time.perf_counter()
    code, err = run(capsys, video.path, "--bundle", NO_BUNDLE, *limit)
    elapsed = time.perf_counter() - started
    expected_limit = "60 s" if limit else "3600 s"
    assert_one_error(code, err, EXIT_INPUT, "10800 s is longer than the limit of " + expected_limit)
    assert "--max-seconds" in err  # the hint says how to go on
    # Decoding 3 hours, even of 16x16 frames, would take far longer than reading a header.
    assert elapsed < 2.0


def test_pipeline_refuses_over_limit_before_decoding(demo_bundle, tmp_path):
    """The API path (no CLI pre-check): Pipeline.generate reads the header and refuses too."""
    from vem.runtime.errors import InputError
    from vem.runtime.pipeline import Pipeline

    video = write_hours_long_video(tmp_path / "long.mp4", hours=3.0)
    pipeline = Pipeline.load(demo_bundle)
    started = time.perf_counter()
    with pytest.raises(InputError, match="longer than the limit of 120 s"):
        pipeline.generate(video.path, steps=1, max_video_seconds=120)
    assert time.perf_counter() - started < 2.0


# ---- unusual but valid videos: all generate ---------------------------------------------------


@pytest.fixture(scope="module")
def unusual_videos(tmp_path_factory):
    """name -> (path, upright (width, height), expected duration in seconds)."""
    folder = tmp_path_factory.mktemp("unusual")
    videos = {}
    single = write_test_video(folder / "single_frame.mp4", frame_times=[0.0], fps=25)
    videos["single_frame"] = (single.path, (96, 64), 0.04)
    short = write_test_video(folder / "short_0.3s.mp4", fps=25, seconds=0.3, cut_times=[0.16])
    videos["short_0.3s"] = (short.path, (96, 64), 0.32)
    tiny = write_test_video(folder / "tiny_16x16.mp4", size=(16, 16), seconds=1.0, cut_times=[0.5])
    videos["tiny_16x16"] = (tiny.path, (16, 16), 1.0)
    odd = write_test_video(folder / "odd_97x55.mp4", size=(97, 55), seconds=1.0, cut_times=[0.5])
    videos["odd_97x55"] = (odd.path, (97, 55), 1.0)
    vfr = write_test_video(folder / "vfr.mp4", seconds=1.5, variable_frame_rate=True, cut_times=[0.7])
    videos["vfr"] = (vfr.path, (96, 64), vfr.duration_s)
    rotated = write_test_video(folder / "rotated.mp4", seconds=1.0, rotation=-90, cut_times=[0.5])
    videos["rotated"] = (rotated.path, (64, 96), 1.0)
    huge = write_flat_yuv_video(folder / "uhd_8k.mp4", size=(7680, 4320), frames=2, fps=25)
    videos["uhd_8k"] = (huge, (7680, 4320), 0.08)
    return folder, videos


def test_folder_of_unusual_videos_all_generate(demo_bundle, unusual_videos, tmp_path, capsys, monkeypatch):
    """One vem-run over a folder (it expands to the videos inside, sorted): every one finishes with
    a soundtrack as long as its picture, and the report knows its upright size."""
    folder, videos = unusual_videos
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(tmp_path)
    code = vem_run([str(folder), "-o", str(out), "--bundle", str(demo_bundle), *STEPS, "--report", "r.json"])
    captured = capsys.readouterr()
    assert code == EXIT_OK, captured.err
    assert "Traceback" not in captured.err
    # The summary lists the videos in sorted order.
    order = [line.split(":")[0] for line in captured.out.splitlines() if not line.startswith(" ")]
    assert order == sorted(str(folder / f"{name}.mp4") for name in videos)
    for name, (_, (width, height), seconds) in videos.items():
        wave, rate = read_audio(out / f"{name}.vem.wav", mono=True)
        assert len(wave) / rate == pytest.approx(seconds, abs=0.02), name
        report = json.loads((out / f"{name}.vem.report.json").read_text())
        assert (report["video"]["width"], report["video"]["height"]) == (width, height), name
        assert probe(out / f"{name}.vem.mp4").has_audio
    assert probe(out / "rotated.vem.mp4").rotation == -90  # the display matrix travels along


def test_ten_bit_hevc_generates(demo_bundle, tmp_path, capsys, monkeypatch):
    try:
        video = write_test_video(tmp_path / "hevc10.mp4", codec="hevc", pix_fmt="yuv420p10le", seconds=1.0,
                                 cut_times=[0.5])
    except Exception as error:  # noqa: BLE001 - an FFmpeg build without 10-bit x265
        pytest.skip(f"PyAV's hevc encoder cannot write 10-bit here: {error}")
    assert probe(video.path).pix_fmt == "yuv420p10le"
    monkeypatch.chdir(tmp_path)
    parse = write_minimal_parse(tmp_path / "p.json", 1.0, transitions_s=(0.5,))
    code, err = run(capsys, video.path, "--bundle", demo_bundle, *STEPS, "--parse", parse, "-o", "m.wav")
    assert code == EXIT_OK, err
    wave, rate = read_audio(tmp_path / "m.wav", mono=True)
    assert len(wave) / rate == pytest.approx(1.0, abs=0.02)


# ---- outputs: exit 5 (or 2 for a malformed request), checked before the bundle loads --------


@pytest.fixture
def clip(tmp_path):
    return write_test_video(tmp_path / "clip.mp4", seconds=1.0, cut_times=[0.5])


def test_existing_output_without_force_is_kept(clip, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "music.wav").write_bytes(b"my earlier take")
    code, err = run(capsys, clip.path, "-o", "music.wav", "--bundle", NO_BUNDLE)
    assert_one_error(code, err, EXIT_OUTPUT, "music.wav: already exists")
    assert "--force" in err
    assert (tmp_path / "music.wav").read_bytes() == b"my earlier take"


def test_output_through_a_link_to_the_input_is_refused(clip, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink(clip.path, tmp_path / "alias.mp4")
    before = digest(clip.path)
    code, err = run(capsys, clip.path, "-o", "alias.mp4", "--force", "--bundle", NO_BUNDLE)
    assert_one_error(code, err, EXIT_OUTPUT, "is the input file")
    assert digest(clip.path) == before


@pytest.mark.parametrize("where, phrase", [
    ("blocker.txt/music.wav", "blocker.txt is a file, not a folder"),  # a path under a regular file
    ("/proc/vem-music.wav", "cannot write in /proc"),  # not writable even for root
    ("no/such/folder/music.wav", "does not exist"),
])
def test_unwritable_output_is_exit_5_before_any_work(clip, tmp_path, capsys, monkeypatch, where, phrase):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker.txt").write_text("a file, not a folder")
    code, err = run(capsys, clip.path, "-o", where, "--bundle", NO_BUNDLE)
    assert_one_error(code, err, EXIT_OUTPUT, phrase)


@pytest.mark.parametrize("argv, phrase", [
    (["-o", "music.ogg"], "use a .wav, .flac or .mp4 file name"),
    (["--max-seconds", "0"], "--max-seconds must be a positive number"),
    (["other.mp4", "--parse", "p.json"], "--parse describes one video"),
])
def test_malformed_requests_are_exit_2(clip, tmp_path, capsys, monkeypatch, argv, phrase):
    monkeypatch.chdir(tmp_path)
    write_minimal_parse(tmp_path / "p.json", 1.0)
    shutil.copyfile(clip.path, tmp_path / "other.mp4")
    code, err = run(capsys, clip.path, *argv, "--bundle", NO_BUNDLE)
    assert_one_error(code, err, EXIT_USAGE, phrase)


def test_folder_without_videos_and_clashing_names_are_exit_2(clip, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no videos here")
    code, err = run(capsys, tmp_path / "empty", "--bundle", NO_BUNDLE)
    assert_one_error(code, err, EXIT_USAGE, "no video files in this folder")

    (tmp_path / "a").mkdir()
    shutil.copyfile(clip.path, tmp_path / "a" / "clip.mp4")
    (tmp_path / "out").mkdir()
    code, err = run(capsys, clip.path, tmp_path / "a" / "clip.mp4", "-o", "out", "--bundle", NO_BUNDLE)
    assert_one_error(code, err, EXIT_USAGE, "would both write")


def test_unknown_option_is_exit_2(capsys):
    with pytest.raises(SystemExit) as caught:
        vem_run(["clip.mp4", "--no-such-option"])
    assert caught.value.code == EXIT_USAGE
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


# ---- disk full: the failure is named, nothing is left, the input is untouched ---------------


def _generate_args(clip, tmp_path, demo_bundle) -> list:
    parse = write_minimal_parse(tmp_path / "p.json", 1.0, transitions_s=(0.5,))
    return [clip.path, "--bundle", demo_bundle, *STEPS, "--parse", parse]


def test_disk_full_while_writing_the_wav(demo_bundle, clip, tmp_path, capsys, monkeypatch):
    """An injected fault: the WAV writer gets ENOSPC halfway, as on a full disk."""
    from vem.runtime import audio

    def full_disk(path, pcm, sample_rate):
        with open(path, "wb") as handle:
            handle.write(b"RIFF\x00\x00")  # a partial header first, as a real write would leave
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(audio, "_write_wav", full_disk)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    before = digest(clip.path)
    code, err = run(capsys, *_generate_args(clip, tmp_path, demo_bundle), "--report", "r.json")
    assert_one_error(code, err, EXIT_OUTPUT, "no space left on the device")
    assert list(out.iterdir()) == []  # no wav, no mp4, no report, no temporary file
    assert digest(clip.path) == before


def test_disk_full_while_muxing_the_mp4(demo_bundle, clip, tmp_path, capsys, monkeypatch):
    """An injected fault: FFmpeg's muxer reports ENOSPC after a few packets; the wav already
    written for this video is not kept either (a video's outputs appear together or not at all)."""
    import av

    from vem.runtime import writer

    real_mux = writer._mux
    calls = {"n": 0}

    class FullDisk:
        def mux(self, packet):
            raise av.FFmpegError(errno.ENOSPC, "No space left on device")

    def mux_until_full(output, packet, out_path, codec):
        calls["n"] += 1
        real_mux(FullDisk() if calls["n"] > 5 else output, packet, out_path, codec)

    monkeypatch.setattr(writer, "_mux", mux_until_full)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    code, err = run(capsys, *_generate_args(clip, tmp_path, demo_bundle))
    assert_one_error(code, err, EXIT_OUTPUT, "clip.vem.mp4", "no space left on the device")
    assert calls["n"] > 5
    assert list(out.iterdir()) == []


def test_ctrl_c_while_writing_leaves_nothing(demo_bundle, clip, tmp_path, capsys, monkeypatch):
    from vem.runtime import audio

    def interrupted(path, pcm, sample_rate):
        Path(path).write_bytes(b"RIFF")
        raise KeyboardInterrupt

    monkeypatch.setattr(audio, "_write_wav", interrupted)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    code, err = run(capsys, *_generate_args(clip, tmp_path, demo_bundle))
    assert code == 130 and err.startswith("error: interrupted")
    assert list(out.iterdir()) == []


def _mount_tmpfs(folder: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    folder.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                            capture_output=True)
    return result.returncode == 0


def test_really_full_disk(demo_bundle, clip, tmp_path, capsys, monkeypatch):
    """A real 16 kB file system: the 1 s WAV (32 kB) cannot fit."""
    full = tmp_path / "full"
    if not _mount_tmpfs(full, "16k"):
        pytest.skip("cannot mount a small tmpfs here (needs root and mount permission)")
    try:
        monkeypatch.chdir(tmp_path)
        code, err = run(capsys, *_generate_args(clip, tmp_path, demo_bundle), "-o", full / "music.wav")
        assert_one_error(code, err, EXIT_OUTPUT, "music.wav", "no space left on the device")
        assert list(full.iterdir()) == []
    finally:
        subprocess.run(["umount", str(full)], check=False)


# ---- bundles: exit 4 ------------------------------------------------------------------------


def bundle_variant(source: Path, target: Path, replace: dict[str, bytes | None] | None = None,
                   manifest=None) -> Path:
    """A bundle folder of symbolic links to ``source``'s files (cheap: no 90 MB copy), with some
    files replaced (bytes) or removed (None) and the manifest optionally edited."""
    target.mkdir()
    replace = replace or {}
    for entry in source.iterdir():
        if entry.name in replace:
            if replace[entry.name] is not None:
                (target / entry.name).write_bytes(replace[entry.name])
        elif entry.name == "manifest.json":
            data = json.loads(entry.read_text())
            if manifest is not None:
                manifest(data)
            (target / entry.name).write_text(json.dumps(data))
        else:
            os.symlink(entry, target / entry.name)
    return target


def test_missing_component_is_exit_4(demo_bundle, clip, tmp_path, capsys, monkeypatch):
    bundle = bundle_variant(demo_bundle, tmp_path / "b", {"aligner.onnx": None})
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, clip.path, "--bundle", bundle)
    assert_one_error(code, err, EXIT_BUNDLE, "component aligner (fp32) is missing")


def test_corrupted_graph_with_matching_hash_is_exit_4(demo_bundle, clip, tmp_path, capsys, monkeypatch):
    """Garbage whose hash the manifest was updated to: the hash check passes, ONNX Runtime refuses it."""
    garbage = b"\x08\x07garbage, not a protobuf" * 10

    def point_at_garbage(data):
        for entry in data["components"]:
            if entry["file"] == "visual.onnx":
                entry["sha256"], entry["bytes"] = hashlib.sha256(garbage).hexdigest(), len(garbage)

    bundle = bundle_variant(demo_bundle, tmp_path / "b", {"visual.onnx": garbage}, manifest=point_at_garbage)
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, clip.path, "--bundle", bundle)
    assert_one_error(code, err, EXIT_BUNDLE, "visual")


@pytest.mark.parametrize("edit, phrase", [
    (lambda d: d["components"][0].__setitem__("sha256", "0" * 64), "does not match its manifest hash"),
    (lambda d: d.__setitem__("format_version", 99), "format_version"),
    (lambda d: d["config"]["audio"].__setitem__("sample_rate", "16k"), "config"),
    (lambda d: d["sampler"].__setitem__("steps", "many"), "sampler.steps"),
])
def test_bad_manifest_is_exit_4(demo_bundle, clip, tmp_path, capsys, monkeypatch, edit, phrase):
    bundle = bundle_variant(demo_bundle, tmp_path / "b", manifest=edit)
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, clip.path, "--bundle", bundle)
    assert_one_error(code, err, EXIT_BUNDLE, phrase)


@pytest.mark.parametrize("built_for, why", [
    (("9.0", "10.3.0"), "compute capability 9.0, this GPU is 8.7"),  # an H100's engine on an Orin
    (("8.7", "10.7.0"), "built with TensorRT 10.7.0, this machine has TensorRT 10.3.0"),
], ids=["other-gpu", "other-tensorrt"])
def test_engine_for_another_machine_falls_back_to_onnx_with_a_warning(built_for, why, demo_bundle, clip, tmp_path,
                                                                      capsys, monkeypatch):
    """The manifest lists a denoiser engine built elsewhere; this machine is simulated as an Orin
    (sm_87) with TensorRT 10.3 (TensorRT itself is not needed: the choice reads only these two
    facts). The run must finish on ONNX Runtime and say why, in one line."""
    import vem.runtime.backends as backends
    from vem.runtime.backends import cuda

    monkeypatch.setattr(backends, "tensorrt_status", lambda: (True, "TensorRT 10.3.0 on Orin (sm_87)", "10.3.0"))
    monkeypatch.setattr(cuda, "gpu_info", lambda: cuda.GpuInfo(True, "Orin (sm_87)", "8.7", "Orin"))
    engine = b"not for this machine"
    capability, version = built_for

    def add_engine(data):
        # fp16: the precision vem-run picks on a GPU (the simulated Orin) for a bundle that has it.
        data["engines"] = [{"name": "denoiser", "precision": "fp16", "file": "denoiser.plan",
                            "sha256": hashlib.sha256(engine).hexdigest(), "bytes": len(engine),
                            "tensorrt_version": version, "compute_capability": capability}]

    bundle = bundle_variant(demo_bundle, tmp_path / "b", manifest=add_engine)
    (bundle / "denoiser.plan").write_bytes(engine)
    monkeypatch.chdir(tmp_path)
    args = [*_generate_args(clip, tmp_path, demo_bundle), "--bundle", bundle, "-o", "m.wav"]

    code, err = run(capsys, *args, "--report", "auto.json")  # auto: ONNX Runtime, the reason in the report
    assert code == EXIT_OK, err
    reason = json.loads((tmp_path / "auto.json").read_text())["backend_reason"]
    assert "no usable TensorRT engine" in reason and why in reason

    code, err = run(capsys, *args, "--force", "--backend", "tensorrt", "--report", "trt.json")
    assert code == EXIT_OK, err
    warnings = [line for line in err.splitlines() if line]
    assert warnings and all(line.startswith("warning: ") for line in warnings), err
    assert any("denoiser" in line and why in line for line in warnings)
    assert json.loads((tmp_path / "trt.json").read_text())["provider"] == "CPUExecutionProvider"


# ---- malformed --parse: exit 3, the field named, before the bundle loads --------------------


def _parse_data(**changes) -> dict:
    data = {"version": 1, "video": {"path": "clip.mp4", "duration_s": 1.0, "fps": 25.0},
            "global": {"caption": "", "tags": ["calm"]},
            "storyboards": [{"start_s": 0.0, "duration_s": 0.5}, {"start_s": 0.5, "duration_s": 0.5}],
            "frame": {"transitions_s": [0.5]}}
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = data
        for parent in parents:
            node = node[int(parent)] if parent.isdigit() else node[parent]
        node[int(key) if key.isdigit() else key] = value
    return data


BAD_PARSES = {
    "duration-is-text": (_parse_data(video__duration_s="ten"), "video.duration_s: expected a number"),
    "tags-not-a-list": (_parse_data(global__tags="calm"), "global.tags: expected a JSON list"),
    "storyboard-is-a-number": (_parse_data(storyboards=[3]), "storyboards[0]: expected a JSON object"),
    "overlapping-storyboards": (_parse_data(storyboards__1__start_s=0.25), "storyboards[1]: overlaps"),
    "storyboard-past-the-end": (_parse_data(storyboards__1__duration_s=2.0), "runs past the end of the video"),
    "cut-past-the-end": (_parse_data(frame__transitions_s=[3.0]), "after the end of the video"),
    "unknown-tag": (_parse_data(global__tags=["calm", "banjo"]), "unknown tag(s) banjo"),
    "boolean-time": (_parse_data(frame__transitions_s=[True]), "expected a number, got bool"),
    "huge-number": (_parse_data(video__duration_s=10**400), "must be a finite number"),
}


@pytest.mark.parametrize("case", sorted(BAD_PARSES))
def test_malformed_parse_is_exit_3_naming_the_field(case, clip, tmp_path, capsys, monkeypatch):
    data, phrase = BAD_PARSES[case]
    (tmp_path / "p.json").write_text(json.dumps(data))
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, clip.path, "--parse", "p.json", "--bundle", NO_BUNDLE)
    line = assert_one_error(code, err, EXIT_INPUT, "bad parse JSON", "p.json", phrase)
    assert len(line) < 600  # the known tags are listed; a huge bad value is not


@pytest.mark.parametrize("content, phrase", [
    (b'{"version": 1, "video": ', "not valid JSON"),
    (b"\xff\xfe\x00binary", "not a JSON text file"),
    (b"[" * 100_000, "nested too deeply"),
])
def test_unreadable_parse_file_is_exit_3(content, phrase, clip, tmp_path, capsys, monkeypatch):
    (tmp_path / "p.json").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, clip.path, "--parse", "p.json", "--bundle", NO_BUNDLE)
    assert_one_error(code, err, EXIT_INPUT, phrase)


def test_parse_longer_than_the_video_is_exit_3(demo_bundle, clip, tmp_path, capsys, monkeypatch):
    """Valid on its own, but written for a 10 s video: only the video can tell."""
    monkeypatch.chdir(tmp_path)
    parse = write_minimal_parse(tmp_path / "p.json", 10.0, transitions_s=(5.0,))
    code, err = run(capsys, clip.path, "--bundle", demo_bundle, "--parse", parse, *STEPS)
    assert_one_error(code, err, EXIT_INPUT, "the parse describes 10.00 s but the video lasts 1.00 s")
    assert not list(tmp_path.glob("clip.vem.*"))


# ---- unexpected failures: exit 1 with a hint to report ---------------------------------------


def test_a_bug_is_exit_1_with_a_hint_and_a_traceback_only_with_debug(demo_bundle, clip, tmp_path, capsys,
                                                                     monkeypatch):
    from vem.runtime import pipeline as pipeline_module

    def broken(*args, **kwargs):
        raise KeyError("frames")  # stands for any bug inside the runtime

    monkeypatch.setattr(pipeline_module.Pipeline, "generate", broken)
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, clip.path, "--bundle", demo_bundle)
    assert_one_error(code, err, 1, "unexpected KeyError")
    assert "please report it" in err and "--debug" in err

    code, err = run(capsys, clip.path, "--bundle", demo_bundle, "--debug")
    assert code == 1 and "Traceback" in err and "KeyError" in err
