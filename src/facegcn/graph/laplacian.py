"""Mesh graphs: edges, adjacency and the scaled, symmetric-normalised Laplacian of a triangle mesh.

The Chebyshev convolution works with

    L      = I - D^-1/2 A D^-1/2          (symmetric normalisation, A = binary vertex adjacency)
    L_hat  = 2 L / lambda_max - I         (spectrum mapped into [-1, 1])

exactly as ``torch_geometric.nn.ChebConv(normalization="sym")``. The default is
``lambda_max = 2`` — the upper bound of the normalised Laplacian's spectrum, the value the authors'
code (``graph.rescale_L(L, 2)``) and torch_geometric use — which makes ``L_hat = -D^-1/2 A D^-1/2``
(no diagonal). ``lambda_max="compute"`` uses the largest eigenvalue instead (ARPACK, deterministic
start vector). An isolated vertex has ``L_hat = 2/lambda_max - 1`` on its diagonal (zero for the
default), as in torch_geometric.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from facegcn.errors import ConfigError, InputError

__all__ = [
    "adjacency",
    "check_mesh",
    "edge_index",
    "largest_eigenvalue",
    "mesh_edges",
    "normalized_laplacian",
    "scaled_laplacian",
]


def check_mesh(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    """Validate and normalise a triangle mesh: returns ``(float64 (V,3), int64 (F,3))``."""
    v = np.asarray(vertices)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise InputError(f"mesh vertices must be a non-empty (V, 3) array, got shape {v.shape}")
    if not np.issubdtype(v.dtype, np.number) or not np.all(np.isfinite(v)):
        raise InputError("mesh vertices must be finite numbers")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise InputError(f"mesh faces must be a non-empty (F, 3) array of triangles, got shape {f.shape}")
    if not np.issubdtype(f.dtype, np.integer):
        raise InputError(f"mesh faces must be integer vertex indices, got dtype {f.dtype}")
    if f.min() < 0 or f.max() >= len(v):
        raise InputError(f"mesh faces index vertices outside 0..{len(v) - 1} (min {f.min()}, max {f.max()})")
    return v.astype(np.float64), f.astype(np.int64)


def mesh_edges(faces, num_vertices: int | None = None) -> np.ndarray:
    """Unique undirected edges ``(E, 2)`` (``i < j``, sorted) of a triangle mesh."""
    f = np.asarray(faces, dtype=np.int64)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], axis=0)
    e = np.sort(e, axis=1)
    e = e[e[:, 0] != e[:, 1]]
    return np.unique(e, axis=0)


def adjacency(faces, num_vertices: int) -> sp.csr_matrix:
    """Binary symmetric vertex adjacency (CSR, float64) of a triangle mesh."""
    e = mesh_edges(faces)
    rows = np.concatenate([e[:, 0], e[:, 1]])
    cols = np.concatenate([e[:, 1], e[:, 0]])
    a = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_vertices, num_vertices))
    a.sort_indices()
    return a


def normalized_laplacian(adj: sp.spmatrix) -> sp.csr_matrix:
    """``I - D^-1/2 A D^-1/2`` (an isolated vertex keeps its 1 on the diagonal, like torch_geometric)."""
    adj = sp.csr_matrix(adj, dtype=np.float64)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        dinv = np.where(deg > 0, 1.0 / np.sqrt(deg), 0.0)
    dd = sp.diags(dinv)
    lap = (sp.identity(adj.shape[0], format="csr") - dd @ adj @ dd).tocsr()
    lap.sort_indices()
    return lap


def largest_eigenvalue(lap: sp.spmatrix) -> float:
    """Largest eigenvalue of a symmetric sparse matrix (deterministic ARPACK start vector)."""
    n = lap.shape[0]
    if n <= 64:
        return float(np.linalg.eigvalsh(lap.toarray()).max())
    v0 = np.random.default_rng(0).standard_normal(n)
    val = spla.eigsh(sp.csr_matrix(lap, dtype=np.float64), k=1, which="LA", v0=v0, tol=1e-8,
                     return_eigenvectors=False)
    return float(val[0])


def scaled_laplacian(faces, num_vertices: int, lambda_max: float | str = 2.0,
                     dtype=np.float32) -> tuple[sp.csr_matrix, float]:
    """``L_hat = 2 L / lambda_max - I`` of a mesh; returns ``(L_hat, lambda_max used)``.

    ``lambda_max`` is a positive number (default 2.0) or ``"compute"``. Explicit zeros are
    dropped, so with ``lambda_max = 2`` the matrix has no diagonal.
    """
    lap = normalized_laplacian(adjacency(faces, num_vertices))
    if isinstance(lambda_max, str):
        if lambda_max != "compute":
            raise ConfigError(f"lambda_max must be a positive number or 'compute', got {lambda_max!r}")
        lam = largest_eigenvalue(lap)
    else:
        lam = float(lambda_max)
    if not np.isfinite(lam) or lam <= 0:
        raise ConfigError(f"lambda_max must be a positive number, got {lam}")
    hat = (lap * (2.0 / lam) - sp.identity(num_vertices, format="csr")).tocsr()
    hat = ((hat + hat.T) * 0.5).tocsr()  # exactly symmetric (the backward pass relies on it)
    hat.data[np.abs(hat.data) < 1e-12] = 0.0
    hat.eliminate_zeros()
    hat.sort_indices()
    return hat.astype(dtype), lam


def edge_index(faces, num_vertices: int | None = None):
    """``(2, 2E)`` int64 torch tensor of directed mesh edges (both directions), torch_geometric style."""
    import torch

    e = mesh_edges(faces)
    both = np.concatenate([e, e[:, ::-1]], axis=0)
    return torch.from_numpy(np.ascontiguousarray(both.T)).long()
