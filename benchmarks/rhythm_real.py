"""Beats on real cuts: held-out slideshows of real photographs, scored against their true cut frames.

    python -m benchmarks.rhythm_real --videos 12 --tracker madmom --json benchmarks/results/rhythm-real.json

Two sets of videos that vem-synth did not make (scikit-image photographs panned and zoomed, a random
codec among h264/hevc/vp9/mpeg4 and rate among 24/25/29.97/30/60 fps, 12-20 s, 640x360):

- ``steady``: cut to a steady tempo (80-150 BPM), each shot 2, 4 or 8 beats long, cut in on the
  first frame at or after its beat (as an editor snapping to frames does), some transitions
  dissolves (not scored: only hard cuts are);
- ``free``: cut freely, shots 1.4-5 s long, the way people edit without music.

Each video goes through the shipped bundle with default settings (one `Pipeline`, `generate`, the
waveform written to a WAV as vem-run writes it); beats are tracked in that WAV (madmom's RNN + DBN,
the paper's tracker, by default). Per set: the share of hard cuts (ground truth: the first frame of
the new shot) with a beat within 70 ms, beside the same share for uniformly random cut times; the
signed offsets (beat - cut) of the nearest beats; for steady edits the tempo steadiness (coefficient
of variation of the inter-beat intervals). Diagnostics: the share of true cuts that the requested
grid itself puts within 70 ms of a beat (what the tempo choice allows), and the median offset of the
tracked beats from the requested grid (how closely the model follows it).

Seeds 100+ (default) are held out: no test, tuning or training run uses them.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from vem.runtime.metrics import HIT_TOLERANCE_S, chance_hit_rate, count_within, nan_to_none, nearest_offsets
from vem.runtime.slideshow import PHOTOS, Shot, free_shots, write_slideshow

CODECS = ("h264", "hevc", "vp9", "mpeg4")
RATES = (Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30), Fraction(60))
SIZE = (640, 360)


def steady_edit(seconds: float, bpm: float, rng: np.random.Generator, dissolve_share: float = 0.15) -> list[Shot]:
    """Shots of 2, 4 or 8 beats at ``bpm`` (8 only when a beat is short), a few joined by dissolves."""
    period = 60.0 / bpm
    choices = [2, 4, 4, 8] if bpm >= 110 else [2, 4, 4]
    order = rng.permutation(len(PHOTOS))
    shots: list[Shot] = []
    used = 0.0
    while used < seconds - 1e-9:
        length = min(int(rng.choice(choices)) * period, seconds - used)
        dissolve = float(rng.uniform(0.3, 0.6)) if shots and rng.random() < dissolve_share else 0.0
        shots.append(Shot(PHOTOS[order[len(shots) % len(order)]], length,
                          pan=(float(rng.uniform(-0.6, 0.6)), float(rng.uniform(-0.3, 0.3))),
                          zoom=float(rng.uniform(0, 0.15)), dissolve_in_s=dissolve))
        used += length
    if len(shots) > 1 and shots[-1].seconds < 0.5:  # a sliver at the end is not a shot
        last = shots.pop()
        shots[-1] = Shot(shots[-1].picture, shots[-1].seconds + last.seconds, shots[-1].pan, shots[-1].zoom,
                         shots[-1].dissolve_in_s)
    return shots


def make_videos(kind: str, count: int, seed: int, folder: Path) -> list[dict]:
    rng = np.random.default_rng([seed, 0 if kind == "steady" else 1])
    videos = []
    for index in range(count):
        codec, fps = CODECS[rng.integers(len(CODECS))], RATES[rng.integers(len(RATES))]
        seconds = float(rng.uniform(12, 20))
        if kind == "steady":
            bpm = float(rng.uniform(80, 150))
            shots = steady_edit(seconds, bpm, rng)
        else:
            bpm = None
            shots = free_shots(seconds, seed=int(rng.integers(1 << 30)))
        show = write_slideshow(folder / f"{kind}_{index:02d}.mp4", shots, fps=fps, size=SIZE, codec=codec)
        videos.append({"name": Path(show.path).stem, "path": show.path, "codec": codec, "fps": float(fps),
                       "edit_bpm": bpm, "duration_s": show.duration_s, "cuts_s": show.cut_times_s})
    return videos


def requested_beats(tempo: dict | None, duration_s: float) -> np.ndarray:
    """The beat grid the model was asked for, from a report's ``tempo`` entry."""
    from vem.runtime.tempo import beat_times

    if not tempo:
        return np.zeros(0)
    if "beats_s" in tempo:
        return np.asarray(tempo["beats_s"], dtype=np.float64)
    return beat_times(tempo["bpm"], tempo["anchor_s"], duration_s)


