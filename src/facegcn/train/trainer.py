"""Training loops: stage 1 (coefficient regressor) and stage 2 (GCN texture generator + critic).

:func:`train` runs the stages of a :class:`~facegcn.train.config.TrainConfig` in one process or
as one rank of ``torchrun --nproc_per_node N``. Exactness on CPU:

* the data order of every epoch is a seeded ``DistributedSampler`` permutation (``set_epoch``),
  batches are cut with ``drop_last`` so all ranks take the same number of steps, and a resumed
  epoch skips the batches already done;
* every random number of a step is derived from (seed, step, sample index) — flip augmentation,
  the gradient-penalty interpolation weights — so neither resuming nor the number of ranks
  changes them; the global RNG states are checkpointed and restored as well;
* checkpoints (``RUN_DIR/checkpoints/<stage>-last.safetensors``) hold the models, optimizers,
  schedulers, RNG states, the epoch/step counters and the epoch's running loss sums, written
  atomically by rank 0 between barriers.

A run stopped by ``max_steps``, SIGINT/SIGTERM or SIGKILL and resumed with ``resume=True``
therefore ends with the same tensors, bit for bit, as the uninterrupted run (same thread count).

Stage 2 per batch: the frozen regressor's coefficients give the coarse state and the refiner
input; the generator's residual albedo is rendered with the coarse light and composited over the
photo; the critic takes ``critic_steps`` WGAN-GP updates on (photo, composite) pairs, then the
generator one update on :func:`~facegcn.train.losses.texture_objective` with the paper's
epoch-based weights ``vertex_weights(epoch + 1)``. On CUDA, AMP (bf16 autocast) covers the ResNet
regressor and the critic; graph convolutions, rendering and losses stay float32. AMP is never used
on CPU.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import warnings
from pathlib import Path

import torch

from facegcn.errors import ConfigError, ModelFileError
from facegcn.train.checkpoint import load_state, rng_state, save_state, set_rng_state
from facegcn.train.config import TrainConfig
from facegcn.train.data import FaceDataset, uniform
from facegcn.train.distributed import DistContext, convert_batchnorm
from facegcn.train.losses import full

CHECKPOINT_KIND = "train_state"
CHECKPOINT_VERSION = 1


def checkpoint_path(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / "checkpoints" / f"{stage}-last.safetensors"


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's and Python's global RNGs (their states are checkpointed)."""
    import random

    import numpy as np

    from facegcn.train.data import subseed

    torch.manual_seed(seed)
    np.random.seed(subseed("numpy", seed) % 2**32)
    random.seed(subseed("python", seed))


def _batch_to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class _StageBase:
    name = ""

    def __init__(self, cfg: TrainConfig, ctx: DistContext, mm, syn):
        self.cfg, self.ctx, self.mm, self.syn = cfg, ctx, mm, syn
        self.dev = ctx.device
        self.amp = bool(cfg.amp if cfg.amp is not None else self.dev.type == "cuda") and self.dev.type == "cuda"
        self._idnet = None

    def autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def embed(self, img: torch.Tensor, chip_transform: torch.Tensor) -> torch.Tensor:
        from facegcn.frontend.identity import embed_aligned, load_identity_net

        dtype = torch.float64 if img.dtype == torch.float64 else torch.float32
        if self._idnet is None or next(self._idnet.parameters()).dtype != dtype:
            self._idnet = load_identity_net(device=self.dev, dtype=dtype)
        return embed_aligned(img.clamp(0, 1), chip_transform, self._idnet)

    def clip(self, params) -> torch.Tensor:
        params = [p for p in params if p.grad is not None]
        if self.cfg.grad_clip and self.cfg.grad_clip > 0:
            return torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))

    # subclasses: modules(), optimizers(), schedulers(), train_step(), eval_batch(), grid(), finalize()


