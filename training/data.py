"""The training cache: every vem-synth clip decoded once into one ``.npz``.

Decoding video, running TransNetV2 and computing log-mels are far slower than the demo model's
training steps on a 2-core CPU, so `build_cache` does them once per clip. One file per clip
(``<clip>.npz``) holds, with T = frames at 16 fps (vem.runtime.video.decode_frames, the
runtime's own decoder, so training sees the pixels inference will see):

- ``visual``       uint8 [T, S, S, 3]  RGB at config.visual.frame_size
- ``aligner``      uint8 [T, A, A, 3]  RGB at config.aligner.frame_size (omitted when A == S:
                                       the reader then returns ``visual``)
- ``trans_prob``   float32 [T]  TransNetV2's single-frame probability (runtime TransitionDetector
                                on the exported ONNX graph; the aligner's 4th input channel)
- ``target``       float32 [T]  1 where the frame holds a ground-truth transition that lies on a
                                beat (|cut - nearest beat| <= one 16 fps frame): Eq. 9's target
- ``wave``         float32 [n]  the music at 16 kHz; ``mel`` float32 [n_mels, n // hop]
                                (vem.runtime.mel.log_mel)
- ``cuts_s``, ``beats_s``  float64  ground-truth transition and beat times
- ``story_start_s``, ``story_duration_s`` float32 [N], ``story_text`` float32 [N, D_t]: the
  ground-truth storyboards and their description embeddings (HashedTextEncoder)
- ``caption`` float32 [D_t], ``tags_emb`` float32 [D_t] (encode_tags), ``tags_hot`` float32
  [num_tags] (multi-hot over TAG_VOCABULARY), ``duration_s`` float64 scalar.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vem.runtime.config import VemConfig
from vem.runtime.mel import log_mel
from vem.runtime.parse_schema import load_parse
from vem.runtime.tags import TAG_INDEX
from vem.runtime.text import HashedTextEncoder

CACHE_VERSION = 1


def cut_beat_target(cuts_s: np.ndarray, beats_s: np.ndarray, num_frames: int, fps: float = 16.0) -> np.ndarray:
    """Eq. 9's per-frame target: frame round(cut * fps) is 1 when a beat lies within one frame
    (1 / fps) of the cut. Returns float32 [num_frames]."""
    target = np.zeros(num_frames, dtype=np.float32)
    beats = np.asarray(beats_s, dtype=np.float64)
    for cut in np.asarray(cuts_s, dtype=np.float64):
        if beats.size and np.min(np.abs(beats - cut)) <= 1.0 / fps + 1e-9:
            frame = int(round(cut * fps))
            if 0 <= frame < num_frames:
                target[frame] = 1.0
    return target


def list_clips(data_dir: str | os.PathLike) -> list[Path]:
    """The vem-synth clips of a folder: every ``*.json`` parse with its ``.mp4`` and ``.wav``."""
    data = Path(data_dir)
    if not data.is_dir():
        raise ValueError(f"data folder not found: {data}")
    clips = [p for p in sorted(data.glob("*.json")) if p.with_suffix(".mp4").is_file() and p.with_suffix(".wav").is_file()]
    if not clips:
        raise ValueError(f"{data}: no vem-synth clips (name.json + name.mp4 + name.wav)")
    return clips


def cache_clip(parse_path: Path, out_path: Path, config: VemConfig, detector, encoder: HashedTextEncoder) -> None:
    from vem.runtime.audio import read_audio
    from vem.runtime.video import decode_frames

    parse = load_parse(parse_path)
    vis, ali = config.visual.frame_size, config.aligner.frame_size
    sizes = {"visual": (vis, vis), "transitions": tuple(config.video.transition_size)}
    if ali != vis:
        sizes["aligner"] = (ali, ali)
    decoded = decode_frames(parse_path.with_suffix(".mp4"), fps=config.video.fps, sizes=sizes)
    num_frames = decoded.num_frames
    trans_prob = detector.predict(decoded.frames["transitions"]).astype(np.float32)

    wave, rate = read_audio(parse_path.with_suffix(".wav"), mono=True)
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if rate != config.audio.sample_rate:
        raise ValueError(f"{parse_path.with_suffix('.wav')}: sample rate {rate}, expected {config.audio.sample_rate}")
    mel = log_mel(wave, config.audio)

    cuts = np.asarray(parse.frame.transitions_s, dtype=np.float64)
    beats = np.asarray(parse.music.beats_s if parse.music else [], dtype=np.float64)
    boards = parse.storyboards
    tags_hot = np.zeros(config.condition.num_tags, dtype=np.float32)
    for tag in parse.global_.tags:
        if tag in TAG_INDEX:
            tags_hot[TAG_INDEX[tag]] = 1.0
    arrays = {
        "version": np.int64(CACHE_VERSION),
        "visual": decoded.frames["visual"],
        "trans_prob": trans_prob,
        "target": cut_beat_target(cuts, beats, num_frames, config.video.fps),
        "wave": wave,
        "mel": mel,
        "cuts_s": cuts,
        "beats_s": beats,
        "story_start_s": np.array([b.start_s for b in boards], dtype=np.float32),
        "story_duration_s": np.array([b.duration_s for b in boards], dtype=np.float32),
        "story_text": encoder.encode_batch([b.description for b in boards]).astype(np.float32),
        "caption": encoder.encode(parse.global_.caption),
        "tags_emb": encoder.encode_tags(parse.global_.tags),
        "tags_hot": tags_hot,
        "duration_s": np.float64(min(parse.video.duration_s, num_frames / config.video.fps, len(wave) / rate)),
    }
    if "aligner" in decoded.frames:
        arrays["aligner"] = decoded.frames["aligner"]
    tmp = out_path.with_name(out_path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out_path)


def _worker(args) -> str:
    parse_path, out_path, config_json, onnx_path = args
    config = VemConfig.from_json(config_json)
    detector = _detector(onnx_path)
    cache_clip(Path(parse_path), Path(out_path), config, detector, HashedTextEncoder(config.condition.text_dim))
    return str(out_path)


_DETECTORS: dict[str, object] = {}


def _detector(onnx_path: str):
    from vem.runtime.transitions import TransitionDetector

    if onnx_path not in _DETECTORS:
        _DETECTORS[onnx_path] = TransitionDetector(onnx_path, threads=1)
    return _DETECTORS[onnx_path]


def ensure_transitions_onnx(path: str | os.PathLike) -> Path:
    """The TransNetV2 graph at ``path``/transitions.onnx, exported (fp32) if it is missing."""
    folder = Path(path)
    onnx_path = folder / "transitions.onnx"
    if not onnx_path.is_file():
        from vem.export.transitions import export_transitions

        export_transitions(folder, fp16=False)
    return onnx_path


def build_cache(data_dir: str | os.PathLike, cache_dir: str | os.PathLike, config: VemConfig,
                transitions_onnx: str | os.PathLike, workers: int = 2, progress: bool = True,
                limit: int | None = None) -> list[Path]:
    """Cache the clips of ``data_dir`` (the first ``limit`` in name order, or all) into
    ``cache_dir``; clips already cached are skipped, so an interrupted run resumes. Returns the
    cache files in clip order."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    clips = list_clips(data_dir)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        clips = clips[:limit]
    outputs = [cache / (c.stem + ".npz") for c in clips]
    todo = [(str(c), str(o), config.to_json(), str(transitions_onnx)) for c, o in zip(clips, outputs) if not o.is_file()]
    (cache / "cache.json").write_text(json.dumps({"version": CACHE_VERSION, "data": str(data_dir),
                                                   "config": config.name, "clips": len(clips)}))
    if todo:
        bar = tqdm(total=len(todo), desc="cache", disable=not progress, file=sys.stderr)
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(_worker, todo):
                    bar.update(1)
        else:
            for item in todo:
                _worker(item)
                bar.update(1)
        bar.close()
    return outputs


