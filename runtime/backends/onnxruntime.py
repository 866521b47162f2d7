"""ONNX Runtime backend: CPU everywhere; CUDA or TensorRT execution providers with onnxruntime-gpu.

Providers come from what the installed ONNX Runtime offers (``get_available_providers``), best
first: TensorRT EP (only with a folder for its engine cache: `select_backend` gives it
``<bundle>/engines/sm_XX/onnxruntime-tensorrt``, see `ort_tensorrt_cache_dir`), CUDA EP, CPU.
The TensorRT EP gets ``trt_fp16_enable`` for fp16 graphs and ``trt_int8_enable`` for int8 Q/DQ
graphs (explicit quantisation: no calibration table), and keeps its engines and timing cache in
that folder, so only the first run on a GPU pays the engine builds. ONNX Runtime itself falls
back along the provider list when a provider cannot start (for example onnxruntime-gpu on a
machine without a driver); the runner reports the provider that actually runs the graph, and a
note says so when it is not the one asked for.

Sessions use graph optimisation level ALL and one intra-op thread per physical core of the cores
this process may run on (hyper-threads do not help these dense kernels, and containers often
allow fewer cores than the machine has). An optional cache folder keeps the optimized graph per
(graph hash, ONNX Runtime version, provider), so later runs skip the optimisation passes.

On a GPU provider, `bind` uploads the static inputs once as device OrtValues and binds every
other input and output with IO binding: CuPy inputs are bound by device pointer and outputs
are left on the device and handed back as CuPy arrays, so the latent never visits the host.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle, ComponentEntry, external_data_file, sha256_file
from ..errors import BundleError
from ..guidance import BRANCH_INPUT
from ..interrupt import run_options
from .base import ORT_TYPE_TO_NUMPY, BoundRunner, GraphMismatch, Runner, TensorInfo, check_finite
from .cuda import cupy_or_none, device_pointer, gpu_info, is_device_array

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT_EP = "TensorrtExecutionProvider"
GPU_PROVIDERS = (TENSORRT_EP, CUDA)
HINT_REEXPORT = "re-export the bundle with `vem-export`, or pass --bundle to a valid bundle"


def physical_cores() -> int:
    """Physical cores among the CPUs this process may use (Linux sysfs), else os.cpu_count()."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return max(1, len(allowed))
        cores.add((package, core))
    return max(1, len(cores) or len(allowed))


def available_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def default_providers(prefer_tensorrt_ep: bool = True) -> list[str]:
    """The installed providers we use, best first, always ending with the CPU provider.

    GPU providers are left out when cuda-python is installed and finds no GPU: onnxruntime-gpu
    lists them regardless, and the run report should not claim a provider that cannot start.
    """
    available = available_providers()
    wanted = ([TENSORRT_EP] if prefer_tensorrt_ep else []) + [CUDA]
    gpu = gpu_info()
    if not gpu.available and gpu.reason.startswith("no NVIDIA GPU"):
        wanted = []
    return [name for name in wanted if name in available] + [CPU]


def _provider_options(provider: str, cache_dir: Path | None, precision: str = "fp32",
                      tensorrt_cache_dir: Path | None = None) -> dict[str, str]:
    if provider == TENSORRT_EP:
        # Building TensorRT engines takes minutes; without a cache every run would pay it again.
        folder = tensorrt_cache_dir or (cache_dir / "ort-tensorrt" if cache_dir is not None else None)
        options = {"device_id": "0", "trt_engine_cache_enable": "True", "trt_timing_cache_enable": "True",
                   # fp16 graphs: let TensorRT run their fp16 layers in fp16 (fp32 islands stay fp32
                   # only in a strongly typed build, which the EP does not do: the native engines
                   # of `vem-export --from-bundle` are the exact path). int8: the graph's Q/DQ
                   # scales are used as they are (explicit quantisation, no calibration table).
                   "trt_fp16_enable": "True" if precision == "fp16" else "False",
                   "trt_int8_enable": "True" if precision == "int8" else "False"}
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            options["trt_engine_cache_path"] = str(folder)
            options["trt_timing_cache_path"] = str(folder)
        return options
    if provider == CUDA:
        return {"device_id": "0"}
    return {}


