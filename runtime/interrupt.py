"""Stop promptly and cleanly on Ctrl-C, SIGTERM or SIGHUP.

Inside `handling_signals` (vem-run runs in it), SIGINT, SIGTERM and SIGHUP raise `Interrupted` in the main
thread, so that every ``with``/``finally`` on the way out runs: temporary files are removed and
nothing is left behind (`vem.runtime.atomic`). The exit code is 128 + the signal's number (130,
143, 129), as shells report a process killed by it. Further signals while stopping are ignored
(no second traceback), up to a third, which exits at once.

Python runs a signal handler only between bytecodes, so a signal that arrives while ONNX Runtime
is inside a long ``session.run`` would wait for the run to end (many seconds for a long window on
a slow CPU). A watcher thread is woken by the signal itself (`signal.set_wakeup_fd`) and sets the
``terminate`` flag of every ONNX Runtime run in progress (`run_options`), which makes the run
return within milliseconds; the runner then raises `Interrupted` (`raise_if_interrupted`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
_NAMES = {getattr(signal, name): name for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)}


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal (a KeyboardInterrupt, so code that handles Ctrl-C handles it)."""

    def __init__(self, signum: int = signal.SIGINT):
        self.signum = int(signum)
        super().__init__(_NAMES.get(self.signum, f"signal {self.signum}"))

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return _NAMES.get(self.signum, f"signal {self.signum}")


_lock = threading.Lock()
_active: set[Any] = set()  # RunOptions of the ONNX Runtime runs in progress
_received: list[int] = []  # signals seen by the watcher, in order
_raised: list[int] = []  # the signal Interrupted was raised for (at most one)
_installed = False


_handled: list[int] = []  # signals this process's handler has seen


def _handler(signum: int, frame: Any) -> None:
    _handled.append(signum)
    if _raised:
        if len(_handled) >= 3:
            os._exit(128 + _raised[0])  # asked three times: stop now, whatever is left
        return  # already stopping: the cleanup runs to its end
    _raised.append(signum)
    raise Interrupted(signum)


def _watch(read_fd: int) -> None:
    while True:
        try:
            data = os.read(read_fd, 64)
        except OSError:
            return
        if not data:
            return
        stops = [signum for signum in data if signum in SIGNALS]  # other handled signals are no stop
        if not stops:
            continue
        with _lock:
            _received.extend(stops)
            for options in list(_active):
                options.terminate = True


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """Within the block, handle SIGINT, SIGTERM and SIGHUP as described above; the previous
    handlers come back afterwards (main thread only; elsewhere, and when nested, it does nothing)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    _received.clear()
    _raised.clear()
    _handled.clear()
    for signum in SIGNALS:
        signal.signal(signum, _handler)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watcher = threading.Thread(target=_watch, args=(read_fd,), name="vem-signal-watch", daemon=True)
    watcher.start()
    _installed = True
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for signum, handler in previous.items():
            # After a stop the process is on its way out: a late signal must not print a traceback.
            restored = signal.SIG_IGN if _raised else handler if handler is not None else signal.SIG_DFL
            signal.signal(signum, restored)
        os.close(write_fd)  # the watcher reads end-of-file and ends
        watcher.join(timeout=1.0)
        os.close(read_fd)
        with _lock:
            _received.clear()
        _raised.clear()
        _handled.clear()
        _installed = False


def pending() -> int | None:
    """The signal that asked to stop, if one did (seen by the watcher or already raised)."""
    if _raised:
        return _raised[0]
    with _lock:
        return _received[0] if _received else None


def raise_if_interrupted() -> None:
    """Raise `Interrupted` if a signal asked to stop (in the main thread; else do nothing)."""
    signum = pending()
    if signum is None or threading.current_thread() is not threading.main_thread():
        return
    if not _raised:
        _raised.append(signum)
    raise Interrupted(signum)


@contextlib.contextmanager
def run_options(options: Any) -> Iterator[Any]:
    """Register an ONNX Runtime RunOptions for the duration of one run, so that a signal
    terminates the run; a run that fails because of that raises `Interrupted` instead."""
    with _lock:
        if _installed and _received:
            options.terminate = True
        _active.add(options)
    try:
        yield options
    except Exception:
        if _installed and pending() is not None:
            if threading.current_thread() is threading.main_thread():
                raise_if_interrupted()
            raise Interrupted(pending()) from None
        raise
    finally:
        with _lock:
            _active.discard(options)


def describe(error: Interrupted) -> str:
    return "interrupted" if error.signum == signal.SIGINT else f"stopped by {error.name}"


__all__ = ["Interrupted", "handling_signals", "pending", "raise_if_interrupted", "run_options", "describe"]
