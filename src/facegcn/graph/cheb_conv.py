"""Chebyshev spectral graph convolution (Defferrard et al. 2016), batched over ``(B, V, C)``.

Same maths as ``torch_geometric.nn.ChebConv(normalization="sym")``::

    out = sum_k T_k(L_hat) X W_k + b,   T_0 = I, T_1 = L_hat, T_k = 2 L_hat T_{k-1} - T_{k-2}

with ``L_hat = 2 L / lambda_max - I`` built by :func:`facegcn.graph.laplacian.scaled_laplacian`
(``lambda_max = 2`` by default, as in the authors' code and torch_geometric; see that module).

Implementation (why it is fast): the batch is folded into the channels, ``(B, V, C) -> (V, B*C)``,
so each Chebyshev step is ONE CSR sparse x dense product; a custom autograd function computes the
backward with the transposed Laplacian (the Laplacian itself when symmetric) as another ``K - 1``
sparse products, using ``grad W_k = X^T T_k(L^T) G`` and ``grad X = sum_k T_k(L^T) G W_k^T`` so
nothing but the input is kept for the backward. When ``C_out < C_in`` the forward multiplies by the
weights first and sums the series with Clenshaw's recurrence, so the sparse products run on the
narrower side.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from facegcn.graph.sparse import SparseMatrix, fold, unfold

__all__ = ["ChebConv", "cheb_conv"]


def _cheb_terms(lap: torch.Tensor, x: torch.Tensor, k: int):
    """Yield ``T_j(lap) x`` for j = 0..k-1 (``x`` a dense (V, D) matrix)."""
    t0 = x
    yield t0
    if k == 1:
        return
    t1 = lap @ t0
    yield t1
    for _ in range(2, k):
        t2 = lap @ t1
        t2.mul_(2.0).sub_(t0)
        yield t2
        t0, t1 = t1, t2


def _cheb_sum(lap: torch.Tensor, ys) -> torch.Tensor:
    """``sum_j T_j(lap) y_j`` by Clenshaw's recurrence (``len(ys) - 1`` sparse products)."""
    k = len(ys)
    if k == 1:
        return ys[0].clone()
    b1 = ys[k - 1]
    b2 = None
    for j in range(k - 2, 0, -1):
        b0 = lap @ b1
        b0.mul_(2.0).add_(ys[j])
        if b2 is not None:
            b0.sub_(b2)
        b2, b1 = b1, b0
    out = lap @ b1
    out.add_(ys[0])
    if b2 is not None:
        out.sub_(b2)
    return out


class _ChebFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, lap, lap_t):
        # x: (B, V, Cin); weight: (K, Cin, Cout); lap / lap_t: CSR (V, V) of x's dtype.
        b, v, cin = x.shape
        k, _, cout = weight.shape
        xf = fold(x)  # (V, B, Cin)
        x2 = xf.view(v * b, cin)
        if cin <= cout or k == 1:
            out = None
            for j, t in enumerate(_cheb_terms(lap, xf.view(v, b * cin), k)):
                if out is None:
                    out = t.view(v * b, cin) @ weight[j]
                else:
                    out.addmm_(t.view(v * b, cin), weight[j])
        else:
            ys = [(x2 @ weight[j]).view(v, b * cout) for j in range(k)]
            out = _cheb_sum(lap, ys)
        ctx.save_for_backward(x, weight)
        ctx.laps = (lap, lap_t)
        return unfold(out.view(v, b, cout))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        _, lap_t = ctx.laps
        b, v, cin = x.shape
        k, _, cout = weight.shape
        g = fold(grad_out).view(v, b * cout)
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        x2 = fold(x).view(v * b, cin) if need_w else None
        grad_x = None
        grad_w = torch.empty_like(weight) if need_w else None
        for j, z in enumerate(_cheb_terms(lap_t, g, k)):
            z2 = z.view(v * b, cout)
            if need_w:
                torch.mm(x2.t(), z2, out=grad_w[j])
            if need_x:
                if grad_x is None:
                    grad_x = z2 @ weight[j].t()
                else:
                    grad_x.addmm_(z2, weight[j].t())
        if grad_x is not None:
            grad_x = unfold(grad_x.view(v, b, cin))
        return grad_x, grad_w, None, None


