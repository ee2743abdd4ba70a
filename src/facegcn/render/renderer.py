"""``Renderer``: camera + rasterize + interpolate (+ optional anti-aliasing) in one module."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from facegcn.render._torch_raster import _bary_at as bary_at
from facegcn.render.camera import PerspectiveCamera
from facegcn.render.interpolate import antialias as _antialias
from facegcn.render.interpolate import interpolate
from facegcn.render.rasterize import face_adjacency, rasterize, vertex_visibility
from facegcn.render.sampling import sample_texture

__all__ = ["Rendering", "Renderer", "FixedViewRenderer"]


@dataclass(frozen=True)
class Rendering:
    """Output of :class:`Renderer`.

    ``image (B, C, H, W)``: interpolated colours composited over the background (not clamped:
    SH shading can exceed 1). ``mask (B, 1, H, W)`` float coverage (exactly 0/1, or soft at the
    silhouette with anti-aliasing). ``depth (B, 1, H, W)`` camera depth, 0 on background,
    differentiable w.r.t. the vertices. ``tri_id (B, H, W)`` int64, -1 background.
    ``visibility (B, V)`` bool (see :func:`vertex_visibility`). ``verts_px (B, V, 3)`` the
    screen-space vertices ``(u, v, z_cam)`` (differentiable). ``depth`` and ``visibility`` are
    computed on first access (an optimisation loop that never reads them does not pay for them:
    ~1 ms a step of the coarse fit); construct with ``_depth=`` / ``_visibility=`` (a tensor or a
    function returning one).
    """

    image: torch.Tensor
    mask: torch.Tensor
    _depth: torch.Tensor | Callable[[], torch.Tensor] = field(repr=False)
    tri_id: torch.Tensor
    _visibility: torch.Tensor | Callable[[], torch.Tensor] = field(repr=False)
    verts_px: torch.Tensor | None = None

    def _lazy(self, name: str) -> torch.Tensor:
        v = getattr(self, name)
        if not isinstance(v, torch.Tensor):
            v = v()
            object.__setattr__(self, name, v)
        return v

    @property
    def depth(self) -> torch.Tensor:
        return self._lazy("_depth")

    @property
    def visibility(self) -> torch.Tensor:
        return self._lazy("_visibility")


class _SparseApply(torch.autograd.Function):
    """``A @ X`` for a fixed CSR ``A`` (with its transpose ``At`` for the backward)."""

    @staticmethod
    def forward(ctx, x, a, at):
        ctx.at = at
        return a @ x

    @staticmethod
    def backward(ctx, g):
        return ctx.at @ g.contiguous(), None, None


class FixedViewRenderer:
    """A :class:`Renderer` for one fixed geometry: the mesh is rasterised once and the
    interpolation becomes a sparse ``(B*H*W, B*V)`` pixel × vertex operator (three perspective-
    correct barycentric weights per covered pixel), so rendering new per-vertex colours costs one
    sparse product forward and one backward. For loops that optimise colours only (texture
    refinement). ``__call__(colors)`` equals ``renderer(verts, colors)`` (image, mask, depth,
    tri_id, visibility) up to float32 rounding; gradients flow to the colours only. Not for
    anti-aliased renderers (their blend depends on the colour differences at silhouettes).
    """

    def __init__(self, renderer: "Renderer", verts: torch.Tensor, faces: torch.Tensor | None = None):
        faces = renderer.faces if faces is None else faces
        if faces is None:
            raise ValueError("no faces: pass faces= to Renderer() or fixed()")
        if renderer.antialias:
            raise ValueError("FixedViewRenderer does not support anti-aliasing")
        cam = renderer.camera
        self.renderer = renderer
        faces = faces.to(verts.device, torch.int64)
        vpx = cam.to_screen(verts.detach())
        B, V = vpx.shape[:2]
        H, W = cam.height, cam.width
        frags = rasterize(vpx, faces, (H, W), near=cam.near, far=cam.far, backend=renderer.backend)
        self.fragments, self.faces, self.verts_px, self.size = frags, faces, vpx, (B, V, H, W)
        tri = frags.tri_id.reshape(-1)
        lin = (tri >= 0).nonzero().squeeze(1)
        t = tri.index_select(0, lin)
        b = torch.div(lin, H * W, rounding_mode="floor")
        rem = lin - b * (H * W)
        y = torch.div(rem, W, rounding_mode="floor")
        x = rem - y * W
        corners = faces.index_select(0, t)  # (N, 3)
        p = vpx.double().reshape(B * V, 3).index_select(0, (b[:, None] * V + corners).reshape(-1)).view(-1, 3, 3)
        w, _ = bary_at(p, x, y)  # float64, as interpolate() recomputes them
        rows = lin.repeat_interleave(3)
        cols = (b[:, None] * V + corners).reshape(-1)
        vals = w.reshape(-1).to(verts.dtype if verts.dtype.is_floating_point else torch.float32)
        self.op, self.op_t = _csr_pair(rows, cols, vals, (B * H * W, B * V))
        self.mask = frags.mask.to(vals.dtype).unsqueeze(1)  # (B, 1, H, W)
        self.depth = frags.depth.unsqueeze(1).to(vals.dtype)
        self._visibility: torch.Tensor | None = None

    @property
    def visibility(self) -> torch.Tensor:
        if self._visibility is None:
            cam = self.renderer.camera
            self._visibility = vertex_visibility(self.verts_px, self.faces, self.fragments, near=cam.near,
                                                 backend=self.renderer.backend)
        return self._visibility

    def __call__(self, colors: torch.Tensor, background: float | torch.Tensor | None = None) -> Rendering:
        B, V, H, W = self.size
        if colors.dim() == 2:
            colors = colors.unsqueeze(0).expand(B, -1, -1)
        C = colors.shape[-1]
        flat = colors.to(self.op.dtype).reshape(B * V, C).contiguous()
        img = _SparseApply.apply(flat, self.op, self.op_t).view(B, H, W, C).permute(0, 3, 1, 2)
        bg = self.renderer.background if background is None else background
        if isinstance(bg, torch.Tensor):
            bg = bg.to(img.device, img.dtype)
            bg = bg.view(1, -1, 1, 1) if bg.dim() == 1 else bg
            img = img * self.mask + (1.0 - self.mask) * bg
        elif bg != 0:
            img = img * self.mask + (1.0 - self.mask) * bg
        return Rendering(image=img.contiguous(), mask=self.mask, _depth=self.depth, tri_id=self.fragments.tri_id,
                         _visibility=lambda: self.visibility, verts_px=self.verts_px)


def _csr_pair(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, shape: tuple[int, int]):
    """CSR matrices of the COO triplets (row-sorted rows) and of their transpose."""
    import warnings

    def csr(r, c, v, n):
        order = torch.argsort(r * n[1] + c)
        r, c, v = r[order], c[order], v[order]
        crow = torch.zeros(n[0] + 1, dtype=torch.int64, device=r.device)
        crow[1:] = torch.bincount(r, minlength=n[0]).cumsum(0)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
            return torch.sparse_csr_tensor(crow, c, v, size=n, check_invariants=False)

    return csr(rows, cols, vals, shape), csr(cols, rows, vals, shape[::-1])


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

        def depth_now() -> torch.Tensor:
            return interpolate(z, faces, frags, vpx, backend=ibackend).permute(0, 3, 1, 2).contiguous()

        if colors is not None:
            if colors.dim() == 2:
                colors = colors.unsqueeze(0).expand(B, -1, -1)
            img = interpolate(colors.to(vpx.dtype), faces, frags, vpx, backend=ibackend)
        else:
            if uv is None:
                raise ValueError("texture needs uv")
            img_uv = interpolate(uv, faces, frags, vpx, attr_faces=uv_faces, backend=ibackend)
            img = sample_texture(texture, img_uv)
        mask = frags.mask.to(img.device, img.dtype).unsqueeze(-1)  # (B, H, W, 1)
        bg = self.background if background is None else background
        if isinstance(bg, torch.Tensor):
            bg = bg.to(img.device, img.dtype)
            if bg.dim() == 1:
                bg = bg.view(1, 1, 1, -1)
            elif bg.dim() == 4:
                bg = bg.permute(0, 2, 3, 1)
            img = img * mask + (1.0 - mask) * bg
        elif bg != 0 or texture is not None:  # interpolated colours are exactly 0 off the mesh already
            img = img * mask + (1.0 - mask) * bg
        if self.antialias:
            both = _antialias(
                torch.cat([img, mask], -1), frags, vpx, faces,
                adjacency=self._adjacency(faces), near=cam.near,
            )  # fmt: skip
            img, mask = both[..., :-1], both[..., -1:]
        vd, backend = vpx.detach(), self.backend
        return Rendering(
            image=img.permute(0, 3, 1, 2).contiguous(),
            mask=mask.permute(0, 3, 1, 2).contiguous(),
            _depth=depth_now,
            tri_id=frags.tri_id,
            _visibility=lambda: vertex_visibility(vd, faces, frags, near=cam.near, backend=backend),
            verts_px=vpx,
        )

    def fixed(self, verts: torch.Tensor, faces: torch.Tensor | None = None) -> FixedViewRenderer:
        """A :class:`FixedViewRenderer` of world-space ``verts (B, V, 3)``: rasterised once, then
        ``view(colors)`` renders per-vertex colours with one sparse product."""
        return FixedViewRenderer(self, verts, faces)