def ort_tensorrt_cache_dir(bundle: Bundle | None) -> Path | None:
    """Where ONNX Runtime's TensorRT EP keeps its engines for this bundle on this GPU:
    ``<bundle>/engines/sm_XX/onnxruntime-tensorrt`` (next to the native engines, one folder per
    GPU architecture, since an engine runs only where it was built), or the same path under
    ``$XDG_CACHE_HOME/vem`` (``~/.cache/vem``) when the bundle folder is read-only. None when
    the TensorRT EP is not installed or no GPU is present (then it is not offered at all)."""
    if bundle is None or TENSORRT_EP not in available_providers():
        return None
    gpu = gpu_info()
    if not gpu.available or not gpu.compute_capability:
        return None
    arch = "sm_" + gpu.compute_capability.replace(".", "")
    inside = Path(bundle.folder) / "engines" / arch / "onnxruntime-tensorrt"
    probe = inside
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if os.access(probe, os.W_OK):
        return inside
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vem"
    digest = sha256_file(Path(bundle.folder) / "manifest.json")[:16]
    return base / f"bundle-{digest}" / arch / "onnxruntime-tensorrt"


# VEM_ORT_SPINNING=1: ONNX Runtime's intra-op threads spin-wait between runs (its own default);
# unset or 0, they block.
SPINNING_ENV = "VEM_ORT_SPINNING"

def _graph_digest(sha256: str | None, external_data: Any) -> str | None:
    """The optimized-graph cache's key for a graph: its sha256, combined with its external data's
    (graphs over 2 GB) so that the cache follows the weights' file too."""
    if not sha256 or not isinstance(external_data, dict):
        return sha256
    return hashlib.sha256(f"{sha256}:{external_data.get('sha256')}".encode()).hexdigest()


class OnnxRuntimeBackend:
    """Loads bundle components into `OnnxRuntimeRunner`s.

    ``providers`` overrides the automatic choice (names as ONNX Runtime spells them);
    ``cache_dir`` enables the optimized-model cache (and the TensorRT EP's engine cache).
    """

    name = "onnxruntime"

    def __init__(self, providers: Sequence[str] | None = None, *, threads: int | None = None,
                 cache_dir: str | os.PathLike | None = None, prefer_tensorrt_ep: bool = True,
                 tensorrt_cache_dir: str | os.PathLike | None = None):
        available = available_providers()
        self.tensorrt_cache_dir = Path(tensorrt_cache_dir) if tensorrt_cache_dir is not None else None
        if providers is None:
            # The TensorRT EP builds engines when a session starts (minutes); only worth it with a
            # cache folder to keep them in (else it would also litter the working directory).
            providers = default_providers(prefer_tensorrt_ep and (cache_dir is not None
                                                                  or self.tensorrt_cache_dir is not None))
        unknown = [name for name in providers if name not in available]
        if unknown:
            raise BundleError(f"ONNX Runtime here has no {', '.join(unknown)}; it offers {available}",
                              hint="install onnxruntime-gpu for the CUDA and TensorRT providers")
        self.providers = list(providers)
        self.threads = int(threads) if threads else physical_cores()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    @property
    def best_provider(self) -> str:
        return self.providers[0]

    def describe(self) -> str:
        return f"onnxruntime ({', '.join(self.providers)}; {self.threads} intra-op threads)"

    def load(self, source: str | os.PathLike | ComponentEntry, *, bundle: Bundle | None = None,
             name: str | None = None, precision: str | None = None) -> OnnxRuntimeRunner:
        """A runner for a graph file, or for a manifest entry (then `bundle` locates the file).

        On a GPU provider, an entry whose notes name a GPU graph (``notes["gpu_graph"]``: the
        transition detector computing in fp16) runs that graph; the CPU keeps the entry's own."""
        why = ""
        if isinstance(source, ComponentEntry):
            if bundle is None:
                raise ValueError("loading a ComponentEntry needs the bundle it belongs to (bundle=...)")
            path, digest = bundle.path(source), _graph_digest(source.sha256, source.external_data)
            name = name or source.name
            input_names = {spec.name for spec in source.inputs}
            precision = precision or source.precision
            expected = source
            gpu_graph = (source.notes or {}).get("gpu_graph")
            if self.providers[0] in GPU_PROVIDERS and isinstance(gpu_graph, dict) and gpu_graph.get("file"):
                candidate = bundle.folder / gpu_graph["file"]
                if candidate.is_file():
                    path, digest = candidate, _graph_digest(gpu_graph.get("sha256"), gpu_graph.get("external_data"))
                    why = f"the GPU graph {gpu_graph['file']} ({gpu_graph.get('storage', 'fp16 compute')})"
                else:
                    why = f"its GPU graph {gpu_graph['file']} is missing; running {source.file}"
        else:
            path, digest = Path(source), None
            name = name or path.stem
            input_names = set()
            expected = None
        # A denoiser graph that returns one guidance branch's eps runs its two branches as two
        # concurrent calls on a multi-core CPU, each with half the threads (`vem.runtime.guidance`).
        split = (BRANCH_INPUT in input_names and self.providers[0] == "CPUExecutionProvider" and self.threads >= 2)
        runner = OnnxRuntimeRunner(path, name=name, providers=self.providers,
                                   threads=self.threads // 2 if split else self.threads,
                                   cache_dir=self.cache_dir, sha256=digest, split_branches=split,
                                   precision=precision or "fp32", tensorrt_cache_dir=self.tensorrt_cache_dir,
                                   expected=expected)
        if why:
            runner.why = why
        return runner

    def load_component(self, bundle: Bundle, name: str, precision: str) -> OnnxRuntimeRunner:
        """The bundle's graph for `name` at `precision` (fp32 where only fp32 was exported)."""
        return self.load(bundle.manifest.component(name, precision), bundle=bundle)


