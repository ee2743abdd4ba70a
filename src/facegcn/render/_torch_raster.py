"""Pure-torch rasterizer and interpolation (CUDA path, and the naive reference on CPU).

Same geometry as the numba kernels (see ``_numba_kernels``): homogeneous barycentrics
``e = M^-1 (x, y, 1)``, covered iff ``s = sum(e) > 0`` and ``e >= 0``, depth ``1/s`` clipped to
``[near, far]``. Vectorised per triangle: every triangle's pixel bounding box is enumerated
(ragged ``repeat_interleave``), the tests are evaluated for all candidates, and the z-buffer is a
``scatter_reduce(amin)`` on an int64 key ``(float32 depth bits << 32) | triangle id`` (positive
floats order like their bit patterns), so the nearest fragment wins and ties go to the lowest id.
Triangles are processed in chunks holding at most ``max_candidates`` pixel candidates so memory
stays bounded whatever the triangle sizes.

Coverage is decided in float64 on every device (homogeneous products ``u * z`` cancel badly in
float32); interpolation recomputes barycentrics in the input dtype with pixel-relative
screen-space areas, which is accurate in float32.

Host synchronisation (GPU): one per :func:`rasterize_torch` call, the ``cumsum(...).cpu()`` that
sizes the candidate buffer (``repeat_interleave(..., output_size=n)`` then needs none); on a GPU
the triangles and fragments are not compacted with ``nonzero()`` (each one a stall) but masked:
fixed shapes, rejected candidates carry the empty key. Barycentrics and :func:`interpolate_torch`
work on every pixel with the background masked to 0, so they need no sync at all. On a CPU,
where a sync costs nothing, the compact form is kept (it is the faster one there; both give the
same fragments, tests/render/test_render_fixed_view.py).
"""

from __future__ import annotations

import numpy as np
import torch

_BIG = torch.iinfo(torch.int64).max
COMPACT_ON_CPU = True  # False: the GPU form (fixed shapes, no nonzero) on the CPU too (tests)


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # written out (same expression order as the numba kernel) so that a shared edge gives
    # exactly negated rows in its two triangles: watertight inside tests
    return torch.stack(
        [
            a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
            a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
            a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0],
        ],
        -1,
    )


def homogeneous_inverse(p0: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor):
    """Rows of ``M^-1`` for ``M = [P0 P1 P2]``, ``P = (u z, v z, z)`` from screen ``(u, v, z)``.

    Inputs ``(..., 3)`` screen vertices; returns ``(r0, r1, r2, det)`` with rows ``(..., 3)``
    (not yet divided by ``det``).
    """
    a = torch.cat([p0[..., :2] * p0[..., 2:3], p0[..., 2:3]], -1)
    b = torch.cat([p1[..., :2] * p1[..., 2:3], p1[..., 2:3]], -1)
    c = torch.cat([p2[..., :2] * p2[..., 2:3], p2[..., 2:3]], -1)
    r0 = _cross(b, c)
    r1 = _cross(c, a)
    r2 = _cross(a, b)
    det = (a[..., 0] * r0[..., 0] + a[..., 1] * r0[..., 1]) + a[..., 2] * r0[..., 2]
    return r0, r1, r2, det