def cheb_conv(x: torch.Tensor, laplacian: SparseMatrix, weight: torch.Tensor,
              bias: torch.Tensor | None = None) -> torch.Tensor:
    """Functional Chebyshev convolution: ``x`` (B, V, Cin) or (V, Cin), ``weight`` (K, Cin, Cout)."""
    squeeze = x.dim() == 2
    if squeeze:
        x = x.unsqueeze(0)
    if x.dim() != 3:
        raise ValueError(f"expected (B, V, C) or (V, C) features, got shape {tuple(x.shape)}")
    if x.shape[1] != laplacian.shape[0]:
        raise ValueError(f"features have {x.shape[1]} vertices but the Laplacian has {laplacian.shape[0]}")
    if x.shape[2] != weight.shape[1]:
        raise ValueError(f"features have {x.shape[2]} channels, the layer expects {weight.shape[1]}")
    dtype = torch.promote_types(x.dtype, weight.dtype)
    x = x.to(dtype)
    weight = weight.to(dtype)
    if weight.shape[0] > 1:
        lap = laplacian.matrix(dtype)
        lap_t = lap if laplacian.symmetric else laplacian.matrix(dtype, transpose=True)
    else:
        lap = lap_t = None
    out = _ChebFunction.apply(x, weight, lap, lap_t)
    if bias is not None:
        out = out + bias
    return out.squeeze(0) if squeeze else out


class ChebConv(nn.Module):
    """Chebyshev graph convolution ``(B, V, C_in) -> (B, V, C_out)`` on a fixed mesh graph.

    ``forward(x, laplacian)`` takes the scaled Laplacian as a :class:`SparseMatrix` (one per mesh
    level, shared by the layers of a network — see :class:`facegcn.graph.MeshOperators`).
    The output is a ``(B, V, C_out)`` view of vertex-major storage (see :mod:`facegcn.graph.sparse`):
    use ``.reshape``/``.contiguous()`` rather than ``.view`` on it.
    ``weight`` has shape ``(K, C_in, C_out)`` (``weight[k]`` is torch_geometric's
    ``lins[k].weight.T``). Initialisation: He-normal with fan-in ``K * C_in`` (the authors'
    ``he_normal`` on their ``(K*C_in, C_out)`` filter), zero bias.
    """

    def __init__(self, in_channels: int, out_channels: int, K: int = 6, bias: bool = True):
        super().__init__()
        if K < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError("ChebConv needs K >= 1 and positive channel counts")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.K = int(K)
        self.weight = nn.Parameter(torch.empty(self.K, self.in_channels, self.out_channels))
        self.bias = nn.Parameter(torch.empty(self.out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = math.sqrt(2.0 / (self.K * self.in_channels))
        with torch.no_grad():
            nn.init.trunc_normal_(self.weight, std=std, a=-2 * std, b=2 * std)
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, x: torch.Tensor, laplacian: SparseMatrix) -> torch.Tensor:
        return cheb_conv(x, laplacian, self.weight, self.bias)

    @torch.no_grad()
    def load_torch_geometric(self, conv) -> "ChebConv":
        """Copy the weights of a ``torch_geometric.nn.ChebConv`` with the same shape into this layer."""
        if len(conv.lins) != self.K:
            raise ValueError(f"K mismatch: {len(conv.lins)} vs {self.K}")
        for k, lin in enumerate(conv.lins):
            self.weight[k].copy_(lin.weight.t())
        if self.bias is not None:
            if conv.bias is None:
                self.bias.zero_()
            else:
                self.bias.copy_(conv.bias)
        return self

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, K={self.K}, bias={self.bias is not None}"
