"""vem-synth: real mp4/WAV/JSON files whose cuts are real cuts, on the beats the JSON lists."""

import json

import av
import numpy as np
import pytest

from vem.runtime.beats import load_audio
from vem.runtime.parse_schema import load_parse
from vem.runtime.tags import TAG_VOCABULARY
from vem.training.synth.generate import generate_clip, generate_dataset, parse_seconds_range
from vem.training.synth.music import read_wav

SEED = 11
N_CLIPS = 3


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    paths = generate_dataset(out, N_CLIPS, seed=SEED, seconds_range=(6.0, 10.0), workers=1, progress=False)
    return out, paths


def _decode(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        rate = float(stream.average_rate)
    return np.stack(frames).astype(np.int16), rate


def test_files_and_formats(clips):
    _, paths = clips
    for p in paths:
        parse = load_parse(p.parse, TAG_VOCABULARY)  # validates, tags in the runtime's vocabulary
        assert 6.0 <= parse.video.duration_s <= 10.0
        assert parse.video.fps in (24, 25, 30, 60)
        assert parse.global_.caption and all(s.description for s in parse.storyboards)
        # storyboards tile the whole clip
        assert parse.storyboards[0].start_s == 0.0
        assert parse.storyboards[-1].end_s == pytest.approx(parse.video.duration_s, abs=1e-3)
        assert 70 <= parse.music.tempo_bpm <= 170
        audio, rate = read_wav(p.audio)
        assert rate == 16000
        assert audio.size == pytest.approx(parse.video.duration_s * 16000, abs=2)
        peak, rms_db = np.abs(audio).max(), 20 * np.log10(np.sqrt(np.mean(audio**2)))
        assert peak < 0.99, "the mix clips"
        assert -24 < rms_db < -14
        frames, rate_v = _decode(p.video)
        assert rate_v == parse.video.fps
        synth = json.loads(p.parse.read_text())["synth"]
        assert frames.shape[1:] == (synth["height"], synth["width"], 3)
        assert frames.shape[0] == round(parse.video.duration_s * parse.video.fps)


def test_every_cut_is_a_real_cut_and_nothing_else_is(clips):
    _, paths = clips
    n_cuts = 0
    for p in paths:
        parse = load_parse(p.parse)
        frames, fps = _decode(p.video)
        diff = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))  # diff[i-1]: frame i vs i-1
        cut_frames = [int(round(t.time_s * fps)) for t in parse.frame.transitions if t.kind == "cut"]
        quiet = np.ones(diff.size, dtype=bool)
        for k in cut_frames:
            quiet[k - 1] = False
        for t in parse.frame.transitions:  # gradual transitions are listed as such: skip their span
            if t.kind != "cut":
                a = int(np.floor((t.time_s - t.duration_s / 2) * fps)) - 1
                b = int(np.ceil((t.time_s + t.duration_s / 2) * fps)) + 1
                quiet[max(a - 1, 0) : b] = False
        background = diff[quiet].max()
        for k in cut_frames:
            assert diff[k - 1] > 25, f"{p.video.name}: no visible cut at frame {k}"
            assert diff[k - 1] > 1.5 * background, f"{p.video.name}: cut at frame {k} does not stand out"
        n_cuts += len(cut_frames)
    assert n_cuts > 0


def test_cuts_are_on_the_json_beats(clips):
    _, paths = clips
    on, off = 0, 0
    for p in paths:
        parse = load_parse(p.parse)
        beats = np.array(parse.music.beats_s)
        half_frame = 0.5 / parse.video.fps + 1e-6
        for t in parse.frame.transitions:
            distance = np.abs(beats - t.time_s).min()
            if t.on_beat:
                on += 1
                # a cut is the first frame nearest its beat; a gradual transition is centred on it
                assert distance <= (half_frame if t.kind == "cut" else 1e-6), (p.parse.name, t)
            else:
                off += 1
                assert distance > 0.1  # off-beat cuts sit on the "and", half a beat away
        downbeats = set(np.round(parse.music.downbeats_s, 6))
        assert all(round(s.start_s, 6) in downbeats for s in parse.storyboards[1:])
    assert on > off


def test_music_beats_are_audible_onsets(clips):
    """The WAV has a drum attack at the JSON's beats: more energy in the 50 ms after a beat than before it."""
    _, paths = clips
    for p in paths:
        parse = load_parse(p.parse)
        audio = load_audio(p.audio)
        power = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])

        def energy(a, b, power=power):
            return power[int(b * 16000)] - power[int(a * 16000)]

        beats = np.array(parse.music.beats_s)[1:-1]
        louder = [energy(b, b + 0.05) > energy(b - 0.06, b - 0.01) for b in beats]
        assert np.mean(louder) > 0.9, p.audio.name


def test_clips_are_reproducible_alone(clips, tmp_path):
    out, paths = clips
    again = generate_clip(tmp_path, 1, seed=SEED, seconds_range=(6.0, 10.0))
    assert again.parse.read_bytes() == paths[1].parse.read_bytes()
    assert again.audio.read_bytes() == paths[1].audio.read_bytes()
    other = generate_clip(tmp_path / "b", 1, seed=SEED + 1, seconds_range=(6.0, 10.0))
    assert other.audio.read_bytes() != paths[1].audio.read_bytes()


