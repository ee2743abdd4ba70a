"""2-D transform helpers shared by alignment and the identity chips (the similarity fit works in 3-D too).

Conventions: points are ``(x, y)`` in pixel units with pixel centres at integer coordinates (the
OpenCV/dlib convention). A 2x3 matrix ``M`` maps ``p -> M[:, :2] @ p + M[:, 2]``.
"""

from __future__ import annotations

import numpy as np


def umeyama_similarity(src: np.ndarray, dst: np.ndarray, *, rotation: bool = True) -> np.ndarray:
    """Least-squares similarity ``dst ≈ s R src + t`` (Umeyama 1991, eqs. 34-43, as dlib's
    ``find_similarity_transform``; a proper rotation). With ``rotation=False`` only scale and
    translation are fitted (as Deep3DFaceRecon's ``align_img``). Points are ``(N, D)`` rows (2-D
    pixels, or 3-D points); anything else is read as 2-D pairs. Returns a ``D × (D+1)`` float64
    matrix (2x3 in the plane)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.ndim != 2:
        src, dst = src.reshape(-1, 2), dst.reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError("need at least two matching point pairs")
    dim = src.shape[1]
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0**2).sum() / len(src)
    if rotation:
        cov = d0.T @ s0 / len(src)
        u, d, vt = np.linalg.svd(cov)
        sign = np.eye(dim)
        det = np.linalg.det(cov)
        if det < 0 or (det == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
            sign[-1, -1] = -1
        r = u @ sign @ vt
        c = np.trace(np.diag(d) @ sign) / var_s if var_s > 0 else 1.0
        a = c * r
    else:
        c = (d0 * s0).sum() / len(src) / var_s if var_s > 0 else 1.0
        a = c * np.eye(dim)
    t = mu_d - a @ mu_s
    return np.concatenate([a, t[:, None]], axis=1)


def affine_from_3_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The exact affine map taking three ``src`` points onto three ``dst`` points (2x3)."""
    src = np.asarray(src, np.float64).reshape(3, 2)
    dst = np.asarray(dst, np.float64).reshape(3, 2)
    a = np.concatenate([src, np.ones((3, 1))], axis=1)
    return np.linalg.solve(a, dst).T


def invert_affine(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    a_inv = np.linalg.inv(m[:, :2])
    return np.concatenate([a_inv, (-a_inv @ m[:, 2])[:, None]], axis=1)


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``outer ∘ inner`` (apply ``inner`` first)."""
    outer = np.asarray(outer, np.float64)
    inner = np.asarray(inner, np.float64)
    return np.concatenate([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]], axis=1)


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, np.float64)
    return pts @ np.asarray(m, np.float64)[:, :2].T + np.asarray(m, np.float64)[:, 2]

