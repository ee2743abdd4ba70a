"""The two training stages: what one step of each computes (the loop is :mod:`.loop`).

* :class:`CoarseStage` — stage 1, the :class:`~facegcn.coarse.regressor.CoefficientRegressor`
  trained with the self-supervised coarse losses;
* :class:`TextureStage` — stage 2: the frozen regressor's coefficients give the coarse state and
  the refiner input; the generator's residual albedo is rendered with the coarse light and
  composited over the photo; the critic takes ``critic_steps`` WGAN-GP updates on (photo,
  composite) pairs, then the generator one update on
  :func:`~facegcn.train.losses.texture_objective` with the epoch-based weights
  ``vertex_weights(epoch + 1)``.

On CUDA, AMP (bf16 autocast) covers the ResNet regressor and the critic; graph convolutions,
rendering and losses stay float32. AMP is never used on CPU. Every random number of a step is
derived from (seed, step, sample index) (:func:`~facegcn.train.data.uniform`), so neither resuming
nor the number of ranks changes it.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import numpy as np
import torch

from facegcn.coarse.losses import CoarseWeights, photo_l2_loss, self_supervised_loss
from facegcn.coarse.regressor import CoefficientRegressor
from facegcn.errors import ConfigError
from facegcn.frontend.identity import IdentityEncoder
from facegcn.graph import ImageCritic
from facegcn.refine.generator import (
    build_texture_generator,
    generator_config,
    generator_inputs,
    identity_input,
    save_texture_generator,
)
from facegcn.refine.losses import RefineWeights
from facegcn.render import sh_shading
from facegcn.train.config import TrainConfig
from facegcn.train.data import subseed, uniform
from facegcn.train.distributed import DistContext, convert_batchnorm
from facegcn.train.losses import DistCoarseLoss, critic_objective, full, texture_objective

__all__ = ["CoarseStage", "Stage", "TextureStage", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's and Python's global RNGs (their states are checkpointed).

    Args:
        seed: the run seed; numpy and Python get seeds derived from it with
            :func:`~facegcn.train.data.subseed`.
    """
    torch.manual_seed(seed)
    np.random.seed(subseed("numpy", seed) % 2**32)
    random.seed(subseed("python", seed))


def _batch_to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class Stage:
    """What :func:`~facegcn.train.loop.run_stage` needs from a stage: a ``name`` and the methods
    below (the subclasses implement them; ``batch`` is a collated
    :class:`~facegcn.train.data.FaceDataset` batch on the CPU).

    Args:
        cfg: the run's options.
        ctx: the process group (or the single process).
        mm: the :class:`~facegcn.morphable.MorphableModel` on ``ctx.device``.
        syn: its :class:`~facegcn.coarse.synthesis.FaceSynthesis`.
    """

    name = ""

    def __init__(self, cfg: TrainConfig, ctx: DistContext, mm, syn):
        self.cfg, self.ctx, self.mm, self.syn = cfg, ctx, mm, syn
        self.dev = ctx.device
        self.amp = bool(cfg.amp if cfg.amp is not None else self.dev.type == "cuda") and self.dev.type == "cuda"
        self._idnet: IdentityEncoder | None = None

    def autocast(self):
        """bf16 autocast on CUDA with AMP on, else a no-op context."""
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def embed(self, img: torch.Tensor, chip_transform: torch.Tensor) -> torch.Tensor:
        """Differentiable identity descriptors of aligned images (the network follows the dtype).

        Shapes:
            img: ``(B, 3, 224, 224)`` float (clamped to ``[0, 1]``); chip_transform: ``(2, 3)``
            or ``(B, 2, 3)`` → ``(B, 128)``, on ``img``'s device.
        """
        dtype = torch.float64 if img.dtype == torch.float64 else torch.float32
        if self._idnet is None or next(self._idnet.net.parameters()).dtype != dtype:
            self._idnet = IdentityEncoder(device=self.dev, dtype=dtype)
        return self._idnet.embed_aligned(img.clamp(0, 1), chip_transform)

    def modules(self) -> dict[str, torch.nn.Module]:
        """The trained modules by checkpoint name."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers by checkpoint name."""
        raise NotImplementedError

    def schedulers(self) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
        """The learning-rate schedulers by checkpoint name (stepped once per epoch)."""
        raise NotImplementedError

    def train_step(self, batch: dict, step: int, epoch: int) -> dict[str, float]:
        """One optimisation step on this rank's batch (collective); returns its scalar logs."""
        raise NotImplementedError

    def eval_batch(self, batch: dict) -> dict[str, float]:
        """Held-out losses of a batch (this rank only, no gradients)."""
        raise NotImplementedError

    def grid(self, batch: dict) -> list[torch.Tensor]:
        """Image columns for the sample grid, each ``(B, 3, 224, 224)`` in ``[0, 1]``."""
        raise NotImplementedError

    def finalize(self, run_dir: Path, info: dict) -> dict[str, str]:
        """Write the stage's weight file with ``info`` as ``"trained"`` metadata; ``{kind: path}``."""
        raise NotImplementedError

    def clip(self, params) -> torch.Tensor:
        """Clip the gradients to ``cfg.grad_clip`` (when > 0); returns the total norm before."""
        params = [p for p in params if p.grad is not None]
        if self.cfg.grad_clip and self.cfg.grad_clip > 0:
            return torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))


