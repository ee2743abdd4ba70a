"""Where the per-image refinement starts: the 3DMM albedo with the photo's de-lit colours blended in.

The paper's generator output is a residual (``albedo = base + generator(...)``). With the 3DMM
albedo as the base, the optimisation has to grow every per-vertex photo detail out of the
refiner's Chebyshev filters, which a single-photo fit does slowly (same-view masked PSNR of two
photos: 27.1 / 29.5 dB after 60 steps, 29.8 / 31.8 after 120, 31.8 / 34.4 after 240). Starting
from the photo's own colour where it is seen puts the start near the pixel optimum, so the steps
go to what the GCN adds (symmetry, skin consistency, identity, the seams)::

    delit_i = photo(p_i) / max(E_i, floor)                 p_i: projected vertex, E_i: SH irradiance
    s_i     = face(p_i) · visible_i                       face: the pixel loss's face mask
    m_i     = (1 − s_i) · (s · ramp(cos θ))_mirror(i)      the unseen side takes its mirror
    base_i  = a_i + s_i (delit_i − a_i) + m_i (delit_mirror(i) − a_i)

``a`` is the 3DMM albedo, which the vertex-wise loss keeps as its reference; outside the face
mask (hair, collar, background) the base stays ``a``. ``s`` is the pixel loss's own support (what
the refinement fits anyway; the exported texture decides separately, with its stricter region,
which vertices it trusts as skin). The mirror is taken only from vertices seen at a useful angle
(``ramp``: 0 at cos θ = 0.25, 1 at 0.6, as the texture).
"""

from __future__ import annotations

import torch

from facegcn.render import sample_image

__all__ = ["photo_start_albedo"]


def photo_start_albedo(model, synthesis, observation, coarse, albedo: torch.Tensor, irradiance: torch.Tensor,
                       shade_floor: float = 0.6) -> torch.Tensor:
    """The refinement's base albedo: the 3DMM ``albedo`` with the de-lit photo blended in.

    Args:
        model: the morphable model (its mirror map).
        synthesis: the :class:`~facegcn.coarse.synthesis.FaceSynthesis` of the fit (camera).
        observation: the face's observation (aligned image, face mask).
        coarse: the coarse fit (geometry, visibility, coverage).
        albedo: the clamped 3DMM albedo.
        irradiance: the fitted SH irradiance at each vertex (``sh_shading = irradiance × albedo``).
        shade_floor: the photo is divided by ``max(E, shade_floor × Ē, 0.05)`` (``Ē`` the mean
            irradiance over the seen face), as the exported texture does: deep shadows are not
            blown up into bright patches.

    Returns:
        The base albedo in [0, 1].

    Shapes:
        albedo, irradiance: ``(1, V, 3)`` float, on the fit's device → ``(1, V, 3)``, same dtype
        and device.
    """
    dev, dt = albedo.device, albedo.dtype
    st = coarse.state
    px = st.verts_px.detach()[..., :2].to(dt)
    image = observation.image[None].to(dev, dt)
    face = observation.face_mask.to(dev, dt)[None, None]
    col = sample_image(image, px)
    seen = sample_image(face, px)[0, :, 0].clamp(0, 1) * coarse.rendering.visibility.reshape(-1).to(dev, dt)
    verts = st.vertices[0].detach().to(dt)
    cam = torch.tensor([0.0, 0.0, float(synthesis.camera.distance)], dtype=dt, device=dev)
    cos = (st.normals[0].detach().to(dt) * torch.nn.functional.normalize(cam - verts, dim=-1)).sum(-1)
    ramp = ((cos - 0.25) / 0.35).clamp(0, 1)
    w = seen[None, :, None]
    mean_irr = (irradiance * w).sum(1, keepdim=True) / w.sum().clamp_min(1e-6)
    floor = (shade_floor * mean_irr).clamp_min(0.05)
    delit = (col / torch.maximum(irradiance, floor)).clamp(0, 1)
    mirror = model.mirror_index().to(albedo.device)
    wm = ((1.0 - seen) * (seen * ramp)[mirror])[None, :, None]
    out = albedo + w * (delit - albedo) + wm * (delit[:, mirror] - albedo)
    return out.clamp(0, 1)
