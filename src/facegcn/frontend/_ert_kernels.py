"""Numba kernels of :mod:`facegcn.frontend.ert`: dlib's integer/float stream decoding and the
ensemble-of-regression-trees cascade. Serial, ``nogil``, ``cache=True``.

Decoders return the new byte position, or a negative one on malformed input (the caller raises):
``-1`` truncated/bad integer, ``-2`` a float in dlib's old ASCII format or non-finite, ``-3`` an
inconsistent leaf-vector size.

The cascade kernel follows ``dlib/image_processing/shape_predictor.h`` operation by operation, in
dlib's precisions: the shapes and the feature-pixel arithmetic in float32, the similarity and the
rectangle mapping in float64 (see :mod:`facegcn.frontend.ert`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _int(buf, pos):
    """One serialized integer: a control byte (bit 7: negative; low 4 bits: byte count, 1..8),
    then the magnitude little-endian. Returns (value, new pos); new pos -1 on error."""
    if pos < 0 or pos >= buf.size:
        return 0, -1
    ctl = buf[pos]
    n = ctl & 0x0F
    if n == 0 or n > 8 or pos + 1 + n > buf.size:
        return 0, -1
    v = np.int64(0)
    for i in range(n - 1, -1, -1):
        v = (v << 8) | np.int64(buf[pos + 1 + i])
    if ctl & 0x80:
        v = -v
    return v, pos + 1 + n


@njit(cache=True, nogil=True, inline="always")
def _float(buf, pos):
    """One serialized float: mantissa (int64) and exponent (int16), value ``(float)mantissa *
    2**exponent`` as dlib's ``float_details::convert_to_T<float>``. Returns (float32, new pos)."""
    if pos < 0 or pos >= buf.size:
        return np.float32(0.0), -1
    if buf[pos] & 0x70:  # dlib's pre-2013 ASCII float format
        return np.float32(0.0), -2
    m, pos = _int(buf, pos)
    e, pos = _int(buf, pos)
    if pos < 0:
        return np.float32(0.0), -1
    if e >= 32000:  # is_inf / is_ninf / is_nan
        return np.float32(0.0), -2
    f = np.float32(m)  # dlib: (float)mantissa, then ldexp (exact for in-range values)
    return np.float32(math.ldexp(np.float64(f), e)), pos


@njit(cache=True, nogil=True)
def read_int(buf, pos):
    return _int(buf, pos)


@njit(cache=True, nogil=True, inline="always")
def _read_array(buf, pos, out, decode):
    """Fills ``out`` with consecutive values decoded by ``decode`` (:func:`_int` or
    :func:`_float`, specialised at compile time); stops at the first error."""
    for i in range(out.size):
        out[i], pos = decode(buf, pos)
        if pos < 0:
            break
    return out, pos


@njit(cache=True, nogil=True)
def read_ints(buf, pos, n):
    return _read_array(buf, pos, np.empty(n, np.int64), _int)


@njit(cache=True, nogil=True)
def read_floats(buf, pos, n):
    return _read_array(buf, pos, np.empty(n, np.float32), _float)


@njit(cache=True, nogil=True, inline="always")
def _size(buf, pos, n):
    """A serialized size that must be ``n``: the new position; ``-1`` as :func:`_int`, ``-3`` for
    another size."""
    m, pos = _int(buf, pos)
    if pos >= 0 and m != n:
        return -3
    return pos


@njit(cache=True, nogil=True)
def read_trees(buf, pos, idx1, idx2, thresh, leaves):
    """``len(idx1)`` consecutive ``regression_tree`` records: ``splits`` (size, then idx1, idx2,
    thresh each) and ``leaf_values`` (size, then each ``matrix<float,0,1>``: rows, cols (negated
    in dlib's newer format), values). The sizes must be those of the arrays (``idx1.shape[1]``
    splits, ``leaves.shape[1:]`` leaves and leaf size); ``-3`` otherwise."""
    dim = leaves.shape[2]
    for t in range(idx1.shape[0]):
        pos = _size(buf, pos, idx1.shape[1])
        if pos < 0:
            return pos
        for i in range(idx1.shape[1]):
            idx1[t, i], pos = _int(buf, pos)
            idx2[t, i], pos = _int(buf, pos)
            thresh[t, i], pos = _float(buf, pos)
            if pos < 0:
                return pos
        pos = _size(buf, pos, leaves.shape[1])
        if pos < 0:
            return pos
        for j in range(leaves.shape[1]):
            nr, pos = _int(buf, pos)
            nc, pos = _int(buf, pos)
            if pos < 0:
                return pos
            if abs(nr) != dim or abs(nc) != 1:
                return -3
            for k in range(dim):
                leaves[t, j, k], pos = _float(buf, pos)
            if pos < 0:
                return pos
    return pos


@njit(cache=True, nogil=True)
def tree_shape(buf, pos):
    """(number of splits, number of leaves, leaf vector size) of the tree serialized at ``pos``
    (``-1`` sizes on error); reads only what it needs."""
    ns, pos = _int(buf, pos)
    if pos < 0:
        return -1, -1, -1
    for i in range(ns):
        _, pos = _int(buf, pos)
        _, pos = _int(buf, pos)
        _, pos = _float(buf, pos)
        if pos < 0:
            return -1, -1, -1
    nl, pos = _int(buf, pos)
    nr, pos = _int(buf, pos)
    nc, pos = _int(buf, pos)
    if pos < 0:
        return -1, -1, -1
    return ns, nl, abs(nr) * abs(nc)


