"""Fidelity where users look: skin detail, see-through holes and identity of novel views.

Pure functions on images, coverage masks, landmarks and identity descriptors (numpy / scipy);
:mod:`facegcn.apps.evaluate.fidelity` renders the exported mesh and feeds them.

* **Detail ratio** (:func:`detail_ratio`): the mean squared Laplacian of the luminance, after a
  Gaussian of σ = 0.7 px, over two 28 × 28 px skin patches — centred between 68-point landmarks
  2 and 31 and between 14 and 35 (0-based Multi-PIE indices: jaw and nostril corners, i.e. the
  cheeks) — of the render divided by that of the photo, both images first resampled so that the
  outer eye corners (36, 45) are 80 px apart. 1: the render holds as much fine detail as the
  photo; → 0: a blurred texture.
* **See-through share** (:func:`see_through_share`): background pixels inside the filled outline
  (``scipy.ndimage.binary_fill_holes`` of the coverage) as a fraction of the filled outline:
  holes where one sees through the mesh (eye sockets, an open mouth without teeth).
* **Identity** (:func:`descriptor_distance`, :func:`pair_statistics`): Euclidean distance of dlib
  face descriptors (128-d); dlib's "same person" threshold is 0.6 (distance < 0.6 = accepted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from PIL import Image

__all__ = [
    "DETAIL_PATCHES", "DETAIL_IOD", "DETAIL_PATCH", "DETAIL_SIGMA", "EYE_CORNERS", "SAME_PERSON",
    "luminance", "scale_to_iod", "patch_centres", "detail_energy", "detail_ratio", "see_through_share",
    "descriptor_distance", "PairStats", "pair_statistics",
]

DETAIL_PATCHES = ((2, 31), (14, 35))  # each patch is centred between these two landmarks
EYE_CORNERS = (36, 45)  # outer eye corners: the inter-ocular distance
DETAIL_IOD = 80.0  # px between the outer eye corners after resampling
DETAIL_PATCH = 28  # patch side, px (at DETAIL_IOD)
DETAIL_SIGMA = 0.7  # Gaussian before the Laplacian, px (at DETAIL_IOD)
SAME_PERSON = 0.6  # dlib's decision threshold (Euclidean distance of descriptors)


def luminance(image) -> np.ndarray:
    """Rec. 601 luma in [0, 1].

    Args:
        image: ``(H, W, 3)`` uint8, ``(H, W, 3)`` / ``(3, H, W)`` float in [0, 1] (numpy or torch),
            or ``(H, W)`` already grey.

    Returns:
        ``(H, W)`` float64.
    """
    a = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    scale = 255.0 if a.dtype == np.uint8 else 1.0
    a = a.astype(np.float64) / scale
    if a.ndim == 2:
        return a
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = np.moveaxis(a, 0, -1)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3), (3, H, W) or (H, W), got {a.shape}")
    return a @ np.array([0.299, 0.587, 0.114])


def scale_to_iod(grey: np.ndarray, landmarks: np.ndarray, iod: float = DETAIL_IOD,
                 margin: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """Crop around the face and resample so that the outer eye corners are ``iod`` px apart.

    The crop is the landmarks' bounding box grown by ``margin`` × the inter-ocular distance on
    every side (clipped to the image); the resampling is PIL's antialiased bicubic filter (its
    support widens with the downscaling factor, so fine detail is low-passed, not aliased).

    Args:
        grey: ``(H, W)`` float image.
        landmarks: ``(68, 2)`` pixel positions ``(x, y)`` (integer pixel centres).
        iod: the target distance between landmarks 36 and 45.
        margin: extra border around the landmarks, in inter-ocular distances.

    Returns:
        ``(h, w)`` float64 resampled crop and ``(68, 2)`` landmarks in it.
    """
    lm = np.asarray(landmarks, np.float64)
    d = float(np.linalg.norm(lm[EYE_CORNERS[1]] - lm[EYE_CORNERS[0]]))
    if not d > 1e-6:
        raise ValueError("the eye-corner landmarks coincide")
    H, W = grey.shape
    lo = np.floor(lm.min(0) - margin * d).astype(int)
    hi = np.ceil(lm.max(0) + margin * d).astype(int) + 1
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], W), min(hi[1], H)
    crop = np.ascontiguousarray(grey[y0:y1, x0:x1], np.float32)
    s = iod / d
    w, h = max(1, int(round(crop.shape[1] * s))), max(1, int(round(crop.shape[0] * s)))
    out = np.asarray(Image.fromarray(crop).resize((w, h), Image.BICUBIC), np.float64)
    sx, sy = w / crop.shape[1], h / crop.shape[0]  # pixel centres: x' + 0.5 = (x + 0.5) sx
    return out, (lm - [x0, y0] + 0.5) * [sx, sy] - 0.5


def patch_centres(landmarks: np.ndarray) -> np.ndarray:
    """``(2, 2)`` centres of the two skin patches (midpoints of :data:`DETAIL_PATCHES`)."""
    lm = np.asarray(landmarks, np.float64)
    return np.stack([(lm[a] + lm[b]) / 2.0 for a, b in DETAIL_PATCHES])


def detail_energy(image, landmarks: np.ndarray, *, iod: float = DETAIL_IOD, size: int = DETAIL_PATCH,
                  sigma: float = DETAIL_SIGMA) -> float:
    """Mean squared Laplacian of the Gaussian-smoothed luminance over the two skin patches.

    Args:
        image: the photo or render (see :func:`luminance` for the accepted forms).
        landmarks: ``(68, 2)`` pixel positions ``(x, y)`` in ``image``.
        iod, size, sigma: inter-ocular distance the image is resampled to, patch side, Gaussian σ
            (px at that scale).

    Returns:
        ``mean((∇² (G_σ * Y))²)`` over the 2 × ``size``² patch pixels, or NaN when a patch leaves
        the image.
    """
    g, lm = scale_to_iod(luminance(image), landmarks, iod)
    lap = ndimage.laplace(ndimage.gaussian_filter(g, sigma, mode="nearest"), mode="nearest")
    pad = int(np.ceil(4 * sigma)) + 1  # the filters' support: keep it inside the image
    vals = []
    for cx, cy in patch_centres(lm):
        x0, y0 = int(round(cx - size / 2.0)), int(round(cy - size / 2.0))
        if x0 < pad or y0 < pad or x0 + size > g.shape[1] - pad or y0 + size > g.shape[0] - pad:
            return float("nan")
        vals.append(lap[y0:y0 + size, x0:x0 + size] ** 2)
    return float(np.mean(vals))


def detail_ratio(render, render_landmarks: np.ndarray, photo, photo_landmarks: np.ndarray, **kw) -> float:
    """:func:`detail_energy` of the render over that of the photo (NaN if either is undefined or
    the photo's is 0).

    Args:
        render: the frontal render; ``render_landmarks (68, 2)`` its landmarks.
        photo: the photo; ``photo_landmarks (68, 2)`` its landmarks.
        kw: ``iod``, ``size``, ``sigma`` of :func:`detail_energy`.
    """
    er = detail_energy(render, render_landmarks, **kw)
    ep = detail_energy(photo, photo_landmarks, **kw)
    return float(er / ep) if np.isfinite(er) and np.isfinite(ep) and ep > 0 else float("nan")


def see_through_share(coverage) -> float:
    """Share of the filled outline that is background.

    Args:
        coverage: ``(H, W)`` bool (or 0/1) render coverage.

    Returns:
        ``|fill_holes(C) \\ C| / |fill_holes(C)|``, NaN for an empty coverage.
    """
    c = coverage.detach().cpu().numpy() if isinstance(coverage, torch.Tensor) else np.asarray(coverage)
    c = c.astype(bool)
    filled = ndimage.binary_fill_holes(c)
    n = int(filled.sum())
    return float((filled & ~c).sum() / n) if n else float("nan")


def descriptor_distance(a, b) -> float:
    """Euclidean distance of two 128-d descriptors (NaN when either is missing or not finite)."""
    if a is None or b is None:
        return float("nan")
    a = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, np.float64).reshape(-1)
    b = np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, np.float64).reshape(-1)
    d = float(np.linalg.norm(a - b))
    return d if np.isfinite(d) else float("nan")


@dataclass(frozen=True)
class PairStats:
    """Distances of a set of (render, photo) pairs.

    Attributes:
        n: pairs with both descriptors.
        mean: mean distance (NaN when ``n = 0``).
        accept: share of the pairs with distance < ``threshold`` ("same person" for dlib).
        reject: ``1 - accept`` (the rate to look at for pairs of *different* people).
    """

    n: int
    mean: float
    accept: float
    reject: float


def pair_statistics(distances, threshold: float = SAME_PERSON) -> PairStats:
    """:class:`PairStats` of distances (NaN entries, e.g. renders without a detected face, are
    left out).

    Args:
        distances: ``(N,)`` Euclidean descriptor distances.
        threshold: dlib's 0.6 by default.
    """
    d = np.asarray(list(distances), np.float64).reshape(-1)
    d = d[np.isfinite(d)]
    if not d.size:
        return PairStats(0, float("nan"), float("nan"), float("nan"))
    acc = float(np.mean(d < threshold))
    return PairStats(int(d.size), float(d.mean()), acc, 1.0 - acc)
