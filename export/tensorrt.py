"""Build TensorRT engines from the bundle's ONNX graphs (the export side; torch not needed).

Built with Polygraphy's TensorRT loaders, which wrap the TensorRT 10 builder API:
``network_from_onnx_path(..., strongly_typed=True)`` (NetworkDefinitionCreationFlag.STRONGLY_TYPED
+ OnnxParser.parse_from_file, so external weights load), ``CreateConfig(profiles=...,
load_timing_cache=..., memory_pool_limits=...)`` and ``engine_bytes_from_network(...,
save_timing_cache=...)`` (``build_serialized_network``, then the timing cache is merged into the
file under a lock). Strongly typed: the ONNX graph's own types decide each layer's precision
(fp16 graphs with their fp32 islands, int8 Q/DQ graphs), so TensorRT runs the numerics that ONNX
Runtime was checked with; no precision builder flags are set (TensorRT 10.1 deprecated implicit
INT8 calibration; only APIs present in 10.3 are used, for JetPack 6).

Engines go to ``engines/sm_XX/`` inside the bundle and each one is described by a manifest
`EngineEntry` with the TensorRT version and compute capability that the runtime checks.

Without TensorRT or a GPU, `tensorrt_available` says why in one line and callers go on with the
ONNX bundle.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from vem.runtime.backends.cuda import gpu_info
from vem.runtime.backends.tensorrt import tensorrt_status
from vem.runtime.bundle import EngineEntry, sha256_file

Shape = Sequence[int]
ProfileSpec = Mapping[str, tuple[Shape, Shape, Shape]]  # input name -> (min, opt, max) shapes

DEFAULT_WORKSPACE_BYTES = 2 << 30  # 2 GiB: enough for the demo model's tactics, fits an 8 GB Orin


def tensorrt_available() -> tuple[bool, str]:
    """(True, "TensorRT 10.3.0 on Orin (sm_87)") or (False, why): TensorRT imports and a GPU is
    present (building needs the GPU the engine is for)."""
    ok, reason, _ = tensorrt_status()
    return ok, reason


def engines_folder(compute_capability: str) -> str:
    """The bundle-relative folder for engines of a GPU architecture: "8.7" -> "engines/sm_87"."""
    parts = compute_capability.strip().split(".")
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise ValueError(f"compute capability must look like '8.7', got {compute_capability!r}")
    return f"engines/sm_{parts[0]}{parts[1]}"


def check_profiles(profiles: Sequence[ProfileSpec]) -> list[dict[str, tuple[tuple[int, ...], ...]]]:
    """Validate optimisation profiles: at least one; every shape a tuple of positive ints of one
    rank per input; min <= opt <= max on every axis. Returns them as plain tuples."""
    if not profiles:
        raise ValueError("at least one optimisation profile is needed (input -> (min, opt, max) shapes)")
    checked = []
    for index, profile in enumerate(profiles):
        if not profile:
            raise ValueError(f"profile {index} is empty")
        plain = {}
        for name, shapes in profile.items():
            if len(shapes) != 3:
                raise ValueError(f"profile {index}, input {name}: expected (min, opt, max), got {shapes!r}")
            low, opt, high = (tuple(int(d) for d in shape) for shape in shapes)
            if not len(low) == len(opt) == len(high):
                raise ValueError(f"profile {index}, input {name}: min/opt/max have different ranks")
            if any(d < 1 for d in low):
                raise ValueError(f"profile {index}, input {name}: dimensions must be >= 1, min is {low}")
            if not all(a <= b <= c for a, b, c in zip(low, opt, high)):
                raise ValueError(f"profile {index}, input {name}: need min <= opt <= max on every axis, "
                                 f"got {low}, {opt}, {high}")
            plain[name] = (low, opt, high)
        checked.append(plain)
    return checked


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, *,
                 profiles: Sequence[ProfileSpec], strongly_typed: bool = True,
                 timing_cache_path: str | os.PathLike | None = None,
                 workspace_bytes: int = DEFAULT_WORKSPACE_BYTES, name: str | None = None,
                 precision: str = "fp32", bundle_root: str | os.PathLike | None = None) -> EngineEntry:
    """Build and write a serialized engine for `onnx_path`; return its manifest entry.

    `profiles`: one dict per optimisation profile, ``{input: (min_shape, opt_shape, max_shape)}``
    (every dynamic input must appear). `timing_cache_path` is read if it exists and updated after
    the build, so rebuilding (other precisions, other components) reuses measured tactics.
    The entry's `file` is relative to `bundle_root` (default: the engine's folder's grandparent,
    i.e. the bundle for ``<bundle>/engines/sm_XX/<name>.plan``).
    """
    checked = check_profiles(profiles)
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX graph not found: {onnx_path}")
    ok, reason = tensorrt_available()
    if not ok:
        raise RuntimeError(f"cannot build TensorRT engines here: {reason}")
    import tensorrt as trt
    from polygraphy.backend.trt import (
        CreateConfig,
        Profile,
        engine_bytes_from_network,
        network_from_onnx_path,
    )

    trt_profiles = []
    for plain in checked:
        profile = Profile()
        for input_name, (low, opt, high) in plain.items():
            profile.add(input_name, min=low, opt=opt, max=high)
        trt_profiles.append(profile)
    network = network_from_onnx_path(str(onnx_path), strongly_typed=strongly_typed)
    cache = str(timing_cache_path) if timing_cache_path is not None else None
    config = CreateConfig(profiles=trt_profiles, load_timing_cache=cache,
                          memory_pool_limits={trt.MemoryPoolType.WORKSPACE: int(workspace_bytes)})
    engine_bytes = engine_bytes_from_network(network, config=config, save_timing_cache=cache)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = engine_path.with_name(engine_path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(engine_bytes)
    os.replace(temporary, engine_path)
    root = Path(bundle_root) if bundle_root is not None else engine_path.parent.parent.parent
    entry = EngineEntry(
        name=name or onnx_path.stem, precision=precision,
        file=engine_path.resolve().relative_to(root.resolve()).as_posix(),
        sha256=sha256_file(engine_path), bytes=engine_path.stat().st_size,
        tensorrt_version=str(trt.__version__), compute_capability=str(gpu_info().compute_capability),
    )
    return entry
