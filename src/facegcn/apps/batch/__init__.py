"""Batch reconstruction: many photos → ``OUT/<name>/`` each and one ``OUT/summary.csv``;
resumable, in parallel processes or as Ray tasks.

Inputs are files, folders (their image files; ``recursive=True`` descends) and glob patterns
(``**`` allowed); each becomes an item whose outputs go to ``OUT/<stem>/`` (``<stem>-<8 hex>``
when two inputs share a stem). Anything under ``OUT`` is never taken as an input.

Each item is reconstructed and written, then — last, atomically — marked done with a ``.done``
file recording the source (path, size, modification time) and a digest of the configuration.
``resume=True`` skips items whose marker matches; anything else is redone, its marker deleted
first, so a run killed at any moment never leaves a stale marker.

A bad item (unreadable file, no face, ...) never stops the batch: it is reported as one line and
recorded in ``OUT/summary.csv`` with its error kind (the :class:`~facegcn.errors.FaceGCNError`
class name, or ``InternalError`` — exit code 70 — for an unexpected exception, whose traceback is
kept in ``OUT/<name>/error.log``), message, timings and metrics.

Back-ends, all running the same per-item function :func:`process_item`:

* ``workers=1``: in this process, one Reconstructor (models loaded once);
* ``workers=N``: N processes (*spawn* start method), each with its own Reconstructor and one
  torch/numba thread;
* ``ray_address=...``: Ray tasks (optional dependency). ``"local"`` starts a local Ray instance;
  otherwise the address of a running cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``).
  Workers must see the same paths (inputs and ``OUT``) and have facegcn installed. An already
  initialised Ray session is reused.

:meth:`BatchReport.raise_for_status` gives the exit-code contract: nothing when every item is ok,
:class:`~facegcn.errors.PartialFailure` (exit code 7) when some failed, and an error with the first
failure's exit code when all failed.
"""

from facegcn.apps.batch.inputs import IMAGE_EXTENSIONS, BatchItem, collect_inputs, output_names
from facegcn.apps.batch.item import process_item
from facegcn.apps.batch.markers import DONE_MARKER, config_digest, is_done, read_marker
from facegcn.apps.batch.pool import get_reconstructor
from facegcn.apps.batch.runner import run_batch
from facegcn.apps.batch.summary import COLUMNS, SUMMARY_NAME, BatchReport, read_summary, write_summary

__all__ = [
    "BatchItem",
    "BatchReport",
    "COLUMNS",
    "DONE_MARKER",
    "IMAGE_EXTENSIONS",
    "SUMMARY_NAME",
    "collect_inputs",
    "config_digest",
    "get_reconstructor",
    "is_done",
    "output_names",
    "process_item",
    "read_marker",
    "read_summary",
    "run_batch",
    "write_summary",
]
