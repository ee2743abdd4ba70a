"""A principled albedo space for shape-only models (ICT-FaceKit has no albedo model).

Albedo = mean skin colour + smooth variations: the basis is the Kronecker product of the first K
low-frequency eigenvectors of the mesh's cotangent Laplacian (generalised problem L φ = λ M φ,
M the lumped mass matrix, φ M-orthonormal) with three colour directions (luminance along the
mean skin colour, then two chroma directions), each scaled by a standard deviation that falls with
spatial frequency. Coefficients are ~N(0, 1) like BFM's texture coefficients. The constant
eigenvector φ₀ carries the global skin tone; higher ones carry smooth regional changes (redder
cheeks and lips, darker brows) but no fine detail — that is the GCN refinement's job.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

# Mean skin albedo (linear-ish RGB in [0, 1]), close to the average of BFM09's mean texture.
MEAN_SKIN = np.array([0.70, 0.50, 0.41], dtype=np.float64)
# Standard deviations of the three colour directions for the constant mode.
COLOUR_STD = np.array([0.13, 0.035, 0.02], dtype=np.float64)


def cotangent_laplacian(verts: np.ndarray, faces: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """Positive semi-definite cotangent Laplacian L (V×V) and lumped (barycentric) vertex areas."""
    v = np.asarray(verts, np.float64)
    f = np.asarray(faces, np.int64)
    n = len(v)
    p0, p1, p2 = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]

    def cot(a, b):  # cotangent of the angle between edge vectors a and b
        cross = np.linalg.norm(np.cross(a, b), axis=1)
        return np.einsum("ij,ij->i", a, b) / np.maximum(cross, 1e-12)

    c0 = cot(p1 - p0, p2 - p0)  # angle at vertex 0, opposite edge (1, 2)
    c1 = cot(p2 - p1, p0 - p1)
    c2 = cot(p0 - p2, p1 - p2)
    rows = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    cols = np.concatenate([f[:, 2], f[:, 0], f[:, 1]])
    w = 0.5 * np.concatenate([c0, c1, c2])
    W = sp.coo_matrix((w, (rows, cols)), shape=(n, n)).tocsr()
    W = W + W.T
    L = sp.diags(np.asarray(W.sum(axis=1)).ravel()) - W
    area = 0.5 * np.linalg.norm(np.cross(p1 - p0, p2 - p0), axis=1)
    mass = np.bincount(f.ravel(), weights=np.repeat(area / 3.0, 3), minlength=n)
    return L.tocsr(), np.maximum(mass, 1e-12)


def laplacian_eigenbasis(verts: np.ndarray, faces: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """First ``k`` eigenpairs (λ ascending, φ as (V, k), M-orthonormal and sign-fixed)."""
    L, mass = cotangent_laplacian(verts, faces)
    M = sp.diags(mass)
    lam, phi = spla.eigsh(L, k=k, M=M, sigma=-1e-6, which="LM")
    order = np.argsort(lam)
    lam, phi = lam[order], phi[:, order]
    # deterministic sign: largest-magnitude entry positive
    idx = np.argmax(np.abs(phi), axis=0)
    phi = phi * np.sign(phi[idx, np.arange(k)])
    return np.maximum(lam, 0.0), phi


def colour_directions(mean: np.ndarray = MEAN_SKIN) -> np.ndarray:
    """Orthonormal colour directions (3, 3): rows = luminance (∥ mean), red–green, and the rest."""
    d0 = mean / np.linalg.norm(mean)
    rg = np.array([1.0, -1.0, 0.0])
    d1 = rg - d0 * (rg @ d0)
    d1 /= np.linalg.norm(d1)
    d2 = np.cross(d0, d1)
    return np.stack([d0, d1, d2])


def albedo_eigenfunctions(verts: np.ndarray, faces: np.ndarray, n_components: int = 80):
    """Eigenvalues and area-normalised eigenvectors (V, k) needed for ``n_components``."""
    k = int(np.ceil(n_components / 3)) + 1
    lam, phi = laplacian_eigenbasis(verts, faces, k)
    total_area = cotangent_laplacian(verts, faces)[1].sum()
    # Normalise φ so that a unit coefficient is an (area-weighted) RMS change of 1 per vertex.
    return lam, phi * np.sqrt(total_area)


def _albedo_columns(lam: np.ndarray, n_components: int) -> list[tuple[int, int, float]]:
    """The basis columns as ``(eigenvector i, colour direction c, std s)``, sorted by decreasing
    ``s`` (stable), the first ``n_components``."""
    k = len(lam)
    freq_scale = lam[min(3, k - 1)] if k > 1 else 1.0
    decay = 1.0 / np.sqrt(1.0 + lam / max(freq_scale, 1e-12))
    cols = [(i, c, float(COLOUR_STD[c] * decay[i] * (1.0 if i == 0 else 0.35))) for i in range(k) for c in range(3)]
    order = np.argsort(-np.array([s for _, _, s in cols]), kind="stable")[:n_components]
    return [cols[j] for j in order]


def assemble_albedo_basis(lam: np.ndarray, phi: np.ndarray, n_components: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Return (mean (V,3), basis (V*3, n_components)): columns scaled by their standard deviation
    and sorted by decreasing std; rows laid out like BFM (row 3*v + c)."""
    dirs = colour_directions()
    basis = np.stack([(phi[:, i : i + 1] * dirs[c][None, :]).reshape(-1) * s
                      for i, c, s in _albedo_columns(lam, n_components)], axis=1)
    mean = np.tile(MEAN_SKIN[None], (phi.shape[0], 1))
    return mean, basis


def albedo_factors(lam: np.ndarray, phi: np.ndarray, n_components: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """The basis of :func:`assemble_albedo_basis` in its Kronecker form: ``(phi (V, k), colour (n, k, 3))``
    with ``basis[3v + c, j] = Σ_i phi[v, i] colour[j, i, c]``.

    The albedo of coefficients ``δ`` is then ``mean + phi @ (δ @ colour)`` — a ``(V, k) @ (k, 3)``
    product instead of the ``(3V, n)`` basis times ``δ``: ~9x fewer bytes read per evaluation
    (k = 28 eigenvectors against n = 80 columns of 3V rows), same values up to float rounding."""
    dirs = colour_directions()
    cols = _albedo_columns(lam, n_components)
    colour = np.zeros((len(cols), phi.shape[1], 3))
    for j, (i, c, s) in enumerate(cols):
        colour[j, i] = dirs[c] * s
    return np.asarray(phi, np.float64), colour
