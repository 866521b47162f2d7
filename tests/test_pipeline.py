"""vem-run end to end on real files: a bundle exported from the (untrained, seeded) demo model,
real mp4s written by PyAV, real ONNX Runtime sessions. Plumbing, not quality: the demo weights in
this bundle are random, so the music is noise with structure; what is checked is that every
stage runs and every output is right."""

import json
import sys

import numpy as np
import pytest

from vem.runtime.audio import read_audio
from vem.runtime.errors import EXIT_OUTPUT, EXIT_USAGE
from vem.runtime.parse_schema import load_parse
from vem.runtime.pipeline import Pipeline
from vem.runtime.run import main as vem_run
from vem.runtime.video import probe

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from media import packet_payloads, write_test_video  # noqa: E402

STEPS = ["--steps", "3"]
REPORT_KEYS = {"video", "parse", "music", "metrics", "timings_s", "backend", "precision", "seed", "steps"}
STAGES = {"decode", "parse", "condition", "diffuse", "decode_audio", "write", "total"}


@pytest.fixture(scope="module")
def pipeline(demo_bundle):
    return Pipeline.load(demo_bundle)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    return write_test_video(path, codec="h264", fps=30, size=(320, 180), seconds=5.0,
                            cut_times=[1.25, 2.5, 3.75], moving_square=True)


