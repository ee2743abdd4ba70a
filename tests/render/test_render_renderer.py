"""Renderer module, the ICT mean face (artefact), and the CUDA path.

References: the rasterizer's own fragments (composition only), mirror symmetry of the ICT mean
face about the optical axis, the sum of projected front-facing triangle areas (for the mask
area), and the CPU numba path for the CUDA (torch) path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from facegcn.render import (
    PerspectiveCamera,
    Renderer,
    Rendering,
    face_front_facing,
    interpolate,
    rasterize,
    rigid_transform,
    sh_shading,
    vertex_normals,
)
from facegcn.render.meshgen import icosphere, relief_grid


def _face_mesh():
    """ICT mean face (decimetres, centred) through facegcn.morphable; falls back to the raw asset."""
    try:
        from facegcn.morphable import load_model

        m = load_model("ict")
        return m.mean_shape, m.faces, m.mean_albedo, "morphable"
    except Exception:  # pragma: no cover - only while the morphable package is unavailable
        from pathlib import Path

        p = Path(__file__).resolve().parents[2].parent / "shared/assets/ict-facekit/ict_face_model.npz"
        if not p.exists():
            pytest.skip("ICT face model not available")
        d = np.load(p)
        q = d["faces"].astype(np.int64)
        q = q[(q < 9409).all(1)]
        f = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])
        v = d["neutral"][:9409].astype(np.float32) / 10.0
        v -= v.mean(0)
        return torch.from_numpy(v), torch.from_numpy(f), torch.full((9409, 3), 0.7), "npz"


def test_rendering_outputs_and_gradients():
    v, f = relief_grid(rows=41, cols=41)
    B = 2
    ang = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.3, 0.0]])
    verts = rigid_transform(v.expand(B, -1, -1), ang, torch.zeros(B, 3)).requires_grad_(True)
    col = torch.rand(B, v.shape[0], 3, requires_grad=True)
    r = Renderer(faces=f, background=torch.tensor([0.0, 0.0, 1.0]))
    out = r(verts, col)
    assert isinstance(out, Rendering)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.image = None  # type: ignore[misc]
    H, W = r.camera.size
    assert out.image.shape == (B, 3, H, W) and out.image.dtype == torch.float32
    assert out.mask.shape == (B, 1, H, W) and out.depth.shape == (B, 1, H, W)
    assert out.tri_id.shape == (B, H, W) and out.tri_id.dtype == torch.int64
    assert out.visibility.shape == (B, v.shape[0]) and out.visibility.dtype == torch.bool
    fr = rasterize(r.camera.to_screen(verts.detach()), f, (H, W))
    assert torch.equal(out.tri_id, fr.tri_id)
    torch.testing.assert_close(out.depth[:, 0], fr.depth, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.mask[:, 0], fr.mask.float())
    # background composited
    assert (out.image[:, 2][~fr.mask] == 1).all() and (out.image[:, 0][~fr.mask] == 0).all()
    (out.image.sum() + out.depth.sum()).backward()
    assert verts.grad.abs().sum() > 0 and col.grad.abs().sum() > 0
    assert out.visibility[0].float().mean() > 0.9  # a frontal relief is almost all visible


def test_antialiased_mask_gives_silhouette_gradients():
    v, f = icosphere(2, 0.8)
    cam = PerspectiveCamera(size=(64, 64), center=(31.5, 31.5), focal=300.0)
    verts = v[None].clone().requires_grad_(True)
    col = torch.ones(1, v.shape[0], 3)
    hard = Renderer(cam, f)(verts, col)
    assert not hard.mask.requires_grad  # hard coverage has no gradient
    soft = Renderer(cam, f, antialias=True)(verts, col)
    assert ((soft.mask > 0) & (soft.mask < 1)).any()
    soft.mask.sum().backward()
    # growing the sphere grows its silhouette: radial gradient is positive on the rim
    radial = (verts.grad[0] * torch.nn.functional.normalize(v, dim=-1)).sum(-1)
    assert radial.sum() > 0


def test_ict_mean_face_frontal_light(artifacts_dir):
    v, f, albedo, source = _face_mesh()
    cam = PerspectiveCamera()
    verts = v[None]
    n = vertex_normals(verts, f)
    sh = torch.zeros(1, 27)
    sh[0, [2, 11, 20]] = 0.3  # light from the camera (+z) on top of the default ambient
    col = sh_shading(n, albedo[None], sh)
    out = Renderer(cam, f)(verts, col)
    img = out.image[0].clamp(0, 1)
    from PIL import Image

    png = (img.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    Image.fromarray(png).save(artifacts_dir / "render_ict_mean_face.png")
    mask = out.mask[0, 0].bool()

    # mask area = area of the projected front-facing triangles (the mean face is a height field
    # seen from the front: little overlap), measured on a larger canvas so nothing is cut off
    big = PerspectiveCamera(center=(300.0, 300.0), size=(600, 600))
    vs = big.to_screen(verts)
    area_big = rasterize(vs, f, big.size).mask.sum().item()
    p = vs[0, :, :2].double()
    a, b, c = p[f[:, 0]], p[f[:, 1]], p[f[:, 2]]
    tri_area = 0.5 * ((b - a)[:, 0] * (c - a)[:, 1] - (c - a)[:, 0] * (b - a)[:, 1]).abs()
    front = face_front_facing(vs, f)[0]
    assert abs(area_big - tri_area[front].sum().item()) / area_big < 0.03
    # inside the 224 image: the face fills a large part of it
    frac = mask.float().mean().item()
    assert 0.35 < frac < 0.95, frac
    # frontal light on a frontal face: front-facing shading brighter in the middle than the sides
    assert img[:, 100:124, 100:124].mean() > img[:, 100:124, 30:50].mean()

    # left/right symmetry about the optical axis u = 112: column j mirrors to 224 - j
    m1 = mask[:, 1:]
    mm = m1.flip(-1)
    iou = (m1 & mm).sum().item() / (m1 | mm).sum().item()
    assert iou > 0.97, iou
    both = m1 & mm
    diff = (img[:, :, 1:] - img[:, :, 1:].flip(-1)).abs().mean(0)[both]
    assert diff.mean().item() < 0.02 and source in ("morphable", "npz")
    # visibility: most vertices of a frontal face are visible, and the mirror pairs agree
    vis = out.visibility[0]
    assert 0.6 < vis.float().mean().item() < 1.0


# ----------------------------------------------------------------------------------- CUDA
@pytest.mark.gpu
def test_cuda_matches_cpu():
    v, f = relief_grid()
    cam = PerspectiveCamera()
    vs = cam.to_screen(v[None])
    a = rasterize(vs, f, cam.size)
    b = rasterize(vs.cuda(), f.cuda(), cam.size)
    assert b.tri_id.is_cuda
    assert torch.equal(a.mask, b.mask.cpu())
    assert (a.tri_id == b.tri_id.cpu()).float().mean() > 0.999
    torch.testing.assert_close(a.depth, b.depth.cpu(), rtol=1e-5, atol=0)
    col = torch.rand(1, v.shape[0], 3)
    grads = []
    for dev, fr in (("cpu", a), ("cuda", b)):
        c = col.to(dev).requires_grad_(True)
        p = vs.to(dev).requires_grad_(True)
        out = interpolate(c, f.to(dev), fr, p)
        out.square().sum().backward()
        grads.append((out.detach().cpu(), c.grad.cpu(), p.grad.cpu()))
    for x, y in zip(*grads):
        torch.testing.assert_close(x, y, atol=2e-3, rtol=2e-3)


@pytest.mark.gpu
def test_cuda_renderer_end_to_end():
    v, f = icosphere(3, 0.8)
    r = Renderer(faces=f, antialias=True).cuda()
    verts = v[None].cuda().requires_grad_(True)
    out = r(verts, torch.ones(1, v.shape[0], 3, device="cuda"))
    assert out.image.is_cuda and out.visibility.is_cuda
    out.mask.sum().backward()
    assert verts.grad.abs().sum() > 0