# ------------------------------------------------------------------------------------ stage 1
class CoarseStage(_StageBase):
    name = "coarse"

    def __init__(self, cfg, ctx, mm, syn):
        from facegcn.coarse.losses import CoarseWeights
        from facegcn.coarse.regressor import CoefficientRegressor
        from facegcn.train.losses import DistCoarseLoss

        super().__init__(cfg, ctx, mm, syn)
        seed_everything(cfg.seed)
        net = CoefficientRegressor(mm.layout, depth=cfg.depth, width=cfg.width)
        if ctx.distributed and cfg.sync_bn:
            convert_batchnorm(net)
        self.net = net.to(self.dev)
        ctx.broadcast_module(self.net)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.sched = torch.optim.lr_scheduler.ExponentialLR(self.opt, gamma=cfg.lr_decay)
        w = CoarseWeights(identity=cfg.coarse_identity_weight)
        self.loss = DistCoarseLoss(w, mm.skin_weight, ctx)
        self.eval_loss = DistCoarseLoss(w, mm.skin_weight, None)

    def modules(self):
        return {"regressor": self.net}

    def optimizers(self):
        return {"opt": self.opt}

    def schedulers(self):
        return {"sched": self.sched}

    def losses(self, batch: dict, *, distributed: bool = True):
        from facegcn.coarse.losses import self_supervised_loss

        b = _batch_to(batch, self.dev)
        with self.autocast():
            coeffs = self.net(b["image"])
        coeffs = full(coeffs)
        has_id = bool(torch.isfinite(b["identity"]).all())
        use_id = self.cfg.coarse_identity_weight > 0 and (self.ctx.all_min(has_id) if distributed else has_id)
        return self_supervised_loss(
            coeffs, self.syn, image=b["image"], landmarks=b["landmarks"], face_mask=b["face_mask"],
            loss=self.loss if distributed else self.eval_loss,
            identity=b["identity"] if use_id else None, chip_transform=b["chip_transform"] if use_id else None,
            embed_fn=self.embed if use_id else None,
        ), coeffs

    def compute_gradients(self, batch: dict) -> dict[str, float]:
        """Forward + backward + gradient averaging over ranks (no clipping, no optimiser step)."""
        self.net.train()
        self.opt.zero_grad(set_to_none=True)
        lt, _ = self.losses(batch)
        lt.total.backward()
        self.ctx.average_gradients(self.net.parameters())
        return lt.scalars()

    def train_step(self, batch: dict, step: int, epoch: int) -> dict[str, float]:
        logs = self.compute_gradients(batch)
        gn = self.clip(self.net.parameters())
        self.opt.step()
        return {**logs, "grad_norm": float(gn), "lr": self.opt.param_groups[0]["lr"]}

    @torch.no_grad()
    def eval_batch(self, batch: dict) -> dict[str, float]:
        self.net.eval()
        try:
            lt, _ = self.losses(batch, distributed=False)
        finally:
            self.net.train()
        return lt.scalars()

    @torch.no_grad()
    def grid(self, batch: dict) -> list[torch.Tensor]:
        self.net.eval()
        try:
            b = _batch_to(batch, self.dev)
            with self.autocast():
                coeffs = full(self.net(b["image"]))
            st = self.syn.state(self.mm.split(coeffs))
            r = self.syn.render(st)
        finally:
            self.net.train()
        img = b["image"]
        return [img, r.image.clamp(0, 1) * r.mask + img * (1 - r.mask)]

    def finalize(self, run_dir: Path, info: dict) -> dict[str, str]:
        from facegcn.coarse.regressor import CoefficientRegressor

        p = Path(run_dir) / "regressor.safetensors"
        CoefficientRegressor.save(self.net, p, extra={"trained": info})
        return {"regressor": str(p)}