def test_seconds_range_parsing():
    assert parse_seconds_range("8-40") == (8.0, 40.0)
    assert parse_seconds_range("12") == (12.0, 12.0)
    for bad in ("40-8", "x", "1-3", "5-9999"):
        with pytest.raises(ValueError, match="--seconds"):
            parse_seconds_range(bad)


def test_synth_cli(tmp_path, capsys):
    from vem.training.cli import synth_main

    assert synth_main(["--out", str(tmp_path), "--count", "1", "--seconds", "4-5", "--seed", "3", "--quiet",
                       "--workers", "1"]) == 0
    assert sorted(f.suffix for f in tmp_path.iterdir()) == [".json", ".mp4", ".wav"]
    assert synth_main(["--out", str(tmp_path), "--seconds", "9-2"]) == 2
    assert "--seconds" in capsys.readouterr().err


def test_vem_eval_on_synth_pairs(clips, tmp_path, capsys):
    from vem.runtime.cli import eval_main

    out, _ = clips
    report = tmp_path / "eval.json"
    assert eval_main([str(out), "--json", str(report), "--quiet"]) == 0
    data = json.loads(report.read_text())
    from vem.runtime.beats import madmom_available

    # the default tracker: madmom (the paper's) when its extra is installed, else librosa
    assert len(data["files"]) == N_CLIPS and data["tracker"] == ("madmom" if madmom_available() else "librosa")
    assert {r["cuts_from"] for r in data["files"]} == {"ground truth"}
    mean = data["mean"]
    assert mean["biou"] > 0.85  # tracked beats of the true music vs its annotated beats
    assert mean["hit_70ms"] > mean["chance_70ms"] + 0.3  # cuts really are on the beats
    assert 0 < mean["tbiou"] < 1
    shuffled = tmp_path / "shuffled.json"
    assert eval_main([str(out), "--shuffle", "--json", str(shuffled), "--quiet"]) == 0
    sdata = json.loads(shuffled.read_text())
    assert all(r["file"] != r["music"] for r in sdata["files"])
    assert sdata["mean"]["hit_70ms"] < mean["hit_70ms"]
    # a vem-run report (the parse inline, the music named relative to the report) reads the same
    first = json.loads(sorted(out.glob("*.json"))[0].read_text())
    report_json = tmp_path / "run.report.json"
    wav = sorted(out.glob("*.wav"))[0]
    report_json.write_text(json.dumps({"parse": first, "audio": str(wav)}))
    assert eval_main([str(report_json), "--json", str(tmp_path / "r.json"), "--quiet"]) == 0
    from_report = json.loads((tmp_path / "r.json").read_text())["files"][0]
    assert from_report["file"] == "run.report"
    for key in ("tbiou", "biou", "hit_70ms", "chance_70ms", "n_transitions", "n_beats"):
        assert from_report[key] == data["files"][0][key]
    # bad input: a clear message and exit code 3
    assert eval_main([str(tmp_path / "missing")]) == 3
    assert "no such file" in capsys.readouterr().err


def test_tempo_map_clips_glide_within_the_bound_and_keep_cuts_and_drums_on_their_beats(tmp_path):
    """`vem-synth --tempo-maps`: the reference music's tempo moves (at most 5 % per bar,
    MAX_CHANGE_PER_BAR), every on-beat cut sits on a moving beat, and a beat tracker hears the
    beats the parse lists."""
    from vem.runtime.beats import track_beats_file
    from vem.runtime.tempo import MAX_CHANGE_PER_BAR

    paths = generate_dataset(tmp_path, 2, seed=SEED, seconds_range=(12.0, 14.0), workers=1, progress=False,
                             tempo_maps=1.0)
    spreads = []
    for p in paths:
        parse = load_parse(p.parse)
        beats = np.array(parse.music.beats_s)
        periods = np.diff(beats)
        assert parse.extra["synth"]["tempo_map"]["bpm_range"][0] >= 70 - 1e-6
        bar = int(parse.music.meter.split("/")[0])
        change = np.abs(np.log(periods[bar:] / periods[:-bar]))
        assert change.max() <= np.log1p(MAX_CHANGE_PER_BAR) * 1.0001
        spreads.append(periods.max() / periods.min())
        half_frame = 0.5 / parse.video.fps + 1e-6
        for t in parse.frame.transitions:
            if t.on_beat and t.kind == "cut":
                assert np.abs(beats - t.time_s).min() <= half_frame
        # a beat tracker hears the moving beats where the parse lists them
        tracked = track_beats_file(p.audio, "numpy")
        assert np.mean([np.abs(tracked - b).min() <= 0.07 for b in beats[1:-1]]) >= 0.9, p.audio.name
    assert max(spreads) > 1.02  # the tempo really moves


def test_a_clip_without_a_map_is_the_same_bits_whatever_the_share(tmp_path):
    from vem.training.synth.generate import generate_clip

    shares = {}
    for share in (0.0, 0.5):
        clip = generate_clip(tmp_path / str(share), 0, seed=SEED, seconds_range=(6.0, 8.0), tempo_maps=share)
        shares[share] = clip
    mapped = "tempo_map" in load_parse(shares[0.5].parse).extra["synth"]
    same = shares[0.0].audio.read_bytes() == shares[0.5].audio.read_bytes()
    assert same != mapped  # the same bits exactly when this clip drew no map
