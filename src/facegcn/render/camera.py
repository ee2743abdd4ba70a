"""Rigid transform and perspective pinhole camera.

Conventions (shared by every stage; see also :mod:`facegcn.render.rasterize`):

* **World frame** (the morphable models' frame): x to the subject's left as seen by the camera
  (image right), y up, z towards the camera. Units are whatever the model uses; the default
  camera assumes decimetres like Deep3DFaceRecon's BFM (camera 10 dm = 1 m away).
* **Rigid transform** (Deep3DFaceRecon): ``angles = (x, y, z)`` radians,
  ``R = Rz @ Ry @ Rx`` and ``v_world = R @ v + t``.
* **Camera**: at ``(0, 0, distance)`` looking down ``-z``, image rows growing downwards.
  Camera-space coordinates are ``(x, y, z_cam)`` with ``z_cam = distance - z_world`` (positive
  depth in front of the camera).
* **Projection**: ``u = cx + f * x / z_cam`` (column), ``v = cy - f * y / z_cam`` (row).
* **Pixel centres are at integer coordinates** (OpenCV / dlib convention): pixel ``(row i,
  col j)`` covers ``[j - 0.5, j + 0.5) x [i - 0.5, i + 0.5)`` and its centre is ``(u=j, v=i)``.
  The rasterizer samples coverage at exactly these centres, :func:`project` returns positions
  in the same frame, and :func:`facegcn.render.sample_image` reads an image at them, so a
  landmark detected by dlib at ``(x, y)`` and a vertex projected to ``(u, v) = (x, y)`` refer to
  the same point of the same pixel grid.

Relation to Deep3DFaceRecon_pytorch (default focal 1015, centre 112, 224x224, distance 10):
its landmark projection uses ``u = 112 + f x/z`` and, after its ``223 - y`` flip,
``v = 111 - f y / z``; its nvdiffrast renderer puts pixel centres at half-integers, which in the
integer-centre convention used here is a principal point of ``(111.5, 111.5)``. Those half-pixel
inconsistencies are theirs; our default principal point is ``(112, 112)`` and rendering and
projection agree exactly. Pass ``center=(111.5, 111.5)`` to reproduce their rendered images
pixel-for-pixel.

The screen-space vertex format used by the rasterizer and :func:`interpolate` is
``verts_px = (u, v, z_cam)`` of shape ``(B, V, 3)`` (see :meth:`PerspectiveCamera.to_screen`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["rotation_matrix", "rigid_transform", "PerspectiveCamera"]


def rotation_matrix(angles: torch.Tensor) -> torch.Tensor:
    """``R = Rz @ Ry @ Rx`` from Euler angles ``(B, 3) = (x, y, z)`` in radians → ``(B, 3, 3)``.

    Same matrix as Deep3DFaceRecon's ``compute_rotation`` (which returns its transpose because it
    multiplies row vectors from the right).
    """
    if angles.dim() == 1:
        angles = angles.unsqueeze(0)
    if angles.shape[-1] != 3:
        raise ValueError(f"angles must be (B, 3), got {tuple(angles.shape)}")
    cx, cy, cz = torch.cos(angles).unbind(-1)
    sx, sy, sz = torch.sin(angles).unbind(-1)
    one = torch.ones_like(cx)
    zero = torch.zeros_like(cx)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).view(-1, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).view(-1, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).view(-1, 3, 3)
    return rz @ ry @ rx


def rigid_transform(
    verts: torch.Tensor, angles: torch.Tensor, trans: torch.Tensor | None = None
) -> torch.Tensor:
    """``v_world = R(angles) @ v + trans`` for ``verts (B, V, 3)``, ``angles (B, 3)``, ``trans (B, 3)``."""
    rot = rotation_matrix(angles).to(verts.dtype)
    out = verts @ rot.transpose(1, 2)
    if trans is not None:
        out = out + trans.to(verts.dtype).view(-1, 1, 3)
    return out


@dataclass(frozen=True)
class PerspectiveCamera:
    """Pinhole camera on the +z axis looking at the origin (Deep3DFaceRecon defaults).

    ``focal`` in pixels (a float, or ``(fx, fy)``), ``center = (cx, cy)`` principal point in
    pixels (integer-centre convention, see module docstring), ``size = (H, W)``, ``distance``
    camera position on +z in world units, ``near``/``far`` clipping depths (camera-space z) used
    by the rasterizer: fragments with depth outside ``[near, far]`` are discarded per pixel, which
    clips triangles exactly at the near plane. (Deep3DFaceRecon's renderer uses ``near=5,
    far=15``; the defaults here clip less, which only matters for extreme translations.)
    """

    focal: float | tuple[float, float] = 1015.0
    center: tuple[float, float] = (112.0, 112.0)
    size: tuple[int, int] = (224, 224)
    distance: float = 10.0
    near: float = 0.1
    far: float = float("inf")

    @property
    def fx(self) -> float:
        return float(self.focal[0] if isinstance(self.focal, (tuple, list)) else self.focal)

    @property
    def fy(self) -> float:
        return float(self.focal[1] if isinstance(self.focal, (tuple, list)) else self.focal)

    @property
    def height(self) -> int:
        return int(self.size[0])

    @property
    def width(self) -> int:
        return int(self.size[1])

    def to_camera(self, v_world: torch.Tensor) -> torch.Tensor:
        """World → camera space ``(x, y, z_cam = distance - z)``; differentiable, not in place."""
        return torch.cat([v_world[..., :2], self.distance - v_world[..., 2:3]], dim=-1)

    def camera_to_screen(self, v_cam: torch.Tensor) -> torch.Tensor:
        """Camera space → ``(u, v, z_cam)`` (pixels, pixels, depth)."""
        z = v_cam[..., 2:3]
        u = self.center[0] + self.fx * v_cam[..., 0:1] / z
        v = self.center[1] - self.fy * v_cam[..., 1:2] / z
        return torch.cat([u, v, z], dim=-1)

    def to_screen(self, v_world: torch.Tensor) -> torch.Tensor:
        """World → ``verts_px = (u, v, z_cam)`` of shape ``(..., 3)``: the rasterizer's input."""
        return self.camera_to_screen(self.to_camera(v_world))

    def project(self, v_world: torch.Tensor) -> torch.Tensor:
        """World → pixel positions ``(..., 2) = (u, v)`` (column, row; integer pixel centres)."""
        return self.to_screen(v_world)[..., :2]

    def depth(self, v_world: torch.Tensor) -> torch.Tensor:
        """Camera-space depth ``z_cam = distance - z_world`` of world points, shape ``(...)``."""
        return self.distance - v_world[..., 2]

    def unproject(self, px: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_screen`: pixels ``(..., 2)`` and depth ``(...)`` → world ``(..., 3)``."""
        x = (px[..., 0] - self.center[0]) * depth / self.fx
        y = -(px[..., 1] - self.center[1]) * depth / self.fy
        return torch.stack([x, y, self.distance - depth], dim=-1)

    def intrinsics(self, dtype=torch.float32, device=None) -> torch.Tensor:
        """3x3 matrix ``K`` with ``K @ (x, -y, z_cam) ∝ (u, v, 1)`` (OpenCV form, y flipped)."""
        return torch.tensor(
            [[self.fx, 0.0, self.center[0]], [0.0, self.fy, self.center[1]], [0.0, 0.0, 1.0]],
            dtype=dtype,
            device=device,
        )