# ------------------------------------------------------------------------------------ stage 2
class TextureStage(_StageBase):
    name = "texture"

    def __init__(self, cfg, ctx, mm, syn, regressor_path: str | Path):
        from facegcn.coarse.regressor import CoefficientRegressor
        from facegcn.graph import ImageCritic
        from facegcn.refine.losses import RefineWeights
        from facegcn.train.data import subseed
        from facegcn.train.texture import build_texture_generator, generator_config

        super().__init__(cfg, ctx, mm, syn)
        reg = CoefficientRegressor.load(regressor_path, map_location=self.dev)
        if reg.layout != mm.layout:
            raise ConfigError(f"regressor {regressor_path} was trained for layout {reg.layout.sizes}, "
                              f"not model {mm.name!r} ({mm.layout.sizes})")
        self.reg = reg.eval()
        for p in self.reg.parameters():
            p.requires_grad_(False)
        self.regressor_path = str(regressor_path)
        self.gen_config = generator_config(cfg.gen_K, cfg.gen_fc_channels, cfg.gen_decoder_widths,
                                           cfg.gen_refiner_widths)
        seed_everything(subseed(cfg.seed, "texture-init"))
        self.gen = build_texture_generator(mm, self.gen_config).to(self.dev)
        self.critic = ImageCritic(widths=tuple(cfg.critic_widths), norm=cfg.critic_norm).to(self.dev)
        ctx.broadcast_module(self.gen)
        ctx.broadcast_module(self.critic)
        self.opt_g = torch.optim.Adam(self.gen.parameters(), lr=cfg.lr)
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr)
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.opt_g, gamma=cfg.lr_decay)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.opt_d, gamma=cfg.lr_decay)
        self.w = RefineWeights(pixel=cfg.pixel_weight, identity=cfg.identity_weight, vertex=cfg.vertex_weight,
                               adversarial=cfg.adv_weight, symmetry=cfg.symmetry_weight,
                               skin_variance=cfg.skin_variance_weight, gp_lambda=cfg.gp_lambda)
        self.mirror = mm.mirror_index().to(self.dev)

    def modules(self):
        return {"generator": self.gen, "critic": self.critic}

    def optimizers(self):
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def schedulers(self):
        return {"sched_g": self.sched_g, "sched_d": self.sched_d}

    # --------------------------------------------------------------- pieces
    @torch.no_grad()
    def prepare(self, batch: dict) -> dict:
        """Frozen stage-1 coefficients, the coarse state/render and the generator inputs."""
        from facegcn.train.texture import generator_inputs, identity_input

        b = _batch_to(batch, self.dev)
        with self.autocast():
            coeffs = self.reg(b["image"])
        c, st, r0, base, x_in = generator_inputs(self.syn, full(coeffs), b["image"])
        b.update(coeffs=c, state=st, coarse=r0, base=base, x_in=x_in, ident=identity_input(b["identity"]))
        return b

    def generate(self, p: dict):
        from facegcn.render import sh_shading

        t = self.gen(p["ident"], p["x_in"])  # no autocast: sparse graph convolutions stay in float32
        alb = p["base"] + full(t)
        st = p["state"]
        r = self.syn.renderer(st.vertices, sh_shading(st.normals, alb, p["coeffs"].sh))
        comp = r.image * r.mask + p["image"] * (1 - r.mask)
        return alb, r, comp

    def gp_eps(self, indices: torch.Tensor, step: int, k: int) -> torch.Tensor:
        vals = [uniform("gp", self.cfg.seed, step, k, int(i)) for i in indices.tolist()]
        return torch.tensor(vals, dtype=torch.float32, device=self.dev)

    def critic_gradients(self, real, fake, indices, step: int, k: int) -> dict[str, float]:
        from facegcn.train.losses import critic_objective

        self.opt_d.zero_grad(set_to_none=True)
        with self.autocast():
            loss, info = critic_objective(self.critic, real, fake, self.gp_eps(indices, step, k), self.cfg.gp_lambda)
        loss.backward()
        self.ctx.average_gradients(self.critic.parameters())
        return {"critic_loss": float(loss.detach()), **{k2: float(v) for k2, v in info.items()}}

    def generator_losses(self, p: dict, alb, r, comp, epoch: int, *, distributed: bool = True):
        from facegcn.train.losses import texture_objective

        has_id = bool(torch.isfinite(p["identity"]).all())
        use_id = self.w.identity > 0 and (self.ctx.all_min(has_id) if distributed else has_id)
        feat = self.embed(comp, p["chip_transform"]) if use_id else None
        req = [q.requires_grad for q in self.critic.parameters()]
        for q in self.critic.parameters():
            q.requires_grad_(False)
        try:
            critic_in = comp * 2 - 1
            return texture_objective(
                self.w, colors=alb, reference=p["base"], render=r.image, photo=p["image"], render_mask=r.mask,
                face_mask=p["face_mask"], epoch=float(epoch + 1), critic_input=critic_in, critic=self.critic,
                ctx=self.ctx if distributed else None, feat_render=feat,
                feat_photo=p["identity"] if feat is not None else None, mirror=self.mirror,
                skin_weight=self.mm.skin_weight,
            )
        finally:
            for q, rq in zip(self.critic.parameters(), req):
                q.requires_grad_(rq)

    def train_step(self, batch: dict, step: int, epoch: int) -> dict[str, float]:
        self.gen.train()
        self.critic.train()
        p = self.prepare(batch)
        alb, r, comp = self.generate(p)
        real = p["image"] * 2 - 1
        fake = (comp * 2 - 1).detach()
        logs: dict[str, float] = {}
        for k in range(self.cfg.critic_steps):
            logs = self.critic_gradients(real, fake, p["index"], step, k)
            logs["critic_grad_norm"] = float(self.clip(self.critic.parameters()))
            self.opt_d.step()
        self.opt_g.zero_grad(set_to_none=True)
        lt = self.generator_losses(p, alb, r, comp, epoch)
        lt.total.backward()
        self.ctx.average_gradients(self.gen.parameters())
        gn = self.clip(self.gen.parameters())
        self.opt_g.step()
        with torch.no_grad():
            from facegcn.coarse.losses import photo_l2_loss

            fm, r0 = p["face_mask"], p["coarse"]
            extra = {"pixel_mse_refined": float(photo_l2_loss(r.image, p["image"], r.mask * fm)),
                     "pixel_mse_coarse": float(photo_l2_loss(r0.image, p["image"], r0.mask * fm))}
        return {**lt.scalars(), **logs, **extra, "grad_norm": float(gn), "lr": self.opt_g.param_groups[0]["lr"]}

    @torch.no_grad()
    def eval_batch(self, batch: dict) -> dict[str, float]:
        from facegcn.coarse.losses import photo_l2_loss

        self.gen.eval()
        try:
            p = self.prepare(batch)
            alb, r, comp = self.generate(p)
        finally:
            self.gen.train()
        fm = p["face_mask"]
        return {"pixel_mse_refined": float(photo_l2_loss(r.image, p["image"], r.mask * fm)),
                "pixel_mse_coarse": float(photo_l2_loss(p["coarse"].image, p["image"], p["coarse"].mask * fm))}

    @torch.no_grad()
    def grid(self, batch: dict) -> list[torch.Tensor]:
        self.gen.eval()
        try:
            p = self.prepare(batch)
            _, r, comp = self.generate(p)
        finally:
            self.gen.train()
        img, r0 = p["image"], p["coarse"]
        return [img, r0.image.clamp(0, 1) * r0.mask + img * (1 - r0.mask), comp.clamp(0, 1)]

    def finalize(self, run_dir: Path, info: dict) -> dict[str, str]:
        from facegcn.train.texture import save_texture_generator

        p = Path(run_dir) / "texture.safetensors"
        save_texture_generator(p, self.gen, self.mm, self.gen_config,
                               extra={"trained": {**info, "regressor": self.regressor_path}})
        return {"texture": str(p)}


