"""What the photo shows of the closed head's parts: the closed mesh posed and rendered with the coarse
fit (per-pixel SH irradiance, triangle ids), albedo samples ``photo / irradiance`` at the pixels of
chosen triangles, and the photo on the visible front of an eyeball. Used by
:mod:`facegcn.refine.parts_color`."""

from __future__ import annotations

import numpy as np
import torch

from facegcn.render import rigid_transform, sh_irradiance

__all__ = ["LUMA", "eyeball_from_photo", "observed", "posed_rendering", "robust_colour"]

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _showing(tri_id: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: the pixels of ``tri_id`` (-1 = none) that show one of the triangles ``tris``."""
    sel = np.zeros(max(int(tri_id.max()), int(tris.max(initial=0))) + 2, bool)
    sel[tris] = True
    return sel[tri_id]  # tri_id -1 → the last entry, False


def posed_rendering(rec, shape: np.ndarray):
    """Render the closed mesh ``shape (V + P, 3)`` with the coarse fit's pose, camera and light:
    per-pixel SH irradiance and triangle ids in the aligned 224² frame."""
    m, c = rec.model, rec.coarse.coeffs
    with torch.no_grad():
        canon = torch.as_tensor(shape, dtype=torch.float32, device=c.id.device)[None]
        verts = rigid_transform(canon, c.angles, c.trans)
        irr = sh_irradiance(m.closed_vertex_normals(verts), c.sh)
        r = rec.synthesis.renderer(verts, irr, faces=m.closed_mesh_faces())
    return r.image[0].cpu().numpy(), r.tri_id[0].cpu().numpy()


def observed(rec, irr: np.ndarray, tri_id: np.ndarray, tris: np.ndarray, erode: bool = True) -> tuple[np.ndarray, int]:
    """Albedo samples ``photo / irradiance`` at the pixels showing closed-mesh triangles ``tris``
    (eroded by a pixel when enough remain: the borders mix in lids and lips)."""
    from scipy.ndimage import binary_erosion

    mask = _showing(tri_id, tris)
    if erode:
        inner = binary_erosion(mask)
        if inner.sum() >= 8:
            mask = inner
    img = rec.observation.image.detach().cpu().numpy().astype(np.float32)
    alb = img[:, mask] / np.maximum(irr[:, mask], 0.05)
    return alb.T, int(mask.sum())


def eyeball_from_photo(rec, shape: np.ndarray, irr: np.ndarray, tri_id: np.ndarray, idx: np.ndarray,
                        tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo on the eyeball's visible vertices: ``photo / irradiance`` read at each vertex of
    ``idx`` (part-vertex ids) whose projected pixel, shrunk by one pixel from the lids, shows one
    of the eyeball triangles ``tris`` (closed-mesh ids). What the lids and lashes leave of the eye —
    the lash shadow across its top, the iris where the person looks — comes with it.

    Returns:
        ``(albedo (len(idx), 3) float32, seen (len(idx),) bool)``.
    """
    from scipy.ndimage import binary_erosion

    from facegcn.render.bake import _sample_bilinear

    m, c = rec.model, rec.coarse.coeffs
    with torch.no_grad():
        canon = torch.as_tensor(shape[m.n_vertices + idx], dtype=torch.float32, device=c.id.device)[None]
        px = rec.synthesis.camera.project(rigid_transform(canon, c.angles, c.trans))[0].cpu().double().numpy()
    mask = binary_erosion(_showing(tri_id, tris))
    ij = np.rint(px).astype(np.int64)
    h, w = mask.shape
    inb = (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
    seen = np.zeros(len(idx), bool)
    seen[inb] = mask[ij[inb, 1], ij[inb, 0]]
    img = rec.observation.image.detach().cpu().numpy().astype(np.float32)
    ratio = (img / np.maximum(irr, 0.05)).transpose(1, 2, 0)
    alb, _ = _sample_bilinear(np.ascontiguousarray(ratio), px)
    return np.clip(alb, 0.0, 1.0).astype(np.float32), seen


def robust_colour(samples: np.ndarray, drop_top: float) -> np.ndarray:
    lum = samples @ LUMA
    keep = lum <= np.quantile(lum, 1 - drop_top)
    return np.median(samples[keep], 0).astype(np.float32)
