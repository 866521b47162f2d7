"""Fuzzing the two loaders that read files users (or their tools) write: the parse JSON (`--parse`)
and the bundle manifest. Whatever the bytes, they may only succeed or raise the project's
documented error (`ParseError`, an `InputError`; `BundleError`): never KeyError, TypeError,
IndexError, OverflowError or RecursionError, which `vem-run` could only report as a bug.

Two kinds of input, both bounded to a few seconds:
- structural: a valid document with one to three of its values replaced by arbitrary JSON
  (wrong types, huge numbers, deep nesting) or deleted (hypothesis);
- bytes: the valid file with random bytes flipped, inserted or deleted (seeded, fixed count).
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vem.runtime.bundle import MANIFEST_NAME, load_bundle
from vem.runtime.config import demo_config
from vem.runtime.errors import BundleError, InputError
from vem.runtime.parse_schema import ParseError, load_parse, parse_from_dict
from vem.runtime.tags import TAG_VOCABULARY

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
BYTE_MUTANTS = 300

VALID_PARSE = {
    "version": 1,
    "video": {"path": "clip.mp4", "duration_s": 6.0, "fps": 25.0},
    "global": {"caption": "a calm piano piece", "tags": ["calm", "piano"]},
    "storyboards": [
        {"start_s": 0.0, "duration_s": 2.0, "description": "a beach", "visual": [0.1, -0.2]},
        {"start_s": 2.0, "duration_s": 4.0, "description": "a city"},
    ],
    "frame": {"fps": 16, "transitions_s": [2.0], "transition_frames": [32],
              "transitions": [{"time_s": 2.0, "kind": "cut", "duration_s": 0.0, "on_beat": True}]},
    "music": {"beats_s": [0.5, 1.0, 2.0], "downbeats_s": [0.5], "tempo_bpm": 120.0, "meter": "4/4",
              "key": "A", "mode": "minor"},
    "synth": {"seed": 3},
}


def valid_manifest() -> dict:
    """A manifest that passes validation (its component files do not exist: load_bundle then
    stops at the first missing file, with a BundleError)."""
    def spec(name):
        return {"name": name, "dtype": "float32", "shape": ["batch", 3]}

    components = [{"name": name, "precision": "fp32", "file": f"{name}.onnx", "sha256": "ab" * 32, "bytes": 10,
                   "inputs": [spec("x")], "outputs": [spec("y")], "parity": {"max_abs": 1e-5}, "notes": {}}
                  for name in ("transitions", "visual", "aligner", "denoiser", "vae_decoder", "vocoder")]
    return {"format": "vem-bundle", "format_version": 1, "config": demo_config().to_dict(),
            "sampler": {"name": "dpmpp_2m", "steps": 25, "guidance": 3.5},
            "text_encoder": {"kind": "hashed-bow", "dim": 64}, "tags": list(TAG_VOCABULARY),
            "components": components,
            "engines": [{"name": "denoiser", "precision": "fp16", "file": "engines/d.plan", "sha256": "cd" * 32,
                         "bytes": 5, "tensorrt_version": "10.3.0", "compute_capability": "8.7"}],
            "built_with": {"torch": "2.13.0"}, "calibration": None}


json_leaves = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300, max_value=10**310)
               | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8))
# Values that confuse a loader most often: each type's empty / odd member, drawn half the time.
TRICKY = [None, True, 0, -1, 1.5, -0.0, 10**400, float("inf"), float("nan"), "", "x", [], [1, 2], [[1]], {},
          {"a": 1}, [None], ["calm"]]
json_values = st.sampled_from(TRICKY) | st.recursive(
    json_leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


def paths_of(node, prefix=()):
    """Every path (tuple of keys / indices) to a value inside a JSON document."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths_of(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from paths_of(value, prefix + (index,))


