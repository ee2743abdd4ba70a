"""Skin where the photo shows no skin: hair, collars and background never colour the face.

The GCN albedo is fitted to the photo inside the face mask, but its smooth per-vertex field still
carries what lies just outside (a fringe on the forehead, a collar on the neck), and the ears,
temples and neck are never seen as skin at all. :func:`skin_filled_albedo` keeps the albedo where
the photo showed skin and replaces it elsewhere by the harmonic extension of the trusted skin
colours over the mesh (the smoothest colour field that agrees with them: ``L x = 0`` on the
untrusted vertices, ``x = albedo`` on the trusted ones, ``L`` the mesh's graph Laplacian).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

__all__ = ["graph_laplacian", "skin_filled_albedo"]


def graph_laplacian(faces: np.ndarray, n_vertices: int) -> sp.csr_matrix:
    """Uniform graph Laplacian ``D − A`` of a triangle mesh: ``(V, V)`` sparse float64."""
    f = np.asarray(faces, np.int64)
    i = np.concatenate([f[:, 0], f[:, 1], f[:, 2], f[:, 1], f[:, 2], f[:, 0]])
    j = np.concatenate([f[:, 1], f[:, 2], f[:, 0], f[:, 0], f[:, 1], f[:, 2]])
    A = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(n_vertices, n_vertices)).tocsr()
    A.data[:] = 1.0  # duplicate edges (two triangles per edge) count once
    return (sp.diags(np.asarray(A.sum(1)).ravel()) - A).tocsr()


def skin_filled_albedo(albedo: np.ndarray, trust: np.ndarray, faces: np.ndarray, *, threshold: float = 0.5,
                       fallback: np.ndarray | None = None, agree: tuple[float, float] | None = (0.15, 0.35),
                       features: np.ndarray | None = None) -> np.ndarray:
    """Albedo with every untrusted vertex taken from the harmonic extension of the trusted ones.

    Args:
        albedo: ``(V, 3)`` per-vertex albedo in [0, 1].
        trust: ``(V,)`` in [0, 1]: how surely the photo showed this vertex as skin (visibility ×
            viewing angle × the front-end's skin / face-region weight at its projection).
        faces: ``(F, 3)`` mesh triangles.
        threshold: vertices with ``trust >= threshold`` are the fixed (trusted) ones.
        fallback: ``(3,)`` colour for mesh components without any trusted vertex (default: the
            median albedo of the trusted vertices, or of all when none is trusted).
        agree: ``(d0, d1)``: a partly trusted vertex (trust < threshold) keeps its albedo only as
            far as it agrees with the fill: ``t`` is scaled by ``clip((d1 − d) / (d1 − d0), 0, 1)``,
            ``d`` the largest per-channel ``|log albedo − log harmonic|``. At a mask's edge the
            GCN albedo has also fitted what lay just outside (a fringe's strands darken it by
            30–40 %); skin's own variation stays below ``d0``. None: off.
        features: ``(V,)`` bool, vertices exempt from the agreement factor (brows, eyes, lips,
            nose: colours that are meant to differ from the skin fill).

    Returns:
        ``(V, 3)`` float64: ``t · albedo + (1 − t) · harmonic`` with ``t = clip(trust / threshold, 0, 1)``
        (× the agreement factor on the partly trusted vertices).
    """
    albedo = np.asarray(albedo, np.float64)
    trust = np.clip(np.asarray(trust, np.float64).reshape(-1), 0.0, 1.0)
    V = len(albedo)
    known = trust >= threshold
    ref = np.median(albedo[known] if known.any() else albedo, axis=0) if fallback is None else np.asarray(fallback)
    fill = np.tile(ref, (V, 1))
    fill[known] = albedo[known]
    unknown = np.flatnonzero(~known)
    if known.any() and len(unknown):
        L = graph_laplacian(faces, V)
        L_uu = L[unknown][:, unknown]
        rhs = -(L[unknown][:, np.flatnonzero(known)] @ albedo[known])
        # vertices with no path to a trusted one make L_uu singular: tie them weakly to `ref`
        L_uu = L_uu + sp.identity(len(unknown)) * 1e-6
        rhs = rhs + 1e-6 * ref
        fill[unknown] = np.asarray(spsolve(L_uu.tocsc(), rhs)).reshape(len(unknown), 3)
    t = np.clip(trust / threshold, 0.0, 1.0)
    if agree is not None and len(unknown):
        d0, d1 = agree
        d = np.abs(np.log(np.maximum(albedo[unknown], 1e-3)) - np.log(np.maximum(fill[unknown], 1e-3))).max(1)
        f = np.clip((d1 - d) / (d1 - d0), 0.0, 1.0)
        if features is not None:
            f[np.asarray(features, bool)[unknown]] = 1.0
        t[unknown] *= f
    return np.clip(t[:, None] * albedo + (1.0 - t[:, None]) * fill, 0.0, 1.0)
