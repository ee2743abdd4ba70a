"""Chebyshev spectral graph convolution (Defferrard et al. 2016), batched over ``(B, V, C)``.

Same maths as ``torch_geometric.nn.ChebConv(normalization="sym")``::

    out = sum_k T_k(L_hat) X W_k + b,   T_0 = I, T_1 = L_hat, T_k = 2 L_hat T_{k-1} - T_{k-2}

with ``L_hat = 2 L / lambda_max - I`` built by :func:`facegcn.graph.laplacian.scaled_laplacian`
(``lambda_max = 2`` by default, as in the authors' code and torch_geometric; see that module).

Implementation (why it is fast): the batch is folded into the channels, ``(B, V, C) -> (V, B*C)``,
so each Chebyshev step is ONE CSR sparse x dense product, and the ``K`` weight products are ONE
matrix product: the basis ``[T_0 X | ... | T_{K-1} X]`` is written into a ``(V*B, K*C_in)`` buffer
(``C_in <= C_out``), or ``X [W_0 | ... | W_{K-1}]`` is computed first and the series summed with
Clenshaw's recurrence (``C_out < C_in``), so the sparse products always run on the narrower side.
A custom autograd function computes the backward with the transposed Laplacian (the Laplacian
itself when symmetric): one or two more matrix products and ``K - 1`` sparse products of the same
width. (Measured on the ICT face, 1 thread: ``K`` separate ``(V, 7) @ (7, 16)`` products take
~1.8 ms, the one ``(V, 42) @ (42, 16)`` product 0.17 ms.) :func:`cheb_conv_reference` is the
textbook form, kept as the reference.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from facegcn.graph.sparse import SparseMatrix, csr_addmm_, csr_mm, fold, unfold

__all__ = ["ChebConv", "cheb_conv", "cheb_conv_reference"]


def _terms(lap: torch.Tensor, x: torch.Tensor, k: int, keep: bool = True):
    """``T_0(lap) x, ..., T_{k-1}(lap) x`` for a dense (V, D) ``x`` (each a contiguous (V, D)).

    ``2 L T_{j-1} - T_{j-2}`` is one in-place ``addmm_`` (``beta=-1, alpha=2``; :func:`csr_addmm_`). With ``keep=False``
    this is a generator that overwrites ``T_{j-2}`` (never ``x``): use each term before the next."""
    if keep:
        out = [x]
        if k > 1:
            out.append(csr_mm(lap, x))
        for _ in range(2, k):
            out.append(csr_addmm_(out[-2].clone(), lap, out[-1], beta=-1.0, alpha=2.0))
        return out
    return _terms_reusing(lap, x, k)


def _terms_reusing(lap: torch.Tensor, x: torch.Tensor, k: int):
    yield x
    if k == 1:
        return
    t0, t1 = x, csr_mm(lap, x)
    yield t1
    for j in range(2, k):
        t2 = csr_addmm_(t0.clone() if j == 2 else t0, lap, t1, beta=-1.0, alpha=2.0)
        yield t2
        t0, t1 = t1, t2


def _clenshaw(lap: torch.Tensor, ys: list[torch.Tensor]) -> torch.Tensor:
    """``sum_j T_j(lap) ys[j]`` by Clenshaw's recurrence (``len(ys) - 1`` sparse products):
    ``b_j = y_j + 2 L b_{j+1} - b_{j+2}``, result ``y_0 + L b_1 - b_2`` (in-place ``addmm_``
    into buffers of its own; ``ys`` is not modified)."""
    k = len(ys)
    if k == 1:
        return ys[0].clone()
    b1, b2 = ys[k - 1], None
    for j in range(k - 2, 0, -1):
        if b2 is None:
            b0 = ys[j].clone()
        elif b2 is ys[k - 1]:
            b0 = ys[j] - b2
        else:
            b0 = torch.sub(ys[j], b2, out=b2)
        b0 = csr_addmm_(b0, lap, b1, alpha=2.0)
        b2, b1 = b1, b0
    if b2 is None:
        out = ys[0].clone()
    elif b2 is ys[k - 1]:
        out = ys[0] - b2
    else:
        out = torch.sub(ys[0], b2, out=b2)
    return csr_addmm_(out, lap, b1)


def _mm_narrow(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for a narrow ``b`` (few columns), computed as ``(b^T a^T)^T``: MKL's kernels for an
    output only 3-6 columns wide run at a fraction of their speed on some CPUs (measured on an AMD
    EPYC: (9409, 18) @ (18, 6) 458 us, transposed 65 us)."""
    if a.device.type != "cpu" or b.shape[1] >= 8:
        return a @ b
    return (b.t() @ a.t()).t()


