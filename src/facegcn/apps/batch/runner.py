"""``run_batch``: every input → ``OUT/<name>/``, in this process, a process pool or Ray tasks."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

from tqdm.auto import tqdm

from facegcn.apps.batch.inputs import collect_inputs
from facegcn.apps.batch.item import process_item
from facegcn.apps.batch.markers import config_digest, is_done
from facegcn.apps.batch.pool import get_reconstructor, run_pool, run_ray
from facegcn.apps.batch.summary import SUMMARY_NAME, BatchReport, error_class, interrupted_row, write_summary
from facegcn.config import Config
from facegcn.errors import ConfigError, InputError, Interrupted, OutputError
from facegcn.io.atomic import atomic_write_text, check_writable_folder, remove_temp_folders

CONFIG_NAME = "config.json"  # the run's settings, beside the summary


def run_batch(
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    config: Config | None = None,
    *,
    workers: int = 1,
    resume: bool = False,
    recursive: bool = False,
    ray_address: str | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> BatchReport:
    """Reconstruct every input into ``out/<name>/`` and write ``out/summary.csv``.

    Items run in this process (``workers=1``, one Reconstructor), in ``workers`` spawned processes,
    or as Ray tasks (``ray_address``). A bad item never stops the batch: it is reported through
    ``log`` and recorded in the summary (refreshed while the batch runs).

    Args:
        inputs: files, folders and glob patterns (see :func:`~facegcn.apps.batch.collect_inputs`).
        out: the output folder (created); nothing under it is taken as an input.
        config: the :class:`~facegcn.config.Config` (default: ``Config()``).
        workers: processes on this machine (one torch thread each when > 1).
        resume: skip items whose done-marker matches the source and the configuration.
        recursive: descend into sub-folders of folder inputs.
        ray_address: run as Ray tasks: ``"local"``, ``"auto"`` or a cluster address.
        progress: show a progress bar (default: ``config.progress``).
        log: where per-item error lines go (default: above the progress bar, on stderr).

    Returns:
        The :class:`~facegcn.apps.batch.BatchReport` (rows in input order).

    Interrupted (Ctrl-C): the workers are stopped at once, ``summary.csv`` lists what finished
    (the other items with status ``Interrupted``) and :class:`~facegcn.errors.Interrupted` (exit
    code 130) is raised; ``resume=True`` continues from there.

    Raises:
        FaceGCNError: only for problems that concern the whole batch (no inputs at all, unusable
            configuration, output folder not writable, Ray unavailable, models that cannot load).
        Interrupted: the run was interrupted (KeyboardInterrupt).
    """
    cfg = (config or Config()).validate()
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    out = Path(out)
    check_writable_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    atomic_write_text(out / CONFIG_NAME, cfg.to_json())
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
            raise error_class(row["status"])(row["message"])
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
    interrupted = False
    try:
        if todo and ray_address:
            backend = "ray"
            run_ray(items, todo, out, digest, config_json, ray_address, workers, record)
        elif todo and workers > 1 and len(todo) > 1:
            backend = f"processes({min(workers, len(todo))})"
            run_pool(items, todo, out, digest, config_json, workers, record)
        elif todo:
            rec = None
            if any(items[i].error is None for i in todo):
                rec = get_reconstructor(config_json, cfg.threads or None)  # ConfigError etc. propagate
            for i in todo:
                record(i, process_item(rec, items[i], out, digest))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        if interrupted:
            for i, it in enumerate(items):
                if i not in rows:
                    # finished on disk (its done-marker is written) but not yet reported when the
                    # interrupt came: ok, as --resume will see it; else not finished
                    done = is_done(it, out, digest) if it.error is None else None
                    if done is not None:
                        rows[i] = {**done, "input": it.source, "output": str(out / it.name)}
                        continue
                    rows[i] = interrupted_row(it, out)
                    remove_temp_folders(out, it.name)  # a face set a stopped worker was writing
        if rows:
            write_summary(summary, ordered())
    if interrupted:
        left = sum(1 for r in rows.values() if r["status"] == "Interrupted")
        ok = sum(1 for r in rows.values() if r["status"] == "ok")
        raise Interrupted(f"interrupted: {ok} ok, {len(items) - left - ok} failed, {left} not finished of "
                          f"{len(items)} item(s); summary: {summary}; add --resume to continue")
    return BatchReport(ordered(), summary, out, time.perf_counter() - t_start, backend)
