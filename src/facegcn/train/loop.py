"""The training loop of one stage: epochs, exact checkpoints and resume, stop on signal or budget.

Exactness on CPU:

* the data order of every epoch is a seeded ``DistributedSampler`` permutation (``set_epoch``),
  batches are cut with ``drop_last`` so all ranks take the same number of steps, and a resumed
  epoch skips the batches already done;
* the stages derive every random number of a step from (seed, step, sample index); the global
  RNG states are checkpointed and restored as well;
* checkpoints (``RUN_DIR/checkpoints/<stage>-last.safetensors``) hold the models, optimizers,
  schedulers, RNG states, the epoch/step counters and the epoch's running loss sums, written
  atomically by rank 0 between barriers.

A run stopped by ``max_steps``, SIGINT/SIGTERM or SIGKILL and resumed with ``resume=True``
therefore ends with the same tensors, bit for bit, as the uninterrupted run (same thread count).
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from facegcn.errors import ConfigError, ModelFileError
from facegcn.train.checkpoint import load_state, rng_state, save_state, set_rng_state
from facegcn.train.config import TrainConfig
from facegcn.train.data import FaceDataset
from facegcn.train.distributed import DistContext
from facegcn.train.log import RunLogger, image_grid
from facegcn.train.stages import Stage

__all__ = ["CHECKPOINT_KIND", "CHECKPOINT_VERSION", "StopFlag", "checkpoint_path", "load_checkpoint",
           "run_stage", "save_checkpoint"]

CHECKPOINT_KIND = "train_state"
CHECKPOINT_VERSION = 1
FINAL_FILES = {"coarse": "regressor.safetensors", "texture": "texture.safetensors"}


def checkpoint_path(run_dir: str | Path, stage: str) -> Path:
    """``RUN_DIR/checkpoints/<stage>-last.safetensors``: the one training checkpoint of a stage."""
    return Path(run_dir) / "checkpoints" / f"{stage}-last.safetensors"


class StopFlag:
    """SIGINT / SIGTERM → finish the current step, checkpoint, stop (main thread only).

    A context manager: the handlers are installed on entry and the previous ones restored on exit;
    ``hit`` turns true when a signal arrived.
    """

    def __init__(self):
        self.hit = False
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.getsignal(s)
                signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.hit = True

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


def save_checkpoint(stage: Stage, path: Path, ctx: DistContext, cfg: TrainConfig, counters: dict,
                    accum: dict) -> None:
    """Write the stage's training checkpoint. Collective: every rank contributes its RNG state;
    rank 0 writes (atomic), between barriers.

    Args:
        stage: its modules, optimizers and schedulers are saved.
        path: the checkpoint file (:func:`checkpoint_path`).
        ctx: the process group.
        cfg: saved in the metadata (a resume refuses changed options).
        counters: ``epoch``, ``step_in_epoch``, ``global_step``, ``done``, ``steps_per_epoch``.
        accum: the epoch's running loss sums ``{"sums": {...}, "count": n, ...}``.
    """
    ranks = ctx.gather_uint8(torch.get_rng_state())
    cuda_ranks = None
    if ctx.device.type == "cuda":
        cuda_ranks = ctx.gather_uint8(torch.cuda.get_rng_state(ctx.device))
    ctx.barrier()
    if ctx.is_main:
        rng = rng_state(cuda=False)
        rng["torch_ranks"] = ranks
        if cuda_ranks is not None:
            rng["cuda_ranks"] = cuda_ranks
        sections = {f"model/{k}": m.state_dict() for k, m in stage.modules().items()}
        sections.update({f"optim/{k}": o.state_dict() for k, o in stage.optimizers().items()})
        sections.update({f"sched/{k}": s.state_dict() for k, s in stage.schedulers().items()})
        sections["rng"] = rng
        sections["accum"] = accum
        meta = {"kind": CHECKPOINT_KIND, "version": CHECKPOINT_VERSION, "stage": stage.name,
                "world_size": ctx.world_size, "config": cfg.to_dict(), **counters}
        save_state(path, sections, meta)
    ctx.barrier()


def load_checkpoint(stage: Stage, path: Path, ctx: DistContext) -> tuple[dict, dict]:
    """Restore a stage (modules, optimizers, schedulers, this rank's RNG states) from its checkpoint.

    Returns:
        ``(meta, accum)``: the checkpoint metadata (counters, config, world size) and the saved
        running loss sums.

    Raises:
        ModelFileError: unreadable file, or a checkpoint of another kind or stage.
    """
    meta, sec = load_state(path, map_location="cpu", expect_kind=CHECKPOINT_KIND)
    if meta.get("stage") != stage.name:
        raise ModelFileError(f"{path} is a {meta.get('stage')!r} checkpoint, not {stage.name!r}")
    for k, m in stage.modules().items():
        m.load_state_dict(sec[f"model/{k}"])
    for k, o in stage.optimizers().items():
        o.load_state_dict(sec[f"optim/{k}"])
    for k, s in stage.schedulers().items():
        s.load_state_dict(sec[f"sched/{k}"])
    rng = sec["rng"]
    set_rng_state(rng)
    ranks = rng.get("torch_ranks") or []
    if len(ranks) == ctx.world_size:
        torch.set_rng_state(ranks[ctx.rank].to(torch.uint8))
    cr = rng.get("cuda_ranks") or []
    if ctx.device.type == "cuda" and len(cr) == ctx.world_size:
        torch.cuda.set_rng_state(cr[ctx.rank].to(torch.uint8), ctx.device)
    return meta, sec["accum"]


def _global_means(ctx: DistContext, logs: dict[str, float]) -> dict[str, float]:
    if not ctx.distributed:
        return logs
    keys = sorted(logs)
    t = torch.tensor([logs[k] for k in keys], dtype=torch.float64)
    t = ctx.all_reduce_sum(t) / ctx.world_size
    return dict(zip(keys, t.tolist()))


def _evaluate(stage: Stage, held: FaceDataset, cfg: TrainConfig) -> dict[str, float]:
    sums: dict[str, float] = {}
    n = 0
    for i, batch in enumerate(DataLoader(held, batch_size=cfg.batch_size, shuffle=False)):
        if i >= cfg.eval_batches:
            break
        for k, v in stage.eval_batch(batch).items():
            sums[k] = sums.get(k, 0.0) + v
        n += 1
    return {k: v / max(n, 1) for k, v in sums.items()}


class _StageRun:
    """The state of one :func:`run_stage` call, its steps as methods."""

    def __init__(self, stage: Stage, cfg: TrainConfig, ctx: DistContext, run_dir: Path, logger: RunLogger,
                 stop: StopFlag, budget: dict):
        self.stage, self.cfg, self.ctx, self.run_dir = stage, cfg, ctx, run_dir
        self.logger, self.stop, self.budget = logger, stop, budget
        self.name = stage.name
        self.ckpt = checkpoint_path(run_dir, self.name)
        self.E = cfg.stage_epochs(self.name)
        self.B = cfg.batch_size
        self.ds = FaceDataset(cfg.cache, "train", flip=cfg.flip, seed=cfg.seed)
        if len(self.ds) == 0:
            raise ConfigError(f"{cfg.cache}: the cache has no training items")
        self.sampler = DistributedSampler(self.ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                          seed=cfg.seed, drop_last=True)
        self.spe = len(self.sampler) // self.B
        if self.spe == 0:
            raise ConfigError(f"{len(self.ds)} training item(s) are too few for one batch of {self.B} per "
                              f"process × {ctx.world_size} process(es)")
        self.held = FaceDataset(cfg.cache, "held_out", seed=cfg.seed)
        self.counters = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "done": False,
                         "steps_per_epoch": self.spe}
        self.accum: dict = {"sums": {}, "count": 0}

    def _counter_event(self, event: str, *keys: str) -> None:
        self.logger.event(event=event, stage=self.name, **{k: self.counters[k] for k in keys})

    def restore(self, resume: bool) -> None:
        """Continue from the stage's checkpoint (``resume``), or refuse to overwrite one."""
        if resume and self.ckpt.is_file():
            meta, self.accum = load_checkpoint(self.stage, self.ckpt, self.ctx)
            diff = self.cfg.differences(TrainConfig.from_dict(meta["config"]))
            if diff:
                raise ConfigError(f"cannot resume {self.name}: option(s) {', '.join(diff)} differ from the checkpoint")
            if int(meta.get("world_size", 1)) != self.ctx.world_size or int(meta.get("steps_per_epoch", self.spe)) != self.spe:
                raise ConfigError(f"cannot resume {self.name}: the checkpoint was written by {meta.get('world_size')} "
                                  f"process(es) with {meta.get('steps_per_epoch')} steps per epoch; resume with the "
                                  "same number of processes and the same cache")
            self.counters.update({k: meta[k] for k in ("epoch", "step_in_epoch", "global_step", "done")})
            if self.counters["done"] and self.counters["epoch"] < self.E:  # more epochs requested: continue
                self.counters["done"] = False
            self._counter_event("resume", "epoch", "step_in_epoch", "global_step")
        elif self.ckpt.is_file():
            raise ConfigError(f"{self.run_dir} already has a {self.name} checkpoint; pass --resume to continue it "
                              "or use a new folder")

    def save(self) -> None:
        save_checkpoint(self.stage, self.ckpt, self.ctx, self.cfg, self.counters, self.accum)

    def _budget_spent(self) -> bool:
        return self.budget.get("left") is not None and self.budget["left"] <= 0

    def _step(self, batch: dict, epoch: int, bar) -> bool:
        """One training step with its logging, budget and checkpoint; returns whether to halt."""
        cfg, ctx, counters, accum = self.cfg, self.ctx, self.counters, self.accum
        logs = _global_means(ctx, self.stage.train_step(batch, counters["global_step"], epoch))
        counters["global_step"] += 1
        counters["step_in_epoch"] += 1
        for k, v in logs.items():
            accum["sums"][k] = accum["sums"].get(k, 0.0) + float(v)
        accum["count"] += 1
        gs = counters["global_step"]
        if ctx.is_main and (gs % max(cfg.log_every, 1) == 0 or counters["step_in_epoch"] == self.spe):
            self.logger.scalars(gs, logs, stage=self.name, epoch=epoch, kind="step")
        bar.update(1)
        if ctx.is_main:
            bar.set_postfix(loss=f"{logs.get('total', float('nan')):.4g}")
        if self.budget.get("left") is not None:
            self.budget["left"] -= 1
        halt = ctx.any(self.stop.hit) or self.budget.get("left") == 0
        if halt or (cfg.checkpoint_every and gs % cfg.checkpoint_every == 0 and counters["step_in_epoch"] < self.spe):
            self.save()
        return halt

    def train_epoch(self, epoch: int) -> bool:
        """The (remaining) steps of one epoch; returns whether the run stopped inside it."""
        self.sampler.set_epoch(epoch)
        self.ds.set_epoch(epoch)
        order = list(self.sampler)
        B = self.B
        batches = [order[i * B : (i + 1) * B] for i in range(self.spe)][self.counters["step_in_epoch"]:]
        gen = torch.Generator().manual_seed(epoch)  # keeps the loader off the global RNG
        loader = DataLoader(self.ds, batch_sampler=batches, num_workers=self.cfg.workers, generator=gen,
                            pin_memory=self.ctx.device.type == "cuda")
        bar = tqdm(total=self.spe, initial=self.counters["step_in_epoch"], desc=f"{self.name} {epoch + 1}/{self.E}",
                   disable=not (self.cfg.progress and self.ctx.is_main), leave=False)
        stopped = False
        for batch in loader:
            if self._budget_spent() or self._step(batch, epoch, bar):
                stopped = True
                break
        bar.close()
        del loader
        return stopped

    def _grid_batch(self) -> dict:
        src = self.held if len(self.held) else FaceDataset(self.cfg.cache, "train", seed=self.cfg.seed)
        n = min(4, len(src))
        return torch.utils.data.default_collate([src[i] for i in range(n)])

    def end_epoch(self, epoch: int) -> None:
        """Scheduler steps, epoch means, held-out losses and image grid (rank 0), checkpoint."""
        with warnings.catch_warnings():  # after a resume at an epoch end no optimizer step precedes it
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            for s in self.stage.schedulers().values():
                s.step()
        n = max(self.accum["count"], 1)
        means = {k: v / n for k, v in self.accum["sums"].items()}
        gs = self.counters["global_step"]
        if self.ctx.is_main:
            self.logger.scalars(gs, means, stage=self.name, epoch=epoch, kind="epoch")
            if self.cfg.eval and len(self.held):
                ev = _evaluate(self.stage, self.held, self.cfg)
                self.logger.scalars(gs, ev, stage=f"{self.name}/held_out", epoch=epoch, kind="held_out")
            if self.cfg.image_every and (epoch + 1) % self.cfg.image_every == 0:
                grid = image_grid(self.stage.grid(self._grid_batch()))
                self.logger.images(f"{self.name}/samples", gs, grid, f"{self.name}-epoch{epoch + 1:03d}")
        self.counters["epoch"] += 1
        self.counters["step_in_epoch"] = 0
        self.accum = {"sums": {}, "count": 0, "last_epoch_means": means}
        self.save()

    def finish(self, info: dict, t_start: float) -> dict[str, str]:
        """Mark the stage done, write its weight file (rank 0) and the final checkpoint."""
        files: dict[str, str] = {}
        self.counters["done"] = True
        info["steps"] = self.counters["global_step"]
        info["seconds"] = round(time.perf_counter() - t_start, 3)
        if self.ctx.is_main:
            files = self.stage.finalize(self.run_dir, info)
        self.ctx.barrier()
        self.save()
        self._counter_event("stage_done", "epoch", "global_step")
        return files


def run_stage(stage: Stage, cfg: TrainConfig, ctx: DistContext, run_dir: Path, *, resume: bool,
              logger: RunLogger, stop: StopFlag, budget: dict | None = None) -> dict:
    """Train one stage to its epoch count, or until the step budget is spent or a signal arrives.

    Args:
        stage: a :class:`~facegcn.train.stages.CoarseStage` or
            :class:`~facegcn.train.stages.TextureStage`.
        cfg: the run's options (cache, epochs, batch size, logging and checkpoint intervals).
        ctx: the process group; every rank calls this.
        run_dir: the run folder (checkpoints, weight files).
        resume: continue from the stage's checkpoint when there is one.
        logger: the run's logger (disabled on ranks other than 0).
        stop: the signal flag, checked (collectively) after every step.
        budget: ``{"left": steps or None}``, shared by the stages of one invocation
            (``max_steps``) and decremented in place.

    Returns:
        ``{"stage", "stopped", "skipped", "epoch", "step_in_epoch", "global_step", "done",
        "steps_per_epoch", "files", "last_epoch_means"}`` (``files``: kind → path written).
    """
    budget = {"left": None} if budget is None else budget
    run = _StageRun(stage, cfg, ctx, run_dir, logger, stop, budget)
    run.restore(resume)
    info = {"epochs": run.E, "cache": str(cfg.cache), "world_size": ctx.world_size, "batch_size": run.B}
    files: dict[str, str] = {}
    if run.counters["done"]:
        final = run_dir / FINAL_FILES["coarse" if stage.name == "coarse" else "texture"]
        if ctx.is_main and not final.is_file():
            files = stage.finalize(run_dir, {**info, "steps": run.counters["global_step"]})
        ctx.barrier()
        return {"stage": stage.name, "stopped": False, "skipped": True, **run.counters, "files": files}
    t_start = time.perf_counter()
    stopped = False
    while run.counters["epoch"] < run.E:
        epoch = run.counters["epoch"]
        if run.train_epoch(epoch):
            stopped = True
            break
        run.end_epoch(epoch)
    if not stopped:
        files = run.finish(info, t_start)
    else:
        run._counter_event("stopped", "epoch", "step_in_epoch", "global_step")
    logger.flush()
    return {"stage": stage.name, "stopped": stopped, "skipped": False, **run.counters, "files": files,
            "last_epoch_means": run.accum.get("last_epoch_means")}
