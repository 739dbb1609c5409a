"""Files the toolkit writes and reads: written whole or not at all, read only when they are what
they claim to be.

Every file or folder that another process (or a later run) may read is written under a temporary
name beside its target and renamed over it when complete, so a reader never sees half a file.
Every file read by path is checked first: a FIFO or a device would block or never end, and a file
far larger than its kind can be is the wrong file, so both are refused in one line.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from textlstm.errors import TextLSTMError, WriteFailed

MiB = 1 << 20
_counter = itertools.count()
_TOKEN = os.urandom(4).hex()  # with the pid and a counter: unique across machines sharing a folder
# what the file system says when it refuses a write: no space, a quota, a read-only, vanished or
# forbidden folder, a file over the size limit; a Rust writer (safetensors) reports the same
# errno inside its own message
REFUSED = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EFBIG,
    errno.EACCES,
    errno.EPERM,
    errno.ENOENT,
    errno.EIO,
}
_OS_CODE = re.compile(r"(?:code: |os error )(\d+)")


def refused(exc: BaseException) -> int | None:
    """The errno of a write that the file system refused, else None."""
    if isinstance(exc, WriteFailed):
        return errno.EIO
    if isinstance(exc, OSError):
        return exc.errno if exc.errno in REFUSED else None
    found = _OS_CODE.search(str(exc)) if type(exc).__name__ == "SafetensorError" else None
    return int(found.group(1)) if found and int(found.group(1)) in REFUSED else None


def refusal(exc: BaseException) -> str | None:
    """Why the file system refused a write (``No space left on device``), else None."""
    if isinstance(exc, WriteFailed):
        return exc.reason
    code = refused(exc)
    return None if code is None else os.strerror(code)


@contextlib.contextmanager
def atomic_path(
    target: str | Path, durable: bool = False, keep_existing: bool = False
) -> Iterator[Path]:
    """A temporary path beside ``target`` (same suffix, so writers that go by it still work);
    whatever is written there replaces ``target`` when the block ends without an error.

    ``durable``: fsync the file and its folder, so the rename survives a power cut.
    ``keep_existing``: if another process created ``target`` first (a folder cannot be renamed
    over a full one), keep theirs: it holds the same content. On an error nothing is left behind.
    """
    target = Path(target)
    unique = f"{os.getpid()}-{_TOKEN}-{next(_counter)}"
    tmp = target.with_name(f".{target.stem}.{unique}.tmp{target.suffix}")
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (keep_existing and target.exists()):
                raise
        if durable:
            _fsync(target.parent)
    except Exception as exc:  # a refused write names the file it was for, not the temporary one
        code = refused(exc)
        if code is None:
            raise
        raise WriteFailed(target, os.strerror(code)) from None
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_text(target: str | Path, text: str, durable: bool = False) -> None:
    with atomic_path(target, durable) as tmp:
        tmp.write_text(text, encoding="utf-8")


def append_text(target: str | Path, text: str) -> None:
    """``text`` added at the end of ``target`` (a log); a refused write names the file."""
    try:
        with open(target, "a", encoding="utf-8") as log:
            log.write(text)
    except OSError as exc:
        if refused(exc) is None:
            raise
        raise WriteFailed(target, os.strerror(exc.errno or 0)) from None


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a folder
        pass
    finally:
        os.close(fd)


_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_file(
    path: str | Path,
    what: str,
    error: type[TextLSTMError] = TextLSTMError,
    limit: int | None = None,
) -> int:
    """The size of ``path`` if it is a regular file of at most ``limit`` bytes; else one line.
    A missing path raises FileNotFoundError and a folder IsADirectoryError, for the caller to
    word."""
    mode = os.stat(path)
    if stat.S_ISDIR(mode.st_mode):
        raise IsADirectoryError(path)
    _check_mode(path, mode, what, error, limit)
    return mode.st_size


def read_bytes(
    path: str | Path, what: str, error: type[TextLSTMError] = TextLSTMError, limit: int = 64 * MiB
) -> bytes:
    """The whole file, read only after it proved a regular file within ``limit`` bytes (opened
    without blocking, so a FIFO put in its place cannot hang the read)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd)
        if stat.S_ISDIR(mode.st_mode):
            raise IsADirectoryError(path)
        _check_mode(path, mode, what, error, limit)
        data = handle.read(limit + 1)
    if len(data) > limit:  # it grew while we read it
        raise error(_too_large(path, len(data), what, limit))
    return data


def _check_mode(
    path: str | Path, mode: os.stat_result, what: str, error: type[TextLSTMError], limit: int | None
) -> None:
    for test, kind in _KINDS:
        if test(mode.st_mode):
            raise error(f"{path}: is {kind}, not a regular file; give a {what}")
    if limit is not None and mode.st_size > limit:
        raise error(_too_large(path, mode.st_size, what, limit))


def _too_large(path: str | Path, size: int, what: str, limit: int) -> str:
    return (
        f"{path}: {size / MiB:,.0f} MiB is far larger than a {what} can be (at most "
        f"{limit / MiB:,.0f} MiB); check the path"
    )
