"""Coefficients → posed, lit mesh and its rendering: the differentiable forward model shared by
fitting, regressor training, refinement and the synthetic benchmark."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from facegcn.morphable import Coefficients, MorphableModel
from facegcn.render import PerspectiveCamera, Renderer, Rendering, rigid_transform, sh_shading


@dataclass(frozen=True)
class FaceState:
    vertices: torch.Tensor  # (B, V, 3) world space (after the rigid transform)
    normals: torch.Tensor  # (B, V, 3) world space
    albedo: torch.Tensor  # (B, V, 3)
    colors: torch.Tensor  # (B, V, 3) shaded
    landmarks: torch.Tensor  # (B, 68, 2) projected, pixels of the aligned crop
    verts_px: torch.Tensor  # (B, V, 2) projected vertices


class FaceSynthesis(torch.nn.Module):
    def __init__(self, model: MorphableModel, camera: PerspectiveCamera | None = None, antialias: bool = False):
        super().__init__()
        self.model = model
        self.camera = camera or PerspectiveCamera()
        self.renderer = Renderer(self.camera, model.faces, antialias=antialias)

    def state(self, c: Coefficients, albedo: torch.Tensor | None = None) -> FaceState:
        m = self.model
        shape = m.shape(c.id, c.exp)
        verts = rigid_transform(shape, c.angles, c.trans)
        normals = m.vertex_normals(verts)
        alb = m.albedo(c.tex) if albedo is None else albedo
        colors = sh_shading(normals, alb, c.sh)
        px = self.camera.project(verts)
        return FaceState(verts, normals, alb, colors, m.landmarks(px), px)

    def downscaled(self, factor: int = 2) -> "FaceSynthesis":
        """The same forward model rendering at ``1 / factor`` of the resolution: pixel ``i`` of
        the small image covers pixels ``factor·i … factor·i + factor − 1`` of the full one, i.e.
        the full image average-pooled by ``factor`` (integer-centre convention: centre
        ``(c − (factor − 1) / 2) / factor``, focal ``/ factor``). Same model and antialiasing."""
        cam = self.camera
        f = cam.focal
        small = replace(cam, focal=tuple(x / factor for x in f) if isinstance(f, (tuple, list)) else f / factor,
                        center=tuple((x - (factor - 1) / 2) / factor for x in cam.center),
                        size=(cam.height // factor, cam.width // factor))
        return FaceSynthesis(self.model, small, antialias=self.renderer.antialias)

    def landmarks_only(self, c: Coefficients) -> torch.Tensor:
        """Projected 68 landmarks without evaluating the whole mesh (cheap landmark fitting)."""
        m = self.model
        idx = m.landmark_idx
        rows = (idx[:, None] * 3 + torch.arange(3, device=idx.device)).reshape(-1)
        offs = c.id @ m.id_basis[rows].T + c.exp @ m.exp_basis[rows].T
        lm3 = m.mean_shape[idx].unsqueeze(0) + offs.view(c.id.shape[0], -1, 3)
        return self.camera.project(rigid_transform(lm3, c.angles, c.trans))

    def render(self, st: FaceState, colors: torch.Tensor | None = None, background=None) -> Rendering:
        return self.renderer(st.vertices, st.colors if colors is None else colors, background=background)
