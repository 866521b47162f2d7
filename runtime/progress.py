"""Progress of the long stages: a bar on a terminal, one line per stage otherwise, or nothing.

    progress = Progress.for_stream(sys.stderr, quiet=False)
    with progress.stage("decode", total=1800, unit="frame") as advance:
        for ...:
            advance(1)

A bar (tqdm) is drawn only when the stream is a terminal; when output goes to a file or a pipe
each stage prints one line as it ends (``decode: 1800 frames in 5.2 s``), so a log shows where
the time went without carriage-return noise; ``quiet`` prints nothing.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

MODES = ("bar", "lines", "off")


class Progress:
    def __init__(self, mode: str = "off", stream: TextIO | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.stream = stream if stream is not None else sys.stderr

    @classmethod
    def for_stream(cls, stream: TextIO | None = None, quiet: bool = False) -> Progress:
        stream = stream if stream is not None else sys.stderr
        if quiet:
            return cls("off", stream)
        try:
            interactive = stream.isatty()
        except (AttributeError, ValueError):
            interactive = False
        return cls("bar" if interactive else "lines", stream)

    @contextlib.contextmanager
    def stage(self, name: str, total: int | None = None, unit: str = "frame") -> Iterator[Callable[[int], None]]:
        """Yields ``advance(n)``; the stage's line (or bar) closes when the block ends."""
        done = 0
        started = time.perf_counter()
        bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            bar = tqdm(total=total, desc=name, unit=unit, leave=False, file=self.stream, dynamic_ncols=True)

        def advance(count: int = 1) -> None:
            nonlocal done
            done += count
            if bar is not None:
                bar.update(count)

        try:
            yield advance
        finally:
            if bar is not None:
                bar.close()
            elif self.mode == "lines":
                seconds = time.perf_counter() - started
                amount = f"{done} {unit}{'' if done == 1 else 's'} in " if done else ""
                print(f"{name}: {amount}{seconds:.1f} s", file=self.stream, flush=True)


NO_PROGRESS = Progress("off")
