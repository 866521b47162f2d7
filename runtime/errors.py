"""The runtime's exceptions, one class per documented exit code.

`vem-run` catches `VemError`, prints ``error: <message>`` (and ``hint: <hint>`` when there is one)
as one line each, and exits with the exception's ``exit_code``; anything else is a bug (exit 1,
with a hint to report it). Exit codes (README): 0 ok, 1 unexpected, 2 usage, 3 unusable input,
4 bundle/model problem, 5 cannot write output.

Messages are written for the person who ran the command: they name the file and say what is
wrong with it in their terms ("has no video stream"), not FFmpeg's ("stream index out of range").
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_BUNDLE = 4
EXIT_OUTPUT = 5
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it


class VemError(Exception):
    """Base of every error the runtime reports to a user; exit code 1 when not more specific."""

    exit_code: int = EXIT_UNEXPECTED
    default_hint: str | None = ("this looks like a bug in vem; please report it with the command you ran "
                                "and what it prints with --debug")

    def __init__(self, message: str, hint: str | None = None):
        # One line: a message with newlines would break the CLI's one-line contract.
        self.message = " ".join(str(message).split())
        self.hint = " ".join(hint.split()) if hint else self.default_hint
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def user_message(self) -> str:
        """What the CLI prints: ``error: ...`` and, if any, ``hint: ...`` on a second line."""
        text = f"error: {self.message}"
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text


class UsageError(VemError, ValueError):
    """The command line or its arguments are wrong (exit 2)."""

    exit_code = EXIT_USAGE
    default_hint = None


class InputError(VemError, ValueError):
    """An input the user gave cannot be used: a video that does not decode, a bad parse JSON (exit 3)."""

    exit_code = EXIT_INPUT
    default_hint = None


class BundleError(VemError):
    """The model bundle is missing, damaged or does not fit this machine (exit 4)."""

    exit_code = EXIT_BUNDLE
    default_hint = None


class OutputError(VemError):
    """An output file cannot be written: exists already, unwritable folder, disk full (exit 5)."""

    exit_code = EXIT_OUTPUT
    default_hint = None


def exit_code_for(error: BaseException) -> int:
    """The process exit code for an exception that reached the top of a command."""
    if isinstance(error, VemError):
        return error.exit_code
    return EXIT_UNEXPECTED
