"""Differentiable attribute interpolation (nvdiffrast ``interpolate`` contract) and silhouette
anti-aliasing (nvdiffrast ``antialias``-style).

:func:`interpolate` returns ``out[b, y, x] = sum_k w_k * attr[b, attr_faces[t, k]]`` with
``t = fragments.tri_id[b, y, x]`` and ``w`` the perspective-correct barycentrics of pixel centre
``(x, y)``; background pixels are 0. When ``verts_px`` is passed, ``w`` is *recomputed* from those
positions (not read from the fragments), so gradients flow to the vertex positions as well as to
the attributes: inside a triangle the output is a smooth function of the three vertices. Gradients
caused by visibility changes at silhouettes (coverage) are not part of this; they come from
:func:`antialias`.

CPU tensors use numba kernels with a hand-written backward (float64 arithmetic, output in the
attribute dtype, so ``torch.autograd.gradcheck`` works in float64); other devices use a
gather-based pure-torch implementation differentiated by autograd.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from facegcn.render._parallel import get_num_threads, row_splits, run_tasks
from facegcn.render._torch_raster import interpolate_torch
from facegcn.render.rasterize import Fragments, face_adjacency, face_front_facing

__all__ = ["interpolate", "antialias"]


def _splits(B: int, H: int, nt: int) -> list[tuple[int, int, int]]:
    """(chunk, ya, yb) row ranges per image so that about ``nt`` tasks exist in total."""
    k = -(-nt // B) if B < nt else 1
    return [(c, ya, yb) for c, (ya, yb) in enumerate(row_splits(H, k))]


def _kernel_inputs(attr, verts_px, tri_id, bary, pfaces, afaces, use_bary: bool):
    """Contiguous numpy views for the numba kernels; the unused one of (verts_px, bary) becomes a
    tiny dummy array of the kernel's expected rank."""
    a_np = attr.detach().contiguous().numpy()
    if use_bary:
        vs_np = np.zeros((1, 1, 3), a_np.dtype)
        bary_np = bary.detach().contiguous().numpy()
    else:
        vs_np = verts_px.detach().contiguous().numpy()
        bary_np = np.zeros((1, 1, 1, 3), np.float32)
    return a_np, vs_np, bary_np, tri_id.contiguous().numpy(), pfaces.contiguous().numpy(), afaces.contiguous().numpy()


class _NumbaInterpolate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, attr, verts_px, tri_id, bary, pfaces, afaces):
        from facegcn.render._numba_kernels import interpolate_fwd_rows

        use_bary = verts_px is None
        a_np, vs_np, bary_np, tri_np, pf, af = _kernel_inputs(attr, verts_px, tri_id, bary, pfaces, afaces, use_bary)
        B, H, W = tri_np.shape
        out = np.empty((B, H, W, a_np.shape[2]), a_np.dtype)
        nt = get_num_threads()
        run_tasks(
            [
                partial(interpolate_fwd_rows, vs_np, pf, af, a_np, tri_np, bary_np, use_bary, b, ya, yb, out)
                for b in range(B)
                for _, ya, yb in _splits(B, H, nt)
            ],
            nt,
        )
        # keep tensors via save_for_backward (in-place modification checks); numpy views later
        ctx.save_for_backward(attr, verts_px, tri_id, bary if use_bary else None, pfaces, afaces)
        ctx.use_bary = use_bary
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, gout):
        from facegcn.render._numba_kernels import interpolate_bwd_rows

        attr, verts_px, tri_id, bary, pfaces, afaces = ctx.saved_tensors
        use_bary = ctx.use_bary
        a_np, vs_np, bary_np, tri_np, pf, af = _kernel_inputs(attr, verts_px, tri_id, bary, pfaces, afaces, use_bary)
        need_a = bool(ctx.needs_input_grad[0])
        need_v = bool(ctx.needs_input_grad[1]) and not use_bary
        if not (need_a or need_v):
            return None, None, None, None, None, None
        B, H, _ = tri_np.shape
        nt = get_num_threads()
        splits = _splits(B, H, nt)
        k = len(splits)
        g_np = gout.detach().to(attr.dtype).contiguous().numpy()
        gv = (
            np.zeros((k, B, vs_np.shape[1], 3), vs_np.dtype)
            if need_v
            else np.zeros((k, 1, 1, 3), vs_np.dtype)
        )
        ga = (
            np.zeros((k,) + a_np.shape, a_np.dtype)
            if need_a
            else np.zeros((k, 1, 1, a_np.shape[2]), a_np.dtype)
        )
        run_tasks(
            [
                partial(
                    interpolate_bwd_rows, vs_np, pf, af, a_np, tri_np, bary_np, use_bary, g_np,
                    need_v, need_a, b, ya, yb, gv[c], ga[c],
                )  # fmt: skip
                for b in range(B)
                for c, ya, yb in splits
            ],
            nt,
        )
        g_attr = g_v = None  # chunk sums in numpy (single-threaded; torch's pool may stall)
        if need_a:
            g_attr = torch.from_numpy(ga[0] if k == 1 else ga.sum(0))
        if need_v:
            g_v = torch.from_numpy(gv[0] if k == 1 else gv.sum(0))
        return g_attr, g_v, None, None, None, None


