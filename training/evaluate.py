"""Held-out evaluation of a checkpoint in the paper's Table 4 form (docs/paper.md §7 metrics).

For every cached held-out clip, music is scored against the clip's ground-truth transitions
(TBIoU, the 70 ms hit rate and its chance level) and against the clip's reference music (BIoU
of the beats, log-mel distance), with librosa beats (`vem.runtime.beats`, `BEAT_TRACKER`). Rows:

- ``ground_truth``  the clip's own music (vem-synth's reference);
- ``shuffled``      the next clip's music (same data, no relation to this video);
- ``reconstruction`` the clip's own music through the trained VAE (posterior mean) and vocoder:
                    the ceiling the audio path sets on any generated music's rhythm. Its rows also
                    carry ``aligner_hit70``: the frozen aligner's own cut-and-beat peaks
                    (p > 0.5, one per run, as the runtime picks cuts) as a detector of the
                    video's cuts (the share of cuts with a peak within 70 ms), the ceiling the
                    rhythm path's input sets;
- ``no_tb_adapter`` the model without the rhythm path (no aligner features: the TB adapters add 0);
- ``parsing_plain`` neither: no rhythm path and no storyboard mask (docs/paper.md Table 4's "parsing
                    with plain cross-attention"; against ``no_tb_adapter`` it is the paper's
                    SG-CAtt comparison, measured without the adapters and their beat grid);
- ``no_sg_catt``    the model with SG-CAtt's storyboard mask removed, so every latent frame
                    attends to every storyboard (plain cross-attention). Same weights: an
                    inference-time ablation, not a model trained without the mask;
- ``full``          the model as the runtime runs it.

Conditions are the ones the runtime builds (`vem.training.phases.runtime_text`: caption, tags
and storyboard descriptions worded from the style head's predicted tags; storyboard visual
embeddings from the trained visual encoder; the frozen aligner's features over RGB + the
TransNetV2 probability), on the ground-truth storyboard spans, as `vem-run --parse` would get
them. ``--text reference`` uses vem-synth's own sentences instead. Generation is the torch
reference (`vem.model.pipeline.generate`), which the exported runtime matches (export parity).

Listen-level facts per generated clip: beat-interval coefficient of variation (steady tempo),
the share of clipped samples (|x| >= 0.999) and the longest silence (50 ms frames below
-60 dBFS RMS).
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
from vem.runtime.config import AudioConfig
from vem.runtime.mel import log_mel, mel_distance
from vem.runtime.metrics import HIT_TOLERANCE_S, biou, chance_hit_rate, hit_rate, tbiou
from vem.runtime.tempo import beat_grid, choose_tempo
from vem.runtime.transitions import transition_frames

from .data import Clip, load_cache
from .phases import aligner_input, clip_latent, clip_story_visual, runtime_text

# The tracker of the model card's published figures (extra "eval"); the runtime's numpy tracker
# gives the same beats on vem-synth's music (tests/test_beats_numpy.py).
BEAT_TRACKER = "librosa"

# "parsing_plain" is docs/paper.md Table 4's "parsing with plain cross-attention" row: neither the
# TB-As nor the storyboard mask, so that SG-CAtt's own effect on rhythm is measured where the paper
# measured it (against "no_tb_adapter", which keeps the mask), away from the adapters' beat grid.
MODEL_VARIANTS = ("no_tb_adapter", "parsing_plain", "no_sg_catt", "full")
ALL_VARIANTS = ("ground_truth", "shuffled", "reconstruction") + MODEL_VARIANTS
WITHOUT_ADAPTERS = ("no_tb_adapter", "parsing_plain")
WITHOUT_MASK = ("no_sg_catt", "parsing_plain")
LABELS = {
    "ground_truth": "ground-truth music",
    "shuffled": "shuffled music (another clip's)",
    "reconstruction": "ground truth through VAE + vocoder",
    "no_tb_adapter": "VeM-demo without TB-As",
    "parsing_plain": "VeM-demo without TB-As or SG-CAtt (plain cross-attention)",
    "no_sg_catt": "VeM-demo without SG-CAtt (mask off)",
    "full": "VeM-demo (full)",
}
# What a paired comparison reports: the stored summary's full-minus-ablation and `--paired`.
PAIRED_KEYS = ("tbiou", "tbiou70", "hit70", "biou", "mel_distance", "shot_match", "tempo_cv", "beats_per_s")
CLIP_LEVEL = 0.999
SILENCE_DBFS = -60.0
SILENCE_FRAME_S = 0.05


def tempo_cv(beats_s: np.ndarray) -> float:
    """Coefficient of variation of the beat intervals (0 = perfectly steady); NaN below 3 beats."""
    intervals = np.diff(np.sort(np.asarray(beats_s, dtype=np.float64)))
    if intervals.size < 2 or intervals.mean() <= 0:
        return math.nan
    return float(intervals.std() / intervals.mean())


def longest_silence_s(wave: np.ndarray, rate: int, level_dbfs: float = SILENCE_DBFS,
                      frame_s: float = SILENCE_FRAME_S) -> float:
    """Longest run of consecutive ``frame_s`` frames whose RMS is below ``level_dbfs``."""
    hop = max(1, int(round(frame_s * rate)))
    count = len(wave) // hop
    if count == 0:
        return 0.0
    rms = np.sqrt(np.mean(np.asarray(wave[: count * hop], dtype=np.float64).reshape(count, hop) ** 2, axis=1))
    quiet = rms < 10.0 ** (level_dbfs / 20.0)
    longest = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        longest = max(longest, run)
    return longest * hop / rate


SHOT_MIN_S = 1.0  # shorter storyboards have too few mel frames for a stable profile


def shot_match(mel: np.ndarray, ref_mel: np.ndarray, starts_s, durations_s, frames_per_second: float) -> float:
    """Does each shot's music resemble the reference music of *that* shot more than of the
    clip's other shots? Per storyboard of at least SHOT_MIN_S: the mean log-mel spectrum over its
    span, minus the clip's mean over shots (so only the differences between shots count, not the
    model's overall level or timbre); the share of shots whose nearest reference profile (mean
    absolute difference) is their own. What SG-CAtt (Eq. 7: each latent frame attends to its own
    shot) is for and the rhythm metrics do not see. NaN with fewer than two such shots; chance is
    about 1 / shots."""
    spans = [(s, d) for s, d in zip(np.asarray(starts_s, float), np.asarray(durations_s, float)) if d >= SHOT_MIN_S]
    frames = min(mel.shape[1], ref_mel.shape[1])
    profiles, references = [], []
    for start, duration in spans:
        a, b = int(round(start * frames_per_second)), min(frames, int(round((start + duration) * frames_per_second)))
        if b - a >= 2:
            profiles.append(mel[:, a:b].mean(axis=1))
            references.append(ref_mel[:, a:b].mean(axis=1))
    if len(profiles) < 2:
        return math.nan
    profiles = np.array(profiles) - np.mean(profiles, axis=0)
    references = np.array(references) - np.mean(references, axis=0)
    distance = np.abs(profiles[:, None, :] - references[None, :, :]).mean(axis=2)
    return float(np.mean(np.argmin(distance, axis=1) == np.arange(len(profiles))))


def score(wave: np.ndarray, beats: np.ndarray, clip: Clip, ref_wave: np.ndarray, ref_beats: np.ndarray,
          rate: int) -> dict:
    frames = min(len(wave), len(ref_wave))
    mel, ref_mel = log_mel(wave[:frames]), log_mel(ref_wave[:frames])
    return {
        "tbiou": tbiou(clip.cuts_s, beats),
        # The paper's TBIoU at the 70 ms tolerance: at 0.5 s almost any cut matches some beat
        # (docs/paper.md §7 caveat), at 70 ms only a beat placed on the cut does.
        "tbiou70": tbiou(clip.cuts_s, beats, tolerance=HIT_TOLERANCE_S),
        "biou": biou(ref_beats, beats),
        "hit70": hit_rate(clip.cuts_s, beats),
        "chance70": chance_hit_rate(beats, clip.duration_s) if len(clip.cuts_s) else math.nan,
        "mel_distance": mel_distance(mel, ref_mel),
        "shot_match": shot_match(mel, ref_mel, clip.story_start_s, clip.story_duration_s,
                                 AudioConfig().mel_frames_per_second),  # log_mel's default config
        "tempo_cv": tempo_cv(beats),
        "peak": float(np.max(np.abs(wave))) if len(wave) else 0.0,
        "clipped_share": float(np.mean(np.abs(wave) >= CLIP_LEVEL)) if len(wave) else 0.0,
        "longest_silence_s": longest_silence_s(wave, rate),
        "beats": int(len(beats)),
        "beats_per_s": float(len(beats) / clip.duration_s) if clip.duration_s > 0 else math.nan,
        "beats_s": [round(float(b), 4) for b in beats],  # so a row can be re-scored without regenerating
    }


@torch.no_grad()
def reconstruct(model, clip: Clip) -> np.ndarray:
    """The clip's reference log-mel through the VAE (posterior mean, as training encodes it) and
    the vocoder."""
    mel = model.vae.decode(clip_latent(model, clip)[None])
    wave = model.vocoder(mel.squeeze(1).transpose(1, 2)).squeeze(1)[0].float().numpy()
    return np.pad(wave, (0, max(0, len(clip.wave) - len(wave))))[: len(clip.wave)]


@torch.no_grad()
def aligner_hit_rate(model, clip: Clip, threshold: float = 0.5) -> float:
    """Share of the clip's cuts within 70 ms of a peak of the aligner's cut-and-beat probability
    (one peak per run above ``threshold``, the runtime's `transition_frames` rule); NaN without
    cuts."""
    if not len(clip.cuts_s):
        return math.nan
    _, logits = model.aligner(aligner_input(clip.aligner, clip.trans_prob))
    peaks = transition_frames(torch.sigmoid(logits[0]).numpy(), threshold)
    return hit_rate(clip.cuts_s, peaks / model.config.video.fps) if len(peaks) else 0.0


def clip_tempo(model, clip: Clip, tempo: str = "runtime", words=None) -> tuple[float, np.ndarray]:
    """The tempo (BPM) and beat times a beat-grid model is given for ``clip``: ``runtime`` =
    `vem.runtime.tempo.choose_tempo` from the clip's cuts and the style head's predicted tags (as
    `vem-run` chooses it), ``reference`` = the reference music's own beats (an oracle, to show
    what the model does when told the right tempo)."""
    if tempo == "reference":
        beats = np.asarray(clip.beats_s, dtype=np.float64)
        period = float(np.median(np.diff(beats))) if len(beats) > 1 else math.nan
        return 60.0 / period, beats
    if tempo != "runtime":
        raise ValueError(f"tempo must be 'runtime' or 'reference', got {tempo!r}")
    words = words or runtime_text(model, clip, clip.story_start_s, clip.story_duration_s)
    choice = choose_tempo(clip.cuts_s, words.tags)
    return choice.bpm, choice.beats(clip.duration_s)


@torch.no_grad()
def generate_for_clip(model, clip: Clip, variant: str, steps: int | None, guidance: float | None, seed: int,
                      text: str = "runtime", tempo: str = "runtime") -> tuple[np.ndarray, float]:
    """The variant's music for ``clip`` and the tempo (BPM) it was asked for (NaN for a model
    without the beat grid, or a variant without the TB adapters, which are what read it)."""
    if variant not in MODEL_VARIANTS:
        raise ValueError(f"not a model variant: {variant!r}")
    # The runtime's wording; its tags also choose a beat-grid model's tempo.
    words = (runtime_text(model, clip, clip.story_start_s, clip.story_duration_s)
             if text == "runtime" or model.config.unet.beat_grid else None)
    if text == "runtime":
        caption, tags, story_text = words.caption_emb, words.tags_emb, words.story_text
    else:
        caption, tags, story_text = clip.caption, clip.tags_emb, clip.story_text
    features = None
    if variant not in WITHOUT_ADAPTERS:
        features, _ = model.aligner(aligner_input(clip.aligner, clip.trans_prob))
    grid, bpm = None, math.nan
    if model.config.unet.beat_grid and features is not None:  # only the adapters read the grid
        bpm, beats = clip_tempo(model, clip, tempo, words)
        frames = model.config.latent_frames(clip.duration_s)
        grid = torch.from_numpy(beat_grid(beats, frames, model.config.latent_frames_per_second))[None]
    saved = model.unet.use_storyboard_mask
    model.unet.use_storyboard_mask = saved and variant not in WITHOUT_MASK
    try:
        out = generate(
            model,
            torch.from_numpy(caption)[None],
            torch.from_numpy(tags)[None],
            torch.from_numpy(story_text)[None],
            clip_story_visual(model, clip)[None],
            torch.from_numpy(clip.story_start_s)[None],
            torch.from_numpy(clip.story_duration_s)[None],
            clip.duration_s,
            aligner_features=features,
            steps=steps,
            guidance=guidance,
            seed=seed,
            beat_grid=grid,
        )
    finally:
        model.unet.use_storyboard_mask = saved
    return out.waveform[0].float().numpy(), bpm


def evaluate(checkpoint: str, cache_dir: str, count: int = 100, steps: int | None = None,
             guidance: float | None = None, variants: tuple[str, ...] = ALL_VARIANTS, seed: int = 0,
             text: str = "runtime", png_dir: str | None = None, png_clips: int = 2,
             log=None, guide_rhythm: bool | None = None, rhythm_gain: float | None = None,
             tempo: str = "runtime") -> dict:
    """Score ``variants`` on the first ``count`` clips of ``cache_dir``; returns rows and means."""
    from vem.runtime.plot import write_spectrogram_png

    unknown = [v for v in variants if v not in ALL_VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(ALL_VARIANTS)}")
    model = load_checkpoint(checkpoint).float().eval()
    if guide_rhythm is not None:  # default: the config's (`DiffusionConfig.guide_rhythm`)
        model.config.diffusion.guide_rhythm = guide_rhythm
    if rhythm_gain is not None:  # default: the config's (`DiffusionConfig.rhythm_gain`)
        model.config.diffusion.rhythm_gain = rhythm_gain
    rate = model.config.audio.sample_rate
    clips = load_cache(cache_dir)[:count]
    if len(clips) < 2 and "shuffled" in variants:
        raise ValueError("the shuffled row needs at least 2 clips")
    reference_beats = [track_beats(c.wave, rate, BEAT_TRACKER) for c in clips]
    rows = []
    for i, clip in enumerate(clips):
        ref_wave, ref_beats = clip.wave, reference_beats[i]
        for variant in variants:
            if variant == "ground_truth":
                wave, beats = ref_wave, ref_beats
            elif variant == "shuffled":
                j = (i + 1) % len(clips)
                wave = np.resize(clips[j].wave, len(ref_wave))  # loops the other clip's music if shorter
                beats = track_beats(wave, rate, BEAT_TRACKER)
            elif variant == "reconstruction":
                wave = reconstruct(model, clip)
                beats = track_beats(wave, rate, BEAT_TRACKER)
            else:
                wave, asked_bpm = generate_for_clip(model, clip, variant, steps, guidance, seed, text, tempo)
                beats = track_beats(wave, rate, BEAT_TRACKER)
                if png_dir is not None and i < png_clips and variant == "full":
                    Path(png_dir).mkdir(parents=True, exist_ok=True)
                    write_spectrogram_png(str(Path(png_dir) / f"{clip.name}_full.png"), wave, rate, clip.cuts_s, beats)
            row = {"clip": clip.name, "variant": variant, "seconds": clip.duration_s, "cuts": int(len(clip.cuts_s)),
                   **score(wave, beats, clip, ref_wave, ref_beats, rate)}
            if variant == "reconstruction":
                row["aligner_hit70"] = aligner_hit_rate(model, clip)
            if variant in MODEL_VARIANTS and not math.isnan(asked_bpm):
                # The tempo the model was asked for against the reference music's (from its
                # annotated beats), so the tempo choice's accuracy can be read off the rows.
                row["asked_bpm"] = round(float(asked_bpm), 2)
                row["reference_bpm"] = round(float(clip_tempo(model, clip, "reference")[0]), 2)
            rows.append(row)
            if log is not None:
                print(json.dumps(row), file=log, flush=True)
    return {
        "checkpoint": str(checkpoint), "cache": str(cache_dir), "clips": len(clips),
        "steps": steps or model.config.diffusion.steps,
        "guidance": guidance if guidance is not None else model.config.diffusion.guidance,
        "seed": seed, "text": text, "beat_tracker": BEAT_TRACKER,
        "tempo": tempo if model.config.unet.beat_grid else None,
        "guide_rhythm": bool(model.config.diffusion.guide_rhythm),
        "rhythm_gain": float(model.config.diffusion.rhythm_gain),
        "summary": summarise(rows, variants), "rows": rows,
    }


def _mean_ci(values: list[float]) -> tuple[float, float]:
    finite = np.array([v for v in values if not (isinstance(v, float) and math.isnan(v))], dtype=np.float64)
    if finite.size == 0:
        return math.nan, math.nan
    half = 1.96 * finite.std(ddof=1) / math.sqrt(finite.size) if finite.size > 1 else math.nan
    return float(finite.mean()), float(half)


def _row_value(row: dict, key: str) -> float:
    if key == "beats_per_s" and key not in row and row.get("seconds"):  # rows written before the key existed
        return float(row["beats"]) / float(row["seconds"])
    return float(row.get(key, math.nan))


def summarise(rows: list[dict], variants: tuple[str, ...]) -> dict:
    """Per variant: mean and 95 % half-width (normal approximation over clips) of every metric,
    plus paired differences (``PAIRED_KEYS``) between the full model and each other row."""
    keys = ("tbiou", "tbiou70", "biou", "hit70", "chance70", "mel_distance", "shot_match", "tempo_cv", "beats_per_s",
            "peak", "clipped_share", "longest_silence_s", "aligner_hit70")
    out = {}
    for variant in variants:
        mine = [r for r in rows if r["variant"] == variant]
        stats = {}
        for key in keys:
            mean, half = _mean_ci([_row_value(r, key) for r in mine])
            stats[key] = mean
            stats[key + "_ci95"] = half
        stats["max_peak"] = float(max(r["peak"] for r in mine)) if mine else math.nan
        stats["max_silence_s"] = float(max(r["longest_silence_s"] for r in mine)) if mine else math.nan
        stats["clips"] = len(mine)
        out[variant] = stats
    if "full" in variants:
        full = [r for r in rows if r["variant"] == "full"]
        for other in variants:
            if other != "full":
                theirs = [r for r in rows if r["variant"] == other]
                out.setdefault("paired_full_minus", {})[other] = paired_differences(full, theirs, PAIRED_KEYS)
    return out


def fixed_batch_eps_mse(checkpoints: list[str], cache: str | None = None, prepared: str | None = None,
                        batches: int = 60, seed: int = 0) -> dict[str, np.ndarray]:
    """The adapter phase's eps MSE of each checkpoint on the same ``batches`` training batches
    (the same crops, timesteps and noise for all, model in eval mode): training progress with the
    batch-to-batch noise of the logged per-step loss paired away. ``prepared``: a `vem-train
    --prepared` file (else the conditions are computed from ``cache`` for each checkpoint)."""
    from .data import load_cache
    from .phases import DEFAULT_SETTINGS, make_phase

    clips = load_cache(cache) if cache is not None and not (prepared and Path(prepared).is_file()) else []
    out = {}
    for path in checkpoints:
        model = load_checkpoint(path).float().eval()
        phase = make_phase("adapter", clips, model, DEFAULT_SETTINGS["adapter"], prepared=prepared)
        phase.prepare(model)
        rng = np.random.default_rng(seed)
        with torch.no_grad():
            out[path] = np.array([float(phase.loss(model, phase.sample_batch(rng))[0]) for _ in range(batches)])
    return out


def paired_differences(rows_a: list[dict], rows_b: list[dict],
                       keys: tuple[str, ...] = ("tbiou", "tbiou70", "hit70")) -> dict:
    """Per key, mean and 95 % half-width of a - b over the clips both row lists score (NaNs,
    e.g. the hit rate of a clip without cuts, left out)."""
    b_by_clip = {r["clip"]: r for r in rows_b}
    out = {}
    for key in keys:
        diffs = []
        for row in rows_a:
            other = b_by_clip.get(row["clip"])
            if other is not None:
                a, b = _row_value(row, key), _row_value(other, key)
                if not (math.isnan(a) or math.isnan(b)):
                    diffs.append(a - b)
        mean, half = _mean_ci(diffs)
        out[key] = {"mean": mean, "ci95": half}
    return out


def tempo_agreement(rows: list[dict]) -> dict:
    """For a beat-grid model's rows (``asked_bpm``, ``reference_bpm``): how often the tempo it
    was asked for is within 5 % of the reference music's (over all clips, and over the clips with
    two or more cuts, where the cuts pin it down), and how often the music's detected tempo
    (beats/s x 60) is within 10 % of the asked one (the model following its grid)."""
    rows = [r for r in rows if r.get("asked_bpm") is not None and not math.isnan(float(r["asked_bpm"]))]
    if not rows:
        return {"clips": 0}
    asked = np.array([float(r["asked_bpm"]) for r in rows])
    reference = np.array([float(r["reference_bpm"]) for r in rows])
    detected = np.array([_row_value(r, "beats_per_s") * 60.0 for r in rows])
    cut_pinned = np.array([int(r["cuts"]) >= 2 for r in rows])
    close = np.abs(asked / reference - 1.0) < 0.05
    return {"clips": len(rows), "asked_within_5pct": float(close.mean()),
            "clips_with_2_cuts": int(cut_pinned.sum()),
            "asked_within_5pct_2_cuts": float(close[cut_pinned].mean()) if cut_pinned.any() else math.nan,
            "detected_within_10pct_of_asked": float(np.mean(np.abs(detected / asked - 1.0) < 0.10))}


def beat_density_agreement(rows_a: list[dict], rows_b: list[dict]) -> dict:
    """How far A's music follows B's tempo, clip by clip: mean beats per second of each, their
    correlation over the common clips, and in how many clips A has over 1.5 x B's beats (a
    doubled tempo reads as ~2)."""
    b_by_clip = {r["clip"]: r for r in rows_b}
    pairs = [(_row_value(r, "beats_per_s"), _row_value(b_by_clip[r["clip"]], "beats_per_s"))
             for r in rows_a if r["clip"] in b_by_clip]
    pairs = np.array([p for p in pairs if not (math.isnan(p[0]) or math.isnan(p[1]))]).reshape(-1, 2)
    if len(pairs) < 2 or pairs[:, 0].std() == 0 or pairs[:, 1].std() == 0:
        correlation = math.nan
    else:
        correlation = float(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1])
    return {"clips": len(pairs), "a_mean": float(pairs[:, 0].mean()) if len(pairs) else math.nan,
            "b_mean": float(pairs[:, 1].mean()) if len(pairs) else math.nan, "correlation": correlation,
            "over_1_5": int(np.sum(pairs[:, 0] > 1.5 * pairs[:, 1]))}


def combine(results: list[dict], replace: bool = False) -> dict:
    """One result from several runs over the same clips (e.g. the music rows, then the model rows
    of a newer checkpoint); a (clip, variant) row given twice is an error unless ``replace``, where
    a later result's row replaces the earlier one (an old table updated with a new checkpoint's
    model rows)."""
    by_key: dict[tuple[str, str], dict] = {}
    for result in results:
        for row in result["rows"]:
            key = (row["clip"], row["variant"])
            if key in by_key and not replace:
                raise ValueError(f"row {key} appears in more than one result")
            by_key[key] = row
    rows = list(by_key.values())
    variants = tuple(v for v in ALL_VARIANTS if any(r["variant"] == v for r in rows))
    return {"combined": [{k: v for k, v in r.items() if k not in ("rows", "summary")} for r in results],
            "clips": len({r["clip"] for r in rows}), "summary": summarise(rows, variants), "rows": rows}


def markdown_table(result: dict) -> str:
    """The README table (docs/paper.md Table 4 layout) from an `evaluate` result."""
    summary = result["summary"]

    def cell(stats: dict, key: str, digits: int = 3) -> str:
        value, half = stats.get(key, math.nan), stats.get(key + "_ci95", math.nan)
        if value is None or math.isnan(value):
            return "–"
        return f"{value:.{digits}f} ± {half:.{digits}f}" if half == half else f"{value:.{digits}f}"

    lines = ["| music | BIoU ↑ | TBIoU ↑ | TBIoU@70 ms ↑ | hit@70 ms ↑ (chance) | mel distance ↓ | shot match ↑ |"
             " beat-interval CV | beats/s | max peak | longest silence (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for variant in ALL_VARIANTS:
        if variant not in summary:
            continue
        s = summary[variant]
        lines.append(f"| {LABELS[variant]} | {cell(s, 'biou')} | {cell(s, 'tbiou')} | {cell(s, 'tbiou70')} | {cell(s, 'hit70')} "
                     f"({s['chance70']:.3f}) | {cell(s, 'mel_distance')} | {cell(s, 'shot_match')} | {cell(s, 'tempo_cv')} | "
                     f"{cell(s, 'beats_per_s', 2)} | "
                     f"{s['max_peak']:.3f} | {s['max_silence_s']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m vem.training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", help="a VeM checkpoint (safetensors)")
    parser.add_argument("cache", nargs="?", help="a `vem-train cache` folder of held-out clips")
    parser.add_argument("--replace", action="store_true",
                        help="with --combine: a later JSON's (clip, variant) rows replace an earlier one's")
    parser.add_argument("--combine", nargs="+", default=None, metavar="JSON",
                        help="instead of evaluating, join earlier --json results (rows of other variants "
                             "or clips, e.g. the music rows and the model rows run apart) into one table")
    parser.add_argument("--count", type=int, default=100, help="clips (default: 100)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the config's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the config's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default=",".join(ALL_VARIANTS),
                        help=f"comma-separated rows (default: all of {','.join(ALL_VARIANTS)})")
    parser.add_argument("--text", choices=("runtime", "reference"), default="runtime",
                        help="wording of the text conditions (default: the runtime's)")
    parser.add_argument("--tempo", choices=("runtime", "reference"), default="runtime",
                        help="a beat-grid model's tempo: the one vem-run would choose from the cuts and the predicted "
                             "tags (default), or the reference music's beats (an oracle)")
    parser.add_argument("--png-dir", default=None, help="write spectrogram PNGs of the full model's first clips here")
    parser.add_argument("--json", default=None, help="write the rows and the summary here")
    parser.add_argument("--markdown", default=None, help="write the table here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--paired", nargs=2, default=None, metavar=("A", "B"),
                        help="instead of evaluating, print the paired differences A - B of the "
                             "--variant rows of two --json results over their common clips")
    parser.add_argument("--variant", default="full", help="the rows --paired compares (default: full)")
    parser.add_argument("--against", default=None,
                        help="--paired: B's rows of this variant instead (e.g. A's full against B's ground_truth)")
    parser.add_argument("--no-guide-rhythm", action="store_true",
                        help="keep the TB adapters in guidance's null branch (the behaviour before "
                             "DiffusionConfig.guide_rhythm), for comparison")
    parser.add_argument("--rhythm-gain", type=float, default=None,
                        help="weight of the TB adapters in the conditional branch (default: the config's "
                             "DiffusionConfig.rhythm_gain)")
    parser.add_argument("--eps-mse", nargs="+", default=None, metavar="CKPT",
                        help="instead of evaluating, print each checkpoint's adapter-phase eps MSE on the same "
                             "--batches training batches (from the cache argument or --prepared) and the paired "
                             "difference to the first")
    parser.add_argument("--prepared", default=None, help="with --eps-mse: a `vem-train --prepared` file")
    parser.add_argument("--batches", type=int, default=60, help="with --eps-mse: batches (default: 60)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.eps_mse:
        source = args.cache or args.checkpoint  # `--eps-mse A B CACHE` reads the folder positionally
        try:
            losses = fixed_batch_eps_mse(args.eps_mse, source, args.prepared, args.batches, args.seed)
        except (OSError, ValueError) as exc:
            print(f"evaluate: {exc}", file=sys.stderr)
            return 2
        first = args.eps_mse[0]
        print(f"| checkpoint | eps MSE, {args.batches} batches (seed {args.seed}) | minus {Path(first).name} |\n|---|---:|---:|")
        for path, values in losses.items():
            diff = values - losses[first]
            half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            print(f"| {path} | {values.mean():.5f} | {diff.mean():+.5f} ± {half:.5f} |")
        return 0
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    if args.paired:
        against = args.against or args.variant
        try:
            a, b = ([r for r in json.loads(Path(p).read_text())["rows"] if r["variant"] == v]
                    for p, v in zip(args.paired, (args.variant, against)))
        except (OSError, ValueError, KeyError) as exc:
            print(f"evaluate: {exc}", file=sys.stderr)
            return 2
        label = args.variant if against == args.variant else f"{args.variant} - {against}"
        print(f"| {label}: A - B | mean | 95 % half-width |\n|---|---:|---:|")
        for key, stats in paired_differences(a, b, PAIRED_KEYS).items():
            print(f"| {key} | {stats['mean']:+.3f} | {stats['ci95']:.3f} |")
        tempo = tempo_agreement(a)
        if tempo["clips"]:
            print(f"tempo asked of A: within 5 % of the reference's in {tempo['asked_within_5pct']:.2f} of "
                  f"{tempo['clips']} clips ({tempo['asked_within_5pct_2_cuts']:.2f} of the {tempo['clips_with_2_cuts']} "
                  f"with two or more cuts); A's detected tempo within 10 % of the asked one in "
                  f"{tempo['detected_within_10pct_of_asked']:.2f}")
        density = beat_density_agreement(a, b)
        print(f"beats/s: A {density['a_mean']:.2f}, B {density['b_mean']:.2f}; per-clip correlation "
              f"{density['correlation']:.2f}; A over 1.5 x B's beats in {density['over_1_5']} of {density['clips']} clips")
        return 0
    try:
        if args.combine:
            result = combine([json.loads(Path(p).read_text()) for p in args.combine], replace=args.replace)
        elif args.checkpoint is None or args.cache is None:
            raise ValueError("give a checkpoint and a cache folder, or --combine")
        else:
            result = evaluate(args.checkpoint, args.cache, args.count, args.steps, args.guidance, variants,
                              args.seed, args.text, args.png_dir, log=sys.stderr,
                              guide_rhythm=False if args.no_guide_rhythm else None, rhythm_gain=args.rhythm_gain,
                              tempo=args.tempo)
    except (ValueError, FileNotFoundError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    table = markdown_table(result)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
