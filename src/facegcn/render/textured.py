"""Unlit rendering of an exported, UV-textured mesh (:class:`~facegcn.io.textured.TexturedMesh`).

What a viewer shows when it opens ``mesh.obj`` / ``mesh.glb`` without lights: every pixel is the
texture of its material sampled (bilinearly, :func:`~facegcn.render.sample_texture`) at the
perspective-correct interpolated UV of the visible surface, or the interpolated vertex colour for
materials without a texture. No shading, no anti-aliasing (``supersample`` box-filters a finer
render instead).

Posing (:func:`pose_vertices`): the mesh is turned about its bounding-box centre ``c`` with
``R = Rz Ry Rx`` (:func:`~facegcn.render.rotation_matrix`; ``angles = (0, yaw, 0)`` turns the
face to its left for positive yaw), ``v' = R (v - c)``, then seen by a
:class:`~facegcn.render.PerspectiveCamera` on +z. :func:`head_camera` chooses the focal length so
that the whole mesh (its bounding sphere about ``c``) stays inside the frame at every rotation,
so one camera serves all the yaw views of one mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from facegcn.io.textured import TexturedMesh
from facegcn.render.camera import PerspectiveCamera, rigid_transform
from facegcn.render.interpolate import interpolate
from facegcn.render.rasterize import rasterize
from facegcn.render.sampling import sample_texture

__all__ = ["TexturedRendering", "head_camera", "mesh_centre", "pose_vertices", "project_points", "render_textured"]


@dataclass(frozen=True)
class TexturedRendering:
    """Result of :func:`render_textured`.

    Attributes:
        image: ``(3, H, W)`` float32 in [0, 1], composited over the background.
        mask: ``(H, W)`` bool coverage (pixel centre covered by a triangle; with ``supersample``
            k > 1: more than half of its k² sub-pixels covered).
        material: ``(H, W)`` int64 index into ``mesh.materials`` of the visible triangle, -1 on
            background (at the final resolution: the sub-pixel nearest the pixel centre).
        verts_px: ``(V, 3)`` float32 screen-space vertices ``(u, v, z_cam)`` at the final resolution.
        camera: the camera used (final resolution).
    """

    image: torch.Tensor
    mask: torch.Tensor
    material: torch.Tensor
    verts_px: torch.Tensor
    camera: PerspectiveCamera

    def project(self, index: np.ndarray | torch.Tensor) -> np.ndarray:
        """``(N, 2)`` float64 pixel positions ``(x, y)`` of the vertices ``index (N,)``."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.int64)
        return self.verts_px[idx, :2].double().numpy()


