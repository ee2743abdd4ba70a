"""``facegcn prepare PHOTO_DIR OUT``: run the front-end on every photo and write the training cache.

Photos are listed recursively in sorted order and cut into shards of ``shard_size`` files; shard
``k`` always covers the same files, so a re-run skips every shard already written for the same
file list (resumable: only the shard being written when a run was stopped is redone). A photo
that cannot be read or has no face is skipped and logged (one line each, and in ``failed.csv``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from facegcn.errors import ConfigError, FaceGCNError, InputError
from facegcn.frontend import FrontendConfig, observe
from facegcn.train.data import FaceRow, read_shard_meta, shard_name, write_index, write_shard

__all__ = ["IMAGE_EXTENSIONS", "PrepareSummary", "list_photos", "prepare_cache"]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jfif"}
)


@dataclass
class PrepareSummary:
    """What :func:`prepare_cache` did: input files, faces cached / skipped, shards written /
    reused, and the written index."""

    files: int = 0
    ok: int = 0
    failed: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    index: dict = field(default_factory=dict)


def list_photos(photo_dir: str | Path) -> list[Path]:
    """Image files under ``photo_dir`` (recursive, by extension, case-insensitive), sorted.

    Raises:
        InputError: ``photo_dir`` is not a folder.
    """
    root = Path(photo_dir)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _default_observe(detector: str, identity: str | None):
    cfg = FrontendConfig(identity=identity)

    def fn(path: Path):
        return observe(path, detector=detector, config=cfg)[0]

    return fn


def _observe_chunk(root: Path, chunk: list[str], fn: Callable, emit: Callable[[str], None],
                   bar) -> tuple[list[FaceRow], list[dict]]:
    """Observe the photos of one shard: the rows of the faces found and one item per file."""
    rows: list[FaceRow] = []
    items: list[dict] = []
    for src in chunk:
        try:
            obs = fn(root / src)
            rows.append(FaceRow.from_observation(obs))
            items.append({"source": src, "status": "ok", "row": len(rows) - 1})
        except FaceGCNError as exc:
            items.append({"source": src, "status": "failed", "error": str(exc)})
            emit(f"skip {src}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a bad file must not stop a long run
            msg = " ".join(f"{type(exc).__name__}: {exc}".split())
            items.append({"source": src, "status": "failed", "error": msg})
            emit(f"skip {src}: {msg}")
        bar.update(1)
    return rows, items


def prepare_cache(
    photo_dir: str | Path,
    out: str | Path,
    *,
    shard_size: int = 256,
    held_out: float = 0.05,
    seed: int = 0,
    detector: str = "dlib",
    identity: str | None = "port",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    observe_fn: Callable | None = None,
) -> PrepareSummary:
    """Detect, align, landmark, segment and embed every photo under ``photo_dir`` into ``out``.

    Args:
        photo_dir: the photos (:func:`list_photos`); sources are their paths relative to it.
        out: the cache folder (created; shards already written for the same files are reused).
        shard_size: input files per shard.
        held_out: fraction of faces in the held-out split, in ``[0, 1)``.
        seed: the split seed.
        detector: ``"dlib"`` or ``"mtcnn"`` (recorded; a shard of another detector is redone).
        identity: the front end's identity option (``"port"``: the ported dlib network; ``None``:
            no descriptors).
        progress: show a progress bar.
        log: where skip messages go (default: printed above the bar).
        observe_fn: ``path → observation`` replacing the front end (tests).

    Returns:
        A :class:`PrepareSummary`.

    Raises:
        ConfigError: bad shard size or held-out fraction.
        InputError: no folder, or no image files in it.
    """
    if shard_size < 1:
        raise ConfigError("shard size must be at least 1")
    if not 0.0 <= held_out < 1.0:
        raise ConfigError("the held-out fraction must be in [0, 1)")
    root = Path(photo_dir)
    out = Path(out)
    files = list_photos(root)
    if not files:
        raise InputError(f"{root}: no image files found")
    (out / "shards").mkdir(parents=True, exist_ok=True)
    sources = [p.relative_to(root).as_posix() for p in files]
    fn = observe_fn or _default_observe(detector, identity)
    summary = PrepareSummary(files=len(files))
    bar = tqdm(total=len(files), desc="prepare", unit="photo", disable=not progress)
    emit = log or (lambda msg: tqdm.write(msg))
    metas: list[tuple[str, dict]] = []
    for k in range(0, len(files), shard_size):
        name = shard_name(k // shard_size)
        chunk = sources[k : k + shard_size]
        md = read_shard_meta(out / name)
        if md is not None and [it["source"] for it in md["items"]] == chunk and md.get("detector") == detector:
            summary.shards_skipped += 1
            bar.update(len(chunk))
            metas.append((name, md))
            continue
        rows, items = _observe_chunk(root, chunk, fn, emit, bar)
        md = {"format": "facegcn-face-cache", "rows": len(rows), "items": items, "detector": detector}
        write_shard(out / name, rows, items, meta={"detector": detector, "identity": identity})
        summary.shards_written += 1
        metas.append((name, md))
    bar.close()
    index = write_index(out, metas, seed=seed, held_out=held_out,
                        extra={"source_root": str(root.resolve()), "detector": detector, "identity": identity,
                               "shard_size": shard_size})
    summary.ok = index["counts"]["ok"]
    summary.failed = index["counts"]["failed"]
    summary.index = index
    return summary
