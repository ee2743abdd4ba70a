"""Numba CPU kernels: z-buffer rasterizer and barycentric interpolation (forward + backward).

Geometry (shared with the pure-torch path in ``_torch_raster``): every vertex is given in screen
space ``(u, v, z)`` (pixels, pixels, camera depth). Its homogeneous 2-D position is
``P = (u z, v z, z)``; for a triangle with columns ``M = [P0 P1 P2]`` and a pixel centre
``q = (x, y, 1)`` the vector ``e = M^-1 q`` gives the perspective-correct barycentrics
``b = e / s`` with ``s = e0 + e1 + e2`` and the depth of the surface point ``1 / s``
(Olano & Greer's homogeneous rasterization). The pixel is covered iff ``s > 0`` and all
``e_k >= 0``; it is kept iff additionally ``near <= 1/s <= far``. This clips triangles exactly at
the near plane without splitting them, including triangles that cross ``z = 0``.
Rows of ``M^-1`` are ``(P1 x P2, P2 x P0, P0 x P1) / det M``.

All arithmetic is float64 whatever the input dtype. Kernels are serial, release the GIL and work
on a row range of one image; ``_parallel`` runs several of them in Python threads. (Numba's own
``parallel=True`` pools spin-wait and degrade badly — 10x and worse — on a small machine shared
with other processes or with torch's OpenMP pool, so they are not used.) ``cache=True``.
The interpolation kernels are compiled with ``fastmath`` (contraction / reassociation: ~10% faster,
results within float rounding of the strict ones); the rasterizer is not (its inside test relies on
the exact negation of a shared edge's row in the two triangles: watertightness).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_INF = np.inf


@njit(cache=True, inline="always")
def _corners(vs, faces, b, f):
    """Vertex ids ``i0, i1, i2`` of face ``f`` and its screen corners ``(u, v, z)`` in image ``b``
    (float64): ``i0, i1, i2, u0, v0, z0, u1, v1, z1, u2, v2, z2``."""
    i0 = faces[f, 0]
    i1 = faces[f, 1]
    i2 = faces[f, 2]
    u0 = np.float64(vs[b, i0, 0])
    v0 = np.float64(vs[b, i0, 1])
    z0 = np.float64(vs[b, i0, 2])
    u1 = np.float64(vs[b, i1, 0])
    v1 = np.float64(vs[b, i1, 1])
    z1 = np.float64(vs[b, i1, 2])
    u2 = np.float64(vs[b, i2, 0])
    v2 = np.float64(vs[b, i2, 1])
    z2 = np.float64(vs[b, i2, 2])
    return i0, i1, i2, u0, v0, z0, u1, v1, z1, u2, v2, z2


@njit(cache=True, inline="always", error_model="numpy")
def _rows(u0, v0, z0, u1, v1, z1, u2, v2, z2):
    """Unnormalised rows of ``M^-1`` (``det M * M^-1``) and ``det M``.

    Each row is the cross product of the two homogeneous vertices of the opposite edge; the same
    edge seen from the neighbouring triangle gives exactly the negated row (fp multiplication is
    commutative and ``a - b == -(b - a)``), which makes the inside test watertight.
    """
    ax = u0 * z0
    ay = v0 * z0
    aw = z0
    bx = u1 * z1
    by = v1 * z1
    bw = z1
    cx = u2 * z2
    cy = v2 * z2
    cw = z2
    r00 = by * cw - bw * cy
    r01 = bw * cx - bx * cw
    r02 = bx * cy - by * cx
    r10 = cy * aw - cw * ay
    r11 = cw * ax - cx * aw
    r12 = cx * ay - cy * ax
    r20 = ay * bw - aw * by
    r21 = aw * bx - ax * bw
    r22 = ax * by - ay * bx
    det = ax * r00 + ay * r01 + aw * r02
    return det, r00, r01, r02, r10, r11, r12, r20, r21, r22


@njit(cache=True, inline="always", error_model="numpy")
def _at_pixel(vs, faces, b, t, x, fy):
    """Triangle ``t`` of image ``b`` at the centre ``q = (x, fy, 1)`` of a pixel: its corners
    (:func:`_corners`), the unnormalised rows and ``det M`` (:func:`_rows`), and
    ``(e0, e1, e2, s)``, ``e = (det M * M^-1) q`` and ``s = e0 + e1 + e2``."""
    i0, i1, i2, u0, v0, z0, u1, v1, z1, u2, v2, z2 = _corners(vs, faces, b, t)
    det, r00, r01, r02, r10, r11, r12, r20, r21, r22 = _rows(u0, v0, z0, u1, v1, z1, u2, v2, z2)
    fx = float(x)
    e0 = r00 * fx + (r01 * fy + r02)
    e1 = r10 * fx + (r11 * fy + r12)
    e2 = r20 * fx + (r21 * fy + r22)
    return (
        (i0, i1, i2, u0, v0, z0, u1, v1, z1, u2, v2, z2),
        (det, r00, r01, r02, r10, r11, r12, r20, r21, r22),
        (e0, e1, e2, e0 + e1 + e2),
    )


@njit(cache=True, inline="always", error_model="numpy")
def _corner_grad(gv, b, i, u, v, z, GX, GY, GW):
    """Chains ``dL/dP = (GX, GY, GW)`` of the homogeneous corner ``P = (u z, v z, z)`` to
    ``(u, v, z)``: adds it to ``gv[b, i]``."""
    gv[b, i, 0] += GX * z
    gv[b, i, 1] += GY * z
    gv[b, i, 2] += GX * u + GY * v + GW


@njit(cache=True, error_model="numpy")
def _clipped_box(u0, v0, z0, u1, v1, z1, u2, v2, z2, near):
    """Screen bounding box of a triangle clipped to ``z >= near`` (some vertex is in front)."""
    xmin = _INF
    xmax = -_INF
    ymin = _INF
    ymax = -_INF
    for k in range(3):
        if k == 0:
            ua, va, za, ub, vb, zb = u0, v0, z0, u1, v1, z1
        elif k == 1:
            ua, va, za, ub, vb, zb = u1, v1, z1, u2, v2, z2
        else:
            ua, va, za, ub, vb, zb = u2, v2, z2, u0, v0, z0
        if za > near:
            xmin = min(xmin, ua)
            xmax = max(xmax, ua)
            ymin = min(ymin, va)
            ymax = max(ymax, va)
        if (za > near) != (zb > near):
            t = (near - za) / (zb - za)
            X = ua * za + t * (ub * zb - ua * za)
            Y = va * za + t * (vb * zb - va * za)
            uc = X / near
            vc = Y / near
            xmin = min(xmin, uc)
            xmax = max(xmax, uc)
            ymin = min(ymin, vc)
            ymax = max(ymax, vc)
    return xmin, xmax, ymin, ymax


@njit(cache=True, nogil=True, error_model="numpy")
def rasterize_tasks(vs, faces, tasks, near, far, tri_out, bary_out, depth_out, mask_out):
    """Run :func:`rasterize_band` for each ``(b, ya, yb)`` row of ``tasks`` (one z-buffer)."""
    W = tri_out.shape[2]
    rows = 0
    for k in range(tasks.shape[0]):
        rows = max(rows, tasks[k, 2] - tasks[k, 1])
    zb = np.empty(rows * W, np.float64)
    for k in range(tasks.shape[0]):
        rasterize_band(
            vs, faces, tasks[k, 0], tasks[k, 1], tasks[k, 2], near, far,
            tri_out, bary_out, depth_out, mask_out, zb,
        )  # fmt: skip


@njit(cache=True, nogil=True, error_model="numpy")
def rasterize_band(vs, faces, b, ya, yb, near, far, tri_out, bary_out, depth_out, mask_out, zb):
    """Z-buffer rasterization of rows ``[ya, yb)`` of image ``b`` (all triangles of ``faces``).

    ``vs (B, V, 3)`` screen vertices; outputs (preallocated, C-contiguous, only rows
    ``[ya, yb)`` of image ``b`` are written): ``tri_out (B, H, W) int64`` (-1 = background),
    ``bary_out (B, H, W, 3) float32``, ``depth_out (B, H, W) float32`` (0 = background),
    ``mask_out (B, H, W) bool``. Triangles are visited in increasing id and a fragment only
    replaces a strictly farther one, so exact depth ties go to the lowest id whatever the split
    into bands. ``zb``: float64 scratch of at least ``(yb - ya) * W`` (the z-buffer, holding
    ``s = 1 / depth``, 0 = empty). Releases the GIL (bands run in parallel Python threads).
    """
    H = tri_out.shape[1]
    W = tri_out.shape[2]
    F = faces.shape[0]
    inv_near = 1.0 / near
    inv_far = 1.0 / far if far < _INF else 0.0
    zb[: (yb - ya) * W] = 0.0  # slice fills (vectorised), not one interleaved loop: ~5% of the kernel
    tri_out[b, ya:yb] = -1
    bary_out[b, ya:yb] = 0.0
    depth_out[b, ya:yb] = 0.0
    mask_out[b, ya:yb] = False
    fya = float(ya)
    fyb = yb - 1.0
    for f in range(F):
        _, _, _, u0, v0, z0, u1, v1, z1, u2, v2, z2 = _corners(vs, faces, b, f)
        if z0 > near and z1 > near and z2 > near:
            ylo = min(v0, min(v1, v2))
            yhi = max(v0, max(v1, v2))
            if not (yhi >= fya and ylo <= fyb):  # also rejects NaN
                continue
            xlo = min(u0, min(u1, u2))
            xhi = max(u0, max(u1, u2))
        elif z0 > near or z1 > near or z2 > near:
            xlo, xhi, ylo, yhi = _clipped_box(u0, v0, z0, u1, v1, z1, u2, v2, z2, near)
        else:
            continue
        if not (xhi >= 0.0 and xlo <= W - 1.0 and yhi >= fya and ylo <= fyb):
            continue
        ylo = math.ceil(max(ylo, fya))
        yhi = math.floor(min(yhi, fyb))
        xlo = math.ceil(max(xlo, 0.0))
        xhi = math.floor(min(xhi, W - 1.0))
        if xlo > xhi or ylo > yhi:
            continue
        det, r00, r01, r02, r10, r11, r12, r20, r21, r22 = _rows(
            u0, v0, z0, u1, v1, z1, u2, v2, z2
        )
        if det == 0.0 or not math.isfinite(det):
            continue
        if det < 0.0:  # orient rows so that inside <=> all e >= 0 (exact negation)
            r00 = -r00
            r01 = -r01
            r02 = -r02
            r10 = -r10
            r11 = -r11
            r12 = -r12
            r20 = -r20
            r21 = -r21
            r22 = -r22
            det = -det
        for y in range(ylo, yhi + 1):
            fy = float(y)
            c0 = r01 * fy + r02
            c1 = r11 * fy + r12
            c2 = r21 * fy + r22
            row = (y - ya) * W
            for x in range(xlo, xhi + 1):
                fx = float(x)
                e0 = r00 * fx + c0
                e1 = r10 * fx + c1
                e2 = r20 * fx + c2
                if e0 >= 0.0 and e1 >= 0.0 and e2 >= 0.0:
                    S = e0 + e1 + e2
                    s = S / det  # 1 / depth
                    if s > zb[row + x] and S > 0.0 and s <= inv_near and s >= inv_far:
                        zb[row + x] = s
                        inv = 1.0 / S
                        tri_out[b, y, x] = f
                        bary_out[b, y, x, 0] = e0 * inv
                        bary_out[b, y, x, 1] = e1 * inv
                        bary_out[b, y, x, 2] = e2 * inv
                        depth_out[b, y, x] = det * inv
                        mask_out[b, y, x] = True


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def interpolate_fwd_rows(vs, pfaces, afaces, attr, tri, bary, use_bary, b, ya, yb, out):
    """Rows ``[ya, yb)`` of image ``b``: ``out = sum_k w_k attr[b, afaces[t, k]]`` on covered
    pixels, 0 elsewhere. ``w`` recomputed from ``vs`` at the pixel centre (``use_bary`` False) or
    read from ``bary`` (True)."""
    W = tri.shape[2]
    C = attr.shape[2]
    for y in range(ya, yb):
        fy = float(y)
        for x in range(W):
            t = tri[b, y, x]
            if t < 0:
                for c in range(C):
                    out[b, y, x, c] = 0.0
                continue
            if use_bary:
                w0 = np.float64(bary[b, y, x, 0])
                w1 = np.float64(bary[b, y, x, 1])
                w2 = np.float64(bary[b, y, x, 2])
            else:
                _, _, (e0, e1, e2, S) = _at_pixel(vs, pfaces, b, t, x, fy)  # det M cancels in e / S
                if S == 0.0 or not math.isfinite(S):
                    for c in range(C):
                        out[b, y, x, c] = 0.0
                    continue
                inv = 1.0 / S
                w0 = e0 * inv
                w1 = e1 * inv
                w2 = e2 * inv
            a0 = afaces[t, 0]
            a1 = afaces[t, 1]
            a2 = afaces[t, 2]
            for c in range(C):
                out[b, y, x, c] = w0 * attr[b, a0, c] + w1 * attr[b, a1, c] + w2 * attr[b, a2, c]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def interpolate_bwd_rows(
    vs, pfaces, afaces, attr, tri, bary, use_bary, gout, need_v, need_a, b, ya, yb, gv, ga
):
    """Backward of :func:`interpolate_fwd_rows` for rows ``[ya, yb)`` of image ``b``.

    Accumulates into ``gv[b] (V, 3)`` (d/d(u, v, z)) and ``ga[b] (Va, C)``; callers give every
    concurrently running task its own buffers and sum them afterwards.

    With ``M e = q`` (``q = (x, y, 1)``) and ``w = e / s``, ``s = sum e``:
    ``dL/de_k = (g_k - sum_m g_m w_m) / s`` with ``g_k = <dL/dout, attr_k>``;
    ``dL/dM = -(M^-T dL/de) e^T``, i.e. ``dL/dP_k = -h e_k`` with ``h = sum_k (dL/de_k) r_k``
    (``r_k`` rows of ``M^-1``); finally ``P_k = (u_k z_k, v_k z_k, z_k)`` chains to ``(u, v, z)``.
    """
    W = tri.shape[2]
    C = attr.shape[2]
    for y in range(ya, yb):
        fy = float(y)
        for x in range(W):
            t = tri[b, y, x]
            if t < 0:
                continue
            a0 = afaces[t, 0]
            a1 = afaces[t, 1]
            a2 = afaces[t, 2]
            if use_bary:
                w0 = np.float64(bary[b, y, x, 0])
                w1 = np.float64(bary[b, y, x, 1])
                w2 = np.float64(bary[b, y, x, 2])
            else:
                # unnormalised rows (det M * M^-1): w = e / s and h below are invariant to the
                # scale, only e_k itself needs the 1 / det
                corners, rows, (e0, e1, e2, s) = _at_pixel(vs, pfaces, b, t, x, fy)
                i0, i1, i2, u0, v0, z0, u1, v1, z1, u2, v2, z2 = corners
                det, r00, r01, r02, r10, r11, r12, r20, r21, r22 = rows
                if det == 0.0 or not math.isfinite(det) or s == 0.0:
                    continue
                inv = 1.0 / s
                w0 = e0 * inv
                w1 = e1 * inv
                w2 = e2 * inv
                idet = 1.0 / det
                e0 *= idet
                e1 *= idet
                e2 *= idet
                if need_v:
                    g0 = 0.0
                    g1 = 0.0
                    g2 = 0.0
                    for c in range(C):
                        g = np.float64(gout[b, y, x, c])
                        g0 += g * attr[b, a0, c]
                        g1 += g * attr[b, a1, c]
                        g2 += g * attr[b, a2, c]
                    dot = g0 * w0 + g1 * w1 + g2 * w2
                    d0 = (g0 - dot) * inv
                    d1 = (g1 - dot) * inv
                    d2 = (g2 - dot) * inv
                    hx = d0 * r00 + d1 * r10 + d2 * r20
                    hy = d0 * r01 + d1 * r11 + d2 * r21
                    hw = d0 * r02 + d1 * r12 + d2 * r22
                    _corner_grad(gv, b, i0, u0, v0, z0, -hx * e0, -hy * e0, -hw * e0)
                    _corner_grad(gv, b, i1, u1, v1, z1, -hx * e1, -hy * e1, -hw * e1)
                    _corner_grad(gv, b, i2, u2, v2, z2, -hx * e2, -hy * e2, -hw * e2)
            if need_a:
                for c in range(C):
                    g = gout[b, y, x, c]
                    ga[b, a0, c] += w0 * g
                    ga[b, a1, c] += w1 * g
                    ga[b, a2, c] += w2 * g


@njit(cache=True, nogil=True, error_model="numpy")
def visibility_kernel(vs, faces, depth, mask, near, rel_eps, out):
    """Per-vertex visibility ``out (B, V) bool`` (semantics: ``rasterize.vertex_visibility``)."""
    B = vs.shape[0]
    V = vs.shape[1]
    F = faces.shape[0]
    H = depth.shape[1]
    W = depth.shape[2]
    front = np.zeros(V, np.bool_)
    for b in range(B):
        front[:] = False
        for f in range(F):
            i0 = faces[f, 0]
            i1 = faces[f, 1]
            i2 = faces[f, 2]
            u0 = np.float64(vs[b, i0, 0])
            v0 = np.float64(vs[b, i0, 1])
            e1u = np.float64(vs[b, i1, 0]) - u0
            e1v = np.float64(vs[b, i1, 1]) - v0
            e2u = np.float64(vs[b, i2, 0]) - u0
            e2v = np.float64(vs[b, i2, 1]) - v0
            T = e1u * e2v - e2u * e1v
            zs = np.sign(vs[b, i0, 2]) * np.sign(vs[b, i1, 2]) * np.sign(vs[b, i2, 2])
            if T * zs < 0.0:
                front[i0] = True
                front[i1] = True
                front[i2] = True
        for i in range(V):
            u = np.float64(vs[b, i, 0])
            v = np.float64(vs[b, i, 1])
            z = np.float64(vs[b, i, 2])
            ok = front[i] and u >= -0.5 and u < W - 0.5 and v >= -0.5 and v < H - 0.5 and z > near
            if ok:
                x0 = int(math.floor(u))
                y0 = int(math.floor(v))
                dmax = -_INF
                for dy in range(2):
                    for dx in range(2):
                        xx = x0 + dx
                        yy = y0 + dy
                        if xx >= 0 and xx < W and yy >= 0 and yy < H:
                            d = np.float64(depth[b, yy, xx]) if mask[b, yy, xx] else _INF
                            dmax = max(dmax, d)
                ok = z <= dmax * (1.0 + rel_eps)
            out[b, i] = ok
