"""Small real ONNX graphs for the backend tests, built with onnx.helper, and their numpy references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from vem.runtime.bundle import COMPONENTS, ComponentEntry, EngineEntry, Manifest, TensorSpec, sha256_file
from vem.runtime.config import demo_config

LATENT_SCALE = 0.5
TIME_SCALE = 1e-3


def denoiser_reference(latent: np.ndarray, timestep: np.ndarray, cond: np.ndarray) -> np.ndarray:
    """What `write_denoiser` computes: a latent-, time- and condition-dependent "eps"."""
    t = timestep.astype(np.float32).reshape(-1, 1, 1)
    return (LATENT_SCALE * latent + np.tanh(cond) + TIME_SCALE * t).astype(np.float32)


def write_denoiser(path: Path, channels: int = 4) -> Path:
    """eps = 0.5 * latent + tanh(cond) + 0.001 * timestep, with dynamic batch and time axes:
    latent [batch, C, frames] float32, timestep [batch] int64, cond [batch, C, 1] float32."""
    nodes = [
        helper.make_node("Mul", ["latent", "latent_scale"], ["scaled"]),
        helper.make_node("Tanh", ["cond"], ["cond_tanh"]),
        helper.make_node("Cast", ["timestep"], ["t_float"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["t_float", "t_shape"], ["t_column"]),
        helper.make_node("Mul", ["t_column", "time_scale"], ["t_scaled"]),
        helper.make_node("Add", ["scaled", "cond_tanh"], ["partial"]),
        helper.make_node("Add", ["partial", "t_scaled"], ["eps"]),
    ]
    initializers = [
        helper.make_tensor("latent_scale", TensorProto.FLOAT, [], [LATENT_SCALE]),
        helper.make_tensor("time_scale", TensorProto.FLOAT, [], [TIME_SCALE]),
        helper.make_tensor("t_shape", TensorProto.INT64, [3], [-1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "toy_denoiser",
        [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["batch", channels, "frames"]),
         helper.make_tensor_value_info("timestep", TensorProto.INT64, ["batch"]),
         helper.make_tensor_value_info("cond", TensorProto.FLOAT, ["batch", channels, 1])],
        [helper.make_tensor_value_info("eps", TensorProto.FLOAT, ["batch", channels, "frames"])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="vem-tests")
    model.ir_version = 9  # readable by ONNX Runtime 1.16+ and TensorRT 10's parser
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def write_bundle(folder: Path, engines: list[EngineEntry] | None = None) -> Manifest:
    """A valid bundle whose every component is the toy denoiser graph (the backends do not care
    what a graph computes; the manifest and the files are real)."""
    folder.mkdir(parents=True, exist_ok=True)
    components = []
    for name in COMPONENTS:
        path = write_denoiser(folder / f"{name}.onnx")
        components.append(ComponentEntry(
            name=name, precision="fp32", file=path.name, sha256=sha256_file(path), bytes=path.stat().st_size,
            inputs=[TensorSpec("latent", "float32", ["batch", 4, "frames"]),
                    TensorSpec("timestep", "int64", ["batch"]), TensorSpec("cond", "float32", ["batch", 4, 1])],
            outputs=[TensorSpec("eps", "float32", ["batch", 4, "frames"])],
        ))
    manifest = Manifest(
        config=demo_config(), sampler={"name": "ddim", "steps": 10, "guidance": 3.0},
        text_encoder={"kind": "hashed-bow", "version": 1, "dim": 128}, tags=["calm"],
        components=components, engines=list(engines or []),
    )
    manifest.write(folder)
    return manifest


def fake_engine(folder: Path, *, compute_capability: str, tensorrt_version: str, name: str = "denoiser",
                precision: str = "fp32", content: bytes | None = b"not a real engine") -> EngineEntry:
    """A manifest entry for an engine file (bytes that are not an engine: the selection logic
    under test decides before TensorRT ever reads it)."""
    relative = f"engines/sm_{compute_capability.replace('.', '')}/{name}.{precision}.plan"
    path = folder / relative
    digest, size = "0" * 64, 0
    if content is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        digest, size = sha256_file(path), path.stat().st_size
    return EngineEntry(name=name, precision=precision, file=relative, sha256=digest, bytes=size,
                       tensorrt_version=tensorrt_version, compute_capability=compute_capability)