def interpolate(
    attr: torch.Tensor,
    faces: torch.Tensor,
    fragments: Fragments,
    verts_px: torch.Tensor | None = None,
    *,
    attr_faces: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Interpolate per-vertex attributes over the rasterized pixels → ``(B, H, W, C)``.

    ``attr``: ``(B, Va, C)`` or ``(Va, C)`` (shared by the batch). ``faces``: the ``(F, 3)``
    position faces that were rasterized. ``verts_px``: the screen-space vertices ``(B, V, 3)`` that
    were rasterized (non-detached): barycentrics are recomputed from them so the result is
    differentiable w.r.t. positions; if ``None`` the fragments' barycentrics are used (gradients
    w.r.t. ``attr`` only). ``attr_faces``: optional ``(F, 3)`` indices into ``attr`` when the
    attribute has its own topology (e.g. UV seams); defaults to ``faces``.

    Layout note: channels-last like nvdiffrast; ``out.permute(0, 3, 1, 2)`` gives ``(B, C, H, W)``.
    """
    tri_id = fragments.tri_id
    B, H, W = tri_id.shape
    if attr.dim() == 2:
        attr = attr.unsqueeze(0).expand(B, -1, -1)
    if attr.dim() != 3 or attr.shape[0] != B:
        raise ValueError(f"attr must be (B, V, C) or (V, C) with B={B}, got {tuple(attr.shape)}")
    dev = attr.device
    faces = faces.to(dev, torch.int64)
    attr_faces = faces if attr_faces is None else attr_faces.to(dev, torch.int64)
    if attr_faces.shape != faces.shape:
        raise ValueError("attr_faces must have the same shape as faces")
    if verts_px is not None and (verts_px.dim() != 3 or verts_px.shape[0] != B):
        raise ValueError(f"verts_px must be (B, V, 3) with B={B}, got {tuple(verts_px.shape)}")
    if backend == "auto":
        backend = "numba" if dev.type == "cpu" else "torch"
    if backend == "numba":
        if dev.type != "cpu" or (verts_px is not None and verts_px.device.type != "cpu"):
            raise ValueError("the numba backend needs CPU tensors")
        if attr.dtype not in (torch.float32, torch.float64):
            attr = attr.float()
        if verts_px is not None and verts_px.dtype not in (torch.float32, torch.float64):
            verts_px = verts_px.float()
        return _NumbaInterpolate.apply(
            attr, verts_px, tri_id.to(torch.int64), fragments.bary, faces, attr_faces
        )
    if backend == "torch":
        return interpolate_torch(
            attr, faces, tri_id.to(dev), verts_px, fragments.bary.to(dev), attr_faces
        )
    raise ValueError(f"unknown backend {backend!r} (auto, numba, torch)")


def antialias(
    color: torch.Tensor,
    fragments: Fragments,
    verts_px: torch.Tensor,
    faces: torch.Tensor,
    *,
    adjacency: torch.Tensor | None = None,
    near: float = 0.1,
) -> torch.Tensor:
    """Silhouette anti-aliasing of a rendered ``color (B, H, W, C)`` (nvdiffrast-style analytic AA).

    For every pair of horizontally or vertically adjacent pixels ``P, Q`` showing different
    triangles, the nearer triangle ``t`` (the one at ``P``) is checked for a *silhouette* edge
    (a mesh boundary edge, or an edge whose neighbour triangle faces the other way) crossing the
    segment between the two pixel centres at fraction ``a`` from ``P`` (falling back to the
    silhouette edges of ``t``'s three neighbours, for mesh corners). Then the pixel on the far
    side of the midpoint is blended: ``Q += (a - 1/2)(C_P - C_Q)`` if ``a > 1/2`` else
    ``P += (1/2 - a)(C_Q - C_P)``. The blend weight depends on the projected edge position, so
    gradients reach the silhouette vertices (coverage gradients), and on the colours.
    Composite the background into ``color`` *before* calling this. ``adjacency`` is
    :func:`face_adjacency` ``(faces)`` (computed and cached when omitted).
    """
    B, H, W, C = color.shape
    dev = color.device
    faces = faces.to(dev, torch.int64)
    adj = face_adjacency(faces) if adjacency is None else adjacency.to(dev, torch.int64)
    tri = fragments.tri_id.to(dev)
    depth = fragments.depth.to(dev, torch.float32).masked_fill(~fragments.mask.to(dev), float("inf"))
    front = face_front_facing(verts_px, faces)  # (B, F)
    # silhouette edges (B, F, 3): boundary, or the neighbour across the edge faces the other way
    nb = adj.unsqueeze(0).expand(B, -1, -1)
    nb_front = torch.gather(front, 1, nb.clamp(min=0).reshape(B, -1)).view_as(nb)
    sil_edge = (nb < 0) | (nb_front != front.unsqueeze(-1))
    has_sil = sil_edge.any(-1)  # (B, F)
    nb_sil = torch.gather(has_sil, 1, nb.clamp(min=0).reshape(B, -1)).view_as(nb) & (nb >= 0)
    near_sil = has_sil | nb_sil.any(-1)  # a triangle with, or next to one with, a silhouette edge
    flat = color.reshape(B * H * W, C)
    delta_idx = []
    delta_val = []
    for axis in (2, 1):  # 2: horizontal pairs (x, x+1); 1: vertical pairs (y, y+1)
        if axis == 2:
            ta, tb = tri[:, :, :-1], tri[:, :, 1:]
            da, db = depth[:, :, :-1], depth[:, :, 1:]
        else:
            ta, tb = tri[:, :-1, :], tri[:, 1:, :]
            da, db = depth[:, :-1, :], depth[:, 1:, :]
        a_first_all = da <= db
        t_all = torch.where(a_first_all, ta, tb)
        bidx = torch.arange(B, device=dev).view(B, 1, 1).expand_as(t_all)
        cand = (ta != tb) & near_sil[bidx, t_all.clamp(min=0)]
        pb, py, px = cand.nonzero(as_tuple=True)
        if pb.numel() == 0:
            continue
        qy = py + (1 if axis == 1 else 0)
        qx = px + (1 if axis == 2 else 0)
        a_first = a_first_all[pb, py, px]
        # foreground side P and the other side Q
        Py = torch.where(a_first, py, qy)
        Px = torch.where(a_first, px, qx)
        Qy = torch.where(a_first, qy, py)
        Qx = torch.where(a_first, qx, px)
        t = tri[pb, Py, Px]
        sign = (torch.where(a_first, 1, -1)).to(verts_px.dtype)  # direction P → Q along the axis
        alpha = torch.full(t.shape, float("nan"), dtype=verts_px.dtype, device=dev)
        found = torch.zeros(t.shape, dtype=torch.bool, device=dev)
        # candidate silhouette edges: those of t, then those of t's edge neighbours (a silhouette
        # near a mesh corner may belong to the triangle next to the one covering P)
        cands = [t] + [adj[t, j] for j in range(3)]
        for c in cands:
            cv = c >= 0
            cc = c.clamp(min=0)
            tf = faces[cc]  # (N, 3)
            for k in range(3):
                ia = tf[:, k]
                ib = tf[:, (k + 1) % 3]
                sil = cv & sil_edge[pb, cc, k]
                A = verts_px[pb, ia]
                Bv = verts_px[pb, ib]
                if axis == 2:  # crossing of the row y = Py: solve for x
                    along_a, along_b, across_a, across_b = A[:, 0], Bv[:, 0], A[:, 1], Bv[:, 1]
                    p_along, p_across = Px.to(A.dtype), Py.to(A.dtype)
                else:
                    along_a, along_b, across_a, across_b = A[:, 1], Bv[:, 1], A[:, 0], Bv[:, 0]
                    p_along, p_across = Py.to(A.dtype), Px.to(A.dtype)
                den = across_b - across_a
                safe = torch.where(den == 0, torch.ones_like(den), den)
                beta = (p_across - across_a) / safe
                hit = along_a + beta * (along_b - along_a)
                a_k = (hit - p_along) * sign
                ok = (
                    sil
                    & (den != 0)
                    & (beta >= 0)
                    & (beta <= 1)
                    & (a_k >= 0)
                    & (a_k <= 1)
                    & (A[:, 2] > near)
                    & (Bv[:, 2] > near)
                    & ~found
                )
                alpha = torch.where(ok, a_k, alpha)
                found = found | ok
        if not bool(found.any()):
            continue
        sel = found.nonzero(as_tuple=True)[0]
        al = alpha[sel].to(color.dtype)
        b_ = pb[sel]
        P_lin = (b_ * H + Py[sel]) * W + Px[sel]
        Q_lin = (b_ * H + Qy[sel]) * W + Qx[sel]
        cP = flat[P_lin]
        cQ = flat[Q_lin]
        over = al >= 0.5
        w = torch.where(over, al - 0.5, 0.5 - al).unsqueeze(1)
        target = torch.where(over, Q_lin, P_lin)
        val = torch.where(over.unsqueeze(1), cP - cQ, cQ - cP) * w
        delta_idx.append(target)
        delta_val.append(val)
    if not delta_idx:
        return color
    delta = torch.zeros_like(flat).index_add(0, torch.cat(delta_idx), torch.cat(delta_val))
    return (flat + delta).view(B, H, W, C)
