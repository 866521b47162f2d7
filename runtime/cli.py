"""Command-line entry points of the runtime: `vem-run`, `vem-bench`, `vem-eval`.

Each is a thin forwarder to the module that owns the command (`run`, `bench`, `rhythm_eval`), so a
command's parser and logic live together and starting one command imports nothing of the others.
Exit codes (README "Errors and exit codes"): 0 ok, 1 unexpected error, 2 usage, 3 unusable input,
4 bundle/model problem, 5 cannot write output, 128 + signal when stopped.
"""

from __future__ import annotations

import argparse
import sys


def build_run_parser() -> argparse.ArgumentParser:
    from .run import build_parser

    return build_parser()


def run_main(argv: list[str] | None = None) -> int:
    from .run import main

    code = main(argv)
    if code >= 128:
        # Stopped by a signal, temporary files already removed: leave now. Tearing down the
        # loaded graphs and thread pools would take another second or two, and the user asked
        # to stop.
        import contextlib
        import os

        with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    return code


def build_bench_parser() -> argparse.ArgumentParser:
    from .bench import build_parser

    return build_parser()


def bench_main(argv: list[str] | None = None) -> int:
    from .bench import main

    return main(argv)


def build_eval_parser() -> argparse.ArgumentParser:
    from .rhythm_eval import build_parser

    return build_parser()


def eval_main(argv: list[str] | None = None) -> int:
    from .rhythm_eval import main

    return main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_main())
