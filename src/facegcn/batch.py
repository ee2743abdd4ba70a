"""Batch reconstruction: many photos → ``OUT/<name>/`` each, one summary CSV; resumable, parallel.

Inputs are files, folders (their image files; ``recursive=True`` descends) and glob patterns
(``**`` allowed). Each input becomes one *item* whose outputs go to ``OUT/<stem>/`` (the photo's
file name without extension; when two inputs share a stem each gets ``<stem>-<8 hex digits of
its resolved path>`` so names stay stable from one run to the next). Anything under ``OUT`` is
never taken as an input.

Per item :func:`process_item` runs the :class:`~facegcn.pipeline.Reconstructor` and writes its
files, then — last, atomically — a ``.done`` marker (JSON: the source's path, size and
modification time, a digest of the configuration and the summary row). ``resume=True`` skips an
item whose marker matches the source and configuration; anything else is (re)done, and the marker
is deleted before an item is redone, so a run killed at any moment never leaves a stale marker.

A bad item (unreadable file, no face, ...) never stops the batch: it is reported as one line and
recorded in ``OUT/summary.csv`` (atomic write, refreshed while the batch runs) with its error kind
(the :class:`~facegcn.errors.FaceGCNError` class name, or ``InternalError`` — exit code 70 — for
an unexpected exception, whose traceback is kept in ``OUT/<name>/error.log``), message, timings
and metrics.

Three ways to run the same per-item function:

* ``workers=1``: in this process, one Reconstructor (models loaded once);
* ``workers=N``: N processes (``concurrent.futures`` with the *spawn* start method); each builds
  its own Reconstructor once and uses one torch/numba thread;
* ``ray_address=...``: Ray tasks (optional dependency, imported lazily). ``"local"`` starts a
  local Ray instance; otherwise the address of a running cluster (``"auto"``, ``"ray://host:10001"``,
  ``"host:6379"``). Workers must see the same file system paths (inputs and ``OUT``) and have
  facegcn installed. An already initialised Ray session is reused.

:meth:`BatchReport.raise_for_status` turns the outcome into the exit code contract: nothing when
every item is ok, :class:`~facegcn.errors.PartialFailure` (exit code 7) when some failed, and an
error with the first failure's exit code when all failed.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from facegcn import errors as _errors
from facegcn.errors import ConfigError, FaceGCNError, InputError, PartialFailure

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jfif"}
)
DONE_MARKER = ".done"
SUMMARY_NAME = "summary.csv"
COLUMNS = (
    "input", "output", "status", "exit_code", "message", "faces", "resumed",
    "total_s", "frontend_s", "coarse_s", "refine_s", "write_s",
    "landmark_nme", "landmark_px", "psnr_coarse", "psnr_refined",
)
_TIMING_KEYS = ("total_s", "frontend_s", "coarse_s", "refine_s")
_METRIC_KEYS = ("landmark_nme", "landmark_px", "psnr_coarse", "psnr_refined")
INTERNAL_EXIT_CODE = 70  # an unexpected exception (a bug), as the CLI reports it (sysexits EX_SOFTWARE)


@dataclass(frozen=True)
class BatchItem:
    source: str  # the file as found (or the argument that matched nothing)
    name: str  # output sub-folder, unique within the batch
    error: str | None = None  # known before running (e.g. a pattern that matched no file)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


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


def collect_inputs(inputs: Iterable[str | os.PathLike], *, recursive: bool = False,
                   exclude: str | os.PathLike | None = None) -> list[BatchItem]:
    """Expand files, folders and glob patterns into items with unique output names (input order;
    folder and pattern matches sorted). Duplicates (same resolved path) are kept once."""
    root = Path(exclude).resolve() if exclude is not None else None
    found: list[tuple[str, str | None]] = []  # (path, error)
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
    seen: set[str] = set()
    unique: list[tuple[str, str | None]] = []
    for s, err in found:
        key = str(Path(s).resolve()) if err is None else "\0" + s
        if key not in seen:
            seen.add(key)
            unique.append((s, err))
    stems: dict[str, int] = {}
    for s, _ in unique:
        stems[_safe_name(Path(s).stem)] = stems.get(_safe_name(Path(s).stem), 0) + 1
    items = []
    for s, err in unique:
        stem = _safe_name(Path(s).stem)
        name = stem
        if stems[stem] > 1:
            name = f"{stem}-{hashlib.sha1(str(Path(s).resolve()).encode()).hexdigest()[:8]}"
        items.append(BatchItem(s, name, err))
    return items


# ------------------------------------------------------------------------- per item
def config_digest(config_json: str) -> str:
    """Digest of the settings that change outputs (progress bars and thread counts do not)."""
    d = json.loads(config_json)
    d.pop("progress", None)
    d.pop("threads", None)
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _source_stamp(source: str) -> dict:
    p = Path(source)
    st = p.stat()
    return {"source": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_marker(outdir: Path) -> dict | None:
    try:
        return json.loads((outdir / DONE_MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_done(item: BatchItem, out_root: Path, digest: str) -> dict | None:
    """The recorded row when ``item`` finished earlier with this configuration and this source."""
    if item.error is not None:
        return None
    m = read_marker(out_root / item.name)
    if not m or m.get("config") != digest:
        return None
    try:
        stamp = _source_stamp(item.source)
    except OSError:
        return None
    if any(m.get(k) != v for k, v in stamp.items()):
        return None
    row = m.get("row")
    return row if isinstance(row, dict) else None


def _empty_row(item: BatchItem, out_root: Path) -> dict:
    row = {k: "" for k in COLUMNS}
    row.update(input=item.source, output=str(out_root / item.name), status="", exit_code=0, faces=0, resumed=False)
    return row


def process_item(rec, item: BatchItem, out_root: str | os.PathLike, digest: str) -> dict:
    """Reconstruct one item with ``rec`` (a Reconstructor) and write its outputs; never raises for
    a per-item problem: returns the summary row (``status`` "ok" or the error kind)."""
    out_root = Path(out_root)
    d = out_root / item.name
    row = _empty_row(item, out_root)
    t0 = time.perf_counter()
    try:
        (d / DONE_MARKER).unlink(missing_ok=True)
        if d.is_dir():  # temporaries left by a run killed inside an atomic write
            for t in d.rglob(".*.tmp"):
                t.unlink(missing_ok=True)
    except OSError:
        pass
    try:
        if item.error is not None:
            raise InputError(f"{item.source}: {item.error}")
        if not Path(item.source).is_file():  # nothing is created for a missing input
            raise InputError(f"{item.source}: " + ("is a directory" if Path(item.source).is_dir() else "no such file"))
        stamp = _source_stamp(item.source)
        results = rec(Path(item.source))
        tw = time.perf_counter()
        for r in results:
            rec.write(r, d if len(results) == 1 else d / f"face_{r.face_index}")
        write_s = time.perf_counter() - tw
        best = results[0]
        row.update(status="ok", faces=len(results), message="",
                   write_s=round(write_s, 4))
        for k in _TIMING_KEYS:
            if k in best.timings:
                row[k] = round(float(best.timings[k]), 4)
        row["total_s"] = round(time.perf_counter() - t0, 4)
        for k in _METRIC_KEYS:
            if k in best.metrics:
                row[k] = float(best.metrics[k])
        from facegcn.io.atomic import atomic_write_text

        marker = {**stamp, "config": digest, "finished": time.time(), "row": row}
        atomic_write_text(d / DONE_MARKER, json.dumps(marker, indent=1))  # last: the item is done
    except FaceGCNError as exc:
        row.update(status=type(exc).__name__, exit_code=exc.exit_code, message=_one_line(str(exc)))
        row["total_s"] = round(time.perf_counter() - t0, 4)
    except Exception as exc:  # unexpected: keep going; the traceback goes to a file, not the terminal
        row.update(status="InternalError", exit_code=INTERNAL_EXIT_CODE,
                   message=_one_line(f"{item.source}: {type(exc).__name__}: {exc}"))
        row["total_s"] = round(time.perf_counter() - t0, 4)
        try:
            d.mkdir(parents=True, exist_ok=True)
            (d / "error.log").write_text(traceback.format_exc())
            row["message"] += f" (traceback in {d / 'error.log'})"
        except OSError:
            pass
    return row


# ---------------------------------------------------------- per-process reconstructor
_REC_CACHE: dict[str, object] = {}
_INIT_ERROR: dict[str, BaseException] = {}


def _limit_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)
    import torch

    torch.set_num_threads(n)
    import facegcn.render

    facegcn.render.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # already set in this process
        pass


def get_reconstructor(config_json: str, threads: int | None = None):
    """The :class:`~facegcn.pipeline.Reconstructor` for ``config_json`` in this process (the last one
    built is cached, so a worker or a repeated batch loads the models once)."""
    rec = _REC_CACHE.get(config_json)
    if rec is None:
        from facegcn.config import Config
        from facegcn.pipeline import Reconstructor

        cfg = Config.from_dict(json.loads(config_json))
        if threads:
            cfg.threads = threads
        _REC_CACHE.clear()  # keep one loaded model set per process
        rec = _REC_CACHE.setdefault(config_json, Reconstructor(cfg))
    return rec


def _worker_init(config_json: str, threads: int) -> None:
    """Process-pool initializer: limit threads, then load the models once."""
    try:
        _limit_threads(threads)
        get_reconstructor(config_json, threads)
    except BaseException as exc:  # reported per item by _worker_run (the pool must not break)
        _INIT_ERROR[config_json] = exc


def _fatal_row(item: BatchItem, out_root: Path, exc: BaseException) -> dict:
    row = _empty_row(item, out_root)
    if isinstance(exc, FaceGCNError):
        row.update(status=type(exc).__name__, exit_code=exc.exit_code, message=_one_line(str(exc)))
    else:
        row.update(status="InternalError", exit_code=INTERNAL_EXIT_CODE, message=_one_line(f"worker start failed: {type(exc).__name__}: {exc}"))
    row["_fatal"] = True
    return row


def _worker_run(item: BatchItem, out_root: str, digest: str, config_json: str, threads: int) -> dict:
    exc = _INIT_ERROR.get(config_json)
    if exc is not None:
        return _fatal_row(item, Path(out_root), exc)
    try:
        rec = get_reconstructor(config_json, threads)
    except BaseException as e:  # noqa: BLE001 - reported as a row
        return _fatal_row(item, Path(out_root), e)
    return process_item(rec, item, out_root, digest)


def _ray_task(item: BatchItem, out_root: str, digest: str, config_json: str) -> dict:
    """What a Ray worker runs: the same per-item function, one thread, models cached per worker."""
    if not _REC_CACHE:
        _limit_threads(1)
    return _worker_run(item, out_root, digest, config_json, 1)


# ------------------------------------------------------------------------- the batch
@dataclass
class BatchReport:
    rows: list[dict]
    summary_path: Path
    out: Path
    elapsed_s: float = 0.0
    backend: str = "serial"

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] != "ok"]

    @property
    def n_ok(self) -> int:
        return len(self.rows) - len(self.failed)

    @property
    def exit_code(self) -> int:
        f = self.failed
        if not f:
            return 0
        if len(f) < len(self.rows):
            return PartialFailure.exit_code
        return int(f[0]["exit_code"]) or INTERNAL_EXIT_CODE

    def raise_for_status(self) -> None:
        f = self.failed
        if not f:
            return
        n = len(self.rows)
        if len(f) < n:
            raise PartialFailure(f"{len(f)} of {n} item(s) failed (first: {f[0]['message']}); "
                                 f"see {self.summary_path}")
        cls = getattr(_errors, f[0]["status"], None)
        if not (isinstance(cls, type) and issubclass(cls, FaceGCNError)):
            cls = FaceGCNError
        exc = cls(f"all {n} item(s) failed (first: {f[0]['message']}); see {self.summary_path}")
        exc.exit_code = int(f[0]["exit_code"]) or INTERNAL_EXIT_CODE
        raise exc


def write_summary(path: Path, rows: list[dict]) -> Path:
    from facegcn.io.atomic import atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return atomic_write_text(path, buf.getvalue())


def read_summary(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def run_batch(
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    config=None,
    *,
    workers: int = 1,
    resume: bool = False,
    recursive: bool = False,
    ray_address: str | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> BatchReport:
    """Reconstruct every input (see the module doc); returns the :class:`BatchReport`.

    Raises only for problems that concern the whole batch (no inputs at all, unusable
    configuration, Ray unavailable); per-item failures are in the report."""
    from tqdm.auto import tqdm

    from facegcn.config import Config

    cfg = (config or Config()).validate()
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _errors.OutputError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    items = collect_inputs(inputs, recursive=recursive, exclude=out)
    if not items:
        raise InputError("no inputs given")
    show = cfg.progress if progress is None else progress
    cfg_item = Config.from_dict(cfg.to_dict())
    cfg_item.progress = False  # one batch bar, no per-fit bars
    config_json = cfg_item.to_json()
    digest = config_digest(config_json)
    summary = out / SUMMARY_NAME
    emit = log or (lambda s: tqdm.write(s, file=sys.stderr))

    rows: dict[int, dict] = {}
    todo: list[int] = []
    for i, it in enumerate(items):
        done = is_done(it, out, digest) if resume else None
        if done is not None:
            rows[i] = {**done, "input": it.source, "output": str(out / it.name), "resumed": True}
        else:
            todo.append(i)

    t_start = time.perf_counter()
    bar = tqdm(total=len(items), initial=len(rows), desc="batch", unit="img", disable=not show,
               file=sys.stderr, dynamic_ncols=True)
    last_write = [0.0]

    def ordered() -> list[dict]:
        return [rows[i] for i in sorted(rows)]

    def record(i: int, row: dict) -> None:
        if row.pop("_fatal", False):
            bar.close()
            raise _rebuild_error(row)
        rows[i] = row
        if row["status"] != "ok":
            emit(f"error: {row['message']}")
        bad = sum(1 for r in rows.values() if r["status"] != "ok")
        bar.set_postfix(ok=len(rows) - bad, failed=bad, refresh=False)
        bar.update(1)
        now = time.perf_counter()
        if now - last_write[0] > 1.0:
            write_summary(summary, ordered())
            last_write[0] = now

    backend = "serial"
    try:
        if todo and ray_address:
            backend = "ray"
            _run_ray(items, todo, out, digest, config_json, ray_address, workers, record)
        elif todo and workers > 1 and len(todo) > 1:
            backend = f"processes({min(workers, len(todo))})"
            _run_pool(items, todo, out, digest, config_json, workers, record)
        elif todo:
            rec = None
            if any(items[i].error is None for i in todo):
                rec = get_reconstructor(config_json, cfg.threads or None)  # ConfigError etc. propagate
            for i in todo:
                record(i, process_item(rec, items[i], out, digest))
    finally:
        bar.close()
        if rows:
            write_summary(summary, ordered())
    return BatchReport(ordered(), summary, out, time.perf_counter() - t_start, backend)


def _rebuild_error(row: dict) -> FaceGCNError:
    cls = getattr(_errors, row["status"], None)
    if not (isinstance(cls, type) and issubclass(cls, FaceGCNError)):
        cls = FaceGCNError
    return cls(row["message"])


def _run_pool(items, todo, out, digest, config_json, workers, record) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    n = min(workers, len(todo))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init,
                             initargs=(config_json, 1)) as ex:
        futs = {ex.submit(_worker_run, items[i], str(out), digest, config_json, 1): i for i in todo}
        try:
            for fut in as_completed(futs):
                i = futs[fut]
                try:
                    row = fut.result()
                except BrokenProcessPool as exc:
                    row = _empty_row(items[i], out)
                    row.update(status="InternalError", exit_code=INTERNAL_EXIT_CODE,
                               message=_one_line(f"{items[i].source}: worker process died ({exc})"))
                except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
                    row = _empty_row(items[i], out)
                    row.update(status="InternalError", exit_code=INTERNAL_EXIT_CODE,
                               message=_one_line(f"{items[i].source}: {type(exc).__name__}: {exc}"))
                record(i, row)
        except BaseException:
            for f in futs:
                f.cancel()
            raise


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast (Ray itself retries for minutes) when a ``host:port`` / ``ray://host:port`` address
    does not accept connections."""
    import socket

    a = address[len("ray://"):] if address.startswith("ray://") else address
    if address in ("local", "auto") or ":" not in a:
        return
    host, _, port = a.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot reach Ray at {address!r}: {exc.strerror or exc}") from None


