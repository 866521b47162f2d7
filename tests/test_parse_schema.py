"""The three-level parse JSON: round trip and the errors a user sees."""

import copy
import json

import pytest

from vem.runtime.parse_schema import dump_parse, load_parse, parse_from_dict, parse_to_dict
from vem.runtime.tags import TAG_VOCABULARY

VALID = {
    "version": 1,
    "video": {"path": "a.mp4", "duration_s": 10.0, "fps": 25},
    "global": {"caption": "A calm piano piece.", "tags": ["calm", "piano"]},
    "storyboards": [
        {"start_s": 0.0, "duration_s": 4.0, "description": "a cat"},
        {"start_s": 4.0, "duration_s": 6.0, "description": "the moon", "visual": [0.1, -0.2]},
    ],
    "frame": {"fps": 16, "transitions_s": [2.0, 4.0], "transition_frames": [32, 64],
              "transitions": [{"time_s": 2.0, "kind": "cut", "duration_s": 0.0, "on_beat": True},
                              {"time_s": 4.0, "kind": "dissolve", "duration_s": 0.5, "on_beat": True}]},
    "music": {"beats_s": [0.5, 1.0], "downbeats_s": [0.5], "tempo_bpm": 120, "meter": "4/4", "key": "A", "mode": "minor"},
    "synth": {"seed": 1},
}


def test_round_trip(tmp_path):
    parse = parse_from_dict(VALID, TAG_VOCABULARY)
    assert parse.storyboards[1].end_s == 10.0
    assert parse.frame.transitions[1].kind == "dissolve"
    path = tmp_path / "p.json"
    dump_parse(parse, path)
    again = load_parse(path)
    assert parse_to_dict(again) == parse_to_dict(parse)
    assert json.loads(path.read_text())["synth"] == {"seed": 1}  # unknown keys are kept


def test_minimal_parse_fills_frames():
    data = {"video": {"path": "a.mp4", "duration_s": 3.0, "fps": 30}, "global": {"caption": "", "tags": []},
            "storyboards": [], "frame": {"transitions_s": [1.0]}}
    parse = parse_from_dict(data)
    assert parse.frame.transition_frames == [16] and parse.music is None


def _broken(path: list, value):
    data = copy.deepcopy(VALID)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    "path, value, message",
    [
        (["video", "duration_s"], "ten", r"video\.duration_s: expected a number"),
        (["video", "duration_s"], -1.0, r"video\.duration_s: must be > 0"),
        (["frame", "transitions_s"], [2.0, float("nan")], r"frame\.transitions_s\[1\]: must be a finite"),
        (["frame", "transitions_s"], [-1.0, 4.0], r"frame\.transitions_s\[0\]: must be >= 0"),
        (["frame", "transitions_s"], [4.0, 2.0], r"ascending"),
        (["frame", "transitions_s"], [2.0, 12.0], r"after the end of the video"),
        (["frame", "transition_frames"], [32, 80], r"frame\.transition_frames\[1\]: frame 80 does not match"),
        (["storyboards", 1, "start_s"], 3.0, r"storyboards\[1\]: overlaps storyboards\[0\]"),
        (["storyboards", 1, "duration_s"], 7.0, r"storyboards\[1\]: runs past the end"),
        (["storyboards", 0, "duration_s"], True, r"storyboards\[0\]\.duration_s: expected a number"),
        (["global", "tags"], ["calm", "sparkly"], r"global\.tags: unknown tag\(s\) sparkly"),
        (["global", "tags"], "calm", r"global\.tags: expected a JSON list"),
        (["music", "meter"], "four", r"music\.meter"),
        (["music", "mode"], "dorian", r"music\.mode"),
        (["frame", "transitions"], [{"kind": "wipe"}, {}], r"frame\.transitions\[0\]\.kind: 'wipe'"),
        (["version"], 2, r"version: this vem reads parse version 1"),
    ],
)
def test_errors_name_the_field(path, value, message):
    with pytest.raises(ValueError, match=message):
        parse_from_dict(_broken(path, value), TAG_VOCABULARY)


def test_missing_sections_and_bad_file(tmp_path):
    data = copy.deepcopy(VALID)
    del data["frame"]
    with pytest.raises(ValueError, match="frame: missing"):
        parse_from_dict(data)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        load_parse(bad)


def test_vocabulary_size_and_unknown_tags_pass_without_vocabulary():
    assert 20 <= len(TAG_VOCABULARY) <= 50
    parse_from_dict(_broken(["global", "tags"], ["anything"]))  # no vocabulary given: accepted
