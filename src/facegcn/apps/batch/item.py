"""One batch item: reconstruct, write the outputs, then the done-marker; never raises per item."""

from __future__ import annotations

import os
import shutil
import time
import traceback
from pathlib import Path

from facegcn.apps.batch.inputs import BatchItem
from facegcn.apps.batch.markers import DONE_MARKER, source_stamp, write_marker
from facegcn.apps.batch.summary import INTERNAL_EXIT_CODE, empty_row, one_line
from facegcn.errors import FaceGCNError, InputError
from facegcn.io.atomic import remove_temp_folders

_TIMING_KEYS = ("total_s", "frontend_s", "coarse_s", "refine_s")
_METRIC_KEYS = ("landmark_nme", "landmark_px", "psnr_coarse", "psnr_refined")


def _clear_previous(d: Path) -> None:
    """Before (re)doing an item: drop its marker, and temporaries of a run killed mid-write
    (files ``.NAME.XXXXXXXX.tmp`` and the face-set folders of the same form, in ``d`` and beside it)."""
    try:
        (d / DONE_MARKER).unlink(missing_ok=True)
        remove_temp_folders(d.parent, d.name)
        if d.is_dir():
            for t in sorted(d.rglob(".*.tmp"), reverse=True):
                if t.is_dir():
                    shutil.rmtree(t, ignore_errors=True)
                else:
                    t.unlink(missing_ok=True)
    except OSError:
        pass


def process_item(rec, item: BatchItem, out_root: str | os.PathLike, digest: str) -> dict:
    """Reconstruct one item with ``rec`` and write its outputs to ``out_root / item.name``
    (``face_<i>/`` sub-folders, one per face, with ``frontend.all_faces``), then its done-marker.

    A per-item problem never raises: a :class:`~facegcn.errors.FaceGCNError` gives its class name
    as status and its exit code; any other exception gives status ``InternalError`` (exit code 70)
    and its traceback in ``error.log`` in the item's folder.

    Args:
        rec: a :class:`~facegcn.pipeline.Reconstructor` (``rec(path)`` and ``rec.write(r, folder)``).
        item: the item to do.
        out_root: the batch's output folder.
        digest: :func:`~facegcn.apps.batch.config_digest` of ``rec``'s configuration (recorded in
            the marker).

    Returns:
        The summary row (see :data:`~facegcn.apps.batch.COLUMNS`); times in seconds.
    """
    out_root = Path(out_root)
    d = out_root / item.name
    row = empty_row(item, out_root)
    t0 = time.perf_counter()
    _clear_previous(d)
    try:
        if item.error is not None:
            raise InputError(f"{item.source}: {item.error}")
        if not Path(item.source).is_file():  # nothing is created for a missing input
            raise InputError(f"{item.source}: " + ("is a directory" if Path(item.source).is_dir() else "no such file"))
        stamp = source_stamp(item.source)
        results = rec(Path(item.source))
        tw = time.perf_counter()
        cfg = getattr(rec, "cfg", None)
        all_faces = bool(cfg is not None and cfg.frontend.all_faces)
        for r in results:
            rec.write(r, d / f"face_{r.face_index}" if all_faces else d)
        write_s = time.perf_counter() - tw
        best = results[0]
        row.update(status="ok", faces=len(results), message="", write_s=round(write_s, 4))
        for k in _TIMING_KEYS:
            if k in best.timings:
                row[k] = round(float(best.timings[k]), 4)
        row["total_s"] = round(time.perf_counter() - t0, 4)
        for k in _METRIC_KEYS:
            if k in best.metrics:
                row[k] = float(best.metrics[k])
        write_marker(d, stamp, digest, row)  # last: the item is done
    except FaceGCNError as exc:
        row.update(status=type(exc).__name__, exit_code=exc.exit_code, message=one_line(str(exc)))
        row["total_s"] = round(time.perf_counter() - t0, 4)
    except Exception as exc:  # unexpected: keep going; the traceback goes to a file, not the terminal
        row.update(status="InternalError", exit_code=INTERNAL_EXIT_CODE,
                   message=one_line(f"{item.source}: {type(exc).__name__}: {exc}"))
        row["total_s"] = round(time.perf_counter() - t0, 4)
        try:
            d.mkdir(parents=True, exist_ok=True)
            (d / "error.log").write_text(traceback.format_exc())
            row["message"] += f" (traceback in {d / 'error.log'})"
        except OSError:
            pass
    return row