def test_vem_run_writes_wav_mp4_report(demo_bundle, clip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = vem_run([str(clip.path), "--bundle", str(demo_bundle), *STEPS, "--report", "r.json",
                    "--plot", "p.png", "--write-parse", "parse.json", "-q"])
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert REPORT_KEYS <= set(report)
    assert STAGES <= set(report["timings_s"])
    assert report["video"]["duration_s"] == pytest.approx(5.0, abs=0.05)
    assert len(report["parse"]["transitions_s"]) == 3  # TransNetV2's real weights find the cuts
    for found, true in zip(report["parse"]["transitions_s"], clip.cut_times):
        assert abs(found - true) <= 1 / 16 + 1e-6
    assert report["parse"]["storyboards"][0]["start_s"] == 0.0
    assert 0.0 <= report["metrics"]["tbiou"] <= 1.0
    # Where every component ran and why: no silent fallback.
    components = report["components"]
    assert set(components) == {"transitions", "visual", "aligner", "denoiser", "vae_decoder", "vocoder"}
    for placement in components.values():
        assert placement["backend"] == report["backend"] and placement["provider"]
        assert placement["device"] in ("cpu", "cuda") and placement["why"]
        assert isinstance(placement["fallbacks"], list)

    wave, rate = read_audio(tmp_path / "clip.vem.wav", mono=True)
    assert rate == 16000 and len(wave) / rate == pytest.approx(5.0, abs=0.01)
    assert np.isfinite(wave).all() and np.abs(wave).max() <= 1.0
    # The mp4 copies the video stream untouched and carries music as long as the video.
    assert packet_payloads(tmp_path / "clip.vem.mp4") == packet_payloads(clip.path)
    out = probe(tmp_path / "clip.vem.mp4")
    assert out.has_audio
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")
    assert load_parse(tmp_path / "parse.json").frame.transitions_s == report["parse"]["transitions_s"]


def test_existing_output_is_not_overwritten(demo_bundle, clip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clip.vem.wav").write_bytes(b"keep me")
    code = vem_run([str(clip.path), "--bundle", str(demo_bundle), *STEPS, "-q"])
    assert code == EXIT_OUTPUT
    assert (tmp_path / "clip.vem.wav").read_bytes() == b"keep me"
    assert not (tmp_path / "clip.vem.mp4").exists()  # refused before any work was done


def test_same_seed_same_audio_other_seed_other_audio(pipeline, clip):
    a = pipeline.generate(clip.path, steps=3, seed=7).waveform
    b = pipeline.generate(clip.path, steps=3, seed=7).waveform
    c = pipeline.generate(clip.path, steps=3, seed=8).waveform
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_user_parse_drives_the_storyboards(pipeline, clip, tmp_path):
    first = pipeline.generate(clip.path, steps=2, tags=["calm", "piano"], caption="a quiet piano piece")
    assert first.parse.global_.tags == ["calm", "piano"]
    edited = first.parse
    edited.frame.transitions_s = [2.5]
    edited.frame.transition_frames = [40]
    edited.storyboards = edited.storyboards[:0]
    again = pipeline.generate(clip.path, steps=2, parse=edited)
    assert again.report["parse"]["transitions_s"] == [2.5]
    assert [round(s.start_s, 3) for s in again.parse.storyboards] == [0.0, 2.5]
    assert again.report["parse"]["source"] == "user"


def test_bad_tags_and_parse_are_usage_and_input_errors(demo_bundle, clip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert vem_run([str(clip.path), "--bundle", str(demo_bundle), "--tags", "calm,banjo", "-q"]) == EXIT_USAGE
    (tmp_path / "bad.json").write_text('{"version": 1, "video": {}}')
    assert vem_run([str(clip.path), "--bundle", str(demo_bundle), "--parse", "bad.json", "-q"]) == 3


def test_vem_eval_agrees_with_the_report(demo_bundle, clip, tmp_path, monkeypatch):
    from vem.runtime.cli import eval_main

    monkeypatch.chdir(tmp_path)
    assert vem_run([str(clip.path), "--bundle", str(demo_bundle), *STEPS, "-o", "music.wav",
                    "--report", "r.json", "-q"]) == 0
    assert eval_main(["r.json", "--json", "eval.json", "--quiet"]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    report = json.loads((tmp_path / "r.json").read_text())
    files = evaluated.get("files") or evaluated.get("items") or evaluated.get("per_file")
    assert files, evaluated.keys()
    assert files[0]["tbiou"] == pytest.approx(report["metrics"]["tbiou"], abs=1e-9)


@pytest.mark.parametrize("codec,fps,size,rotation,vfr", [
    ("hevc", 25, (161, 97), None, False),
    ("libvpx-vp9", 24000 / 1001, (192, 108), None, False),
    ("mpeg4", 60, (160, 90), None, True),
    ("h264", 30, (320, 180), 90, False),
])
def test_codecs_rates_sizes_rotation(demo_bundle, tmp_path, monkeypatch, codec, fps, size, rotation, vfr):
    monkeypatch.chdir(tmp_path)
    video = write_test_video(tmp_path / "v.mp4", codec=codec, fps=fps, size=size, seconds=2.5,
                             cut_times=[1.2], rotation=rotation, variable_frame_rate=vfr)
    assert vem_run([str(video.path), "--bundle", str(demo_bundle), "--steps", "2", "-q"]) == 0
    assert packet_payloads(tmp_path / "v.vem.mp4") == packet_payloads(video.path)
    wave, rate = read_audio(tmp_path / "v.vem.wav", mono=True)
    # within one 16 fps frame of the container's duration (VFR streams end on an irregular frame)
    assert len(wave) / rate == pytest.approx(probe(video.path).duration_s, abs=1 / 16)


def test_long_video_is_generated_in_windows_joined_on_a_beat(pipeline, tmp_path):
    # The test bundle's window is 8 s (conftest); with 4 s overlaps 19 s needs ceil(15 / 4) = 4 windows.
    video = write_test_video(tmp_path / "long.mp4", codec="h264", fps=25, size=(96, 64), seconds=19.0,
                             cut_times=[3.0, 7.5, 11.0, 15.5], moving_square=True)
    result = pipeline.generate(video.path, steps=2)
    windows = result.report["windows_s"]
    assert len(windows) == 4 and windows[0][0] == 0.0 and windows[-1][1] == pytest.approx(19.0, abs=0.05)
    for (_, end), (start, _) in zip(windows, windows[1:]):
        assert end - start == pytest.approx(4.0, abs=1e-6)  # every overlap is 4 s
    assert len(result.waveform) == pytest.approx(19.0 * result.sample_rate, abs=result.sample_rate * 0.05)
    assert np.isfinite(result.waveform).all()


def test_tempo_comes_from_the_cuts_or_the_user_and_is_reported(pipeline, clip, demo_bundle, tmp_path, capsys):
    """A beat-grid bundle (the demo config's) is told a tempo: by default the one whose grid puts
    the clip's cuts (every 1.25 s) on beats, or the user's --bpm; the report records it."""
    chosen = pipeline.generate(clip.path, steps=2, seed=3)
    tempo = chosen.report["tempo"]
    assert tempo["source"] == "cuts" and 70 <= tempo["bpm"] <= 170
    period = 60.0 / tempo["bpm"]
    cuts = np.array(chosen.report["parse"]["transitions_s"])
    assert len(cuts) >= 2
    on_grid = np.abs((cuts - tempo["anchor_s"]) / period - np.rint((cuts - tempo["anchor_s"]) / period)) * period
    assert np.all(on_grid < 0.07)
    given = pipeline.generate(clip.path, steps=2, seed=3, bpm=97.0)
    assert given.report["tempo"]["bpm"] == 97.0 and given.report["tempo"]["source"] == "user"
    assert given.report["overrides"]["bpm"] == 97.0
    assert not np.array_equal(given.waveform, chosen.waveform)  # the grid reaches the music
    assert vem_run([str(clip.path), "--bundle", str(demo_bundle), "--bpm", "5", "-q",
                    "-o", str(tmp_path / "x.wav")]) == EXIT_USAGE
    assert "--bpm must be between" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()
