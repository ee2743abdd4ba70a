"""Sparse matrices as ``nn.Module`` buffers, applied to batch-first ``(B, N, C)`` features.

A :class:`SparseMatrix` keeps its CSR arrays (``crow``/``col``/``values``, plus those of the transpose
when the matrix is not symmetric) as non-persistent buffers: ``module.to(device)`` moves them, and
``state_dict()`` holds only learned weights (the graph is rebuilt, deterministically, from the mesh).

Batched features are multiplied with ONE sparse x dense product: ``(B, N, C)`` is folded into the
vertex-major matrix ``(N, B*C)``. Outputs are returned as ``(B, M, C)`` *views* of vertex-major
storage (``transpose(0, 1)`` of a contiguous ``(M, B, C)``), so chains of graph layers never copy
between layouts; call ``.contiguous()`` if a batch-major buffer is needed.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

__all__ = ["SparseMatrix", "spmm", "fold", "unfold", "csr_mm", "csr_addmm_"]


def fold(x: torch.Tensor) -> torch.Tensor:
    """``(B, N, C)`` -> vertex-major contiguous ``(N, B, C)`` (free when ``x`` is already a view of one)."""
    return x.transpose(0, 1).contiguous()


def unfold(y: torch.Tensor) -> torch.Tensor:
    """Vertex-major ``(N, B, C)`` -> batch-first view ``(B, N, C)``."""
    return y.transpose(0, 1)


def _csr(crow, col, values, shape) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        return torch.sparse_csr_tensor(crow, col, values, size=shape, check_invariants=False)


def csr_mm(a: torch.Tensor, x: torch.Tensor, add: torch.Tensor | None = None, alpha: float = 1.0) -> torch.Tensor:
    """``alpha * (a @ x) + add`` (``add`` optional) for a CSR ``a`` and a dense 2-D ``x``, as ONE
    ``addmm`` into a fresh output: ``a @ x`` zero-fills a temporary and copies it (on a CPU ~30% on
    top of the product itself for the mesh Laplacians), and the Chebyshev recurrence's
    ``2 L t - t'`` is one call with ``alpha=2``, ``add=-t'``."""
    if add is None:
        if x.device.type != "cpu":  # the plain product (cuSPARSE); the copy is a CPU/MKL matter
            y = a @ x
            return y if alpha == 1.0 else y.mul_(alpha)
        out = x.new_empty(a.shape[0], x.shape[1])
        return torch.addmm(out, a, x, beta=0.0, alpha=alpha, out=out)
    return torch.addmm(add, a, x, alpha=alpha)


def csr_addmm_(acc: torch.Tensor, a: torch.Tensor, x: torch.Tensor, beta: float = 1.0, alpha: float = 1.0) -> torch.Tensor:
    """``beta * acc + alpha * (a @ x)`` for a CSR ``a``, in place into ``acc`` on a CPU (MKL's
    sparse product takes ``beta`` directly: no temporary, no copy); elsewhere the out-of-place
    ``torch.addmm`` (cuSPARSE). Returns the result; use it rather than ``acc``."""
    if acc.device.type == "cpu":
        return acc.addmm_(a, x, beta=beta, alpha=alpha)
    return torch.addmm(acc, a, x, beta=beta, alpha=alpha)


class _SpMM(torch.autograd.Function):
    """``A @ X`` for a CSR ``A`` and dense 2-D ``X``; the backward uses the stored transpose (and is
    itself differentiable, so double backward works)."""

    @staticmethod
    def forward(ctx, x, a, at):
        ctx.mats = (a, at)
        return csr_mm(a, x)

    @staticmethod
    def backward(ctx, g):
        a, at = ctx.mats
        if not ctx.needs_input_grad[0]:
            return None, None, None
        return _SpMM.apply(g.contiguous(), at, a), None, None


class SparseMatrix(nn.Module):
    """A fixed ``(M, N)`` sparse matrix stored as CSR buffers.

    ``forward(x)`` applies it to ``(B, N, C)`` (or ``(N, C)``) features and returns ``(B, M, C)``
    (or ``(M, C)``), differentiable with respect to ``x``.
    """

    def __init__(self, matrix, symmetric: bool | None = None, index_dtype: torch.dtype | None = None):
        super().__init__()
        m = sp.csr_matrix(matrix, dtype=np.float32)
        m.sum_duplicates()
        m.sort_indices()
        if symmetric is None:
            symmetric = m.shape[0] == m.shape[1] and (abs(m - m.T) > 0).nnz == 0
        elif symmetric and (m.shape[0] != m.shape[1] or (abs(m - m.T) > 1e-6 * max(abs(m).max(), 1e-30)).nnz):
            raise ValueError("SparseMatrix(symmetric=True) given a matrix that is not symmetric")
        if index_dtype is None:
            index_dtype = torch.int32 if max(m.nnz, *m.shape) < 2**31 - 1 else torch.int64
        self.shape = tuple(int(s) for s in m.shape)
        self.symmetric = bool(symmetric)
        self.nnz = int(m.nnz)
        self._register("", m, index_dtype)
        if not self.symmetric:
            mt = m.T.tocsr()
            mt.sort_indices()
            self._register("t_", mt, index_dtype)

    def _register(self, prefix: str, m: sp.csr_matrix, index_dtype) -> None:
        self.register_buffer(prefix + "crow", torch.from_numpy(m.indptr.astype(np.int64)).to(index_dtype),
                             persistent=False)
        self.register_buffer(prefix + "col", torch.from_numpy(m.indices.astype(np.int64)).to(index_dtype),
                             persistent=False)
        self.register_buffer(prefix + "values", torch.from_numpy(m.data.astype(np.float32)), persistent=False)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, nnz={self.nnz}, symmetric={self.symmetric}"

    def matrix(self, dtype: torch.dtype | None = None, transpose: bool = False) -> torch.Tensor:
        """The matrix (or its transpose) as a torch sparse CSR tensor with values of ``dtype``."""
        if transpose and not self.symmetric:
            crow, col, val, shape = self.t_crow, self.t_col, self.t_values, self.shape[::-1]
        else:
            crow, col, val = self.crow, self.col, self.values
            shape = self.shape[::-1] if transpose else self.shape
        if dtype is not None and val.dtype != dtype:
            val = val.to(dtype)
        return _csr(crow, col, val, shape)

    def to_scipy(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.values.cpu().numpy(), self.col.cpu().numpy(), self.crow.cpu().numpy()),
                             shape=self.shape)

    def mm(self, x2d: torch.Tensor) -> torch.Tensor:
        """``A @ x2d`` for a dense ``(N, D)`` matrix, differentiable in ``x2d``."""
        a = self.matrix(x2d.dtype)
        at = self.matrix(x2d.dtype, transpose=True)
        return _SpMM.apply(x2d.contiguous(), a, at)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spmm(self, x)


def spmm(a: SparseMatrix, x: torch.Tensor) -> torch.Tensor:
    """Apply ``a`` (M, N) to features ``(B, N, C)`` or ``(N, C)``; returns ``(B, M, C)`` / ``(M, C)``."""
    if x.dim() == 2:
        return a.mm(x)
    if x.dim() != 3:
        raise ValueError(f"expected (B, N, C) or (N, C) features, got shape {tuple(x.shape)}")
    b, n, c = x.shape
    if n != a.shape[1]:
        raise ValueError(f"features have {n} vertices but the matrix expects {a.shape[1]}")
    y = a.mm(fold(x).view(n, b * c))
    return unfold(y.view(a.shape[0], b, c))
