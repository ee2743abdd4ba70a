"""``facegcn train``: run the stages of a :class:`~facegcn.train.config.TrainConfig`.

:func:`train` runs stage 1 (coefficient regressor) and / or stage 2 (GCN texture generator +
critic) in one process or as one rank of ``torchrun --nproc_per_node N``. The stages are
:mod:`facegcn.train.stages`, the per-stage loop with exact checkpoints and resume
:mod:`facegcn.train.loop`; :func:`read_log` / :func:`epoch_means` read a run's JSON-lines log.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path


from facegcn.coarse.synthesis import FaceSynthesis
from facegcn.errors import ConfigError, ModelFileError
from facegcn.io.atomic import atomic_write_text
from facegcn.io.weights import load_tensors
from facegcn.morphable import load_model
from facegcn.pipeline.runtime import restore_threads, set_threads
from facegcn.train.config import TrainConfig
from facegcn.train.data import load_index
from facegcn.train.distributed import DistContext
from facegcn.train.log import RunLogger
from facegcn.train.loop import FINAL_FILES, StopFlag, checkpoint_path, run_stage
from facegcn.train.stages import CoarseStage, TextureStage

__all__ = ["epoch_means", "read_log", "train"]


def _prepare_run_dir(run_dir: Path, cfg: TrainConfig, ctx: DistContext, resume: bool) -> None:
    """Refuse to overwrite checkpoints without ``resume`` (every rank sees the same files), then on
    rank 0 create the folders, remove killed writes' temporary files and write ``config.json``."""
    for st in cfg.stages():
        if not resume and checkpoint_path(run_dir, st).is_file():
            raise ConfigError(f"{run_dir} already has a {st} checkpoint; pass --resume to continue "
                              "it or use a new folder")
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        _clean_temp_files(run_dir / "checkpoints")
        atomic_write_text(run_dir / "config.json", cfg.to_json())
    ctx.barrier()


def _run_stages(cfg: TrainConfig, ctx: DistContext, run_dir: Path, resume: bool, logger: RunLogger) -> list[dict]:
    """Every configured stage in order, until one stops (signal or ``max_steps``)."""
    mm = load_model(cfg.model, device=ctx.device)
    syn = FaceSynthesis(mm).to(ctx.device)
    results = []
    budget = {"left": cfg.max_steps}
    with StopFlag() as stop:
        for st in cfg.stages():
            if st == "coarse":
                stage = CoarseStage(cfg, ctx, mm, syn)
            else:
                reg = cfg.regressor or str(run_dir / FINAL_FILES["coarse"])
                if not Path(reg).is_file():
                    raise ConfigError(f"the texture stage needs a trained regressor: {reg} not found "
                                      "(train --stage coarse first or pass --regressor)")
                stage = TextureStage(cfg, ctx, mm, syn, reg)
            res = run_stage(stage, cfg, ctx, run_dir, resume=resume, logger=logger, stop=stop, budget=budget)
            results.append(res)
            del stage
            if res["stopped"]:
                break
    return results


def train(cfg: TrainConfig, *, resume: bool = False, logger: RunLogger | None = None) -> dict:
    """Run the configured stage(s). In a torchrun job every rank calls this.

    Args:
        cfg: the options (validated here); ``cfg.run_dir`` is required.
        resume: continue from the stages' checkpoints (a finished stage is skipped, or continued
            when more epochs are requested); without it existing checkpoints are an error.
        logger: a :class:`~facegcn.train.log.RunLogger`; default: one on ``RUN_DIR`` (rank 0 only),
            closed at the end.

    Returns:
        ``{"stopped": bool, "stages": [run_stage summaries], "files": {"regressor"|"texture":
        path}, "world_size": int}``.

    Raises:
        ConfigError: bad options, a cache that cannot be trained on, or a run folder that does
            not fit (``resume`` needed, changed options, missing regressor).
        ModelFileError: an unreadable cache or checkpoint.
    """
    cfg = cfg.validate()
    if not cfg.run_dir:
        raise ConfigError("no run folder given (-o RUN_DIR)")
    load_index(cfg.cache)  # fail early on a bad cache
    old_threads = set_threads(cfg.threads)
    run_dir = Path(cfg.run_dir)
    own_logger = logger is None
    try:
        ctx = DistContext(cfg.device)
    except BaseException:
        restore_threads(old_threads)
        raise
    try:
        _prepare_run_dir(run_dir, cfg, ctx, resume)
        if logger is None:
            purge = None
            if resume:
                purge = _resume_step(run_dir, cfg)
            logger = RunLogger(run_dir, enabled=ctx.is_main, purge_step=purge)
        results = _run_stages(cfg, ctx, run_dir, resume, logger)
        stopped = any(r["stopped"] for r in results)
        files = {k: v for r in results for k, v in r["files"].items()}
        for k, name in (("regressor", FINAL_FILES["coarse"]), ("texture", FINAL_FILES["texture"])):
            if k not in files and (run_dir / name).is_file():
                files[k] = str(run_dir / name)
        return {"stopped": stopped, "stages": results, "files": files, "world_size": ctx.world_size}
    finally:
        if own_logger and logger is not None:
            logger.close()
        ctx.close()
        restore_threads(old_threads)


def _resume_step(run_dir: Path, cfg: TrainConfig) -> int | None:
    """Global step of the checkpoint a resume starts from (TensorBoard purges later events)."""
    for st in cfg.stages():
        p = checkpoint_path(run_dir, st)
        if p.is_file():
            try:
                meta, _ = load_tensors(p)
            except ModelFileError:
                return None
            if not meta.get("done"):
                return int(meta.get("global_step", 0)) or None
    return None


def _clean_temp_files(folder: Path) -> None:
    """Remove temporary files left by a checkpoint write that was killed (never the checkpoints)."""
    for p in folder.glob(".*.safetensors.*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()


def read_log(run_dir: str | Path) -> list[dict]:
    """The JSON-lines log of a run (for tests and quick analysis).

    Args:
        run_dir: the run folder.

    Returns:
        One dict per line of ``RUN_DIR/log.jsonl`` (``[]`` when there is none yet).
    """
    p = Path(run_dir) / "log.jsonl"
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def epoch_means(run_dir: str | Path, stage: str, key: str = "total") -> list[float]:
    """Per-epoch mean of a logged scalar (the last record per epoch wins after resumes).

    Args:
        run_dir: the run folder.
        stage: ``"coarse"`` or ``"texture"``.
        key: the scalar, e.g. ``"total"``.

    Returns:
        The means in epoch order (epochs without the key are left out).
    """
    out: dict[int, float] = {}
    for r in read_log(run_dir):
        if r.get("kind") == "epoch" and r.get("stage") == stage and key in r:
            out[int(r["epoch"])] = float(r[key])
    return [out[k] for k in sorted(out)]