# ------------------------------------------------------------------------------ the cascade --
@njit(cache=True, nogil=True, inline="always")
def _pixel(img, x, y):
    """dlib's ``get_pixel_intensity``: gray as is; RGB ``(r + g + b) / 3`` in integers."""
    if img.shape[2] == 1:
        return np.float32(img[y, x, 0])
    s = np.int32(img[y, x, 0]) + np.int32(img[y, x, 1]) + np.int32(img[y, x, 2])
    return np.float32(s // 3)


@njit(cache=True, nogil=True, inline="always")
def _centroid(shape, P):
    """Mean point (float64) of the ``P`` points ``x0, y0, x1, ...`` of ``shape``."""
    mx = 0.0
    my = 0.0
    for i in range(P):
        mx += np.float64(shape[2 * i])
        my += np.float64(shape[2 * i + 1])
    return mx / P, my / P


@njit(cache=True, nogil=True)
def predict_kernel(img, rect, init, anchor, deltas, idx1, idx2, thresh, leaves, tree_start, out):
    """dlib's ``shape_predictor::operator()``.

    Shapes: ``img (H, W, C)`` uint8 with C 1 (gray) or 3 (RGB); ``rect (4,)`` float64 left, top,
    right, bottom; ``init (2P,)`` float32 x0, y0, x1, ...; ``anchor (K, F)`` int;
    ``deltas (K, F, 2)`` float32; ``idx1, idx2 (T, S)`` int; ``thresh (T, S)`` float32;
    ``leaves (T, S + 1, 2P)`` float32; ``tree_start (K + 1,)`` int (cascade k = trees
    ``tree_start[k]:tree_start[k + 1]``); ``out (P, 2)`` float64, the rounded points.
    """
    H, W = img.shape[0], img.shape[1]
    n2 = init.shape[0]
    P = n2 // 2
    S = idx1.shape[1]
    F = anchor.shape[1]
    # unnormalizing_tform(rect): (0,0) -> top-left, (1,0) -> top-right, (1,1) -> bottom-right.
    # The corners pass through float (dlib's vector<float,2>); exact for |coords| < 2**24.
    left = np.float64(np.float32(rect[0]))
    top = np.float64(np.float32(rect[1]))
    sx = np.float64(np.float32(rect[2])) - left
    sy = np.float64(np.float32(rect[3])) - top
    cur = init.copy()
    feat = np.empty(F, np.float32)
    # find_tform_between_shapes(initial, current): statistics of the initial shape (float64)
    mfx, mfy = _centroid(init, P)
    sig = 0.0
    for i in range(P):
        dx = np.float64(init[2 * i]) - mfx
        dy = np.float64(init[2 * i + 1]) - mfy
        sig += dx * dx + dy * dy
    sig /= P
    for k in range(anchor.shape[0]):
        # Umeyama's least-squares similarity initial -> current; in 2-D, c*R = [[a, -b], [b, a]]
        mtx, mty = _centroid(cur, P)
        c00 = 0.0
        c01 = 0.0
        c10 = 0.0
        c11 = 0.0
        for i in range(P):
            fx = np.float64(init[2 * i]) - mfx
            fy = np.float64(init[2 * i + 1]) - mfy
            tx = np.float64(cur[2 * i]) - mtx
            ty = np.float64(cur[2 * i + 1]) - mty
            c00 += tx * fx
            c01 += tx * fy
            c10 += ty * fx
            c11 += ty * fy
        if sig != 0.0:
            a = ((c00 + c11) / P) / sig
            b = ((c10 - c01) / P) / sig
        else:  # pragma: no cover - a degenerate initial shape
            a = 1.0
            b = 0.0
        m00 = np.float32(a)  # matrix_cast<float>
        m01 = np.float32(-b)
        m10 = np.float32(b)
        m11 = np.float32(a)
        for i in range(F):
            j = anchor[k, i]
            dx = deltas[k, i, 0]
            dy = deltas[k, i, 1]
            qx = (m00 * dx + m01 * dy) + cur[2 * j]  # float32, dlib's order
            qy = (m10 * dx + m11 * dy) + cur[2 * j + 1]
            px = math.floor(sx * np.float64(qx) + left + 0.5)  # point(tform_to_img(q)): rounded
            py = math.floor(sy * np.float64(qy) + top + 0.5)
            if px >= 0 and py >= 0 and px < W and py < H:
                feat[i] = _pixel(img, int(px), int(py))
            else:
                feat[i] = np.float32(0.0)
        for t in range(tree_start[k], tree_start[k + 1]):
            i = 0
            while i < S:
                if feat[idx1[t, i]] - feat[idx2[t, i]] > thresh[t, i]:
                    i = 2 * i + 1
                else:
                    i = 2 * i + 2
            leaf = leaves[t, i - S]
            for q in range(n2):
                cur[q] += leaf[q]
    for i in range(P):
        out[i, 0] = math.floor(sx * np.float64(cur[2 * i]) + left + 0.5)
        out[i, 1] = math.floor(sy * np.float64(cur[2 * i + 1]) + top + 0.5)
