"""vem.runtime: the torch-free inference runtime (decode, parse, backends, sampler, write).

    from vem.runtime import Pipeline, write_audio
    pipeline = Pipeline.load()                 # the shipped bundle, the fastest valid backend
    result = pipeline.generate("clip.mp4", seed=0)
    write_audio("music.wav", result.waveform, result.sample_rate)

The names below are what a user imports; each is loaded on first use (module ``__getattr__``), so
``import vem.runtime`` stays light (the config alone) and ``vem-run --help`` does not pay for the
pipeline, the backends or ONNX Runtime. Nothing here imports torch or any other part of vem; a
test enforces it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import VemConfig, demo_config, get_config, paper_config

__version__ = "0.1.0"

# public name -> the submodule that defines it
_LAZY = {
    "Pipeline": "pipeline", "Generation": "pipeline", "ParsedVideo": "pipeline",
    "default_bundle_path": "pipeline",
    "Bundle": "bundle", "Manifest": "bundle", "load_bundle": "bundle",
    "Progress": "progress",
    "VideoParse": "parse_schema", "load_parse": "parse_schema", "dump_parse": "parse_schema",
    "ParseError": "parse_schema",
    "write_audio": "audio", "read_audio": "audio", "mux_music": "writer",
    "VemError": "errors", "UsageError": "errors", "InputError": "errors", "BundleError": "errors",
    "OutputError": "errors", "exit_code_for": "errors",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names come from __getattr__
    from .audio import read_audio, write_audio
    from .bundle import Bundle, Manifest, load_bundle
    from .errors import BundleError, InputError, OutputError, UsageError, VemError, exit_code_for
    from .parse_schema import ParseError, VideoParse, dump_parse, load_parse
    from .pipeline import Generation, ParsedVideo, Pipeline, default_bundle_path
    from .progress import Progress
    from .writer import mux_music


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [  # a literal list (linters and IDEs read it); a test checks it against _LAZY
    "VemConfig", "demo_config", "get_config", "paper_config",
    "Pipeline", "Generation", "ParsedVideo", "default_bundle_path", "Bundle", "Manifest", "load_bundle",
    "Progress", "VideoParse", "load_parse", "dump_parse", "ParseError", "write_audio", "read_audio",
    "mux_music", "VemError", "UsageError", "InputError", "BundleError", "OutputError", "exit_code_for",
]