# ------------------------------------------------------------------------------------ the loop
class _StopFlag:
    """SIGINT / SIGTERM → finish the current step, checkpoint, stop (main thread only)."""

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


def _save_checkpoint(stage: _StageBase, path: Path, ctx: DistContext, cfg: TrainConfig, counters: dict,
                     accum: dict) -> None:
    """Collective: every rank contributes its RNG state; rank 0 writes (atomic), between barriers."""
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


def _load_checkpoint(stage: _StageBase, path: Path, ctx: DistContext) -> tuple[dict, dict]:
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


def run_stage(stage: _StageBase, cfg: TrainConfig, ctx: DistContext, run_dir: Path, *, resume: bool,
              logger, stop: _StopFlag, budget: dict | None = None) -> dict:
    """Train one stage to its epoch count, or until the step budget (``budget["left"]``, shared by
    the stages of one invocation: ``max_steps``) is spent or a signal arrives. Returns a summary."""
    budget = {"left": None} if budget is None else budget
    from torch.utils.data import DataLoader, DistributedSampler
    from tqdm.auto import tqdm

    name = stage.name
    ckpt = checkpoint_path(run_dir, name)
    E = cfg.stage_epochs(name)
    B = cfg.batch_size
    ds = FaceDataset(cfg.cache, "train", flip=cfg.flip, seed=cfg.seed)
    if len(ds) == 0:
        raise ConfigError(f"{cfg.cache}: the cache has no training items")
    sampler = DistributedSampler(ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    spe = len(sampler) // B
    if spe == 0:
        raise ConfigError(f"{len(ds)} training item(s) are too few for one batch of {B} per process "
                          f"× {ctx.world_size} process(es)")
    held = FaceDataset(cfg.cache, "held_out", seed=cfg.seed)
    counters = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "done": False, "steps_per_epoch": spe}
    accum: dict = {"sums": {}, "count": 0}
    if resume and ckpt.is_file():
        meta, accum = _load_checkpoint(stage, ckpt, ctx)
        old = TrainConfig.from_dict(meta["config"])
        diff = cfg.differences(old)
        if diff:
            raise ConfigError(f"cannot resume {name}: option(s) {', '.join(diff)} differ from the checkpoint")
        if int(meta.get("world_size", 1)) != ctx.world_size or int(meta.get("steps_per_epoch", spe)) != spe:
            raise ConfigError(f"cannot resume {name}: the checkpoint was written by {meta.get('world_size')} "
                              f"process(es) with {meta.get('steps_per_epoch')} steps per epoch; resume with the "
                              "same number of processes and the same cache")
        counters.update({k: meta[k] for k in ("epoch", "step_in_epoch", "global_step", "done")})
        if counters["done"] and counters["epoch"] < E:  # more epochs requested: continue the finished stage
            counters["done"] = False
        logger.event(event="resume", stage=name, **{k: counters[k] for k in ("epoch", "step_in_epoch", "global_step")})
    elif ckpt.is_file():
        raise ConfigError(f"{run_dir} already has a {name} checkpoint; pass --resume to continue it "
                          "or use a new folder")
    info = {"epochs": E, "cache": str(cfg.cache), "world_size": ctx.world_size, "batch_size": B}
    files: dict[str, str] = {}
    if counters["done"]:
        final = run_dir / ("regressor.safetensors" if name == "coarse" else "texture.safetensors")
        if ctx.is_main and not final.is_file():
            files = stage.finalize(run_dir, {**info, "steps": counters["global_step"]})
        ctx.barrier()
        return {"stage": name, "stopped": False, "skipped": True, **counters, "files": files}

    def save():
        _save_checkpoint(stage, ckpt, ctx, cfg, counters, accum)

    def grid_batch():
        src = held if len(held) else FaceDataset(cfg.cache, "train", seed=cfg.seed)
        n = min(4, len(src))
        return torch.utils.data.default_collate([src[i] for i in range(n)])

    t_start = time.perf_counter()
    stopped = False
    while counters["epoch"] < E:
        epoch = counters["epoch"]
        sampler.set_epoch(epoch)
        ds.set_epoch(epoch)
        order = list(sampler)
        batches = [order[i * B : (i + 1) * B] for i in range(spe)][counters["step_in_epoch"]:]
        gen = torch.Generator().manual_seed(epoch)  # keeps the loader off the global RNG
        loader = DataLoader(ds, batch_sampler=batches, num_workers=cfg.workers, generator=gen,
                            pin_memory=ctx.device.type == "cuda")
        bar = tqdm(total=spe, initial=counters["step_in_epoch"], desc=f"{name} {epoch + 1}/{E}",
                   disable=not (cfg.progress and ctx.is_main), leave=False)
        for batch in loader:
            if budget.get("left") is not None and budget["left"] <= 0:
                stopped = True
                break
            logs = stage.train_step(batch, counters["global_step"], epoch)
            logs = _global_means(ctx, logs)
            counters["global_step"] += 1
            counters["step_in_epoch"] += 1
            for k, v in logs.items():
                accum["sums"][k] = accum["sums"].get(k, 0.0) + float(v)
            accum["count"] += 1
            gs = counters["global_step"]
            if ctx.is_main and (gs % max(cfg.log_every, 1) == 0 or counters["step_in_epoch"] == spe):
                logger.scalars(gs, logs, stage=name, epoch=epoch, kind="step")
            bar.update(1)
            if ctx.is_main:
                bar.set_postfix(loss=f"{logs.get('total', float('nan')):.4g}")
            if budget.get("left") is not None:
                budget["left"] -= 1
            halt = ctx.any(stop.hit) or budget.get("left") == 0
            if halt or (cfg.checkpoint_every and gs % cfg.checkpoint_every == 0 and counters["step_in_epoch"] < spe):
                save()
            if halt:
                stopped = True
                break
        bar.close()
        del loader
        if stopped:
            break
        # ---- epoch end
        with warnings.catch_warnings():  # after a resume at an epoch end no optimizer step precedes it
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            for s in stage.schedulers().values():
                s.step()
        n = max(accum["count"], 1)
        means = {k: v / n for k, v in accum["sums"].items()}
        if ctx.is_main:
            logger.scalars(counters["global_step"], means, stage=name, epoch=epoch, kind="epoch")
            if cfg.eval and len(held):
                ev = _evaluate(stage, held, cfg)
                logger.scalars(counters["global_step"], ev, stage=f"{name}/held_out", epoch=epoch, kind="held_out")
            if cfg.image_every and (epoch + 1) % cfg.image_every == 0:
                grid = _grid(stage, grid_batch())
                logger.images(f"{name}/samples", counters["global_step"], grid, f"{name}-epoch{epoch + 1:03d}")
        counters["epoch"] += 1
        counters["step_in_epoch"] = 0
        accum = {"sums": {}, "count": 0, "last_epoch_means": means}
        save()
    if not stopped:
        counters["done"] = True
        info["steps"] = counters["global_step"]
        info["seconds"] = round(time.perf_counter() - t_start, 3)
        if ctx.is_main:
            files = stage.finalize(run_dir, info)
        ctx.barrier()
        save()
        logger.event(event="stage_done", stage=name, **{k: counters[k] for k in ("epoch", "global_step")})
    else:
        logger.event(event="stopped", stage=name, **{k: counters[k] for k in ("epoch", "step_in_epoch", "global_step")})
    logger.flush()
    return {"stage": name, "stopped": stopped, "skipped": False, **counters, "files": files,
            "last_epoch_means": accum.get("last_epoch_means")}