# ------------------------------------------------------------------------------------ stage 1
class CoarseStage(Stage):
    """Stage 1: the coefficient regressor (Adam, per-epoch exponential learning-rate decay)."""

    name = "coarse"

    def __init__(self, cfg, ctx, mm, syn):
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
        """``(loss terms, coefficients (B, K))`` of a batch (losses reduced over ranks unless
        ``distributed=False``)."""
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
        p = Path(run_dir) / "regressor.safetensors"
        CoefficientRegressor.save(self.net, p, extra={"trained": info})
        return {"regressor": str(p)}


# ------------------------------------------------------------------------------------ stage 2
class TextureStage(Stage):
    """Stage 2: the GCN texture generator and its WGAN-GP image critic on a frozen regressor.

    Args:
        regressor_path: the stage-1 ``regressor.safetensors`` (must match the model's layout).
    """

    name = "texture"

    def __init__(self, cfg, ctx, mm, syn, regressor_path: str | Path):
        super().__init__(cfg, ctx, mm, syn)
        reg = CoefficientRegressor.load(regressor_path, map_location=self.dev).to(self.dev)
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
        b = _batch_to(batch, self.dev)
        with self.autocast():
            coeffs = self.reg(b["image"])
        c, st, r0, base, x_in = generator_inputs(self.syn, full(coeffs), b["image"])
        b.update(coeffs=c, state=st, coarse=r0, base=base, x_in=x_in, ident=identity_input(b["identity"]))
        return b

    def generate(self, p: dict):
        """``(albedo (B, V, 3), rendering, composite (B, 3, 224, 224))`` of a prepared batch."""
        t = self.gen(p["ident"], p["x_in"])  # no autocast: sparse graph convolutions stay in float32
        alb = p["base"] + full(t)
        st = p["state"]
        r = self.syn.renderer(st.vertices, sh_shading(st.normals, alb, p["coeffs"].sh))
        comp = r.image * r.mask + p["image"] * (1 - r.mask)
        return alb, r, comp

    def gp_eps(self, indices: torch.Tensor, step: int, k: int) -> torch.Tensor:
        """Gradient-penalty interpolation weights ``(B,)`` from (seed, step, critic step, index)."""
        vals = [uniform("gp", self.cfg.seed, step, k, int(i)) for i in indices.tolist()]
        return torch.tensor(vals, dtype=torch.float32, device=self.dev)

    def critic_gradients(self, real, fake, indices, step: int, k: int) -> dict[str, float]:
        """One critic backward pass (gradients averaged over ranks; no optimiser step)."""
        self.opt_d.zero_grad(set_to_none=True)
        with self.autocast():
            loss, info = critic_objective(self.critic, real, fake, self.gp_eps(indices, step, k), self.cfg.gp_lambda)
        loss.backward()
        self.ctx.average_gradients(self.critic.parameters())
        return {"critic_loss": float(loss.detach()), **{k2: float(v) for k2, v in info.items()}}

    def generator_losses(self, p: dict, alb, r, comp, epoch: int, *, distributed: bool = True):
        """The generator objective with the critic frozen (its ``requires_grad`` restored after)."""
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
            fm, r0 = p["face_mask"], p["coarse"]
            extra = {"pixel_mse_refined": float(photo_l2_loss(r.image, p["image"], r.mask * fm)),
                     "pixel_mse_coarse": float(photo_l2_loss(r0.image, p["image"], r0.mask * fm))}
        return {**lt.scalars(), **logs, **extra, "grad_norm": float(gn), "lr": self.opt_g.param_groups[0]["lr"]}

    @torch.no_grad()
    def eval_batch(self, batch: dict) -> dict[str, float]:
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
        p = Path(run_dir) / "texture.safetensors"
        save_texture_generator(p, self.gen, self.mm, self.gen_config,
                               extra={"trained": {**info, "regressor": self.regressor_path}})
        return {"texture": str(p)}
