"""Gradients of one training step of each network, on a slice of a fixed 4-sample batch.

Run as a script by ``test_ddp.py`` (two processes, gloo, env:// rendezvous) — or called in-process
with ``world=1`` for the joint-batch reference. Each rank writes its (averaged) gradients to
``OUT/grads-rank{r}.safetensors``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

JOINT = 4  # samples in the joint batch: dataset indices 0..3


def gradients(cache: str, regressor: str, rank: int, world: int,
              dtype: torch.dtype = torch.float32) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """``dtype=torch.float64`` runs everything (models, renderer, losses) in double precision, where
    the two computations must agree to round-off of ~1e-12, proving they are the same maths."""
    from facegcn.coarse.synthesis import FaceSynthesis
    from facegcn.morphable import load_model
    from facegcn.train.config import TrainConfig
    from facegcn.train.data import FaceDataset
    from facegcn.train.distributed import DistContext
    from facegcn.train.stages import CoarseStage, TextureStage

    cfg = TrainConfig(cache=cache, run_dir="unused", depth=14, width=8, critic_steps=1, device="cpu",
                      gen_K=3, gen_fc_channels=8, gen_decoder_widths=(4, 4, 4, 3),
                      gen_refiner_widths=(4, 4, 4, 4, 3), critic_widths=(4, 8, 8, 8, 8, 8))
    ctx = DistContext("cpu")
    assert ctx.world_size == world and ctx.rank == rank
    try:
        mm = load_model("ict").to(dtype)
        syn = FaceSynthesis(mm)
        ds = FaceDataset(cache, "all")
        per = JOINT // world
        batch = torch.utils.data.default_collate([ds[i] for i in range(rank * per, (rank + 1) * per)])
        batch = {k: v.to(dtype) if v.is_floating_point() else v for k, v in batch.items()}
        out: dict[str, torch.Tensor] = {}
        losses: dict[str, float] = {}
        cs = CoarseStage(cfg, ctx, mm, syn)
        cs.net.to(dtype)
        losses.update({f"coarse/{k}": v for k, v in cs.compute_gradients(batch).items()})
        out.update({f"coarse/{n}": p.grad.clone() for n, p in cs.net.named_parameters()})
        ts = TextureStage(cfg, ctx, mm, syn, regressor)
        for m in (ts.reg, ts.gen, ts.critic):
            m.to(dtype)
        p = ts.prepare(batch)
        alb, r, comp = ts.generate(p)
        info = ts.critic_gradients(p["image"] * 2 - 1, (comp * 2 - 1).detach(), p["index"], step=0, k=0)
        losses.update({f"critic/{k}": v for k, v in info.items()})
        out.update({f"critic/{n}": q.grad.clone() for n, q in ts.critic.named_parameters()})
        ts.opt_g.zero_grad(set_to_none=True)
        lt = ts.generator_losses(p, alb, r, comp, epoch=1)
        lt.total.backward()
        ctx.average_gradients(ts.gen.parameters())
        losses.update({f"gen/{k}": v for k, v in lt.scalars().items()})
        out.update({f"gen/{n}": q.grad.clone() for n, q in ts.gen.named_parameters()})
        return out, losses
    finally:
        ctx.close()


def main(cache: str, regressor: str, out_dir: str) -> None:
    import os

    from facegcn.io.weights import save_tensors

    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    from facegcn.train.distributed import DistContext

    ctx = DistContext("cpu")  # one process group for both runs (the inner contexts reuse it)
    try:
        for name, dtype in (("f32", torch.float32), ("f64", torch.float64)):
            grads, losses = gradients(cache, regressor, rank, world, dtype)
            save_tensors(Path(out_dir) / f"grads-{name}-rank{rank}.safetensors", grads, {"losses": losses})
    finally:
        ctx.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