def _evaluate(stage, held: FaceDataset, cfg: TrainConfig) -> dict[str, float]:
    from torch.utils.data import DataLoader

    sums: dict[str, float] = {}
    n = 0
    for i, batch in enumerate(DataLoader(held, batch_size=cfg.batch_size, shuffle=False)):
        if i >= cfg.eval_batches:
            break
        for k, v in stage.eval_batch(batch).items():
            sums[k] = sums.get(k, 0.0) + v
        n += 1
    return {k: v / max(n, 1) for k, v in sums.items()}


def _grid(stage, batch) -> torch.Tensor:
    from facegcn.train.log import image_grid

    return image_grid(stage.grid(batch))


def train(cfg: TrainConfig, *, resume: bool = False, logger=None) -> dict:
    """Run the configured stage(s). In a torchrun job every rank calls this."""
    from facegcn.coarse.synthesis import FaceSynthesis
    from facegcn.morphable import load_model
    from facegcn.train.data import load_index
    from facegcn.train.log import RunLogger

    cfg = cfg.validate()
    if not cfg.run_dir:
        raise ConfigError("no run folder given (-o RUN_DIR)")
    load_index(cfg.cache)  # fail early on a bad cache
    from facegcn.render import _parallel

    old_threads = (torch.get_num_threads(), _parallel._num_threads)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
        _parallel.set_num_threads(cfg.threads)
    run_dir = Path(cfg.run_dir)
    own_logger = logger is None
    try:
        ctx = DistContext(cfg.device)
    except BaseException:
        torch.set_num_threads(old_threads[0])
        _parallel.set_num_threads(old_threads[1])
        raise
    try:
        for st in cfg.stages():  # refuse before writing anything (every rank sees the same files)
            if not resume and checkpoint_path(run_dir, st).is_file():
                raise ConfigError(f"{run_dir} already has a {st} checkpoint; pass --resume to continue "
                                  "it or use a new folder")
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "checkpoints").mkdir(exist_ok=True)
            _clean_temp_files(run_dir / "checkpoints")
            from facegcn.io.atomic import atomic_write_text

            atomic_write_text(run_dir / "config.json", cfg.to_json())
        ctx.barrier()
        if logger is None:
            purge = None
            if resume:
                purge = _resume_step(run_dir, cfg)
            logger = RunLogger(run_dir, enabled=ctx.is_main, purge_step=purge)
        mm = load_model(cfg.model, device=ctx.device)
        syn = FaceSynthesis(mm).to(ctx.device)
        results = []
        budget = {"left": cfg.max_steps}
        with _StopFlag() as stop:
            for st in cfg.stages():
                if st == "coarse":
                    stage = CoarseStage(cfg, ctx, mm, syn)
                else:
                    reg = cfg.regressor or str(run_dir / "regressor.safetensors")
                    if not Path(reg).is_file():
                        raise ConfigError(f"the texture stage needs a trained regressor: {reg} not found "
                                          "(train --stage coarse first or pass --regressor)")
                    stage = TextureStage(cfg, ctx, mm, syn, reg)
                res = run_stage(stage, cfg, ctx, run_dir, resume=resume, logger=logger, stop=stop, budget=budget)
                results.append(res)
                del stage
                if res["stopped"]:
                    break
        stopped = any(r["stopped"] for r in results)
        files = {k: v for r in results for k, v in r["files"].items()}
        for k, name in (("regressor", "regressor.safetensors"), ("texture", "texture.safetensors")):
            if k not in files and (run_dir / name).is_file():
                files[k] = str(run_dir / name)
        return {"stopped": stopped, "stages": results, "files": files, "world_size": ctx.world_size}
    finally:
        if own_logger and logger is not None:
            logger.close()
        ctx.close()
        torch.set_num_threads(old_threads[0])
        _parallel.set_num_threads(old_threads[1])


def _resume_step(run_dir: Path, cfg: TrainConfig) -> int | None:
    """Global step of the checkpoint a resume starts from (TensorBoard purges later events)."""
    for st in cfg.stages():
        p = checkpoint_path(run_dir, st)
        if p.is_file():
            try:
                from facegcn.train.checkpoint import load_tensors

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
    """The JSON-lines log of a run (for tests and quick analysis)."""
    p = Path(run_dir) / "log.jsonl"
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def epoch_means(run_dir: str | Path, stage: str, key: str = "total") -> list[float]:
    """Per-epoch mean of ``key`` for ``stage`` (last record per epoch wins after resumes)."""
    out: dict[int, float] = {}
    for r in read_log(run_dir):
        if r.get("kind") == "epoch" and r.get("stage") == stage and key in r:
            out[int(r["epoch"])] = float(r[key])
    return [out[k] for k in sorted(out)]


__all__ = ["CoarseStage", "TextureStage", "checkpoint_path", "epoch_means", "read_log", "run_stage", "train"]
