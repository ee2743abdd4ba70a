"""Rasterization: a batch of meshes → per-pixel triangle id, barycentrics, depth, coverage.

Conventions
-----------
* Input vertices are in **screen space** ``verts_px = (u, v, z_cam)`` ``(B, V, 3)`` as returned
  by :meth:`PerspectiveCamera.to_screen`; faces ``(F, 3)`` int64 are shared by the batch.
* **Sampling**: coverage is tested at pixel centres, which are at integer coordinates
  (pixel ``(i, j)`` ↔ ``(u=j, v=i)``, see :mod:`facegcn.render.camera`). A pixel centre lying
  exactly on an edge belongs to both triangles (inclusive test); the z-buffer then decides.
* **Z-buffer**: nearest fragment (smallest camera depth) wins; exact depth ties go to the lowest
  triangle id (deterministic, independent of thread count).
* **Near/far clipping**: per fragment: a pixel is kept only if the surface depth there lies in
  ``[near, far]``. Triangles crossing the near plane (even ones crossing the camera plane
  ``z = 0``) are clipped exactly, never discarded or wrapped.
* **Back-face policy**: *no culling*. Back-facing triangles are rasterized and take part in the
  depth test like any other (a closed mesh hides its back faces by depth alone; an open mesh such
  as a face shell shows its inside when seen from behind). Front-facing = counter-clockwise in the
  world frame as seen from the camera (outward normal ``(v1-v0) x (v2-v0)`` points to the camera;
  the BFM / Deep3DFaceRecon and ICT winding), i.e. clockwise on the image (rows down).
  :func:`vertex_visibility` = inside the image and in front of the near plane AND at least one
  incident triangle front-facing AND passes the depth test against the z-buffer.
* Outputs: ``tri_id (B, H, W)`` int64, -1 = background; ``bary (B, H, W, 3)`` float32
  perspective-correct barycentrics w.r.t. ``faces[tri_id]`` (0 on background); ``depth
  (B, H, W)`` float32 camera depth (0 on background); ``mask (B, H, W)`` bool.

Backends: ``"numba"`` (CPU tensors; images / row bands in parallel threads) and
``"torch"`` (any device; vectorised and chunked; also the naive reference). ``"auto"`` picks
numba for CPU tensors and torch otherwise. Rasterization itself is not differentiable; gradients
w.r.t. positions come from :func:`facegcn.render.interpolate` (nvdiffrast-style).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from facegcn.render._parallel import get_num_threads, row_splits, run_tasks
from facegcn.render._torch_raster import rasterize_torch

__all__ = [
    "Fragments",
    "rasterize",
    "vertex_visibility",
    "face_front_facing",
    "face_adjacency",
]


@dataclass(frozen=True)
class Fragments:
    """Rasterizer output; see the module docstring for the exact conventions."""

    tri_id: torch.Tensor  # (B, H, W) int64, -1 = background
    bary: torch.Tensor  # (B, H, W, 3) float32
    depth: torch.Tensor  # (B, H, W) float32, 0 = background
    mask: torch.Tensor  # (B, H, W) bool

    @property
    def size(self) -> tuple[int, int]:
        return int(self.tri_id.shape[1]), int(self.tri_id.shape[2])


def _check(verts_px: torch.Tensor, faces: torch.Tensor):
    if verts_px.dim() != 3 or verts_px.shape[-1] != 3:
        raise ValueError(f"verts_px must be (B, V, 3), got {tuple(verts_px.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    if faces.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"faces must be an integer tensor, got {faces.dtype}")


def _numba_backend_ok(t: torch.Tensor) -> bool:
    return t.device.type == "cpu"


def _np_verts(verts_px: torch.Tensor) -> np.ndarray:
    v = verts_px.detach()
    if v.dtype not in (torch.float32, torch.float64):
        v = v.float()
    return v.contiguous().numpy()


def _np_faces(faces: torch.Tensor) -> np.ndarray:
    return faces.detach().to(torch.int64).contiguous().cpu().numpy()


def rasterize(
    verts_px: torch.Tensor,
    faces: torch.Tensor,
    size: tuple[int, int],
    *,
    near: float = 0.1,
    far: float = float("inf"),
    backend: str = "auto",
    threads: int | None = None,
) -> Fragments:
    """Rasterize ``B`` meshes (screen-space ``verts_px (B, V, 3)``, shared ``faces (F, 3)``).

    ``size = (H, W)``. Returns :class:`Fragments`. Not differentiable (ids are discrete); use
    :func:`interpolate` with ``verts_px`` for gradients. ``threads`` overrides the numba
    backend's thread count (default :func:`facegcn.render.get_num_threads`).
    """
    _check(verts_px, faces)
    H, W = int(size[0]), int(size[1])
    if not near > 0:
        raise ValueError("near must be > 0")
    if backend == "auto":
        backend = "numba" if _numba_backend_ok(verts_px) else "torch"
    B = verts_px.shape[0]
    if backend == "numba":
        if not _numba_backend_ok(verts_px):
            raise ValueError("the numba backend needs CPU tensors")
        from facegcn.render._numba_kernels import rasterize_tasks

        out = (
            torch.empty((B, H, W), dtype=torch.int64),
            torch.empty((B, H, W, 3), dtype=torch.float32),
            torch.empty((B, H, W), dtype=torch.float32),
            torch.empty((B, H, W), dtype=torch.bool),
        )
        tri, bary, depth, mask = (t.numpy() for t in out)
        vs = _np_verts(verts_px)
        fs = _np_faces(faces)
        nt = get_num_threads() if threads is None else max(1, int(threads))
        bands = row_splits(H, -(-nt // B)) if B < nt else [(0, H)]
        items = np.array([(b, ya, yb) for b in range(B) for ya, yb in bands], np.int64)
        groups = np.array_split(items, min(nt, len(items)))  # one z-buffer per thread
        run_tasks(
            [
                partial(rasterize_tasks, vs, fs, g, float(near), float(far), tri, bary, depth, mask)
                for g in groups
            ],
            nt,
        )
        return Fragments(*out)
    if backend == "torch":
        tri, bary, depth, mask = rasterize_torch(
            verts_px, faces.to(verts_px.device, torch.int64), (H, W), float(near), float(far)
        )
        return Fragments(tri, bary, depth, mask)
    raise ValueError(f"unknown backend {backend!r} (auto, numba, torch)")


def face_front_facing(verts_px: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """``(B, F)`` bool: triangle is front-facing (CCW in the world as seen from the camera).

    Front-facing ⇔ ``det [P0 P1 P2] < 0`` for the homogeneous screen vertices
    ``P = (u z, v z, z)`` (image rows point down). Evaluated as
    ``sign(z0 z1 z2) * T`` with ``T`` the image-space signed area, which is the same sign, stays
    meaningful for triangles crossing the camera plane, and is accurate in float32.
    """
    f = faces.to(verts_px.device, torch.int64)
    p = verts_px.detach()
    B, V, _ = p.shape
    F = f.shape[0]
    flat = p.reshape(B * V, 3)
    off = (torch.arange(B, device=p.device) * V).view(B, 1)
    p0, p1, p2 = (
        flat.index_select(0, (f[:, k].view(1, F) + off).reshape(-1)).view(B, F, 3) for k in range(3)
    )
    e1 = p1[..., :2] - p0[..., :2]
    e2 = p2[..., :2] - p0[..., :2]
    T = e1[..., 0] * e2[..., 1] - e2[..., 0] * e1[..., 1]
    zs = torch.sign(p0[..., 2]) * torch.sign(p1[..., 2]) * torch.sign(p2[..., 2])
    return T * zs < 0


def vertex_visibility(
    verts_px: torch.Tensor,
    faces: torch.Tensor,
    fragments: Fragments,
    *,
    near: float = 0.1,
    rel_eps: float = 5e-3,
    backend: str = "auto",
) -> torch.Tensor:
    """``(B, V)`` bool per-vertex visibility.

    A vertex is visible iff (1) it projects inside the image (``-0.5 <= u < W - 0.5``, same for
    ``v``) in front of the near plane, (2) at least one of its triangles is front-facing (see
    :func:`face_front_facing`), and (3) it passes the depth test: its depth is at most
    ``(1 + rel_eps)`` times the *largest* z-buffer depth among the 2x2 pixels around it
    (background pixels count as infinitely far), so a vertex only fails when all its neighbouring
    pixels show something clearly in front of it. Vertices not used by any face are invisible.
    ``backend``: ``"numba"`` (CPU) or ``"torch"``; ``"auto"`` picks by device.
    """
    faces = faces.to(verts_px.device, torch.int64)
    vp = verts_px.detach()
    B, V, _ = vp.shape
    H, W = fragments.size
    if backend == "auto":
        backend = "numba" if _numba_backend_ok(vp) else "torch"
    if backend == "numba":
        from facegcn.render._numba_kernels import visibility_kernel

        out = np.empty((B, V), np.bool_)
        visibility_kernel(
            _np_verts(vp), _np_faces(faces), fragments.depth.contiguous().numpy(),
            fragments.mask.contiguous().numpy(), float(near), float(rel_eps), out,
        )  # fmt: skip
        return torch.from_numpy(out)
    u, v, z = vp[..., 0], vp[..., 1], vp[..., 2]
    inside = (u >= -0.5) & (u < W - 0.5) & (v >= -0.5) & (v < H - 0.5) & (z > near)

    front_f = face_front_facing(vp, faces).to(torch.int32)  # (B, F)
    front_v = torch.zeros(B, V, dtype=torch.int32, device=vp.device)
    idx = faces.reshape(1, -1).expand(B, -1)
    front_v.scatter_reduce_(1, idx, front_f.repeat_interleave(3, dim=1), reduce="amax")

    depth = fragments.depth.to(vp.device, vp.dtype).masked_fill(
        ~fragments.mask.to(vp.device), float("inf")
    )
    uc = torch.nan_to_num(u, nan=-10.0).clamp(-1, W)
    vc = torch.nan_to_num(v, nan=-10.0).clamp(-1, H)
    x0 = torch.floor(uc).long()
    y0 = torch.floor(vc).long()
    dmax = torch.full_like(z, -float("inf"))
    flat = depth.reshape(B, H * W)
    for dy in (0, 1):
        for dx in (0, 1):
            xx = x0 + dx
            yy = y0 + dy
            ok = (xx >= 0) & (xx < W) & (yy >= 0) & (yy < H)
            lin = (yy.clamp(0, H - 1) * W + xx.clamp(0, W - 1))
            d = torch.gather(flat, 1, lin)
            dmax = torch.where(ok, torch.maximum(dmax, d), dmax)
    passes = z <= dmax * (1.0 + rel_eps)
    return inside & front_v.bool() & passes


_ADJ_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()


def face_adjacency(faces: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``(F, 3)`` int64: the face across edge ``k = (v_k, v_{k+1 mod 3})`` of each face, or -1 for
    boundary (and non-manifold) edges. Cached by content (a few entries)."""
    f = faces.detach().cpu().numpy() if isinstance(faces, torch.Tensor) else np.asarray(faces)
    f = np.ascontiguousarray(f, dtype=np.int64)
    key = hashlib.blake2b(f.tobytes(), digest_size=16).hexdigest() + str(f.shape)
    hit = _ADJ_CACHE.get(key)
    if hit is None:
        F = f.shape[0]
        a = f.reshape(-1)
        b = np.roll(f, -1, axis=1).reshape(-1)
        lo = np.minimum(a, b)
        hi = np.maximum(a, b)
        n = int(f.max()) + 1 if F else 1
        keys = lo * n + hi
        order = np.argsort(keys, kind="stable")
        ks = keys[order]
        adj = np.full(F * 3, -1, np.int64)
        # runs of equal keys; pair only edges shared by exactly two faces
        start = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        length = np.diff(np.r_[start, ks.size])
        two = start[length == 2]
        e0 = order[two]
        e1 = order[two + 1]
        adj[e0] = e1 // 3
        adj[e1] = e0 // 3
        hit = adj.reshape(F, 3)
        _ADJ_CACHE[key] = hit
        while len(_ADJ_CACHE) > 8:
            _ADJ_CACHE.popitem(last=False)
    out = torch.from_numpy(hit.copy())
    if isinstance(faces, torch.Tensor):
        out = out.to(faces.device)
    return out