@st.composite
def mutated(draw, document: dict):
    """``document`` with 1-3 values replaced by arbitrary JSON or removed."""
    data = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in paths_of(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return data


def byte_mutants(text: bytes, count: int, seed: int):
    rng = random.Random(seed)
    for _ in range(count):
        data = bytearray(text)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(data))
            action = rng.random()
            if action < 0.4:
                data[position] = rng.randrange(256)
            elif action < 0.7:
                data[position:position] = bytes(rng.choice([b"9", b"[", b"]", b"{", b"}", b'"', b",", b"-", b"e99",
                                                            b"null", b"\xff", b"\x00", b"1e400"]))
            else:
                del data[position: position + rng.randint(1, 8)]
        yield bytes(data)


# ---- parse JSON -------------------------------------------------------------------------------


def test_the_valid_documents_are_valid():
    parse_from_dict(VALID_PARSE, TAG_VOCABULARY)


@FUZZ
@given(data=mutated(VALID_PARSE))
def test_parse_structural_fuzz_raises_only_parse_errors(data):
    for vocabulary in (None, TAG_VOCABULARY):
        try:
            parse = parse_from_dict(data, vocabulary)
        except ParseError as error:
            assert isinstance(error, InputError) and isinstance(error, ValueError)
            assert "\n" not in str(error) and len(str(error)) < 1000
        else:
            # What it accepts is consistent: sorted cuts inside the video, storyboards in order.
            assert parse.frame.transitions_s == sorted(parse.frame.transitions_s)
            assert all(t <= parse.video.duration_s + 1e-3 for t in parse.frame.transitions_s)
            ends = [s.start_s + s.duration_s for s in parse.storyboards]
            assert all(e <= parse.video.duration_s + 1e-3 for e in ends)


def test_parse_byte_fuzz_raises_only_parse_errors(tmp_path):
    text = json.dumps(VALID_PARSE, indent=1).encode()
    path = tmp_path / "parse.json"
    outcomes = {"accepted": 0, "refused": 0}
    for mutant in byte_mutants(text, BYTE_MUTANTS, seed=9):
        path.write_bytes(mutant)
        try:
            load_parse(path, TAG_VOCABULARY)
            outcomes["accepted"] += 1
        except ParseError as error:
            assert str(path) in str(error)
            outcomes["refused"] += 1
    assert outcomes["refused"] > BYTE_MUTANTS // 2  # the fuzz reached the error paths


@pytest.mark.parametrize("content", [b"", b"[" * 50_000, b"1" * 5000, b'{"version": 1e999}', b"\xef\xbb\xbf{}"])
def test_parse_pathological_files(tmp_path, content):
    path = tmp_path / "p.json"
    path.write_bytes(content)
    with pytest.raises(ParseError):
        load_parse(path)


def test_parse_missing_file_is_a_parse_error(tmp_path):
    with pytest.raises(ParseError, match="cannot be read"):
        load_parse(tmp_path / "nope.json")


# ---- bundle manifest ----------------------------------------------------------------------------


def load_manifest_text(folder: Path, text: bytes):
    (folder / MANIFEST_NAME).write_bytes(text)
    return load_bundle(folder, verify_hashes=False)


def test_the_valid_manifest_reaches_the_file_check(tmp_path):
    with pytest.raises(BundleError, match="transitions .* is missing"):
        load_manifest_text(tmp_path, json.dumps(valid_manifest()).encode())


@FUZZ
@given(data=mutated(valid_manifest()))
def test_manifest_structural_fuzz_raises_only_bundle_errors(tmp_path, data):
    try:
        text = json.dumps(data).encode()
    except ValueError:  # an integer too long for str(): not something json can write
        return
    with pytest.raises(BundleError) as caught:
        load_manifest_text(tmp_path, text)
    assert "\n" not in caught.value.message


def test_manifest_byte_fuzz_raises_only_bundle_errors(tmp_path):
    text = json.dumps(valid_manifest(), indent=1).encode()
    for mutant in byte_mutants(text, BYTE_MUTANTS, seed=4):
        with pytest.raises(BundleError):
            load_manifest_text(tmp_path, mutant)
