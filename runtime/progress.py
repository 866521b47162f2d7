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


class BatchProgress:
    """Videos of a batch across workers: done, failed, running, and the throughput so far.

    On a terminal one bar for the whole batch (``videos 3/6 ... failed 1, running 2``); otherwise
    one line per finished video (``[3/6] done a.mp4 on host:1234 in 4.1 s; 1 failed, 2 running,
    5.2 videos/min``); nothing with ``quiet``. `writing` lets other text print without breaking the bar."""

    def __init__(self, progress: Progress, total: int):
        self.progress = progress
        self.total = total
        self.finished: dict[str, int] = {}
        self.running = 0
        self.started = time.perf_counter()
        self._bar = None
        if progress.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc="videos", unit="video", file=progress.stream, dynamic_ncols=True)

    @property
    def count(self) -> int:
        return sum(self.finished.values())

    def per_minute(self) -> float:
        seconds = time.perf_counter() - self.started
        return 60.0 * self.finished.get("done", 0) / seconds if seconds > 0 else 0.0

    def start(self) -> None:
        self.running += 1
        self._postfix()

    def finish(self, video: str, status: str, worker: str, seconds: float) -> None:
        self.running = max(0, self.running - 1)
        self.finished[status] = self.finished.get(status, 0) + 1
        if self._bar is not None:
            self._bar.update(1)
            self._postfix()
        elif self.progress.mode == "lines":
            failed = self.finished.get("failed", 0)
            print(f"[{self.count}/{self.total}] {status} {video} on {worker} in {seconds:.1f} s; "
                  f"{failed} failed, {self.running} running, {self.per_minute():.1f} videos/min",
                  file=self.progress.stream, flush=True)

    def _postfix(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"failed {self.finished.get('failed', 0)}, running {self.running}")

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Print inside this block (to any stream) without tearing the bar."""
        if self._bar is None:
            yield
            return
        with self._bar.external_write_mode(file=self.progress.stream):
            yield

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
