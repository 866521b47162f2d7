"""The VeM pipeline, torch-free: video in, soundtrack and report out.

    from vem.runtime import Pipeline
    pipeline = Pipeline.load()                 # the shipped bundle, the fastest valid backend
    result = pipeline.generate("clip.mp4", seed=0)
    result.waveform, result.sample_rate, result.report

Stages (docs/architecture.md), each timed into ``report["timings_s"]``:

1. decode        PyAV, 16 fps by real timestamps, scaled once per parser size
2. parse         frame level (TransNetV2 -> cut times), storyboard level (shots merged/split),
                 global level (style head -> tags, or the user's tags / caption / parse JSON)
3. condition     text embeddings, storyboard visual features, the SG-CAtt mask, TB aligner features
4. diffuse       the numpy sampler driving the guided denoiser graph (latent kept on the device)
5. decode_audio  VAE decoder -> log-mel -> vocoder -> loudness, fades, trim to the video
(6. write is the CLI's: files, mux, report, plot.)  Beats of the result and its TBIoU against the
cuts are measured afterwards ("analyse") so that every report carries its own rhythm score.

Videos longer than the bundle's window are generated in overlapping windows, each conditioned on
its own storyboards, and joined with a short crossfade centred on a beat: a beat of the tempo grid
the model was asked for (`vem.runtime.tempo`), or, for a bundle that chooses its own tempo, a beat
tracked in the earlier window's overlap.
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
from .backends.base import check_finite
from .beats import DEFAULT_TRACKER, track_beats
from .bundle import Bundle, load_bundle
from .captions import caption_from_tags, describe_storyboard, tags_from_probabilities
from .errors import BundleError, InputError, UsageError
from .guidance import bind_guided
from .metrics import cut_beat_offsets, nan_to_none, rhythm_metrics
from .parse_schema import (
    FRAME_FPS,
    FrameParse,
    GlobalParse,
    Storyboard,
    Transition,
    VideoParse,
    check_cuts_agree,
    parse_to_dict,
)
from .parse_schema import (
    VideoInfo as ParseVideoInfo,
)
from .progress import NO_PROGRESS, Progress
from .sampler import NoiseSchedule, make_sampler
from .storyboard import Span, frame_storyboard_index, resample_to_latent, segment_storyboards, storyboard_mask
from .tags import TAG_VOCABULARY, normalise_tags, unknown_tags
from .tempo import MAX_BPM, MIN_BPM, TEMPO_MODES, TempoChoice, TempoMap, beat_grid, plan_tempo
from .text import HashedTextEncoder
from .transitions import DetectedTransition, TransitionDetector, cut_indicator, find_transitions
from .video import decode_frames, probe

DEFAULT_BUNDLE = Path(__file__).resolve().parent / "assets" / "bundle"
WINDOW_OVERLAP_S = 4.0
CROSSFADE_S = 0.5
VISUAL_CHUNK_FRAMES = 64
# Frames per aligner call (plus its receptive field on each side; see Pipeline._run_aligner).
ALIGNER_CHUNK_FRAMES = 160
# Latent frames per VAE decoder call and the overlap of neighbouring calls (Pipeline._vae_decode).
VAE_CHUNK_FRAMES = 300
VAE_OVERLAP_FRAMES = 25
# Mel frames per vocoder call (plus VOCODER_CONTEXT_FRAMES each side; see Pipeline._vocode).
VOCODER_CHUNK_FRAMES = 1000
VOCODER_CONTEXT_FRAMES = 48
FADE_IN_S, FADE_OUT_S = 0.05, 1.0
# A cut near the end keeps its beat: the fade starts this long after the last cut (a beat's onset
# and attack), down to a fade of MIN_FADE_OUT_S.
FINAL_CUT_CLEAR_S, MIN_FADE_OUT_S = 0.25, 0.1
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


def release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc's malloc_trim; elsewhere nothing).

    FFmpeg's decoder threads and ONNX Runtime free their buffers into per-thread malloc arenas
    that glibc keeps: after decoding a 60 s 1080p video ~350 MB stayed resident although nothing
    used it, and the next stage's peak came on top of it."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None


# The precision a bundle runs at unless told: on a GPU fp16 (tensor cores; TensorRT builds the
# fp16 graphs strongly typed), on a CPU int8 and else fp32 -- ONNX Runtime's CPU provider runs an
# fp16 graph through casts to fp32, slower than the fp32 graph itself (docs/front-end.md).
GPU_PRECISIONS = ("fp16", "int8", "fp32")
CPU_PRECISIONS = ("int8", "fp32", "fp16")


def default_precision(available: list[str], on_gpu: bool) -> str:
    for precision in GPU_PRECISIONS if on_gpu else CPU_PRECISIONS:
        if precision in available:
            return precision
    raise BundleError("bundle has no graphs", hint="re-export it with vem-export")


def _expects_gpu(backend: str, bundle: Bundle) -> bool:
    """Whether the graphs will run on a GPU: TensorRT asked for, ONNX Runtime with a GPU provider,
    or (auto) TensorRT present and a bundle that carries engines (built for GPUs; if they do not
    fit this one, the backend's reason says why)."""
    from . import backends
    from .backends.onnxruntime import GPU_PROVIDERS, available_providers

    if backend == "tensorrt":
        return True
    if any(provider in GPU_PROVIDERS for provider in available_providers()):
        return True
    return backend == "auto" and bool(bundle.manifest.engines) and backends.tensorrt_status()[0]


def hard_cuts(video_parse: VideoParse) -> list[float]:
    """The times of the parse's hard cuts: the sync points the beat grid must hit. A dissolve or
    fade has no single instant for a beat to land on, so it does not steer the tempo; a parse
    without transition kinds (a hand-written one) counts every transition as a cut."""
    details = video_parse.frame.transitions
    if not details:
        return list(video_parse.frame.transitions_s)
    return [t.time_s for t in details if t.kind == "cut"]


def fade_out_seconds(duration: float, cuts_s: list[float]) -> float:
    """The final fade's length: FADE_OUT_S (at most a quarter of the video), shortened so that it
    starts after the last cut's beat has sounded (FINAL_CUT_CLEAR_S after the cut), but never
    below MIN_FADE_OUT_S (a cut in the last instants keeps a short fade rather than a click)."""
    fade = min(FADE_OUT_S, duration / 4)
    late = [c for c in cuts_s if duration - fade - FINAL_CUT_CLEAR_S < c < duration]
    if late:
        fade = max(min(fade, duration - max(late) - FINAL_CUT_CLEAR_S), min(MIN_FADE_OUT_S, fade))
    return fade


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


@dataclass
class ParsedVideo:
    """The decode and parse stages' result (`Pipeline.parse_video`)."""

    info: Any  # vem.runtime.video.VideoInfo
    features: _VideoFeatures
    parse: VideoParse
    duration_s: float
    source_frames: int  # frames the decoder produced
    frame_level: dict[str, Any] | None  # how the transitions were found (None: the user's parse)
    warnings: list[str]
    timings_s: dict[str, float]


class Pipeline:
    """A loaded bundle on a backend. Build with `Pipeline.load`; call `generate` per video."""

    ALL_COMPONENTS = ("transitions", "visual", "aligner", "denoiser", "vae_decoder", "vocoder")
    PARSE_COMPONENTS = ("transitions", "visual")

    def __init__(self, bundle: Bundle, runners: dict[str, Runner], precision: str, backend_reason: str):
        self.bundle = bundle
        self.config = bundle.manifest.config
        self.runners = runners
        self.precision = precision
        self.backend_reason = backend_reason
        self.backend_name = next(iter(runners.values())).backend
        text = bundle.manifest.text_encoder
        if text.get("kind") != "hashed-bow" or text.get("dim") != self.config.condition.text_dim:
            raise BundleError(f"bundle needs text encoder {text}, which this runtime does not have",
                              hint="upgrade vem, or re-export the bundle with this version")
        self.text_encoder = HashedTextEncoder(self.config.condition.text_dim)
        if list(bundle.manifest.tags) != list(TAG_VOCABULARY):
            raise BundleError("bundle's tag vocabulary differs from this runtime's",
                              hint="re-export the bundle with this version of vem")
        self.detector = TransitionDetector(runners["transitions"])
        # True: TransNetV2 runs on every window, not only where the frame signal is unsure (int8
        # calibration must see it on whole videos; it may then also find what the signal alone missed).
        self.detector_everywhere = False
        self.schedule = NoiseSchedule.from_config(self.config.diffusion)
        # The model writes its beats a little off the grid it is given (measured per bundle,
        # `python -m benchmarks.onset_offset`): the grid is given this much later to compensate.
        lead = bundle.manifest.rhythm.get("beat_lead_s", 0.0)
        self.beat_lead_s = float(lead) if isinstance(lead, (int, float)) and abs(lead) < 0.1 else 0.0

    @classmethod
    def load(
        cls,
        bundle: str | os.PathLike | Bundle | None = None,
        *,
        backend: str = "auto",
        precision: str | None = None,
        threads: int | None = None,
        components: tuple[str, ...] | None = None,
    ) -> Pipeline:
        """``components``: load only these graphs (`PARSE_COMPONENTS` for `parse_video` alone:
        `vem-run --parse-only` neither loads nor holds the generator's graphs)."""
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle if bundle is not None else default_bundle_path())
        available = bundle.manifest.precisions()
        if precision is None:
            precision = default_precision(available, on_gpu=_expects_gpu(backend, bundle))
        elif precision not in ("fp32", "fp16", "int8"):
            raise UsageError(f"unknown precision {precision!r}; choose fp32, fp16 or int8")
        elif precision not in available:
            raise BundleError(f"bundle {bundle.folder} has no {precision} graphs (it has {', '.join(available)})",
                              hint=f"export them with `vem-export --precision {precision}`")
        choice = select_backend(backend, bundle, precision=precision, threads=threads)
        runners = {
            name: choice.backend.load_component(bundle, name, precision)
            for name in (components or cls.ALL_COMPONENTS)
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
        progress: Progress | Callable[[int, int], None] | bool | None = None,
        max_video_seconds: float = MAX_VIDEO_SECONDS,
        bpm: float | None = None,
        tempo_mode: str = "auto",
    ) -> Generation:
        """Music for ``video``. ``progress``: a `Progress` (one per stage), True for bars on stderr,
        or a callable (step, steps) called after each sampler step."""
        timer = StageTimer()
        started = time.perf_counter()
        stages = progress if isinstance(progress, Progress) else Progress("bar" if progress is True else "off")
        sampler_name = sampler or self.bundle.manifest.sampler["name"]
        steps = int(self.bundle.manifest.sampler["steps"] if steps is None else steps)
        guidance = float(self.bundle.manifest.sampler["guidance"] if guidance is None else guidance)
        if tempo_mode not in TEMPO_MODES:
            raise UsageError(f"tempo_mode must be one of {', '.join(TEMPO_MODES)}, got {tempo_mode!r}")
        if bpm is not None and tempo_mode == "map":
            raise UsageError("--bpm fixes one steady tempo; it cannot be combined with --tempo map")
        if not 1 <= steps <= self.schedule.num_train_steps:
            raise UsageError(f"--steps must be between 1 and {self.schedule.num_train_steps}, got {steps}")
        if not math.isfinite(guidance):
            raise UsageError(f"--guidance must be a finite number, got {guidance}")
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

        parsed = self.parse_video(video, parse=parse, tags=user_tags, caption=caption, progress=stages,
                                  max_video_seconds=max_video_seconds, timer=timer)
        info, features, video_parse, duration = parsed.info, parsed.features, parsed.parse, parsed.duration_s
        config = self.config
        with timer("parse"):
            # One tempo for the whole video (every window's grid is a slice of it), from the
            # parse's cuts and pace word, or the user's --bpm. Bundles whose denoiser has no
            # beat-grid input choose their own tempo, as before.
            tempo, tempo_reason = None, None
            if TEMPO_INPUT in self.runners["denoiser"].input_names:
                tempo, tempo_reason = plan_tempo(hard_cuts(video_parse), duration,
                                                 video_parse.global_.tags, bpm, tempo_mode)

        windows = self._windows(duration)
        pieces: list[np.ndarray] = []
        for index, (start_s, end_s) in enumerate(windows):
            label = f" window {index + 1}/{len(windows)}" if len(windows) > 1 else ""
            with timer("condition"), stages.stage("condition" + label, unit="window"):
                inputs = self._condition(features, video_parse, start_s, end_s, tempo)
            with timer("diffuse"):
                latent = self._diffuse(inputs, steps, guidance, seed + index, sampler_name,
                                       progress if callable(progress) and not isinstance(progress, Progress) else stages,
                                       label=label.strip())
            release_free_memory()
            with timer("decode_audio"), stages.stage("decode audio" + label, unit="window"):
                pieces.append(self._decode_audio(latent, end_s - start_s, timer))
        with timer("decode_audio"):
            waveform, joins = self._join(pieces, windows, tempo)
            waveform = self._finish(waveform, duration, list(video_parse.frame.transitions_s))

        with timer("analyse"):
            sample_rate = config.audio.sample_rate
            beats = track_beats(waveform, sample_rate, DEFAULT_TRACKER)
            metrics = rhythm_metrics(video_parse.frame.transitions_s, beats, duration)
        timings = dict(timer.seconds)
        timings["total"] = time.perf_counter() - started
        report = {
            "vem_version": __version__,
            "video": {"path": str(video), "duration_s": duration, "fps": info.fps,
                      "width": info.width, "height": info.height, "rotation": info.rotation,
                      "codec": info.codec, "frames_at_16fps": len(features.frame_times_s),
                      "source_frames": parsed.source_frames},
            # The full three-level parse (vem-eval and --parse read it back), plus the cut times
            # at the top for a quick look.
            "parse": {**parse_to_dict(video_parse), "transitions_s": list(video_parse.frame.transitions_s),
                      "source": "user" if parse is not None else "detected", "frame_level": parsed.frame_level},
            "music": {"files": [], "duration_s": len(waveform) / sample_rate, "sample_rate": sample_rate,
                      "beats_s": [float(b) for b in beats], "beat_tracker": DEFAULT_TRACKER},
            "metrics": nan_to_none(metrics),
            # Cut by cut, the beat nearest to it in the music actually written (beats tracked in
            # the waveform), against the parse's cuts: detected ones (on their source frames) or
            # the user's --parse. Not ground truth: vem-eval scores against a video's true cuts.
            "cut_beats": {"measured_against": "user parse cuts" if parse is not None else "detected cuts",
                          "beat_tracker": DEFAULT_TRACKER,
                          "cuts": cut_beat_offsets(video_parse.frame.transitions_s, beats)},
            "timings_s": timings,
            "windows_s": [list(w) for w in windows],
            # Centre of each crossfade between windows (s): a beat of the tempo grid when there is one.
            "joins_s": joins,
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
            # Unrounded: the report gives the exact grid (joins_s lie on it).
            "tempo": None if tempo is None else {
                **tempo.report(), "mode": tempo_mode, "why": tempo_reason},
            "environment": _environment(),
            "warnings": list(parsed.warnings),
        }
        return Generation(waveform, sample_rate, video_parse, report, features.transition_probabilities)

    # ---- stages 1-2: decode and parse ---------------------------------------------------------------
    def parse_video(
        self,
        video: str | os.PathLike,
        *,
        parse: VideoParse | None = None,
        tags: list[str] | None = None,
        caption: str | None = None,
        progress: Progress = NO_PROGRESS,
        max_video_seconds: float = MAX_VIDEO_SECONDS,
        timer: StageTimer | None = None,
    ) -> ParsedVideo:
        """Decode ``video`` once and parse it at the three levels (`vem-run --parse-only` stops here).

        ``parse``: a user's parse; its cuts replace detection (TransNetV2 does not run) and its
        tags/caption apply unless ``tags``/``caption`` are given."""
        timer = timer or StageTimer()
        config = self.config
        if parse is not None:
            check_cuts_agree(parse)
        with timer("decode"):
            info = probe(video)
            if info.duration_s > max_video_seconds:
                raise InputError(f"{video}: {info.duration_s:.0f} s is longer than the limit of "
                                 f"{max_video_seconds:.0f} s", hint="cut the video, or raise the limit "
                                 "(vem-run --max-seconds)")
            expected = max(1, int(min(info.duration_s, max_video_seconds) * info.fps)) if info.fps else None
            with progress.stage("decode", total=expected, unit="frame") as advance:
                decoded = decode_frames(
                    video,
                    fps=config.video.fps,
                    sizes={
                        "transitions": tuple(config.video.transition_size),
                        "visual": (config.visual.frame_size, config.visual.frame_size),
                        "aligner": (config.aligner.frame_size, config.aligner.frame_size),
                    },
                    max_seconds=max_video_seconds,
                    progress=advance,
                )
            duration = float(decoded.duration_s or info.duration_s)
            if decoded.num_frames == 0 or not duration > 0:
                raise InputError(f"{video}: no video frames could be decoded")

        with timer("parse"), progress.stage("parse", total=None, unit="frame") as advance:
            features = self._video_features(decoded, duration)
            detected = None
            if parse is None:
                detected = find_transitions(decoded.frame_times_s, decoded.signatures, decoded.frames["transitions"],
                                            self.detector, fps=config.video.fps,
                                            network_everywhere=self.detector_everywhere)
                features.transition_probabilities = detected.probabilities
            video_parse = self._parse(str(video), info.fps, features, parse, tags, caption,
                                      detected.transitions if detected is not None else None)
            if parse is not None:
                # The user's (possibly corrected) cuts drive the rhythm path too; the detector
                # does not run at all.
                features.transition_probabilities = cut_indicator(
                    np.asarray(video_parse.frame.transitions_s), len(features.frame_times_s), config.video.fps
                ).astype(np.float32)
            advance(len(features.frame_times_s))
        source_frames, warnings = int(decoded.frames_decoded), list(decoded.warnings)
        del decoded  # the frames the condition stage needs live on in `features`
        release_free_memory()
        frame_level = None
        if detected is not None:
            frame_level = {"detector": "frame signature + TransNetV2 where unsure",
                           "transnetv2_windows": detected.windows_run, "windows_total": detected.windows_total,
                           "found_by": [t.found_by for t in detected.transitions]}
        return ParsedVideo(info, features, video_parse, duration, source_frames, frame_level, warnings,
                           dict(timer.seconds))

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
               user_tags: list[str] | None, caption: str | None,
               detected: list[DetectedTransition] | None = None) -> VideoParse:
        duration = features.duration_s
        if given is not None:
            if given.video.duration_s and given.video.duration_s > duration + 0.5:
                raise InputError(f"the parse describes {given.video.duration_s:.2f} s but the video lasts "
                                 f"{duration:.2f} s", hint="was it written for another video?")
            tags = user_tags or list(given.global_.tags) or tags_from_probabilities(features.tag_probabilities.mean(0))
            text = caption or given.global_.caption or caption_from_tags(tags)
            storyboards = [s for s in given.storyboards if s.start_s < duration]
            if not storyboards:
                storyboards = self._storyboards(segment_storyboards(given.frame.transitions_s, duration), features,
                                                given.frame.transitions_s)
            transitions = [t for t in given.frame.transitions_s if t < duration]
            frame = FrameParse(fps=FRAME_FPS, transitions_s=transitions,
                               transition_frames=[int(round(t * FRAME_FPS)) for t in transitions],
                               transitions=given.frame.transitions)
            return VideoParse(ParseVideoInfo(path, duration, source_fps), GlobalParse(text, tags),
                              storyboards, frame, given.music, extra=dict(given.extra))
        found = [t for t in (detected or []) if t.time_s < duration]
        cuts = [round(float(t.time_s), 6) for t in found]
        windows = len(self._windows(duration))
        spans = segment_storyboards(cuts, duration, max_storyboards=self.config.condition.max_storyboards * windows)
        tags = user_tags or tags_from_probabilities(features.tag_probabilities.mean(0))
        details = [Transition(time_s=cut, kind=t.kind, duration_s=round(t.duration_s, 6), source_frame=t.source_frame)
                   for cut, t in zip(cuts, found)]
        frame = FrameParse(fps=FRAME_FPS, transitions_s=cuts, transition_frames=[int(round(t * FRAME_FPS)) for t in cuts],
                           transitions=details)
        return VideoParse(ParseVideoInfo(path, duration, source_fps),
                          GlobalParse(caption or caption_from_tags(tags), tags),
                          self._storyboards(spans, features, cuts), frame)

    def _storyboards(self, spans: list[Span], features: _VideoFeatures,
                     cuts: list[float] | None = None) -> list[Storyboard]:
        index = frame_storyboard_index(features.frame_times_s, spans)
        storyboards = []
        cuts = cuts or []
        for i, span in enumerate(spans):
            members = index == i
            probabilities = (features.tag_probabilities[members] if members.any()
                             else features.tag_probabilities).mean(0)
            storyboards.append(Storyboard(span.start_s, span.duration_s,
                                          describe_storyboard(i, len(spans), tags_from_probabilities(probabilities)),
                                          split=i > 0 and not any(abs(span.start_s - c) < 1e-6 for c in cuts)))
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
        aligner = self._run_aligner(features.aligner_frames[in_window],
                                    features.transition_probabilities[in_window].astype(np.float32))
        global_ = video_parse.global_
        grid = {}
        if tempo is not None:
            grid[TEMPO_INPUT] = beat_grid(self.asked_beats(tempo, end_s), frames,
                                          config.latent_frames_per_second, start_s=start_s)[None]
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

    def asked_beats(self, tempo: TempoChoice | TempoMap, end_s: float) -> np.ndarray:
        """The beat times given to the model for ``tempo`` up to ``end_s``: the tempo's beats,
        shifted by the bundle's measured lead so that the written beats land on them."""
        return tempo.beats(end_s) + self.beat_lead_s

    def _run_aligner(self, frames: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """Aligner features [1, T, D] for frames [T, A, A, 3], computed in overlapping chunks.

        The aligner convolves in time with stride 1 and no normalisation that spans time (batch
        norm is folded), so each output frame depends only on the frames within its receptive
        field: chunks with that much context on each side give the same features as one call, at
        a fraction of the memory (one call over 60 s held ~0.9 GB of activations)."""
        aligner_config = self.config.aligner
        radius = 1 + 2 * sum(aligner_config.blocks_per_stage)  # the stem's and each block's two k=3 convs
        context = radius + 7  # a margin: exactness does not hinge on the count above
        count = len(frames)
        parts = []
        for begin in range(0, count, ALIGNER_CHUNK_FRAMES):
            end = min(count, begin + ALIGNER_CHUNK_FRAMES)
            lo, hi = max(0, begin - context), min(count, end + context)
            out = self.runners["aligner"].run({
                "frames": np.ascontiguousarray(frames[lo:hi][None]),
                "transition_probs": np.ascontiguousarray(probabilities[lo:hi][None]),
            })["features"]
            parts.append(out[:, begin - lo:end - lo])
        return np.concatenate(parts, axis=1)

    # ---- stage 4: diffuse ----------------------------------------------------------------------
    def _diffuse(self, inputs: dict[str, np.ndarray], steps: int, guidance: float, seed: int, sampler_name: str,
                 progress: Progress | Callable[[int, int], None], label: str = "") -> np.ndarray:
        config = self.config
        frames = inputs["storyboard_mask"].shape[1]
        shape = (1, config.vae.latent_channels, frames, config.latent_mel_bins)
        sampler = make_sampler(sampler_name, self.schedule, steps)
        noise = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
        denoiser = self.runners["denoiser"]
        step = bind_guided(denoiser, inputs, guidance)
        stage = progress.stage(f"diffuse {label}".strip(), total=steps, unit="step") \
            if isinstance(progress, Progress) else contextlib.nullcontext(None)
        try:
            with stage as advance:
                z = denoiser.to_device(noise)
                for index, t in enumerate(sampler.timesteps):
                    eps = step(z, float(t))
                    z = sampler.step(eps, index, z)
                    if advance is not None:
                        advance(1)
                    elif callable(progress):
                        progress(index + 1, steps)
                latent = denoiser.to_host(z)
            # Device-resident steps are not checked one by one (that would sync every step).
            check_finite("denoiser", {"latent": latent})
            return latent
        finally:
            step.close()

    # ---- stage 5: decode audio -----------------------------------------------------------------
    def _decode_audio(self, latent: np.ndarray, seconds: float, timer: StageTimer) -> np.ndarray:
        # Sub-stages of decode_audio, kept apart for vem-bench.
        with timer("vae_decoder"):
            mel = self._vae_decode(latent)
        with timer("vocoder"):
            waveform = self._vocode(mel)
        samples = int(round(seconds * self.config.audio.sample_rate))
        return np.asarray(waveform[:samples], dtype=np.float32)

    def _vae_decode(self, latent: np.ndarray) -> np.ndarray:
        """Log-mel [1, mel_bins, frames] of latent [1, C, T, F]; latents longer than
        VAE_CHUNK_FRAMES are decoded in overlapping chunks joined by linear crossfades.

        Unlike the aligner and the vocoder, the VAE decoder normalises over time (GroupNorm), so
        chunks are not bit-identical to one call: the mel differs by ~1 % where they meet
        (tests/test_pipeline.py bounds it). One call over 60 s held ~1 GB of activations, more
        than everything else together; the demo VAE was trained on 8-14 s clips, the chunk length
        it normalises over here. Up to VAE_CHUNK_FRAMES (12 s) one call, as before."""
        decoder = self.runners["vae_decoder"]
        count = latent.shape[2]
        if count <= VAE_CHUNK_FRAMES + 2 * VAE_OVERLAP_FRAMES:
            return decoder.run({"latent": latent})["mel"]
        scale = self.config.vae.downsample  # mel frames per latent frame
        pieces = math.ceil((count - VAE_OVERLAP_FRAMES) / (VAE_CHUNK_FRAMES + VAE_OVERLAP_FRAMES))
        hop = math.ceil((count - VAE_OVERLAP_FRAMES) / pieces)
        mel = None
        weight = None
        for index in range(pieces):
            lo, hi = index * hop, min(count, index * hop + hop + VAE_OVERLAP_FRAMES)
            out = decoder.run({"latent": np.ascontiguousarray(latent[:, :, lo:hi])})["mel"].astype(np.float32)
            if mel is None:
                mel = np.zeros((*out.shape[:2], count * scale), np.float32)
                weight = np.zeros(count * scale, np.float32)
            # A triangle-free trapezoid: 1 inside, linear ramps over the overlaps with neighbours.
            ramp = np.ones(out.shape[2], np.float32)
            fade = VAE_OVERLAP_FRAMES * scale
            if index > 0:
                ramp[:fade] = np.linspace(0.0, 1.0, fade + 2, dtype=np.float32)[1:-1]
            if hi < count:
                ramp[-fade:] = np.linspace(1.0, 0.0, fade + 2, dtype=np.float32)[1:-1]
            mel[:, :, lo * scale:hi * scale] += out * ramp
            weight[lo * scale:hi * scale] += ramp
        return mel / weight

    def _vocode(self, mel: np.ndarray) -> np.ndarray:
        """Waveform [samples] of mel [1, mel_bins, frames], in overlapping chunks: HiFi-GAN is
        convolutional with no normalisation across time, so chunks with VOCODER_CONTEXT_FRAMES of
        context give the samples one call gives (tests/test_pipeline.py compares them), without
        holding its activations for a whole minute."""
        vocoder = self.runners["vocoder"]
        count = mel.shape[2]
        hop = self.config.audio.hop_length
        parts = []
        for begin in range(0, count, VOCODER_CHUNK_FRAMES):
            end = min(count, begin + VOCODER_CHUNK_FRAMES)
            lo, hi = max(0, begin - VOCODER_CONTEXT_FRAMES), min(count, end + VOCODER_CONTEXT_FRAMES)
            out = vocoder.run({"mel": np.ascontiguousarray(mel[:, :, lo:hi])})["waveform"][0]
            parts.append(out[(begin - lo) * hop:(end - lo) * hop])
        return np.concatenate(parts)

    def _join(self, pieces: list[np.ndarray], windows: list[tuple[float, float]],
              tempo: TempoChoice | None = None) -> tuple[np.ndarray, list[float]]:
        """Overlapping windows -> one waveform and the centre (s) of each crossfade.

        Each crossfade lasts CROSSFADE_S and is centred on the beat nearest the overlap's middle
        among those at least CROSSFADE_S inside it: the beats the model was asked for (``tempo``'s
        grid, which every window shares), or, for a bundle without a beat-grid input, the beats
        tracked in the earlier window's overlap; the overlap's middle if there is no such beat.
        ``out`` holds the waveform from time 0, so sample k of it is time k / rate."""
        rate = self.config.audio.sample_rate
        half = int(CROSSFADE_S * rate / 2)
        ramp = np.linspace(0.0, 1.0, 2 * half, dtype=np.float32)
        out = pieces[0]
        joins: list[float] = []
        for (_, prev_end), (start, _), piece in zip(windows, windows[1:], pieces[1:]):
            overlap_begin, overlap_end = start, prev_end
            if tempo is not None:
                beats = tempo.beats(overlap_end)
            else:
                begin = int(round(overlap_begin * rate))
                beats = track_beats(out[begin:], rate, DEFAULT_TRACKER) + begin / rate
            inner = [float(b) for b in beats if overlap_begin + CROSSFADE_S < b < overlap_end - CROSSFADE_S]
            middle = (overlap_begin + overlap_end) / 2
            centre = min(inner, key=lambda b: abs(b - middle)) if inner else middle
            join = int(round(centre * rate))
            offset = int(round(start * rate))  # piece[0] is time `start`
            head = out[: join - half]
            fade = out[join - half: join + half] * (1 - ramp) + piece[join - half - offset: join + half - offset] * ramp
            tail = piece[join + half - offset:]
            out = np.concatenate([head, fade, tail])
            joins.append(centre)
        return out, joins

    def _finish(self, waveform: np.ndarray, duration: float, cuts_s: list[float] | None = None) -> np.ndarray:
        rate = self.config.audio.sample_rate
        samples = int(round(duration * rate))
        waveform = np.pad(waveform, (0, max(0, samples - len(waveform))))[:samples]
        waveform = normalize_loudness(waveform, rate)
        return apply_fades(waveform, rate, fade_in_s=FADE_IN_S,
                           fade_out_s=fade_out_seconds(duration, cuts_s or [])).astype(np.float32)
