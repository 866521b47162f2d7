"""A frozen, file-free text encoder: hashed bag of words (and word pairs).

The paper encodes captions, tags and storyboard descriptions with CLAP's text tower, whose weights
cannot be shipped or downloaded here (docs/architecture.md). The demo checkpoint therefore uses this encoder:
each lower-cased word and each adjacent word pair is hashed (BLAKE2b) to a fixed +-1 vector, the
vectors are averaged and L2-normalised. It is deterministic across machines, numpy versions and
Python versions, needs no weights, runs on the device in microseconds, and gives texts that share
words nearby vectors -- which is all the synthetic captions need. A bundle records the encoder
(`describe()`) so the runtime refuses a bundle made with a different one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
ENCODER_KIND = "hashed-bow"
ENCODER_VERSION = 1


def tokenize(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    pairs = [f"{a}_{b}" for a, b in zip(words, words[1:])]
    return words + pairs


@lru_cache(maxsize=65536)
def _token_vector(token: str, dim: int) -> np.ndarray:
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=dim // 8, person=b"vem-text").digest()
    bits = np.unpackbits(np.frombuffer(digest, dtype=np.uint8))
    vector = bits.astype(np.float32) * 2.0 - 1.0
    vector.setflags(write=False)
    return vector


class HashedTextEncoder:
    def __init__(self, dim: int):
        if dim % 8 or not 8 <= dim <= 512:
            raise ValueError(f"text dim must be a multiple of 8 in 8..512, got {dim}")
        self.dim = dim

    def describe(self) -> dict:
        return {"kind": ENCODER_KIND, "version": ENCODER_VERSION, "dim": self.dim}

    def encode(self, text: str) -> np.ndarray:
        """One text -> float32 [dim], unit length (zeros for a text with no words)."""
        tokens = tokenize(text)
        if not tokens:
            return np.zeros(self.dim, dtype=np.float32)
        total = np.sum([_token_vector(token, self.dim) for token in tokens], axis=0)
        norm = float(np.linalg.norm(total))
        return (total / norm).astype(np.float32) if norm > 0 else np.zeros(self.dim, dtype=np.float32)

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.encode(text) for text in texts])

    def encode_tags(self, tags: Sequence[str]) -> np.ndarray:
        """Tags are encoded as one comma-free text so their order does not matter."""
        return self.encode(" ".join(sorted(tag.strip().lower() for tag in tags)))
