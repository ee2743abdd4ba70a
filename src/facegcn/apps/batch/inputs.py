"""The inputs of a batch: files, folders and glob patterns → items with stable output names."""

from __future__ import annotations

import glob
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jfif"}
)


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch.

    Attributes:
        source: the file as found (or the argument that matched nothing).
        name: the output sub-folder, unique within the batch.
        error: a problem known before running (e.g. a pattern that matched no file), else ``None``.
    """

    source: str
    name: str
    error: str | None = None


def _has_magic(s: str) -> bool:
    return any(ch in s for ch in "*?[")


def _under(p: Path, root: Path | None) -> bool:
    if root is None:
        return False
    try:
        p.resolve().relative_to(root)
        return True
    except ValueError:
        return False


def _safe_name(stem: str) -> str:
    s = re.sub(r"[\x00-\x1f/\\:]+", "_", stem).strip(" .")
    return s or "image"


def _expand(inputs: Iterable[str | os.PathLike], recursive: bool, root: Path | None) -> list[tuple[str, str | None]]:
    """Every argument → ``(path, error)`` pairs, in argument order (folder and pattern matches sorted)."""
    found: list[tuple[str, str | None]] = []
    for arg in inputs:
        s = os.fspath(arg)
        p = Path(s)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            files = sorted(q for q in it if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS and not _under(q, root))
            if not files:
                found.append((s, "folder holds no image files (" + ", ".join(sorted(IMAGE_EXTENSIONS)[:6]) + ", ...)"))
            found.extend((str(q), None) for q in files)
        elif p.exists() or not _has_magic(s):
            found.append((s, None))  # a missing file is reported by the item itself
        else:
            files = sorted(Path(q) for q in glob.glob(s, recursive=True))
            files = [q for q in files if q.is_file() and not _under(q, root)]
            if not files:
                found.append((s, "no file matches this pattern"))
            found.extend((str(q), None) for q in files)
    return found


def collect_inputs(inputs: Iterable[str | os.PathLike], *, recursive: bool = False,
                   exclude: str | os.PathLike | None = None) -> list[BatchItem]:
    """Expand files, folders and glob patterns (``**`` allowed) into items with unique output names.

    Items keep the input order (folder and pattern matches sorted); duplicates (same resolved path)
    are kept once. An item's name is the file's stem; when two inputs share a stem each gets
    ``<stem>-<8 hex digits of its resolved path>``, so names stay stable from one run to the next.

    Args:
        inputs: file paths, folder paths and glob patterns.
        recursive: descend into sub-folders of folder inputs.
        exclude: a folder (the batch's output) whose files are never taken as inputs.

    Returns:
        The items, one per input file; a folder without images or a pattern without matches
        becomes one item with ``error`` set.
    """
    root = Path(exclude).resolve() if exclude is not None else None
    seen: set[str] = set()
    unique: list[tuple[str, str | None]] = []
    for s, err in _expand(inputs, recursive, root):
        key = str(Path(s).resolve()) if err is None else "\0" + s
        if key not in seen:
            seen.add(key)
            unique.append((s, err))
    names = output_names([s for s, _ in unique])
    return [BatchItem(s, name, err) for (s, err), name in zip(unique, names)]


def output_names(sources: Iterable[str | os.PathLike]) -> list[str]:
    """The output sub-folder of each source file: its stem, or ``<stem>-<8 hex digits of its
    resolved path>`` when several sources share a stem (so ``a/astro.png`` and ``b/astro.jpg``
    never write into the same folder, and a name stays the same from one run to the next).

    The same rule names the folders of ``facegcn batch`` and ``facegcn reconstruct``."""
    paths = [os.fspath(s) for s in sources]
    stems = [_safe_name(Path(s).stem) for s in paths]
    count: dict[str, int] = {}
    for stem in stems:
        count[stem] = count.get(stem, 0) + 1
    names = []
    for s, stem in zip(paths, stems):
        if count[stem] > 1:
            stem = f"{stem}-{hashlib.sha1(str(Path(s).resolve()).encode()).hexdigest()[:8]}"
        names.append(stem)
    return names
