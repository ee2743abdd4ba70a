"""Where derived artefacts (mesh hierarchies, converted weights, UV atlases) are cached.

``FACEGCN_CACHE`` overrides the location; the default is ``$XDG_CACHE_HOME/facegcn`` or
``~/.cache/facegcn``. Nothing here is downloaded: every cached file is rebuilt locally when missing.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir(sub: str | None = None, create: bool = True) -> Path:
    root = os.environ.get("FACEGCN_CACHE")
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "facegcn"
    path = base / sub if sub else base
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def array_digest(*arrays, extra: str = "") -> str:
    """Stable short hex digest of numpy arrays (shape, dtype and bytes) plus an optional tag."""
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.shape).encode())
        h.update(str(a.dtype).encode())
        h.update(a.tobytes())
    h.update(extra.encode())
    return h.hexdigest()[:16]
