"""The model's onset offset: where the written beats land relative to the beat grid it was given.

    python -m benchmarks.onset_offset --clips 4 --json benchmarks/results/onset-offset.json

vem-synth clips (held-out seed, 10 s) are generated at fixed tempi with `--bpm`, so the grid the
model is asked for is known exactly (the report's tempo). Two measures per tempo, both as
"written minus asked" in milliseconds (negative: the music is early):

- ``tracker_ms``: the median offset of the beats tracked in the waveform (madmom by default, the
  paper's tracker) from the nearest asked beat;
- ``onset_ms``: tracker-free: where the loudness rises fastest (log energy in 4 ms frames, its
  positive slope averaged over a +-150 ms window around every asked beat).

The shipped bundle's ``rhythm.beat_lead_s`` in its manifest (the grid is asked that much later, so
the beats land on time) is the median of ``tracker_ms`` over all tempi (`--write-manifest`), measured
with compensation off (`--raw`).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

TEMPI = (70, 85, 100, 115, 130, 145, 160, 170)
WINDOW_S = 0.15
HOP = 32  # 2 ms at 16 kHz


def onset_lag_ms(waveform: np.ndarray, sample_rate: int, asked: np.ndarray) -> float | None:
    """Where the loudness rises fastest around the asked beats, relative to them (ms): log energy in
    4 ms frames (2 ms hop), its positive slope averaged over a +-150 ms window around every asked
    beat, and the peak of that average. No analysis window longer than 4 ms: a spectral-flux
    envelope (2048-sample FFT) smears an attack over 128 ms and puts its peak where its window sits."""
    frame = 2 * HOP
    y = np.asarray(waveform, dtype=np.float64).reshape(-1)
    count = 1 + (y.size - frame) // HOP
    if count < 3:
        return None
    windows = np.lib.stride_tricks.sliding_window_view(y, frame)[::HOP][:count]
    energy = 10.0 * np.log10(np.mean(windows ** 2, axis=1) + 1e-10)
    rise = np.maximum(0.0, np.diff(energy))  # rise[i]: frame i -> i + 1, centred at (i + 1) * HOP + HOP / 2
    fps = sample_rate / HOP
    half = int(round(WINDOW_S * fps))
    rows = []
    for beat in asked:
        centre = int(round(beat * fps - 1.5))  # rise index whose centre is nearest the beat
        if centre - half >= 0 and centre + half < rise.size:
            rows.append(rise[centre - half:centre + half + 1])
    if not rows:
        return None
    average = np.mean(rows, axis=0)
    return float((int(np.argmax(average)) - half) / fps * 1000.0)


def measure(clips: int, seed: int, tracker: str, raw: bool, folder: Path, verbose: bool = True) -> dict:
    from benchmarks.rhythm_real import requested_beats
    from vem.runtime import Pipeline
    from vem.runtime.audio import write_audio
    from vem.runtime.beats import track_beats_file
    from vem.runtime.metrics import nearest_offsets
    from vem.training.cli import synth_main

    synth_main(["--out", str(folder / "synth"), "--count", str(clips), "--seconds", "10-10", "--seed", str(seed),
                "--quiet"])
    videos = sorted((folder / "synth").glob("*.mp4"))
    pipeline = Pipeline.load()
    if raw:
        pipeline.beat_lead_s = 0.0
    rows = []
    for bpm in TEMPI:
        tracker_offsets, onset_lags = [], []
        for index, video in enumerate(videos):
            generation = pipeline.generate(str(video), bpm=float(bpm), seed=index)
            duration = generation.report["video"]["duration_s"]
            asked = requested_beats(generation.report["tempo"], duration)
            asked = asked[(asked > 0.5) & (asked < duration - 1.2)]  # away from the fades
            wav = folder / f"{video.stem}_{bpm}.wav"
            write_audio(wav, generation.waveform, generation.sample_rate, force=True)
            beats = np.asarray(track_beats_file(wav, tracker), dtype=np.float64)
            if beats.size:
                offsets = nearest_offsets(asked, beats)
                # A beat more than a quarter period away is a different beat, not an offset.
                tracker_offsets.extend(offsets[np.abs(offsets) < 0.25 * 60.0 / bpm].tolist())
            lag = onset_lag_ms(generation.waveform, generation.sample_rate, asked)
            if lag is not None:
                onset_lags.append(lag)
        row = {"bpm": bpm, "tracker_ms": float(np.median(tracker_offsets) * 1000) if tracker_offsets else None,
               "tracker_mean_ms": float(np.mean(tracker_offsets) * 1000) if tracker_offsets else None,
               "beats_matched": len(tracker_offsets),
               "onset_ms": float(np.median(onset_lags)) if onset_lags else None}
        rows.append(row)
        if verbose:
            print(f"{bpm:4d} BPM: tracked beats {row['tracker_ms']} ms (mean {row['tracker_mean_ms']}), onset peak "
                  f"{row['onset_ms']} ms, {row['beats_matched']} beats", file=sys.stderr)
    tracked = [r["tracker_ms"] for r in rows if r["tracker_ms"] is not None]
    onsets = [r["onset_ms"] for r in rows if r["onset_ms"] is not None]
    return {"tempi": rows, "tracker": tracker, "clips": clips, "seed": seed,
            "compensation_s": pipeline.beat_lead_s, "precision": pipeline.precision,
            "median_tracker_ms": float(np.median(tracked)) if tracked else None,
            "median_onset_ms": float(np.median(onsets)) if onsets else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--seed", type=int, default=4242, help="vem-synth seed (held out; default 4242)")
    parser.add_argument("--tracker", default="madmom", choices=["madmom", "librosa", "numpy"])
    parser.add_argument("--raw", action="store_true", help="measure with the bundle's compensation turned off")
    parser.add_argument("--json", help="write the per-tempo rows as JSON")
    parser.add_argument("--from-json", metavar="FILE", help="take the measurement from a --raw --json file "
                        "written earlier instead of measuring again")
    parser.add_argument("--write-manifest", metavar="BUNDLE",
                        help="store -median tracker offset as rhythm.beat_lead_s in this bundle's manifest "
                             "(needs --raw)")
    args = parser.parse_args(argv)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        if result.get("compensation_s"):
            parser.error(f"{args.from_json} was measured with compensation on: measure with --raw")
    else:
        if args.write_manifest and not args.raw:
            parser.error("--write-manifest needs --raw (the offset without compensation)")
        with tempfile.TemporaryDirectory() as folder:
            result = measure(args.clips, args.seed, args.tracker, args.raw, Path(folder))
        result["machine"] = {"python": platform.python_version(), "platform": platform.platform()}
        result["command"] = "python -m benchmarks.onset_offset " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"median over tempi: tracked beats {result['median_tracker_ms']:+.1f} ms, onset peak "
          f"{result['median_onset_ms']:+.1f} ms (compensation in use: {result['compensation_s'] * 1000:.1f} ms)")
    if args.json and not args.from_json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if args.write_manifest:
        manifest_path = Path(args.write_manifest) / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["rhythm"] = {"beat_lead_s": round(-result["median_tracker_ms"] / 1000.0, 4),
                              "measured_with": result["command"], "tracker": result["tracker"],
                              "per_tempo_ms": {str(r["bpm"]): r["tracker_ms"] for r in result["tempi"]}}
        manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
        print(f"wrote rhythm.beat_lead_s = {manifest['rhythm']['beat_lead_s']} to {manifest_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
