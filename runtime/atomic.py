"""Write output files so that nothing is lost and nothing half-written is left behind.

Every output of the runtime (wav, flac, mp4, JSON report) goes through `atomic_output`: the data
is written to a hidden temporary file in the destination folder and moved into place only when
complete, so a crash, Ctrl-C or full disk never leaves a truncated file under the real name and
never damages an existing one. An existing file is replaced only with ``force=True``; an output
that is one of the inputs is refused even then (the input must never be touched).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable, Iterator

from .errors import OutputError, VemError


def _same_file(a: str, b: str) -> bool:
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_output_path(path: str | os.PathLike, *, force: bool = False, inputs: Iterable[str | os.PathLike] = ()) -> str:
    """Refuse an output path that cannot or must not be written; return it as an absolute path."""
    path = os.fspath(path)
    final = os.path.abspath(path)
    for source in inputs:
        if _same_file(final, os.path.abspath(os.fspath(source))):
            raise OutputError(
                f"{path}: is the input file; refusing to write over it",
                hint="choose another output name (vem never modifies its input)",
            )
    folder = os.path.dirname(final)
    if not os.path.isdir(folder):
        blocking = _first_non_folder(folder)
        if blocking is not None:
            raise OutputError(f"{path}: cannot be created: {blocking} is a file, not a folder",
                              hint="choose another output path")
        raise OutputError(f"{path}: the folder {folder} does not exist", hint="create it first or choose another output path")
    if os.path.isdir(final):
        raise OutputError(f"{path}: is a folder, not a file name")
    name_bytes, name_max = len(os.fsencode(os.path.basename(final))), _name_max(folder)
    if name_bytes > name_max:
        raise OutputError(f"{path}: the file name is too long ({name_bytes} bytes; this file system allows "
                          f"{name_max})", hint="choose a shorter output name with -o")
    if os.path.lexists(final) and not force:
        raise OutputError(f"{path}: already exists", hint="use --force to overwrite it, or choose another output name")
    return final


def _first_non_folder(folder: str) -> str | None:
    """The first existing ancestor of ``folder`` (or itself) that is not a folder, if any."""
    current = folder
    while True:
        if os.path.lexists(current):
            return None if os.path.isdir(current) else current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def check_writable_folder(folder: str | os.PathLike, *, display: str | None = None) -> None:
    """OutputError unless a file can really be created in ``folder`` (tried, then removed).

    Permission bits do not say it for root, read-only mounts or /proc, so this creates the same
    kind of hidden temporary file `atomic_output` will; run before long work, it fails fast."""
    folder = os.fspath(folder)
    try:
        temp = _create_temp(os.path.join(folder, "vem-write-check"))
    except OSError as error:
        raise OutputError(
            f"{display or folder}: cannot write in {folder} ({_describe(error)})",
            hint="choose a folder you can write to",
        ) from error
    _remove_quietly(temp)


# errno values that mean "the output cannot be written" (exit 5, not a bug), whatever library
# raised them: the project's one table (vem-run's last-resort handler and the muxer use it too).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM,
                          errno.ENOTDIR})


def describe_os_error(error: BaseException) -> str:
    """A short reason for an OS-level failure ("no space left on the device")."""
    return _describe(error)


def _describe(error: BaseException) -> str:
    code = getattr(error, "errno", None)
    if code == errno.ENOSPC:
        return "no space left on the device"
    if code == errno.EFBIG:
        return "file too large for this file system or limit"
    if code == errno.EROFS:
        return "read-only file system"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return getattr(error, "strerror", None) or str(error)


def _name_max(folder: str) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _temp_stem(folder: str, name: str) -> tuple[str, str]:
    """(stem, extension) of the temporary names for ``name`` in ``folder``: the hidden name adds 18
    bytes to the final one, so the stem is shortened until any final name the file system takes
    has a temporary name it takes too."""
    stem, ext = os.path.splitext(name)
    room = _name_max(folder) - len(os.fsencode(f"..{'0' * 8}.partial{ext}"))
    return os.fsdecode(os.fsencode(stem)[:max(room, 1)]) or "vem", ext


def _create_temp(final: str) -> str:
    folder, name = os.path.split(final)
    stem, ext = _temp_stem(folder, name)
    for _ in range(100):
        temp = os.path.join(folder, f".{stem}.{secrets.token_hex(4)}.partial{ext}")
        try:
            # O_EXCL: never reuse a name; mode 0o666 so the final file gets the user's umask.
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return temp
    raise OutputError(f"{final}: cannot create a temporary file in {folder}")


def _commit(temp: str, final: str, force: bool) -> None:
    if force:
        os.replace(temp, final)
        return
    try:
        # A hard link fails if the name was taken meanwhile (no silent overwrite, even in a race).
        os.link(temp, final)
    except FileExistsError as error:
        raise OutputError(f"{final}: already exists", hint="use --force to overwrite it") from error
    except OSError:
        # File systems without hard links (FAT, some network mounts): check, then rename.
        if os.path.lexists(final):
            raise OutputError(f"{final}: already exists", hint="use --force to overwrite it") from None
        os.replace(temp, final)
        return
    os.unlink(temp)


def remove_partials(path: str | os.PathLike) -> list[str]:
    """Remove the temporary files `atomic_output` left for ``path`` when its writer was killed
    (SIGKILL: no ``finally`` ran), and those of writers nested in it; return what was removed.

    A process that is stopped by a signal cleans up itself; this is for the one that cannot, such
    as a Ray worker killed by the driver: the driver sweeps each output that worker was writing.
    Only hidden names that `_create_temp` makes for this output (``.<stem>.<8 hex>.partial<ext>``,
    nested ones with more leading dots) are touched."""
    import re

    final = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(final)
    stem, ext = _temp_stem(folder, name)
    pattern = re.compile(r"\.+" + re.escape(stem) + r"\.[0-9a-f]{8}\.partial.*" + re.escape(ext) + r"\Z")
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for entry in names:
        if pattern.match(entry):
            _remove_quietly(os.path.join(folder, entry))
            removed.append(os.path.join(folder, entry))
    return removed


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike, *, force: bool = False, inputs: Iterable[str | os.PathLike] = ()
) -> Iterator[str]:
    """Yield a temporary path to write; on success it becomes ``path``, on any failure it is removed.

    Raises OutputError before anything is written when ``path`` exists (without ``force``), is one
    of ``inputs``, or lies in a missing folder; and when writing or renaming fails (OSError such
    as a full disk or a read-only folder is turned into OutputError with a readable reason).
    """
    display = os.fspath(path)
    final = check_output_path(display, force=force, inputs=inputs)
    try:
        temp = _create_temp(final)
    except OSError as error:
        raise OutputError(
            f"{display}: cannot write in {os.path.dirname(final)} ({_describe(error)})",
            hint="choose a folder you can write to",
        ) from error
    try:
        yield temp
        _commit(temp, final, force)
    except VemError:
        _remove_quietly(temp)
        raise
    except OSError as error:
        _remove_quietly(temp)
        raise OutputError(f"{display}: cannot be written ({_describe(error)})") from error
    except BaseException:
        _remove_quietly(temp)
        raise
