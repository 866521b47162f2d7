"""Does the model follow a tempo map? vem-synth clips with steady music against clips on tempo maps.

    python -m benchmarks.synth_tempo_maps --clips 8 --json benchmarks/results/synth-tempo-maps.json

Two held-out sets of the same size from one vem-synth seed (not a training, selection or
evaluation seed): ``steady`` (`vem-synth --tempo-maps 0`) and ``map`` (`--tempo-maps 1`: the
reference music's tempo glides by up to 5 % per bar and the cuts fall on its moving beats). Each
clip goes through the shipped bundle with its ground-truth parse (as `vem-run --parse` would) and
default settings, so the runtime plans the tempo from the true cuts (`--tempo auto`: a map where no
steady tempo holds them). Beats are tracked in the written waveform (madmom by default). Per set:
the share of hard cuts with a beat within 70 ms beside the random-cut-time rate, and the share the
asked grid itself reaches (the tempo plan's limit), the share of asked beats that the written music
has within 70 ms (how well the model follows what it is asked), and the share of the reference
music's beats that the written music also has within 70 ms. The demo adapter was
trained on steady music only: if the ``map`` set scores as well as the ``steady`` set, a map is
followed without retraining.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

from vem.runtime.metrics import chance_hit_rate, count_within, nearest_offsets


def run(clips: int, seed: int, tracker: str, folder: Path, verbose: bool = True) -> dict:
    from benchmarks.rhythm_real import requested_beats
    from vem.runtime import Pipeline
    from vem.runtime.audio import write_audio
    from vem.runtime.beats import track_beats_file
    from vem.runtime.parse_schema import load_parse
    from vem.runtime.pipeline import hard_cuts
    from vem.training.synth.generate import generate_dataset

    pipeline = Pipeline.load()
    result: dict = {"sets": {}, "tracker": tracker, "seed": seed, "precision": pipeline.precision,
                    "beat_lead_s": pipeline.beat_lead_s}
    for kind, share in (("steady", 0.0), ("map", 1.0)):
        paths = generate_dataset(folder / kind, clips, seed, (10.0, 14.0), workers=1, progress=False,
                                 tempo_maps=share)
        rows = []
        for index, clip in enumerate(paths):
            parse = load_parse(clip.parse)
            cuts = np.array(hard_cuts(parse), dtype=np.float64)  # what the runtime plans the tempo from
            reference = np.asarray(parse.music.beats_s, dtype=np.float64)
            generation = pipeline.generate(str(clip.video), parse=parse, seed=index)
            wav = folder / f"{kind}_{index}.vem.wav"
            write_audio(wav, generation.waveform, generation.sample_rate, force=True)
            beats = np.asarray(track_beats_file(wav, tracker), dtype=np.float64)
            duration = parse.video.duration_s
            inside = reference[(reference > 0.5) & (reference < duration - 1.2)]  # away from the fades
            tempo = generation.report["tempo"] or {}
            asked = requested_beats(tempo, duration)
            follow = nearest_offsets(asked[(asked > 0.5) & (asked < duration - 1.2)], beats)
            row = {"clip": clip.video.name, "cuts": int(cuts.size), "hits": count_within(cuts, beats),
                   "grid_hits": count_within(cuts, asked),
                   "follow_within_70ms": float(np.mean(np.abs(follow) <= 0.07)) if follow.size and beats.size else None,
                   "chance_70ms": chance_hit_rate(beats, duration) if beats.size else 0.0,
                   "reference_beats": int(inside.size), "reference_matched": count_within(inside, beats),
                   "bpm_range": (parse.extra.get("synth") or {}).get("tempo_map", {}).get("bpm_range"),
                   "plan": tempo.get("source"), "why": tempo.get("why")}
            rows.append(row)
            if verbose:
                print(f"{kind} {row['clip']}: cuts {row['cuts']} hits {row['hits']} grid {row['grid_hits']} "
                      f"followed {row['follow_within_70ms']} chance {row['chance_70ms']:.2f} "
                      f"reference beats {row['reference_matched']}/{row['reference_beats']} range {row['bpm_range']} "
                      f"plan {row['plan']}", file=sys.stderr)
        cuts = sum(r["cuts"] for r in rows)
        result["sets"][kind] = {
            "summary": {
                "clips": len(rows), "cuts": cuts,
                "hit_70ms": sum(r["hits"] for r in rows) / max(cuts, 1),
                "grid_hit_70ms": sum(r["grid_hits"] for r in rows) / max(cuts, 1),
                "asked_beats_followed": float(np.mean([r["follow_within_70ms"] for r in rows
                                                       if r["follow_within_70ms"] is not None])),
                "chance_70ms": float(sum(r["cuts"] * r["chance_70ms"] for r in rows) / max(cuts, 1)),
                "reference_beats_matched": (sum(r["reference_matched"] for r in rows)
                                            / max(sum(r["reference_beats"] for r in rows), 1)),
                "plans": {plan: sum(r["plan"] == plan for r in rows) for plan in {r["plan"] for r in rows}},
            },
            "clips": rows,
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=8, help="clips per set (default 8)")
    parser.add_argument("--seed", type=int, default=4343, help="vem-synth seed (held out; default 4343)")
    parser.add_argument("--tracker", default="madmom", choices=["madmom", "librosa", "numpy"])
    parser.add_argument("--json", help="write the rows and summaries as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        result = run(args.clips, args.seed, args.tracker, Path(folder))
    result["machine"] = {"python": platform.python_version(), "platform": platform.platform()}
    result["command"] = "python -m benchmarks.synth_tempo_maps " + " ".join(argv if argv is not None else sys.argv[1:])
    for kind, data in result["sets"].items():
        s = data["summary"]
        print(f"{kind}: {s['clips']} clips, {s['cuts']} hard cuts: beat within 70 ms of {s['hit_70ms']:.3f} "
              f"(random cut times {s['chance_70ms']:.3f}); the asked grid reaches {s['grid_hit_70ms']:.3f}; asked beats "
              f"followed {s['asked_beats_followed']:.3f}; reference beats matched {s['reference_beats_matched']:.3f}; "
              f"plans {s['plans']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
