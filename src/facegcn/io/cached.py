"""Arrays derived from model files, kept between processes in ``facegcn.cache.cache_dir``
(no pickle: ``.npz`` read with ``allow_pickle=False``, written atomically)."""

from __future__ import annotations

import numpy as np

from facegcn.cache import cache_dir
from facegcn.errors import OutputError
from facegcn.io.atomic import atomic_open

__all__ = ["cached_arrays"]


def cached_arrays(sub: str, key: str, build):
    """``build()``'s arrays, kept in ``cache_dir(sub)/KEY.npz`` (no pickle): read back when the file
    is there and readable, else built and written (atomically). A cache that cannot be created or
    written (read-only, a file in the way) only costs the rebuild next time.

    Args:
        sub: the cache's sub-folder; key: the file's stem (e.g. a :func:`facegcn.cache.array_digest`).
        build: ``() -> {name: np.ndarray}``.

    Returns:
        ``{name: np.ndarray}`` — the same arrays whether read or built.
    """
    try:
        path = cache_dir(sub) / f"{key}.npz"
    except OSError:
        return build()
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        pass  # not cached yet, or unreadable: rebuilt and rewritten
    arrays = build()
    try:
        with atomic_open(path, "wb") as fh:
            np.savez(fh, **arrays)
    except (OSError, OutputError):
        pass
    return arrays
