"""How well `vem.runtime.tempo.choose_tempo` finds the reference music's tempo from what the
runtime knows: the cuts and the style head's predicted tags (`runtime_text`).

    python -m vem.training.tempo_check CHECKPOINT CACHE [CACHE ...] [--hard-pace] [--reference-tags]

For every cached clip: the chosen tempo against the reference's (60 / median interval of the
annotated beats); prints the share within 5 % over all clips and over the clips with two or more
cuts (the ones whose cuts pin a tempo down). ``--hard-pace`` scores the first rule (only tempi in
the pace word's range); ``--reference-tags`` uses vem-synth's own tags instead of the predicted
ones (the pace word is then right). The rule's weights were chosen with this on the training and
selection caches, not on the held-out one.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vem.training.tempo_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint whose style head predicts the tags")
    parser.add_argument("caches", nargs="+", help="`vem-train cache` folders")
    parser.add_argument("--hard-pace", action="store_true", help="only tempi inside the pace word's range")
    parser.add_argument("--reference-tags", action="store_true", help="vem-synth's tags instead of the predicted ones")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from vem.model import load_checkpoint
    from vem.runtime.tags import TAG_VOCABULARY
    from vem.runtime.tempo import choose_tempo

    from .data import load_cache
    from .phases import runtime_text

    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint).float().eval()
    ratios, pinned = [], []
    for cache in args.caches:
        for clip in load_cache(cache):
            if len(clip.beats_s) < 2:
                continue
            if args.reference_tags:
                tags = [TAG_VOCABULARY[i] for i in np.flatnonzero(clip.tags_hot > 0.5)]
            else:
                tags = runtime_text(model, clip, clip.story_start_s, clip.story_duration_s).tags
            reference = 60.0 / float(np.median(np.diff(clip.beats_s)))
            ratios.append(choose_tempo(clip.cuts_s, tags, hard_pace=args.hard_pace).bpm / reference)
            pinned.append(len(clip.cuts_s) >= 2)
    if not ratios:
        print("tempo_check: no clips with beats in those caches", file=sys.stderr)
        return 2
    ratios, pinned = np.array(ratios), np.array(pinned)
    close = np.abs(ratios - 1.0) < 0.05
    rule = "hard pace range" if args.hard_pace else "soft pace prior"
    words = "reference tags" if args.reference_tags else "predicted tags"
    print(f"{rule}, {words}: tempo within 5 % of the reference in {close.mean():.3f} of {len(ratios)} clips; "
          f"{close[pinned].mean():.3f} of the {int(pinned.sum())} with two or more cuts "
          f"(chosen faster than 1.3 x in {np.mean(ratios[pinned] > 1.3):.2f}, slower than 0.77 x in "
          f"{np.mean(ratios[pinned] < 0.77):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
