"""Numba kernels for texture baking: bilinear and bicubic image lookups and barycentric gathers
of many (~10^6) points. Serial, ``nogil``, ``cache=True``; float64 arithmetic. The numpy
references are :func:`facegcn.render.bake.sample_bilinear_reference`, :func:`bicubic_reference`
and :func:`gather_reference`, and of the texture's fused :func:`observe`,
:func:`facegcn.refine.texture_map._observe_reference` (tests compare each pair).

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


@njit(cache=True, nogil=True, inline="always")
def _bilinear_at(img, x, y, out, n):
    """``out[n, :C] = img (H, W, C)`` bilinearly at a point ``(x, y)`` clamped by :func:`_clamped`."""
    H, W, C = img.shape
    x0 = min(int(x), max(W - 2, 0))
    y0 = min(int(y), max(H - 2, 0))
    dx = 1 if W > 1 else 0
    dy = 1 if H > 1 else 0
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


@njit(cache=True, nogil=True, error_model="numpy")
def bilinear_kernel(img, px, out, inside):
    """``out[n] = img`` bilinearly at ``px[n] = (x, y)`` (pixel centres at integers, clamped to
    the border; NaN -> 0); ``inside[n]``: ``-1/2 <= x < W - 1/2`` and the same for ``y``.

    Shapes: ``img (H, W, C)``, ``px (N, 2)``, ``out (N, C)`` float64, ``inside (N,)`` bool.
    """
    H, W, _ = img.shape
    for n in range(px.shape[0]):
        inside[n], x, y = _clamped(px[n, 0], px[n, 1], W, H)
        _bilinear_at(img, x, y, out, n)


@njit(cache=True, nogil=True, inline="always")
def _keys_weights(t):
    """Catmull-Rom weights of the taps at -1, 0, 1, 2 for a fraction ``t`` in [0, 1)."""
    t2 = t * t
    t3 = t2 * t
    return (-0.5 * t3 + t2 - 0.5 * t, 1.5 * t3 - 2.5 * t2 + 1.0,
            -1.5 * t3 + 2.0 * t2 + 0.5 * t, 0.5 * t3 - 0.5 * t2)


@njit(cache=True, nogil=True, inline="always")
def _bicubic_at(img, x, y, out, n):
    """``out[n, :C] = img (H, W, C)`` by Catmull-Rom at a point ``(x, y)`` clamped by
    :func:`_clamped` (the 4 x 4 taps clamped to the border; summed row by row, in a register)."""
    H, W, C = img.shape
    x0 = int(x)
    y0 = int(y)
    wx = _keys_weights(x - x0)
    wy = _keys_weights(y - y0)
    xs = (max(x0 - 1, 0), x0, min(x0 + 1, W - 1), min(x0 + 2, W - 1))
    ys = (max(y0 - 1, 0), y0, min(y0 + 1, H - 1), min(y0 + 2, H - 1))
    for c in range(C):
        acc = 0.0
        for j in range(4):
            for i in range(4):
                acc += wy[j] * wx[i] * img[ys[j], xs[i], c]
        out[n, c] = acc


@njit(cache=True, nogil=True, error_model="numpy")
def bicubic_kernel(img, px, out, inside):
    """``out[n] = img`` by Catmull-Rom interpolation at ``px[n] = (x, y)`` (pixel centres at
    integers; the point clamped into the image and the 4 x 4 taps clamped to the border; NaN -> 0);
    ``inside[n]`` as in :func:`bilinear_kernel`.

    Shapes: ``img (H, W, C)``, ``px (N, 2)``, ``out (N, C)`` float64, ``inside (N,)`` bool.
    """
    H, W, _ = img.shape
    for n in range(px.shape[0]):
        inside[n], x, y = _clamped(px[n, 0], px[n, 1], W, H)
        _bicubic_at(img, x, y, out, n)


@njit(cache=True, nogil=True, inline="always")
def _bary_sum(attr, c, i, j, k, b0, b1, b2):
    """``attr[i, c] * b0 + attr[j, c] * b1 + attr[k, c] * b2`` (in ``attr``'s and ``bary``'s precision)."""
    return attr[i, c] * b0 + attr[j, c] * b1 + attr[k, c] * b2


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
            out[n, c] = _bary_sum(attr, c, i, j, k, b0, b1, b2)


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


@njit(cache=True, nogil=True, inline="always")
def _clip01(v):
    """``v`` clipped to [0, 1] (NaN stays NaN, as ``np.clip``)."""
    if v < 0.0:
        return 0.0
    if v > 1.0:
        return 1.0
    return v


@njit(cache=True, nogil=True, error_model="numpy")
def observe_kernel(block, corners, bary, remap, rows, photo, region, cos_lo, cos_hi, cubic, floor, col, w, irr):
    """The texture's photo observation at the surface points ``rows``, fused (no temporaries).

    Per point ``n`` of ``rows``: ``a = sum_k bary[n, k] * block[remap[corners[n, k]]]`` (columns:
    photo xy 0:2, crop xy 2:4, visibility 4, cos θ 5, irradiance 6:9); ``irr[n] = max(a[6:9],
    floor)``; ``col[n] = max(photo(a[0:2]) / irr[n], 0)`` (Catmull-Rom if ``cubic`` else bilinear,
    as :func:`bicubic_kernel` / :func:`bilinear_kernel`); ``w[n] = clip(a[4], 0, 1) · clip((a[5] -
    cos_lo) / (cos_hi - cos_lo), 0, 1) · region(a[2:4]) · inside`` (``region`` read bilinearly,
    ``inside``: the photo point lies in the photo). Other points are left as they are.

    Shapes: ``block (V, 9)``, ``corners (N, 3)`` int, ``bary (N, 3)``, ``remap (V,)`` int, ``rows (R,)``
    int, ``photo (H, W, 3)``, ``region (h, w, C)``, ``floor (3,)`` float64; out: ``col (N, 3)``,
    ``w (N,)``, ``irr (N, 3)`` float64.
    """
    H, W, _ = photo.shape
    Hr, Wr, _ = region.shape
    a = np.empty(9)
    m = np.empty((1, region.shape[2]))
    span = cos_hi - cos_lo
    for r in range(rows.shape[0]):
        n = rows[r]
        i, j, k = remap[corners[n, 0]], remap[corners[n, 1]], remap[corners[n, 2]]
        b0, b1, b2 = bary[n, 0], bary[n, 1], bary[n, 2]
        for c in range(9):
            a[c] = _bary_sum(block, c, i, j, k, b0, b1, b2)
        inside, x, y = _clamped(a[0], a[1], W, H)
        if cubic:
            _bicubic_at(photo, x, y, col, n)
        else:
            _bilinear_at(photo, x, y, col, n)
        _, x, y = _clamped(a[2], a[3], Wr, Hr)
        _bilinear_at(region, x, y, m, 0)
        ramp = _clip01((a[5] - cos_lo) / span)
        w[n] = _clip01(a[4]) * ramp * m[0, 0] * (1.0 if inside else 0.0)
        for c in range(3):
            e = a[6 + c]
            if e < floor[c]:  # np.maximum: NaN kept
                e = floor[c]
            irr[n, c] = e
            q = col[n, c] / e
            if q < 0.0:
                q = 0.0
            col[n, c] = q


def observe(block: np.ndarray, corners: np.ndarray, bary: np.ndarray, photo: np.ndarray, region: np.ndarray,
            cos_lo: float, cos_hi: float, cubic: bool = True, irr_floor=0.05, *, remap=None, rows=None):
    """:func:`observe_kernel` on fresh, zero-filled outputs.

    Args:
        block: ``(V, 9)`` the per-vertex terms (photo xy, crop xy, visibility, cos θ, irradiance).
        corners: ``(N, 3)`` int vertex ids; bary: ``(N, 3)`` barycentrics.
        photo: ``(H, W, 3)`` float image; region: ``(h, w, C)`` float mask (of the crop; channel 0 read).
        cos_lo, cos_hi: the viewing-angle ramp.
        cubic: Catmull-Rom (True) or bilinear (False) photo lookup.
        irr_floor: scalar or ``(3,)``, the least irradiance divided by.
        remap: optional ``(V,)`` int, vertex ids applied to ``corners`` (e.g. the mirror map).
        rows: optional ``(R,)`` int, the points to evaluate (default all); the others get zeros.

    Returns:
        ``(col (N, 3), w (N,), irr (N, 3))`` float64.
    """
    if block.ndim != 2 or block.shape[1] != 9 or photo.ndim != 3 or photo.shape[2] != 3 or region.ndim != 3:
        raise ValueError(f"expected block (V, 9), photo (H, W, 3), region (h, w, C); got {block.shape}, "
                         f"{photo.shape}, {region.shape}")
    N, V = corners.shape[0], block.shape[0]
    remap = np.arange(V) if remap is None else np.ascontiguousarray(remap, np.int64)
    rows = np.arange(N) if rows is None else np.ascontiguousarray(rows, np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= N) or len(remap) and (remap.min() < 0 or remap.max() >= V):
        raise ValueError("rows or remap out of range")
    col, w, irr = np.zeros((N, 3)), np.zeros(N), np.zeros((N, 3))
    floor = np.ascontiguousarray(np.broadcast_to(np.asarray(irr_floor, np.float64), (3,)))
    observe_kernel(np.ascontiguousarray(block), np.ascontiguousarray(corners), np.ascontiguousarray(bary), remap,
                   rows, np.ascontiguousarray(photo), np.ascontiguousarray(region), float(cos_lo), float(cos_hi),
                   bool(cubic), floor, col, w, irr)
    return col, w, irr
