"""Atomic file writes: write to a temporary file in the same directory, fsync, then rename.

A process killed at any moment leaves either the old file or the new one, never a torn one (a
killed process may leave its ``.NAME.XXXXXXXX.tmp`` behind; a finished or failed write never
does). After the rename the directory is fsynced too, so the new name survives a power cut.
Every ``OSError`` (full disk, read-only or missing location, a parent that is a file, ...) becomes
an :class:`~facegcn.errors.OutputError` with a one-line message naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Iterator

from facegcn.errors import OutputError

# the temporary name is ".{name}.{8 random}.tmp": keep it within NAME_MAX (255 bytes) for long names
_MAX_PREFIX_BYTES = 255 - len(".") - 8 - len(".tmp") - 1


def describe_write_error(exc: OSError, path: str | os.PathLike) -> str:
    """A one-line message for an ``OSError`` met while writing ``path``."""
    path = Path(path)
    if exc.errno == errno.ENOSPC or exc.errno == getattr(errno, "EDQUOT", None):
        return f"cannot write {path}: no space left on device"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {path}: permission denied / read-only location"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in path.parents if os.path.exists(p) and not os.path.isdir(p)), None)
        if blocker is not None:
            return f"cannot write {path}: {blocker} is a file, not a directory"
    if exc.errno == errno.EISDIR:
        return f"cannot write {path}: it is a directory"
    if exc.errno == errno.ENAMETOOLONG:
        return f"cannot write {path}: file name too long"
    return f"cannot write {path}: {exc.strerror or exc}"


def _tmp_prefix(name: str) -> str:
    raw = os.fsencode(name)
    if len(raw) > _MAX_PREFIX_BYTES:
        raw = raw[:_MAX_PREFIX_BYTES]  # may split a UTF-8 sequence: fsdecode keeps the bytes as escapes
    return "." + os.fsdecode(raw) + "."


def is_temp_name(name: str, target: str) -> bool:
    """Whether ``name`` is a temporary file name :func:`atomic_open` uses for ``target``."""
    return name.startswith(_tmp_prefix(target)) and name.endswith(".tmp")


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened/fsynced
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _target_mode(path: Path) -> int:
    """Keep an existing file's permission bits; new files get 0o644."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o644


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Context manager yielding a file object whose content replaces ``path`` on success only.

    If the body raises, or writing/flushing/renaming fails, ``path`` is left untouched and the
    temporary file is removed."""
    path = Path(path)
    if "w" not in mode:
        raise ValueError("atomic_open only supports write modes")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path.name), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(describe_write_error(exc, path)) from None
    ok = False
    try:
        try:
            fh = os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None)
        except BaseException:
            os.close(fd)
            raise
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _target_mode(path))
        os.replace(tmp, path)
        ok = True
        _fsync_dir(path.parent)
    except OSError as exc:
        raise OutputError(describe_write_error(exc, path)) from None
    finally:
        if not ok:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


_describe = describe_write_error  # the old private name
