"""Done-markers: what makes ``resume`` skip an item that finished earlier.

Each finished item's folder holds a ``.done`` file (JSON: the source's resolved path, size and
modification time, a digest of the configuration and the item's summary row), written last and
atomically. An item is skipped only when its marker matches both the source and the configuration.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from facegcn.apps.batch.inputs import BatchItem
from facegcn.io.atomic import atomic_write_text

DONE_MARKER = ".done"


def config_digest(config_json: str) -> str:
    """Digest of the settings that change outputs (progress bars and thread counts do not).

    Args:
        config_json: a :class:`~facegcn.config.Config` as JSON (``Config.to_json()``).

    Returns:
        16 hex digits.
    """
    d = json.loads(config_json)
    d.pop("progress", None)
    d.pop("threads", None)
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def source_stamp(source: str) -> dict:
    """``{"source": resolved path, "size": bytes, "mtime_ns": modification time}`` of a file.

    Raises:
        OSError: the file cannot be stat'ed.
    """
    p = Path(source)
    st = p.stat()
    return {"source": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_marker(outdir: Path) -> dict | None:
    """The marker in ``outdir`` as a dict, or ``None`` when it is missing or unreadable."""
    try:
        return json.loads((outdir / DONE_MARKER).read_text())
    except (OSError, ValueError):
        return None


def write_marker(outdir: Path, stamp: dict, digest: str, row: dict) -> None:
    """Mark ``outdir`` as finished (atomically): ``stamp`` from :func:`source_stamp`, the
    configuration ``digest`` and the item's summary ``row``."""
    marker = {**stamp, "config": digest, "finished": time.time(), "row": row}
    atomic_write_text(outdir / DONE_MARKER, json.dumps(marker, indent=1))


def is_done(item: BatchItem, out_root: Path, digest: str) -> dict | None:
    """The recorded summary row when ``item`` finished earlier with this configuration and this
    source (same resolved path, size and modification time), else ``None``.

    Args:
        item: the batch item.
        out_root: the batch's output folder (the item's folder is ``out_root / item.name``).
        digest: :func:`config_digest` of the current configuration.
    """
    if item.error is not None:
        return None
    m = read_marker(out_root / item.name)
    if not m or m.get("config") != digest:
        return None
    try:
        stamp = source_stamp(item.source)
    except OSError:
        return None
    if any(m.get(k) != v for k, v in stamp.items()):
        return None
    row = m.get("row")
    return row if isinstance(row, dict) else None
