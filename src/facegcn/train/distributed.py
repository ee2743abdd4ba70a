"""Data-parallel training across processes (``torchrun --nproc_per_node N``).

:class:`DistContext` initialises ``torch.distributed`` from torchrun's environment variables
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): gloo on CPU, nccl on
GPU. A single process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) needs no process group.

Gradients are averaged explicitly with one flattened all-reduce per optimiser step
(:meth:`DistContext.average_gradients`) — the arithmetic of ``DistributedDataParallel``, without
wrapping the modules — and parameters are broadcast from rank 0 at the start, as DDP does.
BatchNorm statistics are synchronised over all ranks with :class:`DistBatchNorm2d` (any backend,
CPU too), so ``N`` processes with batch ``b`` compute the same gradients as one process with
batch ``N·b``.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from facegcn.errors import ConfigError

__all__ = ["DistBatchNorm2d", "DistContext", "convert_batchnorm"]


class DistContext:
    """This process's place in a torchrun job (or a single process) and the collectives the
    trainer uses; each is a no-op (or the identity) in a single process.

    Args:
        device: ``"auto"`` (CUDA at ``LOCAL_RANK`` when available, else CPU), ``"cpu"``,
            ``"cuda"`` or ``"cuda:N"``.
        backend: process-group backend; default nccl on CUDA, gloo on CPU.
        timeout_s: collective timeout in seconds.

    Raises:
        ConfigError: CUDA requested but not available.
    """

    def __init__(self, device: str = "auto", backend: str | None = None, timeout_s: float = 1800.0):
        ws = int(os.environ.get("WORLD_SIZE", "1"))
        self.world_size = ws
        self.rank = int(os.environ.get("RANK", "0")) if ws > 1 else 0
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0")) if ws > 1 else 0
        want_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if want_cuda and not torch.cuda.is_available():
            raise ConfigError("--device cuda requested but CUDA is not available")
        if want_cuda:
            idx = self.local_rank if device in ("auto", "cuda") else torch.device(device).index or 0
            self.device = torch.device("cuda", idx)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        self.initialized_here = False
        if ws > 1 and not dist.is_initialized():
            be = backend or ("nccl" if self.device.type == "cuda" else "gloo")
            kw = {"device_id": self.device} if be == "nccl" else {}
            dist.init_process_group(be, init_method="env://", rank=self.rank, world_size=ws,
                                    timeout=timedelta(seconds=timeout_s), **kw)
            self.initialized_here = True

    # ----------------------------------------------------------------- helpers
    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 (the process that writes files and logs)."""
        return self.rank == 0

    @property
    def comm_device(self) -> torch.device:
        """Where collective buffers live: the GPU for nccl, else the CPU."""
        return self.device if dist.is_initialized() and dist.get_backend() == "nccl" else torch.device("cpu")

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.distributed:
            if dist.get_backend() == "nccl":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over ranks (a new tensor on ``t``'s device; not differentiable)."""
        if not self.distributed:
            return t.clone()
        x = t.detach().to(self.comm_device).clone()
        dist.all_reduce(x)
        return x.to(t.device)

    def all_min(self, value: bool) -> bool:
        """True when ``value`` is true on every rank."""
        if not self.distributed:
            return bool(value)
        x = torch.tensor([1.0 if value else 0.0], device=self.comm_device)
        dist.all_reduce(x, op=dist.ReduceOp.MIN)
        return bool(x.item() > 0.5)

    def any(self, value: bool) -> bool:
        """True when ``value`` is true on at least one rank."""
        if not self.distributed:
            return bool(value)
        x = torch.tensor([1.0 if value else 0.0], device=self.comm_device)
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
        return bool(x.item() > 0.5)

    def broadcast_module(self, module: nn.Module) -> None:
        """Rank 0's parameters and buffers to every rank (what DDP does at construction)."""
        if not self.distributed:
            return
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                x = t.detach().to(self.comm_device).clone()
                dist.broadcast(x, 0)
                t.copy_(x.to(t.device))

    def average_gradients(self, params) -> None:
        """Average ``.grad`` over ranks in one flattened all-reduce (missing grads count as 0)."""
        if not self.distributed:
            return
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params]).to(self.comm_device)
        dist.all_reduce(flat)
        flat /= self.world_size
        off = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[off : off + n].view_as(p.grad).to(p.grad.device))
            off += n

    def gather_uint8(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's copy of a uint8 tensor of the same shape (e.g. RNG states), rank order."""
        if not self.distributed:
            return [t.clone()]
        x = t.to(self.comm_device).contiguous()
        out = [torch.empty_like(x) for _ in range(self.world_size)]
        dist.all_gather(out, x)
        return [o.cpu() for o in out]

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()
            self.initialized_here = False


# ------------------------------------------------------------------------------ synced BatchNorm
def _diff_all_reduce(t: torch.Tensor) -> torch.Tensor:
    # lazy: torch.distributed.nn is missing from torch builds without distributed support, and
    # only multi-process runs reach this
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t)


class DistBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are computed over all ranks (any backend, CPU too).

    Same parameters, buffers and state-dict keys as ``nn.BatchNorm2d``; without a process group
    (or in eval mode) it *is* ``nn.BatchNorm2d``. Gradients flow through the global statistics
    (differentiable all-reduce), so averaged gradients match a single process on the joint batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        in_dtype = x.dtype
        if x.dtype in (torch.float16, torch.bfloat16):  # statistics in float32 (as BatchNorm under autocast)
            x = x.float()
        C = x.shape[1]
        dims = (0, 2, 3)
        cnt = torch.tensor([x.numel() / C], dtype=x.dtype, device=x.device)
        stats = _diff_all_reduce(torch.cat([x.sum(dims), cnt]))
        n = stats[-1].detach()
        mean = stats[:C] / n
        d = x - mean.view(1, C, 1, 1)
        var = _diff_all_reduce((d * d).sum(dims)) / n
        y = d * torch.rsqrt(var + self.eps).view(1, C, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, C, 1, 1) + self.bias.view(1, C, 1, 1)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean.detach() * m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1).clamp_min(1)) * m)
        return y.to(in_dtype)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by :class:`DistBatchNorm2d` (same tensors)."""
    for name, child in list(module.named_children()):
        if type(child) is nn.BatchNorm2d:
            new = DistBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            new.to(next(iter(child.state_dict().values())).device)
            setattr(module, name, new)
        else:
            convert_batchnorm(child)
    return module