def _split_cols(y: torch.Tensor, k: int) -> list[torch.Tensor]:
    """(V, k * C) -> k contiguous (V, C) column blocks."""
    v, kc = y.shape
    return list(y.view(v, k, kc // k).transpose(0, 1).contiguous().unbind(0))


def series_mode(cin: int, cout: int, k: int) -> str:
    """How :func:`cheb_conv` evaluates a layer (all three are the same maths; picked by measuring
    forward + backward of every layer shape of the texture generator, 1 thread):

    * ``"input"`` (``C_in < C_out``, ``C_out >= 8``): the series on the input (``T_j X``, kept for
      the backward), ``K`` weight products; backward: one product ``G [W_0 | ...]^T`` and
      Clenshaw's recurrence at width ``C_in`` (7 -> 16: 0.74x the time of ``"grad"``);
    * ``"grad"`` (``C_in >= C_out >= 8``): forward as ``"input"`` (``C_out < C_in``: the series
      summed on the output by Clenshaw), backward by the series on the gradient ``T_j(L^T) G``
      (``grad W_j = X^T T_j G``, nothing but the input kept);
    * ``"output"`` (``C_out < 8``): one product ``X [W_0 | ... | W_{K-1}]``, Clenshaw on the output;
      backward: the series on the gradient stacked into one ``(V, K C_out)`` matrix, two products
      (16 -> 3: 0.57x; 6 -> 3: 0.60x).
    """
    if k == 1 or cout < 8:
        return "output"
    return "input" if cin < cout else "grad"


class _ChebFunction(torch.autograd.Function):
    """``sum_k T_k(L) X W_k (+ b)`` with the batch folded into the columns (see the module
    docstring and :func:`series_mode`); ``K - 1`` sparse products each way."""

    @staticmethod
    def forward(ctx, x, weight, bias, lap, lap_t):
        # x: (B, V, Cin); weight: (K, Cin, Cout); bias: (Cout,) or None; lap / lap_t: CSR (V, V).
        b, v, cin = x.shape
        k, _, cout = weight.shape
        xf = fold(x)  # (V, B, Cin)
        ctx.mode = mode = series_mode(cin, cout, k)
        if mode == "output":
            wp = weight.permute(1, 0, 2).reshape(cin, k * cout)  # [W_0 | W_1 | ...]
            y = _mm_narrow(xf.view(v * b, cin), wp)
            out = y if k == 1 else _clenshaw(lap, [t.reshape(v, b * cout) for t in _split_cols(y, k)])
            if bias is not None:
                out.view(v, b, cout).add_(bias)
            ctx.save_for_backward(weight, xf)
        elif cin <= cout:
            ts = _terms(lap, xf.view(v, b * cin), k, keep=mode == "input")
            out = None
            for j, t in enumerate(ts):
                t2 = t.view(v * b, cin)
                if out is None:
                    out = t2 @ weight[j] if bias is None else torch.addmm(bias, t2, weight[j])
                else:
                    out.addmm_(t2, weight[j])
            ctx.save_for_backward(weight, *(ts if mode == "input" else [xf]))
        else:
            x2 = xf.view(v * b, cin)
            out = _clenshaw(lap, [(x2 @ weight[j]).view(v, b * cout) for j in range(k)])
            if bias is not None:
                out.view(v, b, cout).add_(bias)
            ctx.save_for_backward(weight, xf)
        ctx.lap_t = lap_t
        ctx.has_bias = bias is not None
        return unfold(out.view(v, b, cout))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        weight, *saved = ctx.saved_tensors
        lap_t = ctx.lap_t
        k, cin, cout = weight.shape
        b, v = grad_out.shape[0], grad_out.shape[1]
        g2 = fold(grad_out).view(v * b, cout)
        need_x, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        grad_x = grad_w = None
        if ctx.mode == "input":  # saved = the terms T_j X, (V, B * Cin) each
            if need_w:
                grad_w = torch.stack([t.view(v * b, cin).t() @ g2 for t in saved])
            if need_x:
                gy = _mm_narrow(g2, weight.view(k * cin, cout).t().contiguous())  # [G W_0^T | G W_1^T | ...]
                grad_x = unfold(_clenshaw(lap_t, [t.reshape(v, b * cin) for t in _split_cols(gy, k)]).view(v, b, cin))
        elif ctx.mode == "grad":  # saved = the folded input (V, B, Cin)
            x2 = saved[0].view(v * b, cin)
            grad_w = torch.empty_like(weight) if need_w else None
            for j, z in enumerate(_terms(lap_t, g2.view(v, b * cout), k, keep=False)):
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
        else:  # "output"; saved = the folded input (V, B, Cin)
            gbuf = g2.new_empty(v * b, k, cout)
            for j, t in enumerate(_terms(lap_t, g2.view(v, b * cout), k, keep=False)):
                gbuf[:, j] = t.view(v * b, cout)
            gbuf = gbuf.view(v * b, k * cout)
            if need_w:
                grad_w = _mm_narrow(saved[0].view(v * b, cin).t(), gbuf).reshape(cin, k, cout).permute(1, 0, 2).contiguous()
            if need_x:
                wpt = weight.permute(0, 2, 1).reshape(k * cout, cin)  # [W_0 | ...]^T
                grad_x = unfold(_mm_narrow(gbuf, wpt).reshape(v, b, cin))
        grad_b = g2.sum(0) if (ctx.has_bias and need_b) else None
        return grad_x, grad_w, grad_b, None, None


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
    out = _ChebFunction.apply(x, weight, None if bias is None else bias.to(dtype), lap, lap_t)
    return out.squeeze(0) if squeeze else out


def cheb_conv_reference(x: torch.Tensor, laplacian: SparseMatrix, weight: torch.Tensor,
                        bias: torch.Tensor | None = None) -> torch.Tensor:
    """The textbook form of :func:`cheb_conv` (``T_k`` by the recurrence, ``K`` products, plain
    autograd through :meth:`SparseMatrix.mm`): the reference the fast function is tested against."""
    squeeze = x.dim() == 2
    if squeeze:
        x = x.unsqueeze(0)
    b, v, cin = x.shape
    cols = fold(x).view(v, b * cin)
    terms = [cols]
    for j in range(1, weight.shape[0]):
        t = laplacian.mm(terms[-1])
        terms.append(t if j == 1 else 2.0 * t - terms[-2])
    out = sum(t.view(v * b, cin) @ weight[j] for j, t in enumerate(terms))
    out = unfold(out.view(v, b, -1))
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
