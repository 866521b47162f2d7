"""vem.runtime: the torch-free inference runtime (decode, parse, backends, sampler, write).

Nothing here imports torch or any other part of vem; a test enforces it.
"""

from .config import VemConfig, demo_config, get_config, paper_config

__all__ = ["VemConfig", "demo_config", "get_config", "paper_config"]
__version__ = "0.1.0"