def mesh_centre(vertices: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(3,)`` float64 centre of the axis-aligned bounding box of ``vertices (V, 3)``."""
    v = np.asarray(vertices.detach().cpu() if isinstance(vertices, torch.Tensor) else vertices, np.float64)
    return 0.5 * (v.min(0) + v.max(0))


def pose_vertices(vertices, angles=(0.0, 0.0, 0.0), centre=None) -> torch.Tensor:
    """``R(angles) (v - centre)``: ``vertices (V, 3)``, ``angles (3,)`` radians (x, y, z) →
    ``(V, 3)`` float64. ``centre`` defaults to :func:`mesh_centre`."""
    v = torch.as_tensor(np.asarray(vertices, np.float64))
    c = torch.as_tensor(mesh_centre(v) if centre is None else np.asarray(centre, np.float64))
    ang = torch.as_tensor(np.asarray(angles, np.float64)).view(1, 3)
    return rigid_transform((v - c)[None], ang)[0]


def project_points(points, camera: PerspectiveCamera, angles=(0.0, 0.0, 0.0), centre=None) -> np.ndarray:
    """Pixel positions ``(N, 2)`` float64 ``(x, y)`` of 3-D points ``(N, 3)`` of the mesh's frame,
    posed as :func:`render_textured` poses the mesh (same ``angles`` and ``centre``; ``centre`` is
    required here: the mesh's :func:`mesh_centre`, not the points')."""
    if centre is None:
        raise ValueError("pass the mesh's centre (mesh_centre(mesh.vertices))")
    v = pose_vertices(points, angles, centre)
    return camera.project(v).numpy()


def head_camera(vertices, size: tuple[int, int] = (512, 512), *, fill: float = 0.92,
                distance_factor: float = 8.0, centre=None) -> PerspectiveCamera:
    """A camera on +z that frames the mesh turned about its centre, at any rotation.

    Args:
        vertices: ``(V, 3)`` the unposed mesh (any unit).
        size: ``(H, W)`` of the image.
        fill: the bounding sphere's projected radius as a fraction of ``min(H, W) / 2``.
        distance_factor: the camera distance in bounding radii (8: a photo-like perspective).
        centre: the rotation centre (default :func:`mesh_centre`).

    Returns:
        a :class:`PerspectiveCamera` with the principal point at the image centre.
    """
    v = np.asarray(vertices, np.float64)
    c = mesh_centre(v) if centre is None else np.asarray(centre, np.float64)
    r = float(np.linalg.norm(v - c, axis=1).max()) or 1.0
    H, W = int(size[0]), int(size[1])
    d = distance_factor * r
    focal = fill * 0.5 * min(H, W) * (d - r) / r  # a point at radius r, depth ≥ d - r, stays inside
    return PerspectiveCamera(focal=focal, center=((W - 1) / 2.0, (H - 1) / 2.0), size=(H, W), distance=d,
                             near=max(d - 2.0 * r, 1e-6) * 0.5)


def _scaled(cam: PerspectiveCamera, k: int) -> PerspectiveCamera:
    """The same view at ``k``× the resolution (pixel centres at integers in both)."""
    cx, cy = cam.center
    return PerspectiveCamera(focal=(cam.fx * k, cam.fy * k), center=(k * cx + (k - 1) / 2.0, k * cy + (k - 1) / 2.0),
                             size=(cam.height * k, cam.width * k), distance=cam.distance, near=cam.near, far=cam.far)


def render_textured(mesh: TexturedMesh, camera: PerspectiveCamera | None = None, *, angles=(0.0, 0.0, 0.0),
                    centre=None, background: float | tuple[float, float, float] = 0.0,
                    supersample: int = 1) -> TexturedRendering:
    """Unlit render of a textured mesh, turned by ``angles`` about ``centre``.

    Args:
        mesh: vertices, UVs, vertex colours and materials (any number; a material without texture
            or ``faces_uv`` shows its interpolated ``vertex_colors``).
        camera: default :func:`head_camera` ``(mesh.vertices)`` (512²).
        angles: ``(3,)`` radians, ``R = Rz Ry Rx`` (``(0, yaw, 0)`` for a yaw view).
        centre: the rotation centre (default :func:`mesh_centre`).
        background: grey level or RGB in [0, 1] of uncovered pixels.
        supersample: render at ``k``× the resolution and box-filter down (1 = one sample per pixel).

    Returns:
        a :class:`TexturedRendering`.

    Shapes:
        ``mesh.vertices (V, 3)``, ``mesh.uv (T, 2)``, ``material.texture (Ht, Wt, 3)`` uint8 (row 0 =
        top = ``v`` 1) → ``image (3, H, W)``, ``mask (H, W)``.
    """
    if not mesh.materials:
        raise ValueError("the mesh has no materials")
    k = max(1, int(supersample))
    cam = camera if camera is not None else head_camera(mesh.vertices, centre=centre)
    cam_k = _scaled(cam, k) if k > 1 else cam
    verts = pose_vertices(mesh.vertices, angles, centre).float()
    vpx = cam_k.to_screen(verts)[None]  # (1, V, 3)
    faces = torch.as_tensor(np.concatenate([np.asarray(m.faces, np.int64) for m in mesh.materials], 0))
    counts = [len(m.faces) for m in mesh.materials]
    frags = rasterize(vpx, faces, cam_k.size, near=cam_k.near, far=cam_k.far)
    tri = frags.tri_id[0]
    cover = frags.mask[0]
    ends = torch.as_tensor(np.cumsum(counts), dtype=torch.int64)
    mat = torch.where(cover, torch.searchsorted(ends, tri.clamp(min=0), right=True), torch.full_like(tri, -1))
    colours = torch.as_tensor(np.asarray(mesh.vertex_colors, np.float32)).clamp(0, 1)
    img = interpolate(colours, faces, frags)[0]  # (H, W, 3)
    textured = [i for i, m in enumerate(mesh.materials) if m.textured]
    if textured and mesh.uv is not None:
        fuv = torch.cat([torch.as_tensor(np.asarray(m.faces_uv, np.int64)) if m.textured
                         else torch.zeros(len(m.faces), 3, dtype=torch.int64) for m in mesh.materials], 0)
        uvs = interpolate(torch.as_tensor(np.asarray(mesh.uv, np.float32)), faces, frags, attr_faces=fuv)[0]
        for i in textured:
            sel = mat == i
            if not bool(sel.any()):
                continue
            tex = torch.from_numpy(np.ascontiguousarray(mesh.materials[i].texture)).permute(2, 0, 1).float() / 255.0
            img[sel] = sample_texture(tex, uvs[sel][None])[0]
    bg = torch.from_numpy(np.broadcast_to(np.asarray(background, np.float32), (3,)).copy())
    img = torch.where(cover[..., None], img.clamp(0, 1), bg.view(1, 1, 3)).permute(2, 0, 1).contiguous()
    if k > 1:
        img = F.avg_pool2d(img[None], k)[0]
        cover = F.avg_pool2d(cover[None, None].float(), k)[0, 0] > 0.5
        mat = mat[k // 2::k, k // 2::k]
        vpx = cam.to_screen(verts)[None]
    return TexturedRendering(img, cover.clone(), mat.contiguous(), vpx[0].detach(), cam)
