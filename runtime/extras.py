"""Optional dependencies: the base install is the runtime alone (numpy, PyAV, ONNX Runtime, tqdm).

The tools that need more say which extra brings it, rather than failing with an ImportError:

- ``eval``: librosa (with numba, llvmlite, scipy, scikit-learn), for librosa's beat tracker
  (vem-eval's default, `vem.training.evaluate`);
- ``synth``: scipy and scikit-image, for vem-synth's music and pictures;
- ``export``: torch and the ONNX tool chain (vem-export, vem-train), with everything above.
"""

from __future__ import annotations

import importlib.util

from .errors import UsageError


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (librosa's import alone
    compiles numba code for seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken one
        return False


def missing_extra(modules: str | tuple[str, ...], extra: str, purpose: str) -> UsageError | None:
    """A UsageError (exit 2) naming the extra to install when any of ``modules`` is absent, else None."""
    names = (modules,) if isinstance(modules, str) else tuple(modules)
    absent = [name for name in names if not installed(name)]
    if not absent:
        return None
    return UsageError(f"{purpose} needs {', '.join(absent)}, which the base install of vem leaves out",
                      hint=f'pip install "vem[{extra}]"')


def require(modules: str | tuple[str, ...], extra: str, purpose: str) -> None:
    """Raise `missing_extra`'s UsageError when any of ``modules`` is absent."""
    error = missing_extra(modules, extra, purpose)
    if error is not None:
        raise error


__all__ = ["installed", "missing_extra", "require"]