def score_video(video: dict, beats: np.ndarray, report: dict) -> dict:
    cuts = np.asarray(video["cuts_s"], dtype=np.float64)
    duration = video["duration_s"]
    offsets = nearest_offsets(cuts, beats)
    grid = requested_beats(report.get("tempo"), duration)
    follow = nearest_offsets(grid[(grid > 0.5) & (grid < duration - 1.0)], beats)  # tracked beat - asked beat
    intervals = np.diff(beats)
    detected = np.asarray(report["parse"]["transitions_s"], dtype=np.float64)
    return {
        "name": video["name"], "codec": video["codec"], "fps": video["fps"], "edit_bpm": video["edit_bpm"],
        "duration_s": round(duration, 3), "cuts": len(cuts),
        "hits": count_within(cuts, beats),
        "chance_70ms": chance_hit_rate(beats, duration) if beats.size else 0.0,
        "offsets_s": [round(float(o), 4) for o in offsets],
        "grid_hits": count_within(cuts, grid) if grid.size else None,
        "follow_median_s": float(np.nanmedian(follow)) if follow.size else None,
        "follow_within_70ms": float(np.mean(np.abs(follow) <= HIT_TOLERANCE_S)) if follow.size else None,
        "tempo_cv": float(intervals.std() / intervals.mean()) if intervals.size >= 2 else None,
        "beats": int(beats.size),
        "asked_bpm": (report.get("tempo") or {}).get("bpm"),
        "plan": (report.get("tempo") or {}).get("source"),
        "why": (report.get("tempo") or {}).get("why"),
        "detected_cuts_missing": int(np.sum(np.abs(nearest_offsets(cuts, detected)) > 0.05)) if detected.size else len(cuts),
        "seconds": report["timings_s"]["total"],
    }


def summarise(rows: list[dict]) -> dict:
    cuts = sum(r["cuts"] for r in rows)
    offsets = np.array([o for r in rows for o in r["offsets_s"]], dtype=np.float64)
    weights = np.array([r["cuts"] for r in rows], dtype=np.float64)
    chance = float(np.sum(weights * np.array([r["chance_70ms"] for r in rows])) / max(cuts, 1))
    cvs = [r["tempo_cv"] for r in rows if r["tempo_cv"] is not None]
    follow = [r["follow_median_s"] for r in rows if r["follow_median_s"] is not None]
    grid_rows = [r for r in rows if r["grid_hits"] is not None]
    return {
        "videos": len(rows), "cuts": cuts,
        "hit_70ms": sum(r["hits"] for r in rows) / max(cuts, 1),
        "chance_70ms": chance,
        "median_offset_s": float(np.nanmedian(offsets)) if offsets.size else None,
        "mean_abs_offset_s": float(np.nanmean(np.abs(offsets))) if offsets.size else None,
        "tempo_cv_median": float(np.median(cvs)) if cvs else None,
        "tempo_cv_max": float(np.max(cvs)) if cvs else None,
        "grid_hit_70ms": (sum(r["grid_hits"] for r in grid_rows) / max(sum(r["cuts"] for r in grid_rows), 1)
                          if grid_rows else None),
        "follow_median_s": float(np.median(follow)) if follow else None,
        "detected_cuts_missing": sum(r["detected_cuts_missing"] for r in rows),
    }


