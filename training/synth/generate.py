"""Generate synthetic (video, music, parse) triples: the Python API behind `vem-synth`.

One clip's randomness comes only from ``(seed, index)`` (a numpy SeedSequence), so any clip can be
regenerated alone, in any order or process, and comes out identical.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vem.runtime.parse_schema import (
    FRAME_FPS,
    FrameParse,
    GlobalParse,
    MusicParse,
    Storyboard,
    Transition,
    VideoInfo,
    VideoParse,
    dump_parse,
)

from .captions import PITCH_NAMES, global_caption, storyboard_description
from .music import SAMPLE_RATE, render_music, write_wav
from .plan import plan_timeline
from .style import sample_style
from .video import plan_scenes, plan_transitions, render_video, sample_format


@dataclass
class ClipPaths:
    video: Path
    audio: Path
    parse: Path


def clip_name(index: int) -> str:
    return f"clip_{index:05d}"


def parse_seconds_range(text: str) -> tuple[float, float]:
    """'8-40' -> (8.0, 40.0); '12' -> (12.0, 12.0). ValueError with a readable message otherwise."""
    try:
        if "-" in text.strip()[1:]:
            lo, hi = text.strip().split("-", 1)
            lo_f, hi_f = float(lo), float(hi)
        else:
            lo_f = hi_f = float(text)
    except ValueError:
        raise ValueError(f"--seconds: expected a length or a range like 8-40, got {text!r}") from None
    if not (2.0 <= lo_f <= hi_f <= 600.0):
        raise ValueError(f"--seconds: need 2 <= low <= high <= 600 seconds, got {text!r}")
    return lo_f, hi_f


def generate_clip(out_dir: str | os.PathLike, index: int, seed: int = 0,
                  seconds_range: tuple[float, float] = (8.0, 40.0), tempo_maps: float = 0.0) -> ClipPaths:
    """Write ``clip_<index>.mp4``, ``.wav`` (16 kHz mono) and ``.json`` (the parse) into ``out_dir``.
    ``tempo_maps``: the share of clips whose music follows a tempo map (`plan.plan_warp`) instead of
    a steady tempo, the cuts on its moving beats. The choice has its own random stream, so clips
    without a map are the same bits whatever the share."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    style_seq, plan_seq, music_seq, video_seq = np.random.SeedSequence([int(seed), int(index)]).spawn(4)
    style_rng = np.random.default_rng(style_seq)
    style = sample_style(style_rng)
    lo, hi = seconds_range
    duration = float(round(style_rng.uniform(lo, hi), 2))
    plan_rng = np.random.default_rng(plan_seq)
    map_rng = np.random.default_rng([int(seed), int(index), 0x7E39])  # its own stream: see the docstring
    warp_rng = map_rng if tempo_maps > 0 and map_rng.random() < tempo_maps else None
    timeline = plan_timeline(style, duration, plan_rng, warp_rng)
    video_rng = np.random.default_rng(video_seq)
    fmt = sample_format(video_rng)
    transitions = plan_transitions(style, timeline, fmt.fps, video_rng)
    scenes = plan_scenes(style, timeline, video_rng)

    name = clip_name(index)
    paths = ClipPaths(out / f"{name}.mp4", out / f"{name}.wav", out / f"{name}.json")
    audio = render_music(style, timeline, np.random.default_rng(music_seq))
    write_wav(str(paths.audio), audio, SAMPLE_RATE)
    shots = render_video(str(paths.video), style, timeline, fmt, transitions, scenes, video_rng)

    periods = np.diff(timeline.beats_s)  # beat periods: on a tempo map they move
    parse = VideoParse(
        video=VideoInfo(path=paths.video.name, duration_s=duration, fps=float(fmt.fps)),
        global_=GlobalParse(caption=global_caption(style, timeline, scenes, transitions), tags=list(style.tags)),
        storyboards=[
            Storyboard(start_s=round(s.start_s, 6), duration_s=round(s.end_s - s.start_s, 6),
                       description=storyboard_description(s, scenes[s.index], transitions))
            for s in timeline.sections
        ],
        frame=FrameParse(
            fps=FRAME_FPS,
            transitions_s=[round(t.time_s, 6) for t in transitions],
            transition_frames=[int(round(t.time_s * FRAME_FPS)) for t in transitions],
            transitions=[Transition(round(t.time_s, 6), t.kind, round(t.duration_s, 6), t.on_beat) for t in transitions],
        ),
        music=MusicParse(
            beats_s=[round(float(b), 6) for b in timeline.beats_s],
            downbeats_s=[round(float(b), 6) for b in timeline.downbeats_s],
            tempo_bpm=float(style.tempo_bpm) if timeline.warp is None else
            round(60.0 / float(np.median(periods)), 3),
            meter=f"{timeline.beats_per_bar}/4",
            key=PITCH_NAMES[style.key_pc],
            mode=style.mode,
        ),
        extra={
            "synth": {
                "seed": int(seed),
                "index": int(index),
                "audio": paths.audio.name,
                "sample_rate": SAMPLE_RATE,
                "width": fmt.width,
                "height": fmt.height,
                "style": {k: v for k, v in style.to_dict().items() if k not in ("tags", "extra")},
                "sections": [s.kind for s in timeline.sections],
                "scenes": [{"kind": sc.kind, "photo": sc.photo} for sc in scenes],
                "shots": shots,
                **({} if timeline.warp is None else {"tempo_map": {"bpm_range": [
                    round(60.0 / float(np.max(periods)), 2),
                    round(60.0 / float(np.min(periods)), 2)]}}),
            }
        },
    )
    dump_parse(parse, paths.parse)
    return paths


def _generate_one(args: tuple) -> str:
    out_dir, index, seed, seconds_range, tempo_maps = args
    return str(generate_clip(out_dir, index, seed, seconds_range, tempo_maps).video)


def generate_dataset(out_dir: str | os.PathLike, count: int, seed: int = 0,
                     seconds_range: tuple[float, float] = (8.0, 40.0), workers: int = 1,
                     progress: bool = True, start_index: int = 0, tempo_maps: float = 0.0) -> list[ClipPaths]:
    """Generate ``count`` clips (indices start_index ...) with ``workers`` processes and a progress bar."""
    from tqdm import tqdm

    if count < 1:
        raise ValueError(f"count: need at least one clip, got {count}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    indices = list(range(start_index, start_index + count))
    if not 0.0 <= tempo_maps <= 1.0:
        raise ValueError(f"tempo_maps: a share between 0 and 1, got {tempo_maps}")
    jobs = [(str(out), i, seed, seconds_range, tempo_maps) for i in indices]
    bar = tqdm(total=count, unit="clip", disable=not progress, desc="vem-synth")
    if workers <= 1:
        for job in jobs:
            _generate_one(job)
            bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(_generate_one, jobs, chunksize=1):
                bar.update(1)
    bar.close()
    return [ClipPaths(out / f"{clip_name(i)}.mp4", out / f"{clip_name(i)}.wav", out / f"{clip_name(i)}.json")
            for i in indices]
