"""The batch's summary: one row per item in ``OUT/summary.csv``, and the outcome as exit codes."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from facegcn import errors as _errors
from facegcn.apps.batch.inputs import BatchItem
from facegcn.errors import FaceGCNError, PartialFailure
from facegcn.io.atomic import atomic_write_text

SUMMARY_NAME = "summary.csv"
COLUMNS = (
    "input", "output", "status", "exit_code", "message", "faces", "resumed",
    "total_s", "frontend_s", "coarse_s", "refine_s", "write_s",
    "landmark_nme", "landmark_px", "psnr_coarse", "psnr_refined",
)
INTERNAL_EXIT_CODE = 70  # an unexpected exception (a bug), as the CLI reports it (sysexits EX_SOFTWARE)


def one_line(text: str) -> str:
    """``text`` with every run of white space (newlines included) replaced by one space."""
    return " ".join(str(text).split())


def empty_row(item: BatchItem, out_root: Path) -> dict:
    """A summary row for ``item`` with only ``input``, ``output`` and neutral counts filled in."""
    row = {k: "" for k in COLUMNS}
    row.update(input=item.source, output=str(out_root / item.name), status="", exit_code=0, faces=0, resumed=False)
    return row


def internal_error_row(item: BatchItem, out_root: Path, message: str) -> dict:
    """A row for an unexpected failure (status ``InternalError``, exit code 70) with a one-line message."""
    row = empty_row(item, out_root)
    row.update(status="InternalError", exit_code=INTERNAL_EXIT_CODE, message=one_line(message))
    return row


def interrupted_row(item: BatchItem, out_root: Path) -> dict:
    """A row for an item the run did not finish because it was interrupted (exit code 130)."""
    row = empty_row(item, out_root)
    row.update(status="Interrupted", exit_code=130, message=one_line(f"{item.source}: not finished (interrupted)"))
    return row


def error_class(status: str) -> type[FaceGCNError]:
    """The :class:`~facegcn.errors.FaceGCNError` subclass named by a row's ``status``
    (``FaceGCNError`` itself for ``InternalError`` or an unknown name)."""
    cls = getattr(_errors, status, None)
    return cls if isinstance(cls, type) and issubclass(cls, FaceGCNError) else FaceGCNError


@dataclass
class BatchReport:
    """The outcome of :func:`~facegcn.apps.batch.run_batch`.

    Attributes:
        rows: one summary row per item, in input order (see :data:`COLUMNS`).
        summary_path: ``OUT/summary.csv``.
        out: the output folder.
        elapsed_s: wall time of the run in seconds.
        backend: ``"serial"``, ``"processes(N)"`` or ``"ray"``.
    """

    rows: list[dict]
    summary_path: Path
    out: Path
    elapsed_s: float = 0.0
    backend: str = "serial"

    @property
    def failed(self) -> list[dict]:
        """The rows whose status is not ``"ok"``."""
        return [r for r in self.rows if r["status"] != "ok"]

    @property
    def n_ok(self) -> int:
        """How many items succeeded."""
        return len(self.rows) - len(self.failed)

    @property
    def exit_code(self) -> int:
        """0 when every item is ok, 7 when some failed, else the first failure's exit code."""
        f = self.failed
        if not f:
            return 0
        if len(f) < len(self.rows):
            return PartialFailure.exit_code
        return int(f[0]["exit_code"]) or INTERNAL_EXIT_CODE

    def raise_for_status(self) -> None:
        """Nothing when every item is ok; :class:`~facegcn.errors.PartialFailure` (exit code 7)
        when some failed; an error of the first failure's kind and exit code when all failed."""
        f = self.failed
        if not f:
            return
        n = len(self.rows)
        if len(f) < n:
            raise PartialFailure(f"{len(f)} of {n} item(s) failed (first: {f[0]['message']}); "
                                 f"see {self.summary_path}")
        exc = error_class(f[0]["status"])(f"all {n} item(s) failed (first: {f[0]['message']}); see {self.summary_path}")
        exc.exit_code = int(f[0]["exit_code"]) or INTERNAL_EXIT_CODE
        raise exc


def write_summary(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` as CSV with the :data:`COLUMNS` header (atomically; extra keys are ignored).

    Returns:
        ``path``.
    """
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return atomic_write_text(path, buf.getvalue())


def read_summary(path: str | os.PathLike) -> list[dict]:
    """The rows of a summary CSV, as dicts of strings."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