def run(sets: list[str], count: int, seed: int, tracker: str, tempo_mode: str, folder: Path,
        verbose: bool = True, raw: bool = False, also: tuple[str, ...] = ()) -> dict:
    from vem.runtime import Pipeline
    from vem.runtime.audio import write_audio
    from vem.runtime.beats import track_beats_file

    pipeline = Pipeline.load()
    if raw:
        pipeline.beat_lead_s = 0.0
    result: dict = {"sets": {}, "tracker": tracker, "seed": seed, "tempo_mode": tempo_mode,
                    "beat_lead_s": pipeline.beat_lead_s, "precision": pipeline.precision,
                    "backend": pipeline.backend_name}
    for kind in sets:
        rows = []
        for index, video in enumerate(make_videos(kind, count, seed, folder)):
            kwargs = {} if tempo_mode == "default" else {"tempo_mode": tempo_mode}
            generation = pipeline.generate(video["path"], seed=index, **kwargs)
            wav = folder / f"{video['name']}.wav"
            write_audio(wav, generation.waveform, generation.sample_rate, force=True)
            beats = np.asarray(track_beats_file(wav, tracker), dtype=np.float64)
            row = score_video(video, beats, generation.report)
            row["also"] = {}
            for other in also:  # the same waveforms, another tracker: how much the figure depends on it
                other_beats = np.asarray(track_beats_file(wav, other), dtype=np.float64)
                other_row = score_video(video, other_beats, generation.report)
                row["also"][other] = {key: other_row[key] for key in ("hits", "chance_70ms", "tempo_cv", "beats")}
            rows.append(row)
            if verbose:
                print(f"{kind} {row['name']} {row['codec']:>5} {row['fps']:6.2f} fps cuts {row['cuts']:2d} "
                      f"hits {row['hits']:2d} chance {row['chance_70ms']:.2f} grid {row['grid_hits']} "
                      f"asked {row['asked_bpm']} edit {video['edit_bpm'] and round(video['edit_bpm'], 1)} "
                      f"cv {row['tempo_cv'] if row['tempo_cv'] is None else round(row['tempo_cv'], 3)} "
                      f"follow {row['follow_median_s']}", file=sys.stderr)
        summary = summarise(rows)
        for other in also:
            cuts = sum(r["cuts"] for r in rows)
            summary[f"hit_70ms_{other}"] = sum(r["also"][other]["hits"] for r in rows) / max(cuts, 1)
            summary[f"chance_70ms_{other}"] = float(
                sum(r["cuts"] * r["also"][other]["chance_70ms"] for r in rows) / max(cuts, 1))
        result["sets"][kind] = {"summary": summary, "videos": rows}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=12, help="videos per set (default 12)")
    parser.add_argument("--seed", type=int, default=100, help="seed of the held-out videos (default 100)")
    parser.add_argument("--sets", default="steady,free", help="comma-separated: steady, free")
    parser.add_argument("--tracker", default="madmom", choices=["madmom", "librosa", "numpy"])
    parser.add_argument("--tempo", default="default", choices=["default", "auto", "steady", "map"],
                        help="vem-run's tempo mode (default: whatever vem-run does without --tempo)")
    parser.add_argument("--also", default="", help="comma-separated other trackers to score the same waveforms "
                        "with (e.g. librosa): the model card compares them")
    parser.add_argument("--raw", action="store_true",
                        help="turn off the bundle's beat-lead compensation (rhythm.beat_lead_s)")
    parser.add_argument("--json", help="write per-video rows and per-set summaries as JSON")
    parser.add_argument("--keep", help="keep the videos and WAVs in this folder")
    args = parser.parse_args(argv)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    also = tuple(t.strip() for t in args.also.split(",") if t.strip())
    started = time.perf_counter()
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        result = run(sets, args.videos, args.seed, args.tracker, args.tempo, Path(args.keep), raw=args.raw, also=also)
    else:
        with tempfile.TemporaryDirectory() as folder:
            result = run(sets, args.videos, args.seed, args.tracker, args.tempo, Path(folder), raw=args.raw, also=also)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["machine"] = {"python": platform.python_version(), "platform": platform.platform(),
                         "processor": platform.processor() or platform.machine()}
    result["command"] = "python -m benchmarks.rhythm_real " + " ".join(argv if argv is not None else sys.argv[1:])
    for kind, data in result["sets"].items():
        s = data["summary"]
        cv = "" if s["tempo_cv_median"] is None else f", tempo CV median {s['tempo_cv_median']:.3f} max {s['tempo_cv_max']:.3f}"
        print(f"{kind}: {s['videos']} videos, {s['cuts']} hard cuts: beat within 70 ms of {s['hit_70ms']:.3f} "
              f"(random cut times {s['chance_70ms']:.3f}); median offset {s['median_offset_s'] * 1000:+.0f} ms{cv}; "
              f"grid allows {s['grid_hit_70ms'] if s['grid_hit_70ms'] is None else round(s['grid_hit_70ms'], 3)}, "
              f"model follows grid at {s['follow_median_s'] if s['follow_median_s'] is None else round(s['follow_median_s'] * 1000)} ms")
        for other in also:
            print(f"  {other}: beat within 70 ms of {s[f'hit_70ms_{other}']:.3f} "
                  f"(random cut times {s[f'chance_70ms_{other}']:.3f})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(nan_to_none(result), handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
