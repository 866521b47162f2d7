"""Quick held-out check of a checkpoint: TBIoU / hit rate / BIoU / mel distance of generated music
against the ground-truth music, on cached clips (PAPER.md §7 metrics, librosa beats).

Conditions are the real ones the runtime would build, from the cache: caption and tag
embeddings, the ground-truth storyboards' description embeddings and times, the storyboards'
pooled visual embeddings (the trained visual encoder) and the frozen aligner's features over
RGB + TransNetV2 probability. Generation is `vem.model.pipeline.generate` (torch reference).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from vem.model import generate, load_checkpoint
from vem.runtime.beats import track_beats
from vem.runtime.mel import log_mel, mel_distance
from vem.runtime.metrics import biou, hit_rate, tbiou

from .data import load_cache
from .phases import aligner_input, clip_story_visual


@torch.no_grad()
def evaluate(checkpoint: str, cache_dir: str, count: int = 20, steps: int | None = None,
             guidance: float | None = None, use_aligner: bool = True, seed: int = 0) -> dict:
    model = load_checkpoint(checkpoint)
    cfg = model.config
    rate = cfg.audio.sample_rate
    clips = load_cache(cache_dir)[:count]
    rows = []
    for clip in clips:
        seconds = clip.duration_s
        features = None
        if use_aligner:
            features, _ = model.aligner(aligner_input(clip.aligner, clip.trans_prob))
        out = generate(
            model,
            torch.from_numpy(clip.caption)[None],
            torch.from_numpy(clip.tags_emb)[None],
            torch.from_numpy(clip.story_text)[None],
            clip_story_visual(model, clip)[None],
            torch.from_numpy(clip.story_start_s)[None],
            torch.from_numpy(clip.story_duration_s)[None],
            seconds,
            aligner_features=features,
            steps=steps,
            guidance=guidance,
            seed=seed,
        )
        wave = out.waveform[0].numpy()
        reference = clip.wave[: len(wave)]
        gen_beats = track_beats(wave, rate)
        ref_beats = track_beats(reference, rate)
        frames = min(len(wave), len(reference))
        rows.append({
            "clip": clip.name,
            "seconds": seconds,
            "tbiou_generated": tbiou(clip.cuts_s, gen_beats),
            "tbiou_reference": tbiou(clip.cuts_s, ref_beats),
            "hit70_generated": hit_rate(clip.cuts_s, gen_beats),
            "hit70_reference": hit_rate(clip.cuts_s, ref_beats),
            "biou": biou(ref_beats, gen_beats),
            "mel_distance": mel_distance(log_mel(wave[:frames]), log_mel(reference[:frames])),
            "peak": float(np.max(np.abs(wave))),
            "rms": float(np.sqrt(np.mean(wave ** 2))),
        })
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    keys = [k for k in rows[0] if k != "clip"]
    mean = {k: float(np.nanmean([r[k] for r in rows if not (isinstance(r[k], float) and math.isnan(r[k]))] or [math.nan]))
            for k in keys}
    return {"checkpoint": str(checkpoint), "clips": len(rows), "steps": steps or cfg.diffusion.steps,
            "guidance": guidance if guidance is not None else cfg.diffusion.guidance, "use_aligner": use_aligner,
            "mean": mean, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m vem.training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("cache")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--no-aligner", action="store_true")
    parser.add_argument("--json", default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = evaluate(args.checkpoint, args.cache, args.count, args.steps, args.guidance, not args.no_aligner)
    print(json.dumps(result["mean"], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