@dataclass
class Clip:
    """One cached clip in memory (arrays as stored; frames stay uint8)."""

    name: str
    visual: np.ndarray
    aligner: np.ndarray
    trans_prob: np.ndarray
    target: np.ndarray
    wave: np.ndarray
    mel: np.ndarray
    cuts_s: np.ndarray
    beats_s: np.ndarray
    story_start_s: np.ndarray
    story_duration_s: np.ndarray
    story_text: np.ndarray
    caption: np.ndarray
    tags_emb: np.ndarray
    tags_hot: np.ndarray
    duration_s: float


def load_clip(path: str | os.PathLike) -> Clip:
    with np.load(path) as data:
        if int(data["version"]) != CACHE_VERSION:
            raise ValueError(f"{path}: cache version {int(data['version'])}, expected {CACHE_VERSION}; rebuild the cache")
        visual = data["visual"]
        return Clip(
            name=Path(path).stem,
            visual=visual,
            aligner=data["aligner"] if "aligner" in data.files else visual,
            trans_prob=data["trans_prob"],
            target=data["target"],
            wave=data["wave"],
            mel=data["mel"],
            cuts_s=data["cuts_s"],
            beats_s=data["beats_s"],
            story_start_s=data["story_start_s"],
            story_duration_s=data["story_duration_s"],
            story_text=data["story_text"],
            caption=data["caption"],
            tags_emb=data["tags_emb"],
            tags_hot=data["tags_hot"],
            duration_s=float(data["duration_s"]),
        )


def load_cache(cache_dir: str | os.PathLike) -> list[Clip]:
    files = sorted(Path(cache_dir).glob("*.npz"))
    files = [f for f in files if not f.name.endswith(".tmp.npz")]
    if not files:
        raise ValueError(f"{cache_dir}: no cached clips; run `vem-train cache` first")
    return [load_clip(f) for f in files]
