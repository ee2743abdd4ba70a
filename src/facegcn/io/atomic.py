"""Atomic file writes: write to a temporary file in the same directory, fsync, then rename.

A process killed at any moment leaves either the old file or the new one, never a torn one (a
killed process may leave its ``.NAME.XXXXXXXX.tmp`` behind; a finished or failed write never
does). After the rename the directory is fsynced too, so the new name survives a power cut.
Every ``OSError`` (full disk, read-only or missing location, a parent that is a file, ...) becomes
an :class:`~facegcn.errors.OutputError` with a one-line message naming the file.

A *set* of files that belong together (one face's meshes, textures and report) is written with
:func:`atomic_folder`: into a temporary sibling folder ``.NAME.XXXXXXXX.tmp``, then moved into
place — one rename when the folder is new or empty; otherwise each file is renamed over its old
version after every target was checked, and files of the old set that the new one does not have
are removed. A failure anywhere before that leaves the folder as it was, never a partial set.
:func:`check_writable_folder` checks a destination before any work is done.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator

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


def check_writable_folder(path: str | os.PathLike) -> Path:
    """Check, without creating anything, that ``path`` is (or can be created as) a writable folder.

    Raises:
        OutputError: ``path`` or one of its parents is a file, or the folder (or its nearest
            existing parent) cannot be written; the message names the culprit.
    """
    path = Path(path)
    probe = path
    try:
        while not (probe.exists() or probe.is_symlink()) and probe.parent != probe:
            probe = probe.parent
        is_dir = probe.is_dir()
    except OSError as exc:  # e.g. a name too long for the file system
        raise OutputError(describe_write_error(exc, path)) from None
    if not is_dir:
        if probe == path:
            raise OutputError(f"cannot write {path}: it is a file, not a folder")
        raise OutputError(f"cannot write {path}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: permission denied / read-only location"
                          + (f" ({probe})" if probe != path else ""))
    return path


def _temp_folder(path: Path) -> Path:
    """A new, empty ``.NAME.XXXXXXXX.tmp`` folder beside ``path`` (mode from the umask, as ``mkdir``)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            tmp = path.parent / f"{_tmp_prefix(path.name)}{secrets.token_hex(4)}.tmp"
            try:
                os.mkdir(tmp)
                return tmp
            except FileExistsError:
                continue
        raise OSError(errno.EEXIST, "no free temporary name", str(path))
    except OSError as exc:
        raise OutputError(describe_write_error(exc, path)) from None


def _is_empty_dir(path: Path) -> bool:
    try:
        with os.scandir(path) as it:
            return next(it, None) is None
    except OSError:
        return False


def _move_into(tmp: Path, path: Path, stale: Callable[[str], bool] | None) -> None:
    """Move every entry of ``tmp`` into the existing folder ``path`` (see :func:`atomic_folder`)."""
    names = sorted(os.listdir(tmp))
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: permission denied / read-only location")
    for n in names:  # every target first: nothing is moved when one of them cannot be replaced
        t = path / n
        if t.is_dir() and not t.is_symlink():
            raise OutputError(f"cannot write {t}: it is a directory")
    old = [n for n in os.listdir(path) if stale is not None and n not in names and stale(n)]
    target = path
    try:
        for n in names:
            target = path / n
            os.replace(tmp / n, target)
        for n in old:
            target = path / n
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)
    except OSError as exc:
        raise OutputError(describe_write_error(exc, target)) from None
    _fsync_dir(path)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, *, stale: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """Context manager yielding a temporary folder whose files become ``path``'s on success only.

    The temporary folder is a sibling of ``path`` (same file system). On success it is renamed to
    ``path`` when ``path`` does not exist or is an empty folder; else its files are renamed into
    ``path`` one by one (after checking that none of them would replace a folder), and the
    entries of ``path`` for which ``stale(name)`` is true and that the new set lacks are removed
    (e.g. the ``mesh.obj`` of an earlier run that wrote OBJ, when this one writes PLY only).
    If the body raises, ``path`` is left untouched and the temporary folder is removed; error
    messages name the final path, not the temporary one.

    Raises:
        OutputError: the folder cannot be written.
    """
    path = Path(path)
    tmp = _temp_folder(path)
    try:
        try:
            yield tmp
        except OutputError as exc:  # name the destination, not our temporary folder
            raise OutputError(str(exc).replace(str(tmp), str(path))) from None
        if (path.exists() or path.is_symlink()) and not path.is_dir():
            raise OutputError(f"cannot write {path}: it is a file, not a folder")
        if not path.is_symlink() and (not path.exists() or _is_empty_dir(path)):
            try:
                os.rename(tmp, path)  # a new or an empty folder: one rename
                _fsync_dir(path.parent)
                return
            except OSError as exc:
                if not (path.is_dir() and exc.errno in (errno.ENOTEMPTY, errno.EEXIST)):  # else: filled meanwhile
                    raise OutputError(describe_write_error(exc, path)) from None
        _move_into(tmp, path, stale)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_temp_folders(folder: str | os.PathLike, name: str) -> None:
    """Remove what a killed :func:`atomic_folder` for ``folder / name`` left behind (best effort)."""
    folder = Path(folder)
    with contextlib.suppress(OSError):
        for p in folder.iterdir():
            if p.is_dir() and is_temp_name(p.name, name):
                shutil.rmtree(p, ignore_errors=True)


_describe = describe_write_error  # the old private name
