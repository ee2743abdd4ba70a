"""A small Adam for the per-image optimisation loops (coarse fit, texture refinement).

Why not ``torch.optim.Adam``: its methods are wrapped in ``torch._disable_dynamo``, so the first
optimizer of a process imports ``torch._dynamo`` (2-3 s on a 2-core CPU, more than the whole
landmark stage), and its per-parameter Python loop costs ~4 ms a step on the GCN's ~100 weight
tensors. This class computes exactly torch's default (``foreach=False``, no AMSGrad, no weight
decay) update, element for element, with a handful of ``torch._foreach_*`` calls per step, and
takes the learning-rate schedule as a plain function of the step (``LambdaLR``'s factor).
``tests/coarse/test_optim.py`` checks it against ``torch.optim.Adam`` + ``LambdaLR`` (+
``clip_grad_norm_``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

__all__ = ["Adam"]


class Adam:
    """Adam (Kingma & Ba 2015) with torch's defaults and an optional learning-rate factor.

    Args:
        params: the tensors to optimise (leaf tensors with ``requires_grad``).
        lr: the base learning rate.
        betas, eps: as ``torch.optim.Adam``.
        schedule: ``i -> factor`` (``LambdaLR``'s ``lr_lambda``): step ``i`` (0-based) uses
            ``lr * schedule(i)``. None = constant.

    Use: ``opt.zero_grad()``; ``loss.backward()``; optionally ``opt.clip_grad_norm_(max_norm)``;
    ``opt.step()``. Parameters without a gradient are skipped (as torch does).
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, schedule: Callable[[int], float] | None = None):
        self.params = [p for p in params]
        if not self.params:
            raise ValueError("Adam got an empty parameter list")
        self.lr = float(lr)
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)
        self.schedule = schedule
        self.steps = 0  # optimizer steps taken
        self._m: dict[int, torch.Tensor] = {}
        self._v: dict[int, torch.Tensor] = {}
        self._n: dict[int, int] = {}  # per-parameter step counts (a parameter may miss a gradient)

    def zero_grad(self) -> None:
        """Drop every parameter's gradient (``set_to_none=True``)."""
        for p in self.params:
            p.grad = None

    @property
    def current_lr(self) -> float:
        """The learning rate the next :meth:`step` uses."""
        return self.lr * (1.0 if self.schedule is None else float(self.schedule(self.steps)))

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """``torch.nn.utils.clip_grad_norm_(params, max_norm)`` (2-norm over all gradients)."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return torch.zeros(())
        norms = torch._foreach_norm(grads, 2.0)
        total = torch.linalg.vector_norm(torch.stack(norms), 2.0)
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        torch._foreach_mul_(grads, coef)
        return total

    @torch.no_grad()
    def step(self) -> None:
        lr = self.current_lr
        self.steps += 1
        groups: dict[int, tuple[list, list, list, list]] = {}  # by step count: bias corrections differ
        for p in self.params:
            if p.grad is None:
                continue
            k = id(p)
            if k not in self._m:
                self._m[k] = torch.zeros_like(p, memory_format=torch.preserve_format)
                self._v[k] = torch.zeros_like(p, memory_format=torch.preserve_format)
                self._n[k] = 0
            self._n[k] += 1
            g = groups.setdefault(self._n[k], ([], [], [], []))
            g[0].append(p)
            g[1].append(p.grad)
            g[2].append(self._m[k])
            g[3].append(self._v[k])
        b1, b2 = self.beta1, self.beta2
        for n, (ps, gs, ms, vs) in groups.items():
            # torch.optim.Adam, single-tensor path, operation for operation
            torch._foreach_lerp_(ms, gs, 1 - b1)
            torch._foreach_mul_(vs, b2)
            torch._foreach_addcmul_(vs, gs, gs, 1 - b2)
            step = float(n)
            bias_correction1 = 1 - b1**step
            bias_correction2 = 1 - b2**step
            step_size = lr / bias_correction1
            denom = torch._foreach_sqrt(vs)
            torch._foreach_div_(denom, bias_correction2**0.5)
            torch._foreach_add_(denom, self.eps)
            torch._foreach_addcdiv_(ps, ms, denom, -step_size)
