"""What the tempo map's bound on tempo change per bar costs in cuts on a beat.

    python -m benchmarks.tempo_map_bound [--maps 20] [--seed 0]

Free edits (12 cuts, 1.4-5 s apart, the way people edit without music); for each bound, the share of
cuts with a beat of `vem.runtime.tempo.tempo_map` within 70 ms, and the largest change per bar the
maps actually made.
"""

from __future__ import annotations

import argparse

import numpy as np

from vem.runtime.tempo import tempo_map

BOUNDS = (0.02, 0.04, 0.06, 0.08)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for bound in BOUNDS:
        rng = np.random.default_rng(args.seed)
        on, total, worst = 0, 0, 0.0
        for _ in range(args.maps):
            cuts = np.cumsum(rng.uniform(1.4, 5.0, 12))
            tempo = tempo_map(cuts, float(cuts[-1] + 2.0), ["moderate"], max_change_per_bar=bound)
            distance = np.array([np.min(np.abs(tempo.beats_s - cut)) for cut in cuts])
            on += int((distance < 0.07).sum())
            total += len(cuts)
            periods = np.diff(tempo.beats_s)
            worst = max(worst, float(np.abs(np.log(periods[4:] / periods[:-4])).max()))
        print(f"bound {bound:.0%} per bar: cuts with a beat within 70 ms {on}/{total} = {on / total:.3f}; "
              f"largest change per bar {np.expm1(worst):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
