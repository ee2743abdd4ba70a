"""Running items in other processes: a process pool on this machine, or Ray tasks.

Both run :func:`~facegcn.apps.batch.item.process_item`; each worker process builds its
:class:`~facegcn.pipeline.Reconstructor` once (:func:`get_reconstructor`) and uses one torch/numba
thread. Results come back through ``record(index, row)``; a row flagged ``_fatal`` (the worker
could not load the models) stops the batch.

Interrupts: worker processes ignore SIGINT (a Ctrl-C reaches the whole process group); the main
process stops them at once (SIGTERM, then SIGKILL) on KeyboardInterrupt, so no worker starts
another item after it. A face set being written when a worker stops is never left half-written
(see :func:`facegcn.io.atomic.atomic_folder`); ``resume`` redoes that item.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import socket
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable

from facegcn.apps.batch.inputs import BatchItem
from facegcn.apps.batch.item import process_item
from facegcn.apps.batch.summary import empty_row, internal_error_row, one_line
from facegcn.config import Config
from facegcn.errors import ConfigError, FaceGCNError

Record = Callable[[int, dict], None]

_REC_CACHE: dict[str, object] = {}
_INIT_ERROR: dict[str, BaseException] = {}


def limit_threads(n: int) -> None:
    """Use ``n`` threads for torch, the rasterizer and the BLAS/OpenMP libraries in this process."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)
    import torch  # lazy, as below: torch takes seconds to import and the CLI's --help must not wait

    from facegcn.pipeline.runtime import set_threads

    set_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # already set in this process
        pass


def get_reconstructor(config_json: str, threads: int | None = None):
    """The :class:`~facegcn.pipeline.Reconstructor` for a configuration, in this process.

    The last one built is cached, so a worker or a repeated batch loads the models once.

    Args:
        config_json: the configuration as JSON (``Config.to_json()``).
        threads: overrides the configuration's ``threads`` when given (non-zero).

    Returns:
        The Reconstructor.
    """
    rec = _REC_CACHE.get(config_json)
    if rec is None:
        from facegcn.pipeline import Reconstructor  # lazy: imports torch (seconds), see limit_threads

        cfg = Config.from_dict(json.loads(config_json))
        if threads:
            cfg.threads = threads
        _REC_CACHE.clear()  # keep one loaded model set per process
        rec = _REC_CACHE.setdefault(config_json, Reconstructor(cfg))
    return rec


def _worker_init(config_json: str, threads: int) -> None:
    """Process-pool initializer: ignore SIGINT (the main process stops the pool), limit threads,
    then load the models once."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):  # not the main thread of the process
        pass
    try:
        limit_threads(threads)
        get_reconstructor(config_json, threads)
        from facegcn.pipeline.runtime import freeze_heap

        freeze_heap()  # a worker process: its models live as long as it does
    except BaseException as exc:  # reported per item by _worker_run (the pool must not break)
        _INIT_ERROR[config_json] = exc


def _fatal_row(item: BatchItem, out_root: Path, exc: BaseException) -> dict:
    if isinstance(exc, FaceGCNError):
        row = empty_row(item, out_root)
        row.update(status=type(exc).__name__, exit_code=exc.exit_code, message=one_line(str(exc)))
    else:
        row = internal_error_row(item, out_root, f"worker start failed: {type(exc).__name__}: {exc}")
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
        limit_threads(1)
    return _worker_run(item, out_root, digest, config_json, 1)


def run_pool(items: list[BatchItem], todo: list[int], out: Path, digest: str, config_json: str, workers: int,
             record: Record) -> None:
    """Run ``items[i] for i in todo`` in ``min(workers, len(todo))`` spawned processes.

    Args:
        items: every item of the batch.
        todo: indices of the items to run.
        out: the output folder.
        digest: the configuration digest (for the markers).
        config_json: the configuration as JSON.
        workers: the most processes to start.
        record: called with ``(index, row)`` as each item finishes (in completion order).
    """
    n = min(workers, len(todo))
    ctx = multiprocessing.get_context("spawn")
    # the resource tracker (a process of its own) warns about the queues' semaphores when workers
    # are stopped mid-run (Ctrl-C); it cleans them up anyway, and the warning is not for users
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning:multiprocessing.resource_tracker")
    ex = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init, initargs=(config_json, 1))
    futs: dict = {}
    try:
        futs = {ex.submit(_worker_run, items[i], str(out), digest, config_json, 1): i for i in todo}
        pending = set(futs)
        while pending:
            # short waits: a signal may be delivered to another thread of this process, and only the
            # main thread runs Python's handlers (a Ctrl-C must not wait for the next result)
            done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: futs[f]):
                i = futs[fut]
                try:
                    row = fut.result()
                except BrokenProcessPool as exc:
                    row = internal_error_row(items[i], out, f"{items[i].source}: worker process died ({exc})")
                except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
                    row = internal_error_row(items[i], out, f"{items[i].source}: {type(exc).__name__}: {exc}")
                record(i, row)
    except BaseException:  # KeyboardInterrupt, or a fatal row: stop now, start nothing more
        procs = list((getattr(ex, "_processes", None) or {}).values())  # shutdown() forgets them
        ex.shutdown(wait=False, cancel_futures=True)  # (cancelling futures ourselves races the pool's thread)
        stop_processes(procs)
        raise
    ex.shutdown(wait=True)


def stop_processes(procs, grace_s: float = 1.0) -> None:
    """Terminate worker processes (SIGTERM; SIGKILL after ``grace_s``); best effort."""
    for p in procs:
        try:
            p.terminate()
        except (OSError, AttributeError, ValueError):
            pass
    for p in procs:
        try:
            p.join(grace_s)
            if p.is_alive():
                p.kill()
                p.join(grace_s)
        except (OSError, AttributeError, ValueError, AssertionError):
            pass


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast (Ray itself retries for minutes) when a ``host:port`` / ``ray://host:port`` address
    does not accept connections."""
    a = address[len("ray://"):] if address.startswith("ray://") else address
    if address in ("local", "auto") or ":" not in a:
        return
    host, _, port = a.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot reach Ray at {address!r}: {exc.strerror or exc}") from None


