"""The bundle: the one contract between export and runtime (docs/architecture.md).

A bundle is a folder with ``manifest.json`` and the files it lists. The manifest says what the
model is (the full `VemConfig`), how to sample it, which text encoder and tag vocabulary it was
made with, and, per component, the file, precision, input/output signature, sha256 and size;
TensorRT engines are listed per GPU architecture with the TensorRT version that built them.

Validation is hand-written (no jsonschema dependency on the device) and reports every problem at
once, each naming the field, so a user can fix a manifest in one go.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import VemConfig
from .errors import BundleError

FORMAT = "vem-bundle"
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
COMPONENTS = ("transitions", "visual", "aligner", "denoiser", "vae_decoder", "vocoder")
DTYPES = ("float32", "float16", "int64", "int32", "uint8", "bool")
MANIFEST_NAME = "manifest.json"


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def external_data_file(graph: str | os.PathLike) -> Path:
    """Where a graph in ONNX's external-data form keeps its weights: ``<graph file>.data`` beside
    it (the name `vem.export.onnx_utils.save_model` writes and the manifest records)."""
    graph = Path(graph)
    return graph.with_name(graph.name + ".data")


@dataclass
class TensorSpec:
    name: str
    dtype: str
    shape: list[int | str]  # ints are fixed, strings are symbolic (e.g. "batch", "frames")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass
class ComponentEntry:
    name: str
    precision: str
    file: str
    sha256: str
    bytes: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    parity: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    # A graph whose weights do not fit in one protobuf (2 GiB) keeps them in a side file, ONNX's
    # "external data": {"file", "sha256", "bytes"} of that file, which sits beside ``file`` and
    # is hashed like it. None for a self-contained graph (every shipped one).
    external_data: dict[str, Any] | None = None

    @property
    def total_bytes(self) -> int:
        """What the component takes on disk: the graph and its external data, if any."""
        return self.bytes + int((self.external_data or {}).get("bytes", 0))

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "precision": self.precision,
            "file": self.file,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "inputs": [spec.to_dict() for spec in self.inputs],
            "outputs": [spec.to_dict() for spec in self.outputs],
            "parity": dict(self.parity),
            "notes": dict(self.notes),
        }
        if self.external_data is not None:
            out["external_data"] = dict(self.external_data)
        return out


@dataclass
class EngineEntry:
    name: str
    precision: str
    file: str
    sha256: str
    bytes: int
    tensorrt_version: str
    compute_capability: str  # "8.7" for Orin, "9.0" for H100

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Manifest:
    config: VemConfig
    sampler: dict[str, Any]
    text_encoder: dict[str, Any]
    tags: list[str]
    components: list[ComponentEntry]
    engines: list[EngineEntry] = field(default_factory=list)
    built_with: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    # Measured facts about the model's music that the runtime compensates: ``beat_lead_s``, how
    # much later than wanted the beat grid is given so that the written beats land on time
    # (`python -m benchmarks.onset_offset`). Optional: absent means no compensation.
    rhythm: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "sampler": dict(self.sampler),
            "text_encoder": dict(self.text_encoder),
            "tags": list(self.tags),
            "components": [entry.to_dict() for entry in self.components],
            "engines": [entry.to_dict() for entry in self.engines],
            "built_with": dict(self.built_with),
            "calibration": self.calibration,
            **({"rhythm": dict(self.rhythm)} if self.rhythm else {}),
        }

    def write(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, path)
        return path

    def precisions(self) -> list[str]:
        return sorted({entry.precision for entry in self.components}, key=PRECISIONS.index)

    def component(self, name: str, precision: str) -> ComponentEntry:
        """The graph of `name` at `precision`, falling back to fp32 for components exported only
        in fp32 (the recipes keep some small components in fp32 on purpose), then to fp16 (a
        bundle for GPUs and CPUs holds int8 graphs only where int8 pays, and TransNetV2 only in
        fp16: its weights are stored in fp16 but it computes in fp32)."""
        for wanted in dict.fromkeys((precision, "fp32", "fp16")):
            for entry in self.components:
                if entry.name == name and entry.precision == wanted:
                    return entry
        raise BundleError(f"bundle has no {name!r} component at {precision}, fp32 or fp16",
                          hint="re-export the bundle with vem-export")


# ---- validation -----------------------------------------------------------------------------


def validate_manifest_data(data: Any) -> list[str]:
    """Every problem with a manifest's JSON data, as 'field: what is wrong' strings."""
    problems: list[str] = []
    if not isinstance(data, dict):
        return ["manifest: expected a JSON object"]

    def need(key: str, kind: type | tuple[type, ...], where: dict = data, prefix: str = "") -> Any:
        if key not in where:
            problems.append(f"{prefix}{key}: missing")
            return None
        value = where[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            problems.append(f"{prefix}{key}: expected {_kind_name(kind)}, got {type(value).__name__}")
            return None
        return value

    if data.get("format") != FORMAT:
        problems.append(f"format: expected {FORMAT!r}, got {data.get('format')!r}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        problems.append(f"format_version: this runtime reads version {FORMAT_VERSION}, the bundle is {version!r}")
    config = need("config", dict)
    if config is not None:
        try:
            VemConfig.from_dict(config)
        except (TypeError, ValueError) as error:
            problems.append(f"config: {error}")
        else:
            _check_config_values(config, VemConfig().to_dict(), "config.", problems)
    sampler = need("sampler", dict)
    if sampler is not None:
        need("name", str, sampler, "sampler.")
        steps = need("steps", int, sampler, "sampler.")
        if steps is not None and not 1 <= steps <= 10_000:
            problems.append(f"sampler.steps: must be in 1..10000, got {_short(steps)}")
        guidance = need("guidance", (int, float), sampler, "sampler.")
        if guidance is not None and not abs(guidance) <= 1e6:  # also NaN and infinities
            problems.append(f"sampler.guidance: must be a finite number, got {_short(guidance)}")
    need("text_encoder", dict)
    tags = need("tags", list)
    if tags is not None and not all(isinstance(tag, str) and tag for tag in tags):
        problems.append("tags: expected a list of non-empty strings")
    components = need("components", list)
    if components is not None:
        seen = set()
        for index, entry in enumerate(components):
            prefix = f"components[{index}]."
            if not isinstance(entry, dict):
                problems.append(f"components[{index}]: expected an object")
                continue
            name = need("name", str, entry, prefix)
            precision = need("precision", str, entry, prefix)
            if name is not None and name not in COMPONENTS:
                problems.append(f"{prefix}name: unknown component {name!r}")
            if precision is not None and precision not in PRECISIONS:
                problems.append(f"{prefix}precision: {precision!r} is not one of {list(PRECISIONS)}")
            if (name, precision) in seen:
                problems.append(f"{prefix}: duplicate entry for {name} at {precision}")
            seen.add((name, precision))
            _check_file_fields(entry, prefix, need, problems)
            _check_optional_object(entry, ("parity", "notes", "external_data"), prefix, problems)
            if isinstance(entry.get("external_data"), dict):
                _check_file_fields(entry["external_data"], f"{prefix}external_data.", need, problems)
            for side in ("inputs", "outputs"):
                specs = need(side, list, entry, prefix)
                for spec_index, spec in enumerate(specs or []):
                    _check_tensor_spec(spec, f"{prefix}{side}[{spec_index}]", problems)
        present = {name for name, _ in seen}
        for required in COMPONENTS:
            if required not in present:
                problems.append(f"components: no entry for the required component {required!r}")
    _check_optional_object(data, ("built_with", "calibration", "rhythm"), "", problems)
    engines = data.get("engines", [])
    if not isinstance(engines, list):
        problems.append("engines: expected a list")
    else:
        for index, entry in enumerate(engines):
            prefix = f"engines[{index}]."
            if not isinstance(entry, dict):
                problems.append(f"engines[{index}]: expected an object")
                continue
            need("name", str, entry, prefix)
            need("precision", str, entry, prefix)
            need("tensorrt_version", str, entry, prefix)
            need("compute_capability", str, entry, prefix)
            _check_file_fields(entry, prefix, need, problems)
    return problems


_MAX_CONFIG_NUMBER = 1e12  # no size, rate or count of a model comes near; beyond it floats overflow


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**limit else f"an integer of {limit}+ digits"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Config values the runtime divides by or counts with: zero would fail deep inside a run.
_POSITIVE_CONFIG = frozenset({"config.max_seconds", "config.audio.sample_rate", "config.audio.hop_length",
                              "config.video.fps", "config.diffusion.num_train_steps", "config.diffusion.steps"})


def _check_config_values(data: dict, default: dict, prefix: str, problems: list[str]) -> None:
    """Each config value has the type of the default config's (VemConfig builds from any JSON, so
    a string where a size belongs would surface only as a crash mid-run) and numbers are finite
    and not negative."""
    for key, value in data.items():
        if key in default:  # VemConfig.from_dict reports unknown fields
            _check_config_value(value, default[key], f"{prefix}{key}", problems)


def _check_config_value(value: Any, expected: Any, where: str, problems: list[str]) -> None:
    if isinstance(expected, dict):
        if not isinstance(value, dict):
            problems.append(f"{where}: expected an object, got {type(value).__name__}")
        else:
            _check_config_values(value, expected, where + ".", problems)
    elif isinstance(expected, (list, tuple)):  # asdict keeps VemConfig's tuples
        if not isinstance(value, list):
            problems.append(f"{where}: expected a list, got {type(value).__name__}")
        elif expected:
            for index, item in enumerate(value):
                _check_config_value(item, expected[0], f"{where}[{index}]", problems)
    elif isinstance(expected, (bool, str)):
        if type(value) is not type(expected):
            problems.append(f"{where}: expected {_kind_name(type(expected))}, got {type(value).__name__}")
    elif isinstance(expected, (int, float)):
        kinds = (int,) if isinstance(expected, int) else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            problems.append(f"{where}: expected {_kind_name(kinds[-1])}, got {type(value).__name__}")
        elif not 0 <= value <= _MAX_CONFIG_NUMBER:  # NaN fails this too; an int is compared exactly
            problems.append(f"{where}: must be a number in 0..{_MAX_CONFIG_NUMBER:g}, got {_short(value)}")
        elif where in _POSITIVE_CONFIG and value <= 0:
            problems.append(f"{where}: must be > 0, got {value}")


def _check_optional_object(entry: dict, keys: tuple[str, ...], prefix: str, problems: list[str]) -> None:
    for key in keys:
        if entry.get(key) is not None and not isinstance(entry[key], dict):
            problems.append(f"{prefix}{key}: expected an object or null, got {type(entry[key]).__name__}")


def _check_file_fields(entry: dict, prefix: str, need: Any, problems: list[str]) -> None:
    file = need("file", str, entry, prefix)
    if file is not None and (os.path.isabs(file) or ".." in Path(file).parts):
        problems.append(f"{prefix}file: must be a relative path inside the bundle, got {file!r}")
    digest = need("sha256", str, entry, prefix)
    if digest is not None and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
        problems.append(f"{prefix}sha256: not a sha256 hex digest")
    size = need("bytes", int, entry, prefix)
    if size is not None and size < 0:
        problems.append(f"{prefix}bytes: must be >= 0")


def _check_tensor_spec(spec: Any, prefix: str, problems: list[str]) -> None:
    if not isinstance(spec, dict):
        problems.append(f"{prefix}: expected an object")
        return
    if not isinstance(spec.get("name"), str):
        problems.append(f"{prefix}.name: expected a string")
    if spec.get("dtype") not in DTYPES:
        problems.append(f"{prefix}.dtype: {spec.get('dtype')!r} is not one of {list(DTYPES)}")
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(
        (isinstance(d, int) and not isinstance(d, bool) and d >= 0) or (isinstance(d, str) and d) for d in shape
    ):
        problems.append(f"{prefix}.shape: expected a list of non-negative ints or symbol names")


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
             bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in _as_tuple(kind))


def manifest_from_data(data: dict[str, Any]) -> Manifest:
    def specs(items: list[dict]) -> list[TensorSpec]:
        return [TensorSpec(s["name"], s["dtype"], list(s["shape"])) for s in items]

    return Manifest(
        config=VemConfig.from_dict(data["config"]),
        sampler=dict(data["sampler"]),
        text_encoder=dict(data["text_encoder"]),
        tags=list(data["tags"]),
        components=[
            ComponentEntry(
                name=c["name"], precision=c["precision"], file=c["file"], sha256=c["sha256"], bytes=c["bytes"],
                inputs=specs(c["inputs"]), outputs=specs(c["outputs"]),
                parity=dict(c.get("parity") or {}), notes=dict(c.get("notes") or {}),
                external_data=dict(c["external_data"]) if c.get("external_data") else None,
            )
            for c in data["components"]
        ],
        engines=[EngineEntry(**{k: e[k] for k in EngineEntry.__dataclass_fields__}) for e in data.get("engines", [])],
        built_with=dict(data.get("built_with") or {}),
        calibration=data.get("calibration"),
        rhythm=dict(data.get("rhythm") or {}),
    )


@dataclass
class Bundle:
    folder: Path
    manifest: Manifest

    def path(self, entry: ComponentEntry | EngineEntry) -> Path:
        return self.folder / entry.file


def load_bundle(folder: str | os.PathLike, *, verify_hashes: bool = True) -> Bundle:
    """Read and validate a bundle; raise BundleError saying what is wrong and what to do."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_NAME
    hint = "re-export it with `vem-export`, or pass --bundle to a valid bundle"
    if not folder.is_dir():
        raise BundleError(f"bundle folder not found: {folder}", hint=hint)
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path}: no manifest.json in the bundle folder", hint=hint)
    try:
        data = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{manifest_path}: not readable JSON ({error})", hint=hint) from None
    problems = validate_manifest_data(data)
    if problems:
        listed = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise BundleError(f"{manifest_path}: invalid manifest: {listed}", hint=hint)
    manifest = manifest_from_data(data)
    bundle = Bundle(folder, manifest)
    for entry in manifest.components:
        path = bundle.path(entry)
        if not path.is_file():
            raise BundleError(f"bundle component {entry.name} ({entry.precision}) is missing: {path}", hint=hint)
        if verify_hashes:
            actual = sha256_file(path)
            if actual != entry.sha256:
                raise BundleError(
                    f"bundle component {entry.name} ({entry.precision}) does not match its manifest hash: "
                    f"{path} is corrupted or was replaced", hint=hint)
        if entry.external_data is not None:
            _check_external_data(folder, entry, verify_hashes, hint)
    return bundle


def _check_external_data(folder: Path, entry: ComponentEntry, verify_hashes: bool, hint: str) -> None:
    """The weights file of an external-data graph: present beside the graph (ONNX resolves its
    location relative to the graph's folder), the recorded size, and the recorded hash."""
    data = entry.external_data or {}
    graph_folder = (folder / entry.file).parent
    path = folder / data["file"]
    what = f"bundle component {entry.name} ({entry.precision})"
    if path.parent != graph_folder:
        raise BundleError(f"{what}: its external data {data['file']} must sit beside {entry.file}", hint=hint)
    if not path.is_file():
        raise BundleError(f"{what}: its external data file is missing: {path}", hint=hint)
    if path.stat().st_size != data["bytes"]:
        raise BundleError(f"{what}: its external data {path} is {path.stat().st_size} bytes, the manifest says "
                          f"{data['bytes']}: it is truncated or was replaced", hint=hint)
    if verify_hashes and sha256_file(path) != data["sha256"]:
        raise BundleError(f"{what}: its external data does not match its manifest hash: {path} is corrupted or "
                          f"was replaced", hint=hint)
