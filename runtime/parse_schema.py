"""The three-level video parse of docs/paper.md §1 as a JSON file (torch-free, stdlib + math only).

One format is written by `vem-synth` (ground truth), read and written by `vem-run --parse /
--write-parse` (user edits), and read by `vem-eval`. Layout (version 1)::

    {
      "version": 1,
      "video":  {"path": "clip.mp4", "duration_s": 12.0, "fps": 25.0},
      "global": {"caption": "A calm piano piece ...", "tags": ["calm", "piano"]},
      "storyboards": [
        {"start_s": 0.0, "duration_s": 4.0, "description": "...", "visual": [0.1, ...]},   # visual optional
        ...
      ],
      "frame": {
        "fps": 16,                       # the paper's frame-level rate
        "transitions_s": [1.92, 3.84],   # transition times in seconds (a gradual one at its midpoint)
        "transition_frames": [31, 61],   # the same at `fps`: round(t * fps)
        "transitions": [                 # optional detail, one per entry of transitions_s
          {"time_s": 1.92, "kind": "cut", "duration_s": 0.0, "on_beat": true}, ...
        ]
      },
      "music": {                         # optional keys; present for ground-truth music
        "beats_s": [...], "downbeats_s": [...], "tempo_bpm": 120.0,
        "meter": "4/4", "key": "A", "mode": "minor"
      }
    }

Any other top-level key (for example ``"synth"``, the generator's parameters) is kept as-is in
`VideoParse.extra` and written back. Validation raises `ParseError` (an `InputError`, so a
``ValueError`` too; `vem-run` exits 3) whose message names the field (``storyboards[2].start_s``)
and says what is wrong; nothing else escapes the loaders, whatever the file holds (fuzzed in
tests/test_fuzz_loaders.py).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError
from .tags import TAG_VOCABULARY, unknown_tags

PARSE_VERSION = 1
FRAME_FPS = 16  # docs/paper.md §1: the frame level runs at 16 fps
TRANSITION_KINDS = ("cut", "dissolve", "fade")
MODES = ("major", "minor")
PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Storyboards may touch or overrun by this much (float rounding of start + duration).
TIME_EPS = 1e-3
# Bounds that no real video reaches; beyond them arithmetic on the values could overflow.
MAX_TIME_S = 1e7  # about 116 days
MAX_FPS = 10_000.0
MAX_INTEGER = 2**53


class ParseError(InputError):
    """A parse JSON that is not valid: the message names the field and what is wrong (exit 3)."""


@dataclass
class VideoInfo:
    path: str
    duration_s: float
    fps: float


@dataclass
class GlobalParse:
    caption: str
    tags: list[str]


@dataclass
class Storyboard:
    start_s: float
    duration_s: float
    description: str
    visual: list[float] | None = None
    # True when this storyboard continues the previous shot (a long shot split to the duration
    # bounds) rather than starting at a transition; see `check_cuts_agree`.
    split: bool = False

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass
class Transition:
    """Detail of one transition: a hard cut, or a gradual dissolve/fade centred on ``time_s``."""

    time_s: float
    kind: str = "cut"
    duration_s: float = 0.0
    on_beat: bool | None = None
    # Index (from 0, in presentation order) of the source video's frame where it happens: a cut's
    # first frame of the new shot, a gradual transition's first changed frame. None: not known.
    source_frame: int | None = None


@dataclass
class FrameParse:
    fps: float
    transitions_s: list[float]
    transition_frames: list[int]
    transitions: list[Transition] | None = None


@dataclass
class MusicParse:
    beats_s: list[float] | None = None
    downbeats_s: list[float] | None = None
    tempo_bpm: float | None = None
    meter: str | None = None
    key: str | None = None
    mode: str | None = None


@dataclass
class VideoParse:
    video: VideoInfo
    global_: GlobalParse
    storyboards: list[Storyboard]
    frame: FrameParse
    music: MusicParse | None = None
    version: int = PARSE_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def transition_times(self) -> list[float]:
        return list(self.frame.transitions_s)

    def to_dict(self) -> dict[str, Any]:
        return parse_to_dict(self)


# --------------------------------------------------------------------------------------------
# checks


def _require_dict(value: Any, name: str) -> dict:
    if not isinstance(value, dict):
        raise ParseError(f"{name}: expected a JSON object, got {type(value).__name__}")
    return value


def _number(value: Any, name: str, *, minimum: float | None = 0.0, positive: bool = False,
            maximum: float | None = MAX_TIME_S) -> float:
    # bool is an int subclass; a true/false where a time belongs is a mistake, not a 1/0.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParseError(f"{name}: expected a number, got {type(value).__name__} ({_short(value)})")
    try:
        number = float(value)
    except OverflowError:  # an integer with hundreds of digits
        number = math.inf
    if not math.isfinite(number):
        raise ParseError(f"{name}: must be a finite number, got {_short(value)}")
    if maximum is not None and number > maximum:
        raise ParseError(f"{name}: {number:g} is too large (at most {maximum:g})")
    if positive and number <= 0:
        raise ParseError(f"{name}: must be > 0, got {number}")
    if minimum is not None and number < minimum:
        raise ParseError(f"{name}: must be >= {minimum}, got {number}")
    return number


def _integer(value: Any, name: str, *, minimum: int | None = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ParseError(f"{name}: expected an integer, got {type(value).__name__} ({_short(value)})")
    if abs(value) > MAX_INTEGER:
        raise ParseError(f"{name}: {_short(value)} is too large")
    if minimum is not None and value < minimum:
        raise ParseError(f"{name}: must be >= {minimum}, got {value}")
    return int(value)


def _short(value: Any, limit: int = 60) -> str:
    """repr() cut to ``limit`` characters: a message quotes the bad value, not a megabyte of it."""
    try:
        text = repr(value)
    except ValueError:  # int too large to convert to str (Python >= 3.11's digit limit)
        text = f"an integer of more than {limit} digits"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ParseError(f"{name}: expected a string, got {type(value).__name__}")
    return value


def _list(value: Any, name: str) -> list:
    if not isinstance(value, list):
        raise ParseError(f"{name}: expected a JSON list, got {type(value).__name__}")
    return value


def _times(value: Any, name: str, *, ascending: bool = True, end: float | None = None) -> list[float]:
    times = [_number(t, f"{name}[{i}]") for i, t in enumerate(_list(value, name))]
    if ascending:
        for i in range(1, len(times)):
            if times[i] < times[i - 1]:
                raise ParseError(f"{name}[{i}]: times must be in ascending order ({times[i]} after {times[i - 1]})")
    if end is not None:
        for i, t in enumerate(times):
            if t > end + TIME_EPS:
                raise ParseError(f"{name}[{i}]: {t} s is after the end of the video ({end} s)")
    return times


# --------------------------------------------------------------------------------------------
# dict <-> dataclasses


def parse_from_dict(data: Any, vocabulary: tuple[str, ...] | list[str] | None = None) -> VideoParse:
    """Validate a parsed-JSON object and return it as a `VideoParse`.

    ``vocabulary``: when given, every global tag must be in it (use `TAG_VOCABULARY` for the
    runtime's fixed set); None accepts any tag.
    """
    data = _require_dict(data, "parse")
    version = _integer(data.get("version", PARSE_VERSION), "version", minimum=1)
    if version != PARSE_VERSION:
        raise ParseError(f"version: this vem reads parse version {PARSE_VERSION}, the file has {version}")
    for key in ("video", "global", "storyboards", "frame"):
        if key not in data:
            raise ParseError(f"{key}: missing (a parse needs video, global, storyboards and frame)")

    v = _require_dict(data["video"], "video")
    for key in ("path", "duration_s", "fps"):
        if key not in v:
            raise ParseError(f"video.{key}: missing")
    video = VideoInfo(
        path=_string(v["path"], "video.path"),
        duration_s=_number(v["duration_s"], "video.duration_s", positive=True),
        fps=_number(v["fps"], "video.fps", positive=True, maximum=MAX_FPS),
    )
    duration = video.duration_s

    g = _require_dict(data["global"], "global")
    caption = _string(g.get("caption", ""), "global.caption")
    tags = [_string(t, f"global.tags[{i}]") for i, t in enumerate(_list(g.get("tags", []), "global.tags"))]
    if vocabulary is not None:
        unknown = unknown_tags(tags, vocabulary)
        if unknown:
            raise ParseError(
                f"global.tags: unknown tag(s) {', '.join(unknown)}; known tags: {', '.join(vocabulary)}"
            )

    storyboards: list[Storyboard] = []
    for i, s in enumerate(_list(data["storyboards"], "storyboards")):
        name = f"storyboards[{i}]"
        s = _require_dict(s, name)
        for key in ("start_s", "duration_s"):
            if key not in s:
                raise ParseError(f"{name}.{key}: missing")
        board = Storyboard(
            start_s=_number(s["start_s"], f"{name}.start_s"),
            duration_s=_number(s["duration_s"], f"{name}.duration_s", positive=True),
            description=_string(s.get("description", ""), f"{name}.description"),
            visual=None,
        )
        if s.get("split") is not None:
            if not isinstance(s["split"], bool):
                raise ParseError(f"{name}.split: expected true/false, got {_short(s['split'])}")
            board.split = s["split"]
        if s.get("visual") is not None:
            board.visual = [
                _number(x, f"{name}.visual[{j}]", minimum=None, maximum=None) for j, x in enumerate(_list(s["visual"], f"{name}.visual"))
            ]
        if board.end_s > duration + TIME_EPS:
            raise ParseError(
                f"{name}: runs past the end of the video ({board.start_s} + {board.duration_s} = "
                f"{board.end_s:.3f} s > {duration} s)"
            )
        if storyboards and board.start_s < storyboards[-1].end_s - TIME_EPS:
            prev = storyboards[-1]
            raise ParseError(
                f"{name}: overlaps storyboards[{i - 1}] (starts at {board.start_s} s, the previous one "
                f"ends at {prev.end_s:.3f} s); storyboards must be in time order and must not overlap"
            )
        storyboards.append(board)

    f = _require_dict(data["frame"], "frame")
    frame_fps = _number(f.get("fps", FRAME_FPS), "frame.fps", positive=True, maximum=MAX_FPS)
    transitions_s = _times(f.get("transitions_s", []), "frame.transitions_s", end=duration)
    if "transition_frames" in f:
        frames = [_integer(x, f"frame.transition_frames[{i}]") for i, x in enumerate(_list(f["transition_frames"], "frame.transition_frames"))]
        if len(frames) != len(transitions_s):
            raise ParseError(
                f"frame.transition_frames: has {len(frames)} entries but frame.transitions_s has {len(transitions_s)}"
            )
        for i, (t, k) in enumerate(zip(transitions_s, frames)):
            if abs(k - t * frame_fps) > 1.0:
                raise ParseError(
                    f"frame.transition_frames[{i}]: frame {k} does not match {t} s at {frame_fps} fps "
                    f"(expected {round(t * frame_fps)})"
                )
    else:
        frames = [int(round(t * frame_fps)) for t in transitions_s]
    details = None
    if f.get("transitions") is not None:
        details = []
        raw = _list(f["transitions"], "frame.transitions")
        if len(raw) != len(transitions_s):
            raise ParseError(f"frame.transitions: has {len(raw)} entries but frame.transitions_s has {len(transitions_s)}")
        for i, item in enumerate(raw):
            name = f"frame.transitions[{i}]"
            item = _require_dict(item, name)
            kind = _string(item.get("kind", "cut"), f"{name}.kind")
            if kind not in TRANSITION_KINDS:
                raise ParseError(f"{name}.kind: {_short(kind)} is not one of {', '.join(TRANSITION_KINDS)}")
            time_s = _number(item.get("time_s", transitions_s[i]), f"{name}.time_s")
            if abs(time_s - transitions_s[i]) > TIME_EPS:
                raise ParseError(f"{name}.time_s: {time_s} differs from frame.transitions_s[{i}] = {transitions_s[i]}")
            on_beat = item.get("on_beat")
            if on_beat is not None and not isinstance(on_beat, bool):
                raise ParseError(f"{name}.on_beat: expected true/false, got {_short(on_beat)}")
            source_frame = item.get("source_frame")
            if source_frame is not None:
                source_frame = _integer(source_frame, f"{name}.source_frame")
            details.append(
                Transition(
                    time_s=time_s,
                    kind=kind,
                    duration_s=_number(item.get("duration_s", 0.0), f"{name}.duration_s"),
                    on_beat=on_beat,
                    source_frame=source_frame,
                )
            )
    frame = FrameParse(fps=frame_fps, transitions_s=transitions_s, transition_frames=frames, transitions=details)

    music = None
    if data.get("music") is not None:
        m = _require_dict(data["music"], "music")
        music = MusicParse()
        if m.get("beats_s") is not None:
            music.beats_s = _times(m["beats_s"], "music.beats_s")
        if m.get("downbeats_s") is not None:
            music.downbeats_s = _times(m["downbeats_s"], "music.downbeats_s")
        if m.get("tempo_bpm") is not None:
            music.tempo_bpm = _number(m["tempo_bpm"], "music.tempo_bpm", positive=True, maximum=MAX_FPS)
        if m.get("meter") is not None:
            meter = _string(m["meter"], "music.meter")
            if not re.fullmatch(r"[1-9][0-9]?/(1|2|4|8|16)", meter):
                raise ParseError(f"music.meter: expected a time signature such as '4/4' or '6/8', got {_short(meter)}")
            music.meter = meter
        if m.get("key") is not None:
            key = _string(m["key"], "music.key")
            if key not in PITCH_NAMES:
                raise ParseError(f"music.key: expected one of {', '.join(PITCH_NAMES)}, got {_short(key)}")
            music.key = key
        if m.get("mode") is not None:
            mode = _string(m["mode"], "music.mode")
            if mode not in MODES:
                raise ParseError(f"music.mode: expected 'major' or 'minor', got {_short(mode)}")
            music.mode = mode

    known = {"version", "video", "global", "storyboards", "frame", "music"}
    extra = {k: v for k, v in data.items() if k not in known}
    return VideoParse(
        video=video,
        global_=GlobalParse(caption=caption, tags=tags),
        storyboards=storyboards,
        frame=frame,
        music=music,
        version=version,
        extra=extra,
    )


def parse_to_dict(parse: VideoParse) -> dict[str, Any]:
    """The JSON-ready dict of a parse (the inverse of `parse_from_dict`)."""
    frame: dict[str, Any] = {
        "fps": parse.frame.fps,
        "transitions_s": [float(t) for t in parse.frame.transitions_s],
        "transition_frames": [int(k) for k in parse.frame.transition_frames],
    }
    if parse.frame.transitions is not None:
        frame["transitions"] = [
            {"time_s": float(t.time_s), "kind": t.kind, "duration_s": float(t.duration_s), "on_beat": t.on_beat,
             **({"source_frame": int(t.source_frame)} if t.source_frame is not None else {})}
            for t in parse.frame.transitions
        ]
    out: dict[str, Any] = {
        "version": parse.version,
        "video": {"path": parse.video.path, "duration_s": float(parse.video.duration_s), "fps": float(parse.video.fps)},
        "global": {"caption": parse.global_.caption, "tags": list(parse.global_.tags)},
        "storyboards": [],
        "frame": frame,
    }
    for board in parse.storyboards:
        item: dict[str, Any] = {
            "start_s": float(board.start_s),
            "duration_s": float(board.duration_s),
            "description": board.description,
        }
        if board.visual is not None:
            item["visual"] = [float(x) for x in board.visual]
        if board.split:
            item["split"] = True
        out["storyboards"].append(item)
    if parse.music is not None:
        music = {k: v for k, v in vars(parse.music).items() if v is not None}
        out["music"] = music
    out.update(parse.extra)
    return out


# A storyboard boundary and its transition agree when they are this close: half a frame at the
# parse rate (a time typed by hand to the millisecond still agrees).
CUT_AGREEMENT_S = 0.5 / FRAME_FPS


def check_cuts_agree(parse: VideoParse) -> None:
    """A cut has one place: ``frame.transitions_s``. Refuse a parse whose storyboards start where
    no transition is (a cut moved or deleted in one list and not the other) unless the storyboard
    says ``"split": true`` (it continues the previous shot). ParseError names both entries."""
    transitions = parse.frame.transitions_s
    details = parse.frame.transitions or [None] * len(transitions)
    for i, board in enumerate(parse.storyboards[1:], start=1):
        if board.split:
            continue
        for time_s, detail in zip(transitions, details):
            half = 0.5 * detail.duration_s if detail is not None else 0.0
            if time_s - half - CUT_AGREEMENT_S <= board.start_s <= time_s + half + CUT_AGREEMENT_S:
                break
        else:
            nearest = min(transitions, key=lambda t: abs(t - board.start_s)) if transitions else None
            where = f" (the nearest is {nearest:.3f} s)" if nearest is not None else " (it has none)"
            raise ParseError(
                f"storyboards[{i}].start_s: {board.start_s:.3f} s is not a transition in frame.transitions_s"
                f"{where}; a cut's time lives in frame.transitions_s: move it there as well, or give the "
                'storyboard "split": true if it continues the previous shot'
            )


def validate_parse(data: Any, vocabulary: tuple[str, ...] | list[str] | None = None) -> None:
    """Raise ParseError if ``data`` (a dict) is not a valid parse; return None otherwise."""
    parse_from_dict(data, vocabulary)


def load_parse(path: str | os.PathLike, vocabulary: tuple[str, ...] | list[str] | None = None) -> VideoParse:
    """Read and validate a parse JSON file. Errors (`ParseError`) name the file and the field."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ParseError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ParseError(f"{path}: not a JSON text file (not UTF-8 at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise ParseError(f"{path}: not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise ParseError(f"{path}: nested too deeply to be a parse") from exc
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
        raise ParseError(f"{path}: not valid JSON ({exc})") from exc
    try:
        return parse_from_dict(data, vocabulary)
    except ParseError as exc:
        raise ParseError(f"{path}: {exc}") from exc


def dump_parse(parse: VideoParse, path: str | os.PathLike) -> None:
    """Validate and write a parse as indented JSON (validating first, so no bad file is written)."""
    data = parse_to_dict(parse)
    parse_from_dict(data)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")


__all__ = [
    "FRAME_FPS",
    "PARSE_VERSION",
    "TAG_VOCABULARY",
    "TRANSITION_KINDS",
    "FrameParse",
    "GlobalParse",
    "MusicParse",
    "ParseError",
    "Storyboard",
    "Transition",
    "VideoInfo",
    "VideoParse",
    "dump_parse",
    "load_parse",
    "parse_from_dict",
    "parse_to_dict",
    "validate_parse",
]
