"""What the tempo map's bound on tempo change per bar costs in cuts on a beat.

    python -m benchmarks.tempo_map_bound [--edits 60] [--cuts 6] [--seed 0] [--json FILE]

Random free edits (cuts 1.4-5 s apart, the way people edit without music, pace word "moderate").
For each bound: the share of cuts that `vem.runtime.tempo.tempo_map` puts within 70 ms of a beat
(``map``), the same for what vem-run does by default (``auto``: the steady fit when it holds every
cut, else the map when it holds more), and the largest change per bar the maps actually made.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

from vem.runtime.metrics import HIT_TOLERANCE_S, count_within
from vem.runtime.tempo import BEATS_PER_BAR, plan_tempo, tempo_map

BOUNDS = (0.02, 0.04, 0.05, 0.06, 0.08)


def measure(bound: float, edits: int, cuts_per_edit: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    on_map = on_auto = total = 0
    worst = 0.0
    for _ in range(edits):
        cuts = np.cumsum(rng.uniform(1.4, 5.0, cuts_per_edit))
        duration = float(cuts[-1] + 2.0)
        mapped = tempo_map(cuts, duration, ["moderate"], max_change_per_bar=bound)
        planned, _ = plan_tempo(cuts, duration, ["moderate"], max_change_per_bar=bound)
        on_map += count_within(cuts, mapped.beats_s, HIT_TOLERANCE_S)
        on_auto += count_within(cuts, planned.beats(duration), HIT_TOLERANCE_S)
        total += len(cuts)
        periods = np.diff(mapped.beats_s)
        if periods.size > BEATS_PER_BAR:
            worst = max(worst, float(np.abs(np.log(periods[BEATS_PER_BAR:] / periods[:-BEATS_PER_BAR])).max()))
    return {"bound": bound, "cuts": total, "map": on_map / total, "auto": on_auto / total,
            "largest_change_per_bar": float(np.expm1(worst))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=60)
    parser.add_argument("--cuts", type=int, default=6, help="cuts per edit (default 6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the rows as JSON")
    args = parser.parse_args(argv)
    rows = []
    for bound in BOUNDS:
        row = measure(bound, args.edits, args.cuts, args.seed)
        rows.append(row)
        print(f"bound {bound:.0%} per bar: cuts with a beat within 70 ms: map {row['map']:.3f}, vem-run's default "
              f"{row['auto']:.3f} (of {row['cuts']}); largest change per bar {row['largest_change_per_bar']:.3f}")
    if args.json:
        machine = {"python": platform.python_version(), "platform": platform.platform(),
                   "processor": platform.processor() or platform.machine()}
        command = "python -m benchmarks.tempo_map_bound " + " ".join(argv if argv is not None else sys.argv[1:])
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"edits": args.edits, "cuts_per_edit": args.cuts, "seed": args.seed, "rows": rows,
                       "command": command, "machine": machine}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