def _edge_eval(R: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``R[..., k, 0] x + (R[..., k, 1] y + R[..., k, 2])`` for ``R (N, 3, 3)``, ``x, y (N,)``."""
    return R[..., 0] * x.unsqueeze(-1) + (R[..., 1] * y.unsqueeze(-1) + R[..., 2])


def _clipped_boxes(tv: torch.Tensor, near: float):
    """Screen boxes ``(xmin, xmax, ymin, ymax)`` of triangles ``tv (N, 3, 3)`` clipped at ``near``."""
    z = tv[..., 2]
    front = z > near
    inf = torch.full_like(z, float("inf"))
    xs = [torch.where(front, tv[..., 0], inf), torch.where(front, tv[..., 0], -inf)]
    ys = [torch.where(front, tv[..., 1], inf), torch.where(front, tv[..., 1], -inf)]
    mins_x, maxs_x, mins_y, maxs_y = [xs[0]], [xs[1]], [ys[0]], [ys[1]]
    for k in range(3):
        a = tv[:, k]
        b = tv[:, (k + 1) % 3]
        cross = (a[:, 2] > near) != (b[:, 2] > near)
        t = (near - a[:, 2]) / torch.where(cross, b[:, 2] - a[:, 2], torch.ones_like(a[:, 2]))
        X = a[:, 0] * a[:, 2] + t * (b[:, 0] * b[:, 2] - a[:, 0] * a[:, 2])
        Y = a[:, 1] * a[:, 2] + t * (b[:, 1] * b[:, 2] - a[:, 1] * a[:, 2])
        uc, vc = X / near, Y / near
        inf1 = torch.full_like(uc, float("inf"))
        mins_x.append(torch.where(cross, uc, inf1)[:, None])
        maxs_x.append(torch.where(cross, uc, -inf1)[:, None])
        mins_y.append(torch.where(cross, vc, inf1)[:, None])
        maxs_y.append(torch.where(cross, vc, -inf1)[:, None])
    return (
        torch.cat(mins_x, 1).amin(1),
        torch.cat(maxs_x, 1).amax(1),
        torch.cat(mins_y, 1).amin(1),
        torch.cat(maxs_y, 1).amax(1),
    )


def rasterize_torch(
    verts_px: torch.Tensor,
    faces: torch.Tensor,
    size: tuple[int, int],
    near: float,
    far: float,
    max_candidates: int | None = None,
):
    """Returns ``(tri_id int64, bary float32, depth float32, mask bool)`` like the numba kernel."""
    H, W = int(size[0]), int(size[1])
    device = verts_px.device
    cdt = torch.float64
    if max_candidates is None:
        max_candidates = (1 << 18) if device.type == "cpu" else (1 << 22)
    B, V = verts_px.shape[:2]
    F = faces.shape[0]
    vs = verts_px.detach().to(cdt)
    tv = vs[:, faces].reshape(B * F, 3, 3)  # (B*F, vertex, uvz)
    z = tv[..., 2]
    all_front = (z > near).all(1)
    any_front = (z > near).any(1)
    xmin = tv[..., 0].amin(1)
    xmax = tv[..., 0].amax(1)
    ymin = tv[..., 1].amin(1)
    ymax = tv[..., 1].amax(1)
    crossing = any_front & ~all_front
    # On a CPU, compact to the triangles and fragments that matter (nonzero() costs nothing there);
    # on a GPU keep fixed shapes and mask instead: nonzero() would stall the stream every call.
    compact = device.type == "cpu" and COMPACT_ON_CPU
    if not compact:  # boxes of the triangles crossing the near plane: computed for all, selected
        cx0, cx1, cy0, cy1 = _clipped_boxes(tv, near)
        xmin, xmax = torch.where(crossing, cx0, xmin), torch.where(crossing, cx1, xmax)
        ymin, ymax = torch.where(crossing, cy0, ymin), torch.where(crossing, cy1, ymax)
    elif bool(crossing.any()):
        ci = crossing.nonzero().squeeze(1)
        cx0, cx1, cy0, cy1 = _clipped_boxes(tv[ci], near)
        xmin[ci], xmax[ci], ymin[ci], ymax[ci] = cx0, cx1, cy0, cy1
    finite = torch.isfinite(xmin) & torch.isfinite(xmax) & torch.isfinite(ymin) & torch.isfinite(ymax)
    big = float(max(H, W) + 1)  # keep ceil/floor and the casts finite; such boxes are rejected by ``ok``
    x0 = torch.ceil(xmin.clamp(-big, big)).clamp(min=0)
    x1 = torch.floor(xmax.clamp(-big, big)).clamp(max=W - 1)
    y0 = torch.ceil(ymin.clamp(-big, big)).clamp(min=0)
    y1 = torch.floor(ymax.clamp(-big, big)).clamp(max=H - 1)
    r0, r1, r2, det = homogeneous_inverse(tv[:, 0], tv[:, 1], tv[:, 2])
    ok = any_front & finite & (x0 <= x1) & (y0 <= y1) & (det != 0) & torch.isfinite(det)
    sgn = torch.where(det < 0, -1.0, 1.0).to(cdt).view(-1, 1, 1)
    R = torch.stack([r0, r1, r2], 1) * sgn  # (B*F, 3 rows, 3), exact sign flip
    adet = det.abs()
    bx0 = x0.long()
    by0 = y0.long()
    bw = torch.where(ok, x1.long() - bx0 + 1, 0)
    bh = torch.where(ok, y1.long() - by0 + 1, 0)
    area = bw * bh  # 0 for rejected triangles: they get no candidates
    idx = ok.nonzero().squeeze(1) if compact else torch.arange(B * F, device=device)
    if compact:
        R, adet, bx0, by0, bw, area = R[idx], adet[idx], bx0[idx], by0[idx], bw[idx], area[idx]
    img = idx // F
    fid = idx % F

    key = torch.full((B * H * W,), _BIG, dtype=torch.int64, device=device)
    inv_near = 1.0 / near
    inv_far = 1.0 / far if far != float("inf") else 0.0
    csum = torch.cumsum(area, 0).cpu().numpy()  # the one host sync: candidate counts size the chunks
    n = idx.numel()
    start = 0
    while start < n:
        base = int(csum[start - 1]) if start > 0 else 0
        # largest end with csum[end-1] - base <= max_candidates (at least one triangle)
        end = max(start + int(np.searchsorted(csum[start:], base + max_candidates, side="right")), start + 1)
        cnt = int(csum[end - 1]) - base
        sl = slice(start, end)
        start = end
        if cnt == 0:
            continue
        a = area[sl]
        tri_local = torch.repeat_interleave(torch.arange(end - sl.start, device=device), a, output_size=cnt)
        offs = torch.arange(cnt, device=device) - (torch.cumsum(a, 0) - a).repeat_interleave(a, output_size=cnt)
        w_ = bw[sl][tri_local]
        px = bx0[sl][tri_local] + offs % w_
        py = by0[sl][tri_local] + offs // w_
        e = _edge_eval(R[sl][tri_local], px.to(cdt), py.to(cdt))  # (M, 3)
        S = (e[:, 0] + e[:, 1]) + e[:, 2]
        s = S / adet[sl][tri_local]
        inside = (e >= 0).all(-1) & (S > 0) & (s <= inv_near) & (s >= inv_far)
        if compact:
            sel = inside.nonzero().squeeze(1)
            tri_local, px, py, S = tri_local[sel], px[sel], py[sel], S[sel]
        depth32 = (adet[sl][tri_local] / S).to(torch.float32)
        k = (depth32.view(torch.int32).to(torch.int64) << 32) | fid[sl][tri_local]
        pix = (img[sl][tri_local] * H + py) * W + px
        key.scatter_reduce_(0, pix, k if compact else torch.where(inside, k, _BIG), reduce="amin")

    covered = key != _BIG
    tri_id = torch.where(covered, key & 0xFFFFFFFF, torch.full_like(key, -1)).view(B, H, W)
    mask = covered.view(B, H, W)
    bary, depth = barycentrics_torch(vs, faces, tri_id)
    return tri_id, bary.to(torch.float32), depth.to(torch.float32), mask


def _gather_tri(values: torch.Tensor, b: torch.Tensor, fidx: torch.Tensor) -> torch.Tensor:
    """``values[b, fidx]`` for ``values (B, V, C)``, ``b (N,)``, ``fidx (N, 3)`` → ``(N, 3, C)``
    via ``index_select`` on the flattened tensor (cheap backward: ``index_add``)."""
    B, V, C = values.shape
    idx = (b.unsqueeze(1) * V + fidx).reshape(-1)
    return values.reshape(B * V, C).index_select(0, idx).view(-1, 3, C)


def _bary_at(p: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    """Perspective-correct barycentrics ``(N, 3)`` and depth ``(N,)`` at pixel centres ``(x, y)``
    of triangles with screen vertices ``p (N, 3, 3)``; differentiable (autograd).

    Uses the screen-space form ``w_k = (A_k / z_k) / sum_j (A_j / z_j)``, depth
    ``= sum_j A_j / sum_j (A_j / z_j)`` with ``A_k`` the signed area of (opposite edge, pixel)
    computed from pixel-relative coordinates — algebraically identical to the homogeneous form
    (``E_k = z_{k+1} z_{k+2} A_k``) but accurate in float32 (no ``u * z`` cancellations).
    """
    du = p[..., 0] - x.to(p.dtype).unsqueeze(1)
    dv = p[..., 1] - y.to(p.dtype).unsqueeze(1)
    z = p[..., 2]
    a0 = du[:, 1] * dv[:, 2] - du[:, 2] * dv[:, 1]
    a1 = du[:, 2] * dv[:, 0] - du[:, 0] * dv[:, 2]
    a2 = du[:, 0] * dv[:, 1] - du[:, 1] * dv[:, 0]
    A = torch.stack([a0, a1, a2], 1)
    wz = A / z
    S = wz.sum(1, keepdim=True)
    return wz / S, A.sum(1) / S.squeeze(1)


def _pixels(tri_id: torch.Tensor):
    """Every pixel's image, row, column and (clamped) triangle, and the coverage mask — computed
    for all pixels and masked, so that no ``nonzero()`` (a host sync on a GPU) is needed."""
    B, H, W = tri_id.shape
    flat = tri_id.reshape(-1)
    lin = torch.arange(flat.numel(), device=flat.device)
    b = torch.div(lin, H * W, rounding_mode="floor")
    rem = lin - b * (H * W)
    y = torch.div(rem, W, rounding_mode="floor")
    x = rem - y * W
    valid = flat >= 0
    return b, y, x, flat.clamp(min=0), valid


def _masked_bary(p: torch.Tensor, x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor):
    """:func:`_bary_at` where ``valid``, 0 elsewhere, with safe denominators (finite gradients)."""
    du = p[..., 0] - x.to(p.dtype).unsqueeze(1)
    dv = p[..., 1] - y.to(p.dtype).unsqueeze(1)
    z = torch.where(valid.unsqueeze(1), p[..., 2], torch.ones_like(p[..., 2]))
    a0 = du[:, 1] * dv[:, 2] - du[:, 2] * dv[:, 1]
    a1 = du[:, 2] * dv[:, 0] - du[:, 0] * dv[:, 2]
    a2 = du[:, 0] * dv[:, 1] - du[:, 1] * dv[:, 0]
    A = torch.stack([a0, a1, a2], 1)
    wz = A / z
    S = wz.sum(1, keepdim=True)
    ok = valid.unsqueeze(1) & (S != 0)
    S = torch.where(ok, S, torch.ones_like(S))
    w = torch.where(ok, wz / S, torch.zeros_like(wz))
    d = torch.where(ok.squeeze(1), A.sum(1) / S.squeeze(1), torch.zeros_like(S.squeeze(1)))
    return w, d


def barycentrics_torch(verts_px: torch.Tensor, faces: torch.Tensor, tri_id: torch.Tensor):
    """Perspective-correct barycentrics ``(B, H, W, 3)`` and depth ``(B, H, W)`` at pixel centres,
    differentiable w.r.t. ``verts_px`` (autograd). Zero where ``tri_id < 0``."""
    B, H, W = tri_id.shape
    if faces.shape[0] == 0:  # nothing covered
        return verts_px.new_zeros(B, H, W, 3), verts_px.new_zeros(B, H, W)
    b, y, x, t, valid = _pixels(tri_id)
    p = _gather_tri(verts_px, b, faces.index_select(0, t))
    w, d = _masked_bary(p, x, y, valid)
    return w.view(B, H, W, 3), d.view(B, H, W)


def interpolate_torch(
    attr: torch.Tensor,
    faces: torch.Tensor,
    tri_id: torch.Tensor,
    verts_px: torch.Tensor | None,
    bary: torch.Tensor | None,
    attr_faces: torch.Tensor,
):
    """Gather-based interpolation ``(B, H, W, C)`` over every pixel (background masked to 0);
    autograd gives gradients w.r.t. ``attr`` and (when ``verts_px`` is given) the vertex positions.
    No host synchronisation (no ``nonzero``), so it can run in CUDA loops without stalls."""
    B, H, W = tri_id.shape
    C = attr.shape[-1]
    if faces.shape[0] == 0:
        return attr.new_zeros(B, H, W, C)
    b, y, x, t, valid = _pixels(tri_id)
    if verts_px is not None:
        p = _gather_tri(verts_px, b, faces.index_select(0, t))
        w, _ = _masked_bary(p, x, y, valid)
    else:
        w = bary.reshape(-1, 3) * valid.unsqueeze(1).to(bary.dtype)
    av = _gather_tri(attr, b, attr_faces.index_select(0, t))  # (N, 3, C)
    vals = (w.to(attr.dtype).unsqueeze(-1) * av).sum(1)
    return vals.view(B, H, W, C)
