"""The front end from a user's side: `vem-run --parse-only`, one place for a cut in the parse JSON,
progress lines, chunked graph calls that give the same numbers, and whole-process measurement."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from vem.runtime.bench import run_process
from vem.runtime.parse_schema import ParseError, check_cuts_agree, load_parse, parse_from_dict
from vem.runtime.pipeline import Pipeline
from vem.runtime.progress import Progress
from vem.runtime.slideshow import free_shots, write_slideshow

VEM_RUN = [sys.executable, "-c", "import sys; from vem.runtime.run import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("front")
    return write_slideshow(folder / "clip.mp4", free_shots(6, seed=4, low_s=1.2, high_s=2.5), fps=25, size=(320, 180))


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline.load()


def test_parse_only_writes_the_parse_and_report_and_no_music(clip, tmp_path):
    result = subprocess.run([*VEM_RUN, clip.path, "--parse-only", "-o", str(tmp_path), "--report",
                             str(tmp_path / "r.json")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["clip.vem.parse.json", "r.json"], written
    parse = load_parse(tmp_path / "clip.vem.parse.json")
    assert parse.frame.transitions_s == pytest.approx(clip.cut_times_s, abs=1e-5)
    assert [t.source_frame for t in parse.frame.transitions] == [t.first_frame for t in clip.transitions]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["parse_only"] is True and {"decode", "parse", "total"} <= set(report["timings_s"])
    # Not a terminal: one line per stage on stderr, no bar.
    assert "decode: " in result.stderr and "parse: " in result.stderr and "\r" not in result.stderr
    # The written parse drives a run as it is (the storyboards agree with the cuts).
    check_cuts_agree(parse)


def test_parse_only_refuses_a_music_output(clip, tmp_path):
    result = subprocess.run([*VEM_RUN, clip.path, "--parse-only", "-o", str(tmp_path / "m.wav")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--parse-only writes no music" in result.stderr
    assert not list(tmp_path.iterdir())


def _parse_dict(starts, transitions, split=()):
    boards = [{"start_s": s, "duration_s": e - s, "description": "", **({"split": True} if i in split else {})}
              for i, (s, e) in enumerate(zip(starts, starts[1:] + [10.0]))]
    return {"version": 1, "video": {"path": "v.mp4", "duration_s": 10.0, "fps": 25.0},
            "global": {"caption": "", "tags": []}, "storyboards": boards,
            "frame": {"fps": 16, "transitions_s": transitions}}


def test_a_cut_moved_in_one_list_only_is_refused_with_both_places_named():
    check_cuts_agree(parse_from_dict(_parse_dict([0.0, 4.0, 7.0], [4.0, 7.0])))
    with pytest.raises(ParseError, match=r"storyboards\[1\]\.start_s: 4\.500 s .* nearest is 4\.000 s"):
        check_cuts_agree(parse_from_dict(_parse_dict([0.0, 4.5, 7.0], [4.0, 7.0])))
    with pytest.raises(ParseError, match=r"storyboards\[2\]"):  # deleted from transitions_s only
        check_cuts_agree(parse_from_dict(_parse_dict([0.0, 4.0, 7.0], [4.0])))
    # A long shot split in two says so, and is accepted.
    check_cuts_agree(parse_from_dict(_parse_dict([0.0, 4.0, 7.0], [4.0], split={2})))


def test_vem_run_refuses_an_inconsistent_parse_before_loading(clip, tmp_path):
    parse = _parse_dict([0.0, 2.0], [1.5])
    parse["video"]["duration_s"] = clip.duration_s
    parse["storyboards"][-1]["duration_s"] = clip.duration_s - 2.0
    (tmp_path / "p.json").write_text(json.dumps(parse))
    result = subprocess.run([*VEM_RUN, clip.path, "--parse", str(tmp_path / "p.json"), "-o", str(tmp_path / "m.wav"),
                             "--bundle", str(tmp_path / "no-such-bundle")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "not a transition in frame.transitions_s" in result.stderr


def test_chunked_aligner_and_vocoder_equal_one_call(pipeline):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (400, 64, 64, 3), dtype=np.uint8)
    probabilities = rng.random(400).astype(np.float32)
    whole = pipeline.runners["aligner"].run({"frames": frames[None], "transition_probs": probabilities[None]})
    np.testing.assert_array_equal(pipeline._run_aligner(frames, probabilities), whole["features"])
    mel = pipeline.runners["vae_decoder"].run({"latent": rng.standard_normal((1, 8, 700, 16), dtype=np.float32)})["mel"]
    np.testing.assert_array_equal(pipeline._vocode(mel), pipeline.runners["vocoder"].run({"mel": mel})["waveform"][0])


def test_chunked_vae_decoder_stays_close_to_one_call(pipeline):
    rng = np.random.default_rng(1)
    short = rng.standard_normal((1, 8, 300, 16), dtype=np.float32)
    np.testing.assert_array_equal(pipeline._vae_decode(short), pipeline.runners["vae_decoder"].run({"latent": short})["mel"])
    long = rng.standard_normal((1, 8, 900, 16), dtype=np.float32)
    whole = pipeline.runners["vae_decoder"].run({"latent": long})["mel"]
    chunked = pipeline._vae_decode(long)
    assert chunked.shape == whole.shape
    spread = np.abs(whole - whole.mean()).mean()
    assert np.abs(chunked - whole).mean() < 0.05 * spread  # measured 3 % on random latents


def test_progress_lines_when_not_a_terminal(tmp_path):
    with open(tmp_path / "log", "w") as stream:
        progress = Progress.for_stream(stream)
        assert progress.mode == "lines"
        with progress.stage("decode", total=10) as advance:
            advance(7)
        with Progress.for_stream(stream, quiet=True).stage("parse") as advance:
            advance(3)
    assert (tmp_path / "log").read_text().startswith("decode: 7 frames in ")
    assert "parse" not in (tmp_path / "log").read_text()


def test_run_process_reports_the_childs_own_peak_memory():
    small = run_process([sys.executable, "-c", "pass"])
    big = run_process([sys.executable, "-c", "import numpy as np; a = np.ones(300 * 2**20 // 8); print(a.sum())"])
    assert big["peak_rss_mib"] - small["peak_rss_mib"] > 250
    assert small["wall_s"] > 0 and big["cpu_s"] > 0


def test_the_fade_out_starts_after_a_late_cut():
    from vem.runtime.pipeline import FADE_OUT_S, FINAL_CUT_CLEAR_S, MIN_FADE_OUT_S, fade_out_seconds

    assert fade_out_seconds(12.0, [3.0, 6.0]) == FADE_OUT_S  # no cut in the last second
    assert fade_out_seconds(12.0, [3.0, 11.4]) == pytest.approx(12.0 - 11.4 - FINAL_CUT_CLEAR_S)
    assert fade_out_seconds(12.0, [11.9]) == MIN_FADE_OUT_S  # a cut in the last instants: a short fade
    assert fade_out_seconds(2.0, []) == pytest.approx(0.5)  # at most a quarter of a short video