def run_ray(items: list[BatchItem], todo: list[int], out: Path, digest: str, config_json: str, address: str,
            workers: int, record: Record) -> None:
    """Run ``items[i] for i in todo`` as Ray tasks (one CPU each).

    An initialised Ray session is reused; otherwise one is started (``address="local"``, with
    ``num_cpus=workers`` when ``workers > 1``) or joined, and shut down at the end. Workers must see
    the same paths as this process.

    Args:
        items, todo, out, digest, config_json, record: as for :func:`run_pool`.
        address: ``"local"``, ``"auto"``, ``"ray://host:port"`` or ``"host:port"``.
        workers: CPUs of a local Ray instance.

    Raises:
        ConfigError: Ray is not installed, or cannot be started or reached.
    """
    try:
        import ray  # optional dependency, and slow to import: only for --ray
    except ImportError:
        raise ConfigError("--ray needs the optional 'ray' package (pip install ray==2.60.0)") from None
    started = False
    if not ray.is_initialized():
        _check_reachable(address)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage-stats notice
        # Ray's INFO and WARNING lines ("Started a local Ray instance.", token notices) are not for our users
        kw: dict = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        if address == "local" and workers > 1:
            kw["num_cpus"] = workers
        try:
            ray.init(address=address, **kw)
        except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError, ...
            raise ConfigError(f"cannot start or reach Ray at {address!r}: {one_line(str(exc)) or type(exc).__name__}") from None
        started = True
    try:
        task = ray.remote(num_cpus=1, max_retries=1)(_ray_task)
        refs = {task.remote(items[i], str(out.resolve()), digest, config_json): i for i in todo}
        done: set = set()
        try:
            _collect_ray(ray, refs, done, items, out, record)
        except BaseException:  # KeyboardInterrupt: cancel what has not finished
            for ref in refs:
                if ref not in done:
                    try:
                        ray.cancel(ref, force=True)
                    except Exception:  # noqa: BLE001 - best effort
                        pass
            raise
    finally:
        if started:
            ray.shutdown()


def _collect_ray(ray, refs: dict, done: set, items: list[BatchItem], out: Path, record: Record) -> None:
    """Record each Ray task's row as it finishes (adding its ref to ``done``)."""
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for ref in ready:
            done.add(ref)
            i = refs[ref]
            try:
                row = ray.get(ref)
                row["output"] = str(out / items[i].name)
            except Exception as exc:  # noqa: BLE001 - RayTaskError, WorkerCrashedError, ...
                msg = str(exc).strip().splitlines()
                row = internal_error_row(items[i], out, f"{items[i].source}: Ray task failed: {type(exc).__name__}"
                                                        f"{': ' + msg[-1] if msg else ''}")
            record(i, row)
