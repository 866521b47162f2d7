"""The VeM pipeline, torch-free: video in, soundtrack and report out.

    from vem.runtime import Pipeline
    pipeline = Pipeline.load()                 # the shipped bundle, the fastest valid backend
    result = pipeline.generate("clip.mp4", seed=0)
    result.waveform, result.sample_rate, result.report

Stages (DESIGN.md), each timed into ``report["timings_s"]``:

1. decode        PyAV, 16 fps by real timestamps, scaled once per parser size
2. parse         frame level (TransNetV2 -> cut times), storyboard level (shots merged/split),
                 global level (style head -> tags, or the user's tags / caption / parse JSON)
3. condition     text embeddings, storyboard visual features, the SG-CAtt mask, TB aligner features
4. diffuse       the numpy sampler driving the guided denoiser graph (latent kept on the device)
5. decode_audio  VAE decoder -> log-mel -> vocoder -> loudness, fades, trim to the video
(6. write is the CLI's: files, mux, report, plot.)  Beats of the result and its TBIoU against the
cuts are measured afterwards ("analyse") so that every report carries its own rhythm score.

Videos longer than the bundle's window are generated in overlapping windows, each conditioned on
its own storyboards, and joined with a short crossfade centred on a beat of the earlier window.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .audio import apply_fades, normalize_loudness
from .backends import Runner, component_placement, select_backend
from .beats import track_beats
from .beats import warm_up as warm_up_beats
from .bundle import Bundle, load_bundle
from .captions import caption_from_tags, describe_storyboard, tags_from_probabilities
from .errors import BundleError, InputError, UsageError
from .guidance import bind_guided
from .metrics import rhythm_metrics
from .parse_schema import (
    FRAME_FPS,
    FrameParse,
    GlobalParse,
    Storyboard,
    VideoParse,
    parse_to_dict,
)
from .parse_schema import (
    VideoInfo as ParseVideoInfo,
)
from .sampler import NoiseSchedule, make_sampler
from .storyboard import Span, frame_storyboard_index, resample_to_latent, segment_storyboards, storyboard_mask
from .tags import TAG_VOCABULARY, normalise_tags, unknown_tags
from .tempo import MAX_BPM, MIN_BPM, TempoChoice, beat_grid, choose_tempo
from .text import HashedTextEncoder
from .transitions import TransitionDetector, cut_indicator, detect_cuts
from .video import decode_frames, probe

DEFAULT_BUNDLE = Path(__file__).resolve().parent / "assets" / "bundle"
WINDOW_OVERLAP_S = 4.0
CROSSFADE_S = 0.5
VISUAL_CHUNK_FRAMES = 256
FADE_IN_S, FADE_OUT_S = 0.05, 1.0
# A generous guard against a wrong file: beyond this the user must cut the video first.
MAX_VIDEO_SECONDS = 60 * 60.0
TEMPO_INPUT = "beat_grid"  # the denoiser input of a beat-grid bundle (`vem.runtime.tempo`)


def _manifest_sha256(bundle: Bundle) -> str | None:
    from .bundle import MANIFEST_NAME, sha256_file

    try:
        return sha256_file(Path(bundle.folder) / MANIFEST_NAME)
    except OSError:  # a Bundle built in memory
        return None


def _environment() -> dict[str, str]:
    """Versions of what computes the numbers (a different ONNX Runtime may round differently)."""
    import platform

    import av
    import onnxruntime

    return {"python": platform.python_version(), "numpy": np.__version__, "onnxruntime": onnxruntime.__version__,
            "av": av.__version__, "machine": platform.machine()}


def default_bundle_path() -> Path:
    override = os.environ.get("VEM_BUNDLE")
    return Path(override) if override else DEFAULT_BUNDLE


@dataclass
class Generation:
    waveform: np.ndarray  # float32 [samples], mono, trimmed to the video
    sample_rate: int
    parse: VideoParse
    report: dict[str, Any]
    transition_probabilities: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))


class StageTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


@dataclass
class _VideoFeatures:
    """Everything the parse and condition stages read from the decoded video."""

    duration_s: float
    fps: float
    frame_times_s: np.ndarray  # [T] at 16 fps
    aligner_frames: np.ndarray  # uint8 [T, A, A, 3]
    transition_probabilities: np.ndarray  # float32 [T]: detected, or 0/1 from a user's parse
    frame_embeddings: np.ndarray  # float32 [T, D_v]
    tag_probabilities: np.ndarray  # float32 [T, num_tags]


class Pipeline:
    """A loaded bundle on a backend. Build with `Pipeline.load`; call `generate` per video."""

    def __init__(self, bundle: Bundle, runners: dict[str, Runner], precision: str, backend_reason: str):
        self.bundle = bundle
        self.config = bundle.manifest.config
        self.runners = runners
        self.precision = precision
        self.backend_reason = backend_reason
        self.backend_name = runners["denoiser"].backend
        text = bundle.manifest.text_encoder
        if text.get("kind") != "hashed-bow" or text.get("dim") != self.config.condition.text_dim:
            raise BundleError(f"bundle needs text encoder {text}, which this runtime does not have",
                              hint="upgrade vem, or re-export the bundle with this version")
        self.text_encoder = HashedTextEncoder(self.config.condition.text_dim)
        if list(bundle.manifest.tags) != list(TAG_VOCABULARY):
            raise BundleError("bundle's tag vocabulary differs from this runtime's",
                              hint="re-export the bundle with this version of vem")
        self.detector = TransitionDetector(runners["transitions"])
        self.schedule = NoiseSchedule.from_config(self.config.diffusion)

    @classmethod
    def load(
        cls,
        bundle: str | os.PathLike | Bundle | None = None,
        *,
        backend: str = "auto",
        precision: str | None = None,
        threads: int | None = None,
    ) -> Pipeline:
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle if bundle is not None else default_bundle_path())
        available = bundle.manifest.precisions()
        if precision is None:
            # An int8 bundle (fp32 graphs + the int8 ones that passed calibration) runs at int8.
            precision = "int8" if "int8" in available else available[0]
        elif precision not in ("fp32", "fp16", "int8"):
            raise UsageError(f"unknown precision {precision!r}; choose fp32, fp16 or int8")
        elif precision not in available:
            raise BundleError(f"bundle {bundle.folder} has no {precision} graphs (it has {', '.join(available)})",
                              hint=f"export them with `vem-export --precision {precision}`")
        choice = select_backend(backend, bundle, precision=precision, threads=threads)
        runners = {
            name: choice.backend.load_component(bundle, name, precision)
            for name in ("transitions", "visual", "aligner", "denoiser", "vae_decoder", "vocoder")
        }
        return cls(bundle, runners, precision, choice.reason)

    # ---- the whole job -------------------------------------------------------------------------
    def generate(
        self,
        video: str | os.PathLike,
        *,
        parse: VideoParse | None = None,
        tags: list[str] | str | None = None,
        caption: str | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
        sampler: str | None = None,
        progress: Callable[[int, int], None] | bool | None = None,
        max_video_seconds: float = MAX_VIDEO_SECONDS,
        bpm: float | None = None,
    ) -> Generation:
        timer = StageTimer()
        started = time.perf_counter()
        warm_up_beats()  # the analysis at the end needs librosa's tracker compiled
        sampler_name = sampler or self.bundle.manifest.sampler["name"]
        steps = int(steps or self.bundle.manifest.sampler["steps"])
        guidance = float(self.bundle.manifest.sampler["guidance"] if guidance is None else guidance)
        if steps < 1:
            raise UsageError(f"--steps must be >= 1, got {steps}")
        if bpm is not None and not (math.isfinite(bpm) and MIN_BPM <= bpm <= MAX_BPM):
            raise UsageError(f"--bpm must be between {MIN_BPM:g} and {MAX_BPM:g}, got {bpm:g}")
        if bpm is not None and TEMPO_INPUT not in self.runners["denoiser"].input_names:
            raise UsageError("--bpm needs a bundle whose model takes a beat grid; this one chooses its own tempo",
                             hint="re-export the bundle from a beat-grid checkpoint (vem-train --beat-grid)")
        user_tags = None
        if tags is not None:
            user_tags = normalise_tags(tags)
            unknown = unknown_tags(user_tags)
            if unknown:
                raise UsageError(f"unknown tag(s) {', '.join(unknown)}; known tags: {', '.join(TAG_VOCABULARY)}")

        with timer("decode"):
            info = probe(video)
            if info.duration_s > max_video_seconds:
                raise InputError(f"{video}: {info.duration_s:.0f} s is longer than the limit of "
                                 f"{max_video_seconds:.0f} s", hint="cut the video, or raise the limit "
                                 "(vem-run --max-seconds)")
            config = self.config
            decoded = decode_frames(
                video,
                fps=config.video.fps,
                sizes={
                    "transitions": tuple(config.video.transition_size),
                    "visual": (config.visual.frame_size, config.visual.frame_size),
                    "aligner": (config.aligner.frame_size, config.aligner.frame_size),
                },
                max_seconds=max_video_seconds,
            )
            duration = float(decoded.duration_s or info.duration_s)
            if decoded.num_frames == 0 or not duration > 0:
                raise InputError(f"{video}: no video frames could be decoded")

        with timer("parse"):
            features = self._video_features(decoded, duration)
            if parse is None:
                features.transition_probabilities = self.detector.predict(decoded.frames["transitions"])
            video_parse = self._parse(str(video), info.fps, features, parse, user_tags, caption)
            if parse is not None:
                # The user's (possibly corrected) cuts drive the rhythm path too; the detector
                # does not run at all.
                features.transition_probabilities = cut_indicator(
                    np.asarray(video_parse.frame.transitions_s), len(features.frame_times_s), config.video.fps
                ).astype(np.float32)

            # One tempo for the whole video (every window's grid is a slice of it), from the
            # parse's cuts and pace word, or the user's --bpm. Bundles whose denoiser has no
            # beat-grid input choose their own tempo, as before.
            tempo = None
            if TEMPO_INPUT in self.runners["denoiser"].input_names:
                tempo = choose_tempo(video_parse.frame.transitions_s, video_parse.global_.tags, bpm)

        windows = self._windows(duration)
        pieces: list[np.ndarray] = []
        for index, (start_s, end_s) in enumerate(windows):
            with timer("condition"):
                inputs = self._condition(features, video_parse, start_s, end_s, tempo)
            with timer("diffuse"):
                latent = self._diffuse(inputs, steps, guidance, seed + index, sampler_name, progress,
                                       label=f"window {index + 1}/{len(windows)}" if len(windows) > 1 else "")
            with timer("decode_audio"):
                pieces.append(self._decode_audio(latent, end_s - start_s, timer))
        with timer("decode_audio"):
            waveform = self._join(pieces, windows)
            waveform = self._finish(waveform, duration)

        with timer("analyse"):
            sample_rate = config.audio.sample_rate
            beats = track_beats(waveform, sample_rate)
            metrics = rhythm_metrics(video_parse.frame.transitions_s, beats, duration)
        timings = dict(timer.seconds)
        timings["total"] = time.perf_counter() - started
        report = {
            "vem_version": __version__,
            "video": {"path": str(video), "duration_s": duration, "fps": info.fps,
                      "width": info.width, "height": info.height, "rotation": info.rotation,
                      "codec": info.codec, "frames_at_16fps": int(decoded.num_frames)},
            # The full three-level parse (vem-eval and --parse read it back), plus the cut times
            # at the top for a quick look.
            "parse": {**parse_to_dict(video_parse), "transitions_s": list(video_parse.frame.transitions_s),
                      "source": "user" if parse is not None else "detected"},
            "music": {"files": [], "duration_s": len(waveform) / sample_rate, "sample_rate": sample_rate,
                      "beats_s": [float(b) for b in beats]},
            "metrics": {key: (None if isinstance(value, float) and math.isnan(value) else value)
                        for key, value in metrics.items()},
            "timings_s": timings,
            "windows_s": [list(w) for w in windows],
            "backend": self.backend_name,
            "backend_reason": self.backend_reason,
            # Which component runs where and why (backend, provider, device, reason, fallbacks).
            "components": component_placement(self.runners, self.backend_reason),
            "provider": self.runners["denoiser"].provider,
            "precision": self.precision,
            # With the manifest's hash (which pins every graph's hash) and the fields below, the
            # same backend reproduces this waveform bit for bit (tests/test_reproducibility.py).
            "bundle": {"path": str(self.bundle.folder), "config": self.config.name,
                       "manifest_sha256": _manifest_sha256(self.bundle),
                       "denoiser_sha256": self.bundle.manifest.component("denoiser", self.precision).sha256},
            "seed": seed,
            "steps": steps,
            "guidance": guidance,
            "sampler": sampler_name,
            "overrides": {"tags": user_tags, "caption": caption, "bpm": bpm},
            # The tempo the model was asked for (None: a bundle without the beat-grid input).
            "tempo": None if tempo is None else {"bpm": tempo.bpm, "anchor_s": round(tempo.anchor_s, 4),
                                                 "source": tempo.source},
            "environment": _environment(),
            "warnings": list(decoded.warnings),
        }
        return Generation(waveform, sample_rate, video_parse, report, features.transition_probabilities)

    # ---- stage 2: parse ------------------------------------------------------------------------
    def _video_features(self, decoded: Any, duration: float) -> _VideoFeatures:
        """Visual embeddings and tag probabilities per 16 fps frame (transition probabilities are
        filled in by the parse stage: detected, or taken from the user's parse)."""
        visual = self.runners["visual"]
        embeddings, logits = [], []
        frames = decoded.frames["visual"]
        for start in range(0, len(frames), VISUAL_CHUNK_FRAMES):
            out = visual.run({"frames": np.ascontiguousarray(frames[start:start + VISUAL_CHUNK_FRAMES])})
            embeddings.append(out["frame_embeddings"])
            logits.append(out["tag_logits"])
        tag_logits = np.concatenate(logits).astype(np.float32)
        return _VideoFeatures(
            duration_s=duration,
            fps=self.config.video.fps,
            frame_times_s=np.asarray(decoded.times_s, dtype=np.float64),
            aligner_frames=decoded.frames["aligner"],
            transition_probabilities=np.zeros(len(decoded.times_s), dtype=np.float32),
            frame_embeddings=np.concatenate(embeddings).astype(np.float32),
            tag_probabilities=1.0 / (1.0 + np.exp(-tag_logits)),
        )

    def _parse(self, path: str, source_fps: float, features: _VideoFeatures, given: VideoParse | None,
               user_tags: list[str] | None, caption: str | None) -> VideoParse:
        duration = features.duration_s
        if given is not None:
            if given.video.duration_s and given.video.duration_s > duration + 0.5:
                raise InputError(f"the parse describes {given.video.duration_s:.2f} s but the video lasts "
                                 f"{duration:.2f} s", hint="was it written for another video?")
            tags = user_tags or list(given.global_.tags) or tags_from_probabilities(features.tag_probabilities.mean(0))
            text = caption or given.global_.caption or caption_from_tags(tags)
            storyboards = [s for s in given.storyboards if s.start_s < duration]
            if not storyboards:
                storyboards = self._storyboards(segment_storyboards(given.frame.transitions_s, duration), features)
            transitions = [t for t in given.frame.transitions_s if t < duration]
            frame = FrameParse(fps=FRAME_FPS, transitions_s=transitions,
                               transition_frames=[int(round(t * FRAME_FPS)) for t in transitions],
                               transitions=given.frame.transitions)
            return VideoParse(ParseVideoInfo(path, duration, source_fps), GlobalParse(text, tags),
                              storyboards, frame, given.music, extra=dict(given.extra))
        cuts = detect_cuts(features.transition_probabilities, fps=features.fps)
        cuts = [float(t) for t in cuts if t < duration]
        windows = len(self._windows(duration))
        spans = segment_storyboards(cuts, duration, max_storyboards=self.config.condition.max_storyboards * windows)
        tags = user_tags or tags_from_probabilities(features.tag_probabilities.mean(0))
        frame = FrameParse(fps=FRAME_FPS, transitions_s=cuts, transition_frames=[int(round(t * FRAME_FPS)) for t in cuts])
        return VideoParse(ParseVideoInfo(path, duration, source_fps),
                          GlobalParse(caption or caption_from_tags(tags), tags),
                          self._storyboards(spans, features), frame)

    def _storyboards(self, spans: list[Span], features: _VideoFeatures) -> list[Storyboard]:
        index = frame_storyboard_index(features.frame_times_s, spans)
        storyboards = []
        for i, span in enumerate(spans):
            members = index == i
            probabilities = (features.tag_probabilities[members] if members.any()
                             else features.tag_probabilities).mean(0)
            storyboards.append(Storyboard(span.start_s, span.duration_s,
                                          describe_storyboard(i, len(spans), tags_from_probabilities(probabilities))))
        return storyboards

    # ---- stage 3: condition --------------------------------------------------------------------
    def _windows(self, duration: float) -> list[tuple[float, float]]:
        window = float(self.config.max_seconds)
        if duration <= window:
            return [(0.0, duration)]
        # As few windows as fit the bundle's maximum, all of one length, overlapping by
        # WINDOW_OVERLAP_S (cost is linear in length, so equal shorter windows beat a full one
        # plus a sliver).
        count = math.ceil((duration - WINDOW_OVERLAP_S) / (window - WINDOW_OVERLAP_S))
        length = (duration + (count - 1) * WINDOW_OVERLAP_S) / count
        hop = length - WINDOW_OVERLAP_S
        return [(i * hop, min(duration, i * hop + length)) for i in range(count)]

    def _condition(self, features: _VideoFeatures, video_parse: VideoParse, start_s: float,
                   end_s: float, tempo: TempoChoice | None = None) -> dict[str, np.ndarray]:
        config = self.config
        seconds = end_s - start_s
        frames = config.latent_frames(seconds)
        # Storyboards of this window, clipped and shifted to its time origin.
        spans = []
        for storyboard in video_parse.storyboards:
            begin, end = max(storyboard.start_s, start_s), min(storyboard.end_s, end_s)
            if end - begin > 1e-3:
                spans.append((begin - start_s, end - begin, storyboard))
        if len(spans) > config.condition.max_storyboards:
            # More shots than the storyboard axis holds (a long window of fast cuts): merge them
            # by the same rule as the parse, each merged span keeping its first shot's words.
            merged = segment_storyboards([begin for begin, _, _ in spans[1:]], seconds,
                                         max_storyboards=config.condition.max_storyboards)
            spans = [(m.start_s, m.duration_s, next(s for b, length, s in spans if b + length > m.start_s))
                     for m in merged]
        spans = spans or [(0.0, seconds, video_parse.storyboards[0])]
        in_window = (features.frame_times_s >= start_s) & (features.frame_times_s < end_s)
        if not in_window.any():
            in_window[np.argmin(np.abs(features.frame_times_s - start_s))] = True
        window_times = features.frame_times_s[in_window] - start_s
        story_visual = []
        for begin, length, storyboard in spans:
            if storyboard.visual is not None and len(storyboard.visual) == config.condition.visual_dim:
                story_visual.append(np.asarray(storyboard.visual, dtype=np.float32))
                continue
            members = (window_times >= begin) & (window_times < begin + length)
            pool = features.frame_embeddings[in_window][members] if members.any() else features.frame_embeddings[in_window]
            story_visual.append(pool.mean(0))
        start = np.array([[s[0] for s in spans]], dtype=np.float32)
        duration = np.array([[s[1] for s in spans]], dtype=np.float32)
        aligner = self.runners["aligner"].run({
            "frames": np.ascontiguousarray(features.aligner_frames[in_window][None]),
            "transition_probs": features.transition_probabilities[in_window][None].astype(np.float32),
        })["features"]
        global_ = video_parse.global_
        grid = {}
        if tempo is not None:
            grid[TEMPO_INPUT] = beat_grid(tempo.beats(end_s), frames, config.latent_frames_per_second,
                                          start_s=start_s)[None]
        return {
            **grid,
            "caption": self.text_encoder.encode(global_.caption)[None],
            "tags": self.text_encoder.encode_tags(global_.tags)[None],
            "story_text": self.text_encoder.encode_batch([s[2].description for s in spans])[None],
            "story_visual": np.stack(story_visual)[None].astype(np.float32),
            "story_start_s": start,
            "story_duration_s": duration,
            "storyboard_mask": storyboard_mask(start, duration, frames, config.latent_frames_per_second),
            "aligner_features": resample_to_latent(
                aligner.astype(np.float32), frames, config.video.fps, config.latent_frames_per_second
            ).astype(np.float32),
        }

    # ---- stage 4: diffuse ----------------------------------------------------------------------
    def _diffuse(self, inputs: dict[str, np.ndarray], steps: int, guidance: float, seed: int, sampler_name: str,
                 progress: Callable[[int, int], None] | bool | None, label: str = "") -> np.ndarray:
        config = self.config
        frames = inputs["storyboard_mask"].shape[1]
        shape = (1, config.vae.latent_channels, frames, config.latent_mel_bins)
        sampler = make_sampler(sampler_name, self.schedule, steps)
        noise = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
        denoiser = self.runners["denoiser"]
        step = bind_guided(denoiser, inputs, guidance)
        bar = None
        if progress is True:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc=f"diffuse {label}".strip(), unit="step", leave=False)
        try:
            z = denoiser.to_device(noise)
            for index, t in enumerate(sampler.timesteps):
                eps = step(z, float(t))
                z = sampler.step(eps, index, z)
                if bar is not None:
                    bar.update(1)
                elif callable(progress):
                    progress(index + 1, steps)
            return denoiser.to_host(z)
        finally:
            step.close()
            if bar is not None:
                bar.close()

    # ---- stage 5: decode audio -----------------------------------------------------------------
    def _decode_audio(self, latent: np.ndarray, seconds: float, timer: StageTimer) -> np.ndarray:
        # Sub-stages of decode_audio, kept apart for vem-bench.
        with timer("vae_decoder"):
            mel = self.runners["vae_decoder"].run({"latent": latent})["mel"]
        with timer("vocoder"):
            waveform = self.runners["vocoder"].run({"mel": mel})["waveform"][0]
        samples = int(round(seconds * self.config.audio.sample_rate))
        return np.asarray(waveform[:samples], dtype=np.float32)

    def _join(self, pieces: list[np.ndarray], windows: list[tuple[float, float]]) -> np.ndarray:
        """Overlapping windows -> one waveform, crossfaded over CROSSFADE_S centred on a beat of
        the earlier window inside the overlap (the overlap's middle if it has no beat)."""
        rate = self.config.audio.sample_rate
        out = pieces[0]
        for (prev_start, prev_end), (start, _), piece in zip(windows, windows[1:], pieces[1:]):
            overlap_begin, overlap_end = start, prev_end
            beats = track_beats(out[int((overlap_begin - prev_start) * rate):], rate) + overlap_begin
            inner = [b for b in beats if overlap_begin + CROSSFADE_S < b < overlap_end - CROSSFADE_S]
            centre = min(inner, key=lambda b: abs(b - (overlap_begin + overlap_end) / 2)) if inner \
                else (overlap_begin + overlap_end) / 2
            join = int(round(centre * rate))
            half = int(CROSSFADE_S * rate / 2)
            ramp = np.linspace(0.0, 1.0, 2 * half, dtype=np.float32)
            head = out[: join - half]
            fade = out[join - half: join + half] * (1 - ramp) + \
                piece[join - half - int(round(start * rate)): join + half - int(round(start * rate))] * ramp
            tail = piece[join + half - int(round(start * rate)):]
            out = np.concatenate([head, fade, tail])
        return out

    def _finish(self, waveform: np.ndarray, duration: float) -> np.ndarray:
        rate = self.config.audio.sample_rate
        samples = int(round(duration * rate))
        waveform = np.pad(waveform, (0, max(0, samples - len(waveform))))[:samples]
        waveform = normalize_loudness(waveform, rate)
        return apply_fades(waveform, rate, fade_in_s=FADE_IN_S, fade_out_s=min(FADE_OUT_S, duration / 4)).astype(np.float32)
