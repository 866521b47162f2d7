"""vem-run's failure paths: one-line messages, documented exit codes, inputs untouched, no partial
outputs (the first cases of the bad-input issue; the full corpus is in test_bad_input.py)."""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from media import write_test_video  # noqa: E402

from vem.runtime.errors import EXIT_BUNDLE, EXIT_INPUT, EXIT_OUTPUT  # noqa: E402
from vem.runtime.run import main as vem_run  # noqa: E402


def run(capsys, *argv):
    code = vem_run([*map(str, argv), "-q"])
    err = capsys.readouterr().err
    return code, err


def test_missing_bundle_is_exit_4(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_test_video(tmp_path / "v.mp4", seconds=0.5)
    code, err = run(capsys, tmp_path / "v.mp4", "--bundle", tmp_path / "nowhere")
    assert code == EXIT_BUNDLE
    assert err.startswith("error: bundle folder not found") and "Traceback" not in err


def test_corrupted_graph_is_exit_4(demo_bundle, tmp_path, capsys, monkeypatch):
    broken = tmp_path / "bundle"
    shutil.copytree(demo_bundle, broken)
    (broken / "vocoder.onnx").write_bytes(b"\x00garbage")
    monkeypatch.chdir(tmp_path)
    write_test_video(tmp_path / "v.mp4", seconds=0.5)
    code, err = run(capsys, tmp_path / "v.mp4", "--bundle", broken)
    assert code == EXIT_BUNDLE and "vocoder" in err and "hash" in err


@pytest.mark.parametrize("content", [b"", b"this is a text file, not a video\n" * 50])
def test_unusable_video_is_exit_3_and_left_alone(demo_bundle, tmp_path, capsys, monkeypatch, content):
    monkeypatch.chdir(tmp_path)
    video = tmp_path / "bad.mp4"
    video.write_bytes(content)
    code, err = run(capsys, video, "--bundle", demo_bundle)
    assert code == EXIT_INPUT
    assert err.count("\n") <= 2 and "Traceback" not in err
    assert video.read_bytes() == content
    assert not list(tmp_path.glob("bad.vem.*"))


def test_output_over_the_input_is_refused(demo_bundle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    video = write_test_video(tmp_path / "v.mp4", seconds=1.0)
    before = (tmp_path / "v.mp4").read_bytes()
    code, err = run(capsys, video.path, "--bundle", demo_bundle, "-o", video.path, "--force", "--steps", "1")
    assert code == EXIT_OUTPUT and "input" in err
    assert (tmp_path / "v.mp4").read_bytes() == before


def test_several_videos_good_ones_finish_broken_ones_listed(demo_bundle, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(tmp_path)
    good = write_test_video(tmp_path / "good.mp4", seconds=1.5, cut_times=[0.7])
    (tmp_path / "broken.mp4").write_bytes(b"nope")
    code, err = run(capsys, good.path, tmp_path / "broken.mp4", "--bundle", demo_bundle, "-o", out, "--steps", "1")
    assert code == EXIT_INPUT
    assert (out / "good.vem.wav").exists() and (out / "good.vem.mp4").exists()
    assert "1 of 2 videos failed: " in err and "broken.mp4" in err