def _run_ray(items, todo, out, digest, config_json, address, workers, record) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs the optional 'ray' package (pip install ray==2.60.0)") from None
    started = False
    if not ray.is_initialized():
        _check_reachable(address)
        kw: dict = {"include_dashboard": False, "log_to_driver": False}
        if address == "local" and workers > 1:
            kw["num_cpus"] = workers
        try:
            ray.init(address=address, **kw)
        except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError, ...
            raise ConfigError(f"cannot start or reach Ray at {address!r}: {_one_line(str(exc)) or type(exc).__name__}") from None
        started = True
    try:
        task = ray.remote(num_cpus=1, max_retries=1)(_ray_task)
        refs = {task.remote(items[i], str(out.resolve()), digest, config_json): i for i in todo}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                i = refs[ref]
                try:
                    row = ray.get(ref)
                    row["output"] = str(out / items[i].name)
                except Exception as exc:  # noqa: BLE001 - RayTaskError, WorkerCrashedError, ...
                    row = _empty_row(items[i], out)
                    msg = str(exc).strip().splitlines()
                    row.update(status="InternalError", exit_code=INTERNAL_EXIT_CODE,
                               message=_one_line(f"{items[i].source}: Ray task failed: {type(exc).__name__}"
                                                 f"{': ' + msg[-1] if msg else ''}"))
                record(i, row)
    finally:
        if started:
            ray.shutdown()


__all__ = [
    "BatchItem",
    "BatchReport",
    "COLUMNS",
    "DONE_MARKER",
    "IMAGE_EXTENSIONS",
    "collect_inputs",
    "config_digest",
    "get_reconstructor",
    "is_done",
    "process_item",
    "read_summary",
    "run_batch",
    "write_summary",
]
