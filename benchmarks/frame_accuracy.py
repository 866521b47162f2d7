"""Frame accuracy of the transition detector on random slideshows of real photographs.

    python -m benchmarks.frame_accuracy --seed 5 --videos 16 [--json out.json]

Each video: 12 s, 320x180, a random codec (h264, hevc, vp9, mpeg4) and rate (24, 25, 29.97, 30,
60 fps), either steady edits (random shot length, some transitions dissolves) or free edits (shots
of 1.4-5 s), written by `vem.runtime.slideshow` with the truth known. Counted: hard cuts found on
exactly their first new frame, found elsewhere ("off"), missed; dissolves found within 0.5 s of
their middle; false transitions; TransNetV2 windows run out of all windows.
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction

import numpy as np

from vem.runtime.pipeline import DEFAULT_BUNDLE
from vem.runtime.slideshow import free_shots, steady_shots, write_slideshow
from vem.runtime.transitions import TransitionDetector, find_transitions
from vem.runtime.video import decode_frames

CODECS = ("h264", "hevc", "vp9", "mpeg4")
RATES = (Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30), Fraction(60))


def evaluate(seed: int, videos: int, folder: str, verbose: bool = True) -> dict:
    detector = TransitionDetector(str(DEFAULT_BUNDLE / "transitions.fp16.onnx"))
    rng = np.random.default_rng(seed)
    counts = dict(cuts=0, exact=0, off=0, missed=0, dissolves=0, dissolves_missed=0, false=0, windows_run=0,
                  windows_total=0)
    for index in range(videos):
        codec, fps = CODECS[rng.integers(len(CODECS))], RATES[rng.integers(len(RATES))]
        shot_seed = int(rng.integers(1000))
        if rng.random() < 0.5:
            shots = steady_shots(12, float(rng.uniform(1.2, 2.5)), seed=shot_seed,
                                 dissolve_every=int(rng.integers(0, 4)), dissolve_s=float(rng.uniform(0.3, 1.0)))
        else:
            shots = free_shots(12, seed=shot_seed)
        video = write_slideshow(f"{folder}/video_{index}.mp4", shots, fps=fps, size=(320, 180), codec=codec)
        decoded = decode_frames(video.path, sizes={"transitions": (48, 27)})
        result = find_transitions(decoded.frame_times_s, decoded.signatures, decoded.frames["transitions"], detector)
        counts["windows_run"] += result.windows_run
        counts["windows_total"] += result.windows_total
        found = list(result.transitions)
        for truth in video.transitions:
            middle = truth.time_s if truth.kind == "cut" else 0.5 * (truth.time_s + truth.clean_time_s)
            match = [t for t in found if abs(t.time_s - middle) < 0.5][:1]
            if truth.kind == "cut":
                counts["cuts"] += 1
                if not match:
                    counts["missed"] += 1
                elif match[0].kind == "cut" and match[0].source_frame == truth.first_frame:
                    counts["exact"] += 1
                else:
                    counts["off"] += 1
            else:
                counts["dissolves"] += 1
                counts["dissolves_missed"] += not match
            if verbose and not match:
                print(f"missed: {codec} {float(fps):.2f} fps {truth}", file=sys.stderr)
            found = [t for t in found if t not in match]
        counts["false"] += len(found)
        if verbose and found:
            print(f"false: {codec} {float(fps):.2f} fps {found}", file=sys.stderr)
    return counts


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--json", help="write the counts as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        counts = evaluate(args.seed, args.videos, folder)
    print(f"hard cuts {counts['cuts']}: on their first new frame {counts['exact']}, elsewhere {counts['off']}, "
          f"missed {counts['missed']}; dissolves {counts['dissolves']}: missed {counts['dissolves_missed']}; "
          f"false transitions {counts['false']}; TransNetV2 windows {counts['windows_run']}/{counts['windows_total']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"seed": args.seed, "videos": args.videos, **counts}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
