"""``Renderer``: camera + rasterize + interpolate (+ optional anti-aliasing) in one module."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from facegcn.render.camera import PerspectiveCamera
from facegcn.render.interpolate import antialias as _antialias
from facegcn.render.interpolate import interpolate
from facegcn.render.rasterize import face_adjacency, rasterize, vertex_visibility
from facegcn.render.sampling import sample_texture

__all__ = ["Rendering", "Renderer"]


@dataclass(frozen=True)
class Rendering:
    """Output of :class:`Renderer`.

    ``image (B, C, H, W)``: interpolated colours composited over the background (not clamped:
    SH shading can exceed 1). ``mask (B, 1, H, W)`` float coverage (exactly 0/1, or soft at the
    silhouette with anti-aliasing). ``depth (B, 1, H, W)`` camera depth, 0 on background,
    differentiable w.r.t. the vertices. ``tri_id (B, H, W)`` int64, -1 background.
    ``visibility (B, V)`` bool (see :func:`vertex_visibility`). ``verts_px (B, V, 3)`` the
    screen-space vertices ``(u, v, z_cam)`` (differentiable).
    """

    image: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor
    tri_id: torch.Tensor
    visibility: torch.Tensor
    verts_px: torch.Tensor | None = None


class Renderer(nn.Module):
    """Differentiable renderer of per-vertex-coloured (or UV-textured) triangle meshes.

    ``camera``: :class:`PerspectiveCamera` (Deep3DFaceRecon defaults). ``faces``: optional default
    ``(F, 3)`` faces (registered as a buffer, so ``.to(device)`` moves them). ``antialias``: apply
    :func:`facegcn.render.antialias` to image and mask (silhouette gradients). ``background``:
    float or ``(C,)`` / ``(B, C, H, W)`` tensor. ``backend``: ``"auto" | "numba" | "torch"``.

    ``forward(verts, colors)`` takes **world-space** vertices ``(B, V, 3)`` (apply
    :func:`rigid_transform` first) and per-vertex colours ``(B, V, C)`` (e.g. from
    :func:`sh_shading`); or ``texture=(B, C, Ht, Wt)`` with ``uv (Vt, 2)`` / ``(B, Vt, 2)`` and
    optional ``uv_faces (F, 3)``.
    """

    def __init__(
        self,
        camera: PerspectiveCamera | None = None,
        faces: torch.Tensor | None = None,
        *,
        antialias: bool = False,
        background: float | torch.Tensor = 0.0,
        backend: str = "auto",
    ):
        super().__init__()
        self.camera = camera if camera is not None else PerspectiveCamera()
        self.antialias = bool(antialias)
        self.background = background
        self.backend = backend
        if faces is not None:
            self.register_buffer("faces", torch.as_tensor(faces, dtype=torch.int64), persistent=False)
        else:
            self.faces = None
        self._adj: tuple[torch.Tensor, torch.Tensor] | None = None

    def _adjacency(self, faces: torch.Tensor) -> torch.Tensor:
        if self._adj is not None:
            f, a = self._adj
            if f.shape == faces.shape and f.device == faces.device and torch.equal(f, faces):
                return a
        a = face_adjacency(faces)
        self._adj = (faces.clone(), a)
        return a

    def forward(
        self,
        verts: torch.Tensor,
        colors: torch.Tensor | None = None,
        *,
        faces: torch.Tensor | None = None,
        texture: torch.Tensor | None = None,
        uv: torch.Tensor | None = None,
        uv_faces: torch.Tensor | None = None,
        background: float | torch.Tensor | None = None,
    ) -> Rendering:
        faces = self.faces if faces is None else faces
        if faces is None:
            raise ValueError("no faces: pass faces= to Renderer() or forward()")
        faces = faces.to(verts.device, torch.int64)
        if (colors is None) == (texture is None):
            raise ValueError("pass exactly one of colors or texture")
        cam = self.camera
        H, W = cam.height, cam.width
        B = verts.shape[0]
        vpx = cam.to_screen(verts)
        frags = rasterize(
            vpx.detach(), faces, (H, W), near=cam.near, far=cam.far, backend=self.backend
        )
        ibackend = self.backend
        z = vpx[..., 2:3]
        if colors is not None:
            if colors.dim() == 2:
                colors = colors.unsqueeze(0).expand(B, -1, -1)
            attrs = torch.cat([colors.to(vpx.dtype), z], -1)
            out = interpolate(attrs, faces, frags, vpx, backend=ibackend)
            img, depth = out[..., :-1], out[..., -1:]
        else:
            if uv is None:
                raise ValueError("texture needs uv")
            img_uv = interpolate(uv, faces, frags, vpx, attr_faces=uv_faces, backend=ibackend)
            img = sample_texture(texture, img_uv)
            depth = interpolate(z, faces, frags, vpx, backend=ibackend)
        mask = frags.mask.to(img.device, img.dtype).unsqueeze(-1)  # (B, H, W, 1)
        bg = self.background if background is None else background
        if isinstance(bg, torch.Tensor):
            bg = bg.to(img.device, img.dtype)
            if bg.dim() == 1:
                bg = bg.view(1, 1, 1, -1)
            elif bg.dim() == 4:
                bg = bg.permute(0, 2, 3, 1)
        img = img * mask + (1.0 - mask) * bg
        if self.antialias:
            both = _antialias(
                torch.cat([img, mask], -1), frags, vpx, faces,
                adjacency=self._adjacency(faces), near=cam.near,
            )  # fmt: skip
            img, mask = both[..., :-1], both[..., -1:]
        vis = vertex_visibility(vpx.detach(), faces, frags, near=cam.near, backend=self.backend)
        return Rendering(
            image=img.permute(0, 3, 1, 2).contiguous(),
            mask=mask.permute(0, 3, 1, 2).contiguous(),
            depth=depth.permute(0, 3, 1, 2).contiguous(),
            tri_id=frags.tri_id,
            visibility=vis,
            verts_px=vpx,
        )