class OnnxRuntimeRunner(Runner):
    def __init__(self, path: str | os.PathLike, *, name: str, providers: Sequence[str], threads: int,
                 cache_dir: Path | None = None, sha256: str | None = None, split_branches: bool = False,
                 precision: str = "fp32", tensorrt_cache_dir: Path | None = None,
                 expected: ComponentEntry | None = None):
        import onnxruntime

        self._ort = onnxruntime
        path = Path(path)
        if not path.is_file():
            raise BundleError(f"component {name}: graph file not found: {path}", hint=HINT_REEXPORT)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise here
        if name != "denoiser":
            # The other graphs run a few times per video on shapes that change with its length:
            # the CPU arena would keep the largest call's activations for the rest of the process
            # (the 60 s aligner call alone held 0.9 GB, 0.5 GB without it). The denoiser runs the
            # same shapes every step, where the arena saves its allocations.
            options.enable_cpu_mem_arena = False
        if os.environ.get(SPINNING_ENV, "0") != "1":
            # ORT's intra-op threads spin after each run by default (lower latency for back-to-back
            # runs of one session). The runtime alternates sessions (and runs the denoiser's two
            # guidance branches on single-threaded calls), so a spinning pool only takes a core
            # from the next graph: end to end on the 2-core CPU, fp32 2.57-2.96 s and int8
            # 1.55-1.89 s with it off against 2.75-3.14 s and 1.88-2.00 s with it on (README
            # INT8). VEM_ORT_SPINNING=1 restores ORT's default.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model_path, written_cache = path, None
        if cache_dir is not None:
            model_path, written_cache = self._use_cache(options, path, name, providers[0], cache_dir, sha256)
        provider_list = [(p, _provider_options(p, cache_dir, precision, tensorrt_cache_dir)) for p in providers]
        try:
            session = onnxruntime.InferenceSession(str(model_path), sess_options=options, providers=provider_list)
        except Exception as error:  # noqa: BLE001 - ORT raises one pybind class per status code
            text = " ".join(str(error).split())
            if "Load model" in text or type(error).__name__ in ("InvalidProtobuf", "InvalidGraph"):
                raise BundleError(f"component {name}: not a valid ONNX graph ({text}): {path}",
                                  hint=HINT_REEXPORT) from None
            raise BundleError(f"component {name}: ONNX Runtime could not load {path} ({text})",
                              hint=HINT_REEXPORT) from None
        if written_cache is not None:
            os.replace(written_cache.with_suffix(".tmp"), written_cache)
        self.session = session
        self.path = path
        self.loaded_from = model_path  # the optimized-model cache file when one was used
        active = session.get_providers()
        super().__init__(
            component=name, backend="onnxruntime", provider=active[0],
            inputs=[_tensor_info(arg) for arg in session.get_inputs()],
            outputs=[_tensor_info(arg) for arg in session.get_outputs()],
        )
        if expected is not None:
            self._check_against(expected)
        if active[0] != providers[0]:
            self.notes.append(f"{name}: {providers[0]} could not start; running on {active[0]}")
        self._cupy = cupy_or_none() if self.device == "cuda" else None
        # `vem.runtime.guidance`: run the guidance branches as concurrent calls, each on ``threads``
        # intra-op threads (`OnnxRuntimeBackend.load` decides it for a branch graph on the CPU).
        self.split_branches = bool(split_branches)

    @staticmethod
    def _use_cache(options: Any, path: Path, name: str, provider: str, cache_dir: Path,
                   sha256: str | None) -> tuple[Path, Path | None]:
        """Load the cached optimized graph if there is one; else arrange for ORT to write it."""
        import onnxruntime

        digest = sha256 or sha256_file(path)
        tag = provider.replace("ExecutionProvider", "").lower()
        cached = cache_dir / f"{name}-{digest[:16]}-ort{onnxruntime.__version__}-{tag}.onnx"
        if cached.is_file():
            # The passes already ran when it was written (ORT's offline mode): skip them now.
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
            return cached, None
        cache_dir.mkdir(parents=True, exist_ok=True)
        options.optimized_model_filepath = str(cached.with_suffix(".tmp"))
        if external_data_file(path).is_file():
            # A graph in ONNX's external-data form (over 2 GB): the optimized copy cannot be one
            # protobuf either, so ORT writes its weights beside it under the final name (only the
            # graph file is renamed from .tmp once the session exists).
            options.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                             cached.name + ".data")
            options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes",
                                             "1024")
        return path, cached

    def _check_against(self, entry: ComponentEntry) -> None:
        """GraphMismatch (exit 4) when the graph's inputs or outputs are not the manifest's: names,
        element types and number of axes."""
        for side, have, want in (("inputs", self.inputs, entry.inputs), ("outputs", self.outputs, entry.outputs)):
            graph = {info.name: info for info in have}
            manifest = {spec.name: spec for spec in want}
            if set(graph) != set(manifest):
                raise GraphMismatch(
                    f"component {self.component}: the graph's {side} {sorted(graph)} are not the manifest's "
                    f"{sorted(manifest)}: {self.path}", hint=HINT_REEXPORT)
            for key, spec in manifest.items():
                info = graph[key]
                if np.dtype(spec.dtype) != info.dtype or len(spec.shape) != len(info.shape):
                    raise GraphMismatch(
                        f"component {self.component}: {side[:-1]} {key!r} is {info.dtype} with {len(info.shape)} "
                        f"axes in the graph but {spec.dtype} with {len(spec.shape)} in the manifest: {self.path}",
                        hint=HINT_REEXPORT)

    # ---- properties --------------------------------------------------------------------------

    @property
    def device(self) -> str:
        return "cuda" if self.provider in GPU_PROVIDERS else "cpu"

    @property
    def array_module(self) -> Any:
        return self._cupy if self._cupy is not None else np

    # ---- host path ---------------------------------------------------------------------------

    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        self.check_input_names(inputs)
        feeds = {name: self.host_input(name, self.to_host(value)) for name, value in inputs.items()}
        with run_options(self._ort.RunOptions()) as options:  # a signal terminates the run at once
            results = self.session.run(None, feeds, options)
        outputs = dict(zip(self.output_names, results))
        check_finite(self.component, outputs)
        return outputs

    # ---- device path -------------------------------------------------------------------------

    def bind(self, **static_inputs: Any) -> BoundRunner:
        self.check_input_names(static_inputs, partial=True)
        if self.device == "cpu":
            return _CpuBound(self, static_inputs)
        return _IoBound(self, static_inputs)

    def to_device(self, array: Any) -> Any:
        if self._cupy is not None:
            return self._cupy.asarray(array)
        return np.ascontiguousarray(self.to_host(array))

    def close(self) -> None:
        self.session = None


