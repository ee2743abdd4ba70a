"""Numba kernels for texture baking: bilinear and bicubic image lookups and barycentric gathers
of many (~10^6) points. Serial, ``nogil``, ``cache=True``; float64 arithmetic. The numpy
references are :func:`facegcn.render.bake.sample_bilinear_reference`, :func:`bicubic_reference`
and :func:`gather_reference` (tests compare each pair).

Bicubic is Keys' cubic convolution with ``a = -1/2`` (Catmull-Rom): it interpolates the pixels,
reproduces quadratics, and keeps far more of an image's finest detail than bilinear (whose
response at half the sampling rate is 0 at half-pixel offsets); it may overshoot at edges."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _clamped(x, y, W, H):
    """``(inside, x, y)``: whether ``(x, y)`` lies in the image (``-1/2 <= x < W - 1/2``, same for
    ``y``), and the point with NaN -> 0, clamped to the pixel centres ``[0, W - 1] x [0, H - 1]``."""
    inside = (x >= -0.5) and (x < W - 0.5) and (y >= -0.5) and (y < H - 0.5)
    if x != x:
        x = 0.0
    if y != y:
        y = 0.0
    return inside, min(max(x, 0.0), W - 1.0), min(max(y, 0.0), H - 1.0)


@njit(cache=True, nogil=True, error_model="numpy")
def bilinear_kernel(img, px, out, inside):
    """``out[n] = img`` bilinearly at ``px[n] = (x, y)`` (pixel centres at integers, clamped to
    the border; NaN -> 0); ``inside[n]``: ``-1/2 <= x < W - 1/2`` and the same for ``y``.

    Shapes: ``img (H, W, C)``, ``px (N, 2)``, ``out (N, C)`` float64, ``inside (N,)`` bool.
    """
    H, W, C = img.shape
    x0max, y0max = max(W - 2, 0), max(H - 2, 0)
    dx = 1 if W > 1 else 0
    dy = 1 if H > 1 else 0
    for n in range(px.shape[0]):
        inside[n], x, y = _clamped(px[n, 0], px[n, 1], W, H)
        x0 = min(int(x), x0max)
        y0 = min(int(y), y0max)
        fx = x - x0
        fy = y - y0
        for c in range(C):
            a = img[y0, x0, c]
            b = img[y0, x0 + dx, c]
            top = a + fx * (b - a)
            a = img[y0 + dy, x0, c]
            b = img[y0 + dy, x0 + dx, c]
            bot = a + fx * (b - a)
            out[n, c] = top + fy * (bot - top)


@njit(cache=True, nogil=True, inline="always")
def _keys_weights(t):
    """Catmull-Rom weights of the taps at -1, 0, 1, 2 for a fraction ``t`` in [0, 1)."""
    t2 = t * t
    t3 = t2 * t
    return (-0.5 * t3 + t2 - 0.5 * t, 1.5 * t3 - 2.5 * t2 + 1.0,
            -1.5 * t3 + 2.0 * t2 + 0.5 * t, 0.5 * t3 - 0.5 * t2)


@njit(cache=True, nogil=True, error_model="numpy")
def bicubic_kernel(img, px, out, inside):
    """``out[n] = img`` by Catmull-Rom interpolation at ``px[n] = (x, y)`` (pixel centres at
    integers; the point clamped into the image and the 4 x 4 taps clamped to the border; NaN -> 0);
    ``inside[n]`` as in :func:`bilinear_kernel`.

    Shapes: ``img (H, W, C)``, ``px (N, 2)``, ``out (N, C)`` float64, ``inside (N,)`` bool.
    """
    H, W, C = img.shape
    for n in range(px.shape[0]):
        inside[n], x, y = _clamped(px[n, 0], px[n, 1], W, H)
        x0 = int(x)
        y0 = int(y)
        wx = _keys_weights(x - x0)
        wy = _keys_weights(y - y0)
        for c in range(C):
            out[n, c] = 0.0
        for j in range(4):
            yy = min(max(y0 + j - 1, 0), H - 1)
            for i in range(4):
                xx = min(max(x0 + i - 1, 0), W - 1)
                w = wy[j] * wx[i]
                for c in range(C):
                    out[n, c] += w * img[yy, xx, c]


@njit(cache=True, nogil=True, error_model="numpy")
def gather_kernel(attr, corners, bary, out):
    """``out[n] = sum_k bary[n, k] * attr[corners[n, k]]``.

    Shapes: ``attr (V, C)``, ``corners (N, 3)`` int, ``bary (N, 3)``, ``out (N, C)`` float64.
    """
    C = attr.shape[1]
    for n in range(corners.shape[0]):
        i, j, k = corners[n, 0], corners[n, 1], corners[n, 2]
        b0, b1, b2 = bary[n, 0], bary[n, 1], bary[n, 2]
        for c in range(C):
            out[n, c] = attr[i, c] * b0 + attr[j, c] * b1 + attr[k, c] * b2


def gather(attr: np.ndarray, corners: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """``(N, C)`` float64: ``sum_k bary_k attr[corners_k]`` (see :func:`gather_kernel`)."""
    out = np.empty((corners.shape[0], attr.shape[1]), np.float64)
    gather_kernel(np.ascontiguousarray(attr), np.ascontiguousarray(corners), np.ascontiguousarray(bary), out)
    return out


def gather_reference(attr: np.ndarray, corners: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """numpy form of :func:`gather`."""
    out = attr[corners[:, 0]] * bary[:, 0:1]
    out += attr[corners[:, 1]] * bary[:, 1:2]
    out += attr[corners[:, 2]] * bary[:, 2:3]
    return out


def _lookup(kernel, img: np.ndarray, px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = np.ascontiguousarray(img)
    px = np.ascontiguousarray(px, dtype=np.float64)
    out = np.empty((px.shape[0], img.shape[2]), np.float64)
    inside = np.empty(px.shape[0], np.bool_)
    kernel(img, px, out, inside)
    return out, inside


def bilinear(img: np.ndarray, px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values (N, C) float64, inside (N,) bool)`` of :func:`bilinear_kernel`."""
    return _lookup(bilinear_kernel, img, px)


def bicubic(img: np.ndarray, px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values (N, C) float64, inside (N,) bool)`` of :func:`bicubic_kernel`."""
    return _lookup(bicubic_kernel, img, px)


def bicubic_reference(img: np.ndarray, px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numpy form of :func:`bicubic` (the separable 4 x 4 Catmull-Rom sum)."""
    H, W, C = img.shape
    x, y = px[:, 0], px[:, 1]
    with np.errstate(invalid="ignore"):
        inside = (x >= -0.5) & (x < W - 0.5) & (y >= -0.5) & (y < H - 0.5)
    x = np.clip(np.nan_to_num(x), 0.0, W - 1.0)
    y = np.clip(np.nan_to_num(y), 0.0, H - 1.0)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)

    def weights(t):
        return np.stack([-0.5 * t**3 + t**2 - 0.5 * t, 1.5 * t**3 - 2.5 * t**2 + 1,
                         -1.5 * t**3 + 2 * t**2 + 0.5 * t, 0.5 * t**3 - 0.5 * t**2], 1)

    wx, wy = weights(x - x0), weights(y - y0)
    flat = img.reshape(-1, C).astype(np.float64)
    out = np.zeros((len(x), C))
    for j in range(4):
        yy = np.clip(y0 + j - 1, 0, H - 1)
        for i in range(4):
            out += (wy[:, j] * wx[:, i])[:, None] * flat[yy * W + np.clip(x0 + i - 1, 0, W - 1)]
    return out, inside
