"""Per-image GCN texture refinement (the default refinement path; no trained weights needed).

The paper's generator (decoder + refiner + merger) is optimised on one photo after the coarse fit,
with the paper's pixel, identity and vertex-wise losses plus symmetry and skin-variance terms; its
tanh output is a residual on the 3DMM albedo. Geometry, pose and light stay the coarse fit's.
(Why a residual and a warm-up: CONTRIBUTING.md, "Design notes".)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from facegcn.coarse.losses import history_floats
from facegcn.coarse.optim import Adam
from facegcn.config import RefineOptions
from facegcn.coarse.fit import loop_identity_net
from facegcn.frontend.identity import IdentityEncoder, embed_aligned
from facegcn.graph import TextureGenerator, build_hierarchy
from facegcn.refine.lanes import BranchLanes
from facegcn.refine.losses import RefineWeights, refine_objective
from facegcn.refine.photo_start import photo_start_albedo
from facegcn.render import sample_image, sh_irradiance, sh_shading


@dataclass
class RefineResult:
    albedo: torch.Tensor  # (V, 3) refined per-vertex albedo in [0, 1]
    render: torch.Tensor  # (3, 224, 224) render with the refined albedo (coarse light and pose)
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


_HIERARCHY: dict[str, object] = {}


def model_hierarchy(model):
    """The CoMA hierarchy of a model's mean shape (cached on disk and in memory)."""
    key = f"{model.name}:{model.n_vertices}:{model.n_faces}"
    h = _HIERARCHY.get(key)
    if h is None:
        h = build_hierarchy(model.mean_shape.detach().cpu(), model.faces.detach().cpu())
        _HIERARCHY[key] = h
    return h


def refiner_input(albedo: torch.Tensor, image: torch.Tensor, verts_px: torch.Tensor, visibility: torch.Tensor) -> torch.Tensor:
    """(B, V, 7): 3DMM albedo, photo colour at the projected vertex, visibility — all in [-1, 1]."""
    photo_col = sample_image(image, verts_px[..., :2])
    vis = visibility.to(albedo.dtype).unsqueeze(-1)
    return torch.cat([albedo * 2 - 1, (photo_col * 2 - 1) * vis, vis * 2 - 1], dim=-1)


def refine_texture(model, synthesis, observation, coarse, options=None, *, progress: bool = False,
                   weights: RefineWeights | None = None, generator: TextureGenerator | None = None) -> RefineResult:
    """Optimise the GCN generator on one photo and return the refined per-vertex albedo.

    Args:
        model: the :class:`~facegcn.morphable.MorphableModel` (its mesh hierarchy is built/cached).
        synthesis: the :class:`~facegcn.coarse.synthesis.FaceSynthesis` whose renderer is used.
        observation: the face's :class:`~facegcn.frontend.FaceObservation` (aligned image, mask,
            identity descriptor).
        coarse: the :class:`~facegcn.coarse.fit.CoarseResult` (geometry, light, visibility).
        options: :class:`~facegcn.config.RefineOptions` (steps, learning rate, identity cadence).
        progress: show a progress bar.
        weights: loss weights (default :class:`~facegcn.refine.losses.RefineWeights`).
        generator: a generator to optimise (default: a new one on the model's hierarchy).

    Returns:
        :class:`RefineResult` with ``albedo (V, 3)`` in [0, 1], ``render (3, 224, 224)`` under the
        coarse light and pose, the loss history and the seconds taken.
    """
    opt_cfg = options or RefineOptions()
    w = weights or RefineWeights()
    t0 = time.perf_counter()
    dev = coarse.state.vertices.device
    image = observation.image[None].to(dev)
    face_mask = observation.face_mask.to(dev, torch.float32)[None, None]
    ident = observation.identity[None].to(dev)
    has_id = bool(torch.isfinite(ident).all())
    if not has_id:
        ident = torch.zeros_like(ident)
    st = coarse.state
    c = coarse.coeffs
    base_albedo = st.albedo.detach().clamp(0, 1)
    vis = coarse.rendering.visibility.to(dev)
    x_in = refiner_input(base_albedo, image, st.verts_px.detach(), vis)
    reference = base_albedo  # the vertex-wise loss's reference: the 3DMM albedo
    normals = st.normals.detach()
    irradiance = sh_irradiance(normals, c.sh.detach())  # sh_shading(n, alb, sh) == irradiance * alb
    if opt_cfg.photo_start:
        base_albedo = photo_start_albedo(model, synthesis, observation, coarse, base_albedo, irradiance)
    gen = generator or TextureGenerator(model_hierarchy(model)).to(dev)
    with torch.no_grad():  # start at the coarse albedo: shrink the merger's output weights
        for p in gen.merger.parameters():
            p.mul_(0.01)
    mirror = model.mirror_index().to(dev)
    # Linear warm-up over the first 10 steps: Adam's first updates are ±lr on every weight, which on
    # the small-initialised merger is a large relative jump (a very short fit otherwise ends off-colour).
    optim = Adam(gen.parameters(), lr=opt_cfg.lr, schedule=lambda i: min(1.0, (i + 1) / 10.0))
    embed_fn = None
    if has_id and w.identity > 0:
        encoder = IdentityEncoder(device=dev)
        ct = torch.as_tensor(observation.chip_transform, dtype=image.dtype, device=dev)  # copied once

        net = loop_identity_net(encoder)

        def embed_fn(img):
            return embed_aligned(img.clamp(0, 1), ct, net)

    hist: list[dict] = []
    steps = int(opt_cfg.steps)
    bar = tqdm(range(steps), desc="texture refine", disable=not progress, leave=False)
    verts = st.vertices.detach()
    ident_n = torch.nn.functional.normalize(ident, dim=-1) * 10.0  # dlib descriptors have norm ≈ 1
    # geometry, pose and light are fixed: the SH irradiance is a constant factor and the mesh is
    # rasterised once (interpolation = one sparse pixel × vertex product per step)
    view = synthesis.renderer.fixed(verts)
    # decoder ∥ refiner on two threads (CPU; facegcn.refine.lanes); the plain generator elsewhere
    lanes = BranchLanes(gen) if opt_cfg.parallel and dev.type == "cpu" else None
    try:
        for it in bar:
            optim.zero_grad()
            t = lanes.forward(ident_n, x_in) if lanes is not None else gen(ident_n, x_in)
            alb = base_albedo + t
            r = view(irradiance * alb)
            feat = None
            if embed_fn is not None and it % max(opt_cfg.identity_every, 1) == 0:
                feat = embed_fn(r.image * r.mask + image * (1 - r.mask))
            epoch = 1.0 + 4.0 * it / max(steps - 1, 1)  # the paper's per-epoch schedule over one fit
            lt = refine_objective(
                w, colors=alb, reference=reference, render=r.image, photo=image, render_mask=r.mask,
                face_mask=face_mask, epoch=epoch, feat_render=feat, feat_photo=ident if feat is not None else None,
                mirror=mirror, skin_weight=model.skin_weight,
            )
            lt.total.backward()
            if lanes is not None:
                lanes.backward()
            optim.clip_grad_norm_(5.0)
            optim.step()
            if it % 10 == 0 or it == steps - 1:
                hist.append({"step": it, **lt.detached()})
    finally:
        if lanes is not None:
            lanes.close()
    with torch.no_grad():
        t = gen(ident_n, x_in)
        alb = (base_albedo + t).clamp(0, 1)
        r = synthesis.renderer(verts, sh_shading(normals, alb, c.sh))
    return RefineResult(alb[0], r.image[0], history_floats(hist), time.perf_counter() - t0)