class _CpuBound(BoundRunner):
    """CPU provider: the arrays already live where the graph runs; feed them straight in."""

    def __init__(self, runner: OnnxRuntimeRunner, static_inputs: Mapping[str, Any]):
        super().__init__(runner, list(static_inputs))
        self._static = {name: runner.host_input(name, value) for name, value in static_inputs.items()}

    def __call__(self, **dynamic_inputs: Any) -> dict[str, np.ndarray]:
        self.check_dynamic(dynamic_inputs)
        runner = self.runner
        feeds = dict(self._static)
        for name, value in dynamic_inputs.items():
            feeds[name] = runner.host_input(name, value)
        with run_options(runner._ort.RunOptions()) as options:
            outputs = dict(zip(runner.output_names, runner.session.run(None, feeds, options)))
        check_finite(runner.component, outputs)
        return outputs


class _IoBound(BoundRunner):
    """GPU provider: static inputs live on the device as OrtValues for the whole generation;
    dynamic CuPy inputs are bound by pointer and outputs stay on the device."""

    def __init__(self, runner: OnnxRuntimeRunner, static_inputs: Mapping[str, Any]):
        super().__init__(runner, list(static_inputs))
        ort = runner._ort
        self._binding = runner.session.io_binding()
        self._static_values = {}  # keep them alive as long as the binding uses them
        for name, value in static_inputs.items():
            ort_value = ort.OrtValue.ortvalue_from_numpy(runner.host_input(name, runner.to_host(value)), "cuda", 0)
            self._static_values[name] = ort_value
            self._binding.bind_ortvalue_input(name, ort_value)

    def __call__(self, **dynamic_inputs: Any) -> dict[str, Any]:
        self.check_dynamic(dynamic_inputs)
        runner, binding, cupy = self.runner, self._binding, self.runner._cupy
        keep_alive = []
        if cupy is not None:
            # The sampler's arithmetic ran on CuPy's stream; ORT reads on its own stream.
            cupy.cuda.get_current_stream().synchronize()
        for name, value in dynamic_inputs.items():
            dtype = next(info.dtype for info in runner.inputs if info.name == name)
            if cupy is not None and is_device_array(value):
                value = cupy.ascontiguousarray(value, dtype=dtype)
                keep_alive.append(value)
                binding.bind_input(name, "cuda", 0, dtype, list(value.shape), device_pointer(value))
            else:
                binding.bind_cpu_input(name, runner.host_input(name, runner.to_host(value)))
        for name in runner.output_names:
            binding.bind_output(name, "cuda" if cupy is not None else "cpu", 0)
        with run_options(runner._ort.RunOptions()) as options:
            runner.session.run_with_iobinding(binding, options)
        binding.synchronize_outputs()
        if cupy is None:
            outputs = dict(zip(runner.output_names, binding.copy_outputs_to_cpu()))
            check_finite(runner.component, outputs)
            return outputs
        outputs = {name: _cupy_view(cupy, value) for name, value in zip(runner.output_names, binding.get_outputs())}
        check_finite(runner.component, outputs, cupy)
        return outputs

    def close(self) -> None:
        self._binding.clear_binding_inputs()
        self._binding.clear_binding_outputs()
        self._static_values.clear()


def _cupy_view(cupy: Any, ort_value: Any) -> Any:
    """A CuPy array over an OrtValue's device memory, keeping the OrtValue alive (no copy)."""
    dtype = np.dtype(ORT_TYPE_TO_NUMPY[ort_value.data_type()])
    shape = tuple(ort_value.shape())
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    memory = cupy.cuda.UnownedMemory(ort_value.data_ptr(), nbytes, ort_value)
    return cupy.ndarray(shape, dtype=dtype, memptr=cupy.cuda.MemoryPointer(memory, 0))


def _tensor_info(arg: Any) -> TensorInfo:
    dtype = ORT_TYPE_TO_NUMPY.get(arg.type)
    if dtype is None:
        raise BundleError(f"graph input/output {arg.name!r} has type {arg.type}, which vem does not use")
    shape = tuple(d if isinstance(d, int) else (d or None) for d in arg.shape)
    return TensorInfo(arg.name, np.dtype(dtype), shape)
