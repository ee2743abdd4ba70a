"""Unlit textured rendering (facegcn.render.textured).

Reference: brute force per pixel — the ray through each pixel centre is intersected analytically
with a (turned) textured quad, its UV follows from the hit point, and the texture is sampled with
a numpy bilinear lookup written from the OBJ texel convention (texel (r, c) centred at
((c + 0.5) / W, 1 - (r + 0.5) / H), clamped at the border)."""

import math

import numpy as np
import pytest
import torch

from facegcn.io.textured import Material, TexturedMesh
from facegcn.render.camera import PerspectiveCamera, rotation_matrix
from facegcn.render.textured import head_camera, mesh_centre, pose_vertices, render_textured

X0, X1, Y0, Y1 = -0.6, 0.6, -0.45, 0.45  # the quad, in the z = 0 plane


def _bilinear(tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Brute-force bilinear texture lookup: ``tex (Ht, Wt, 3)`` float, ``u, v (N,)`` → ``(N, 3)``."""
    Ht, Wt = tex.shape[:2]
    out = np.zeros((len(u), 3))
    for n in range(len(u)):
        x = min(max(u[n] * Wt - 0.5, 0.0), Wt - 1.0)
        y = min(max((1.0 - v[n]) * Ht - 0.5, 0.0), Ht - 1.0)
        c0, r0 = int(math.floor(x)), int(math.floor(y))
        c1, r1 = min(c0 + 1, Wt - 1), min(r0 + 1, Ht - 1)
        fx, fy = x - c0, y - r0
        out[n] = ((1 - fx) * (1 - fy) * tex[r0, c0] + fx * (1 - fy) * tex[r0, c1]
                  + (1 - fx) * fy * tex[r1, c0] + fx * fy * tex[r1, c1])
    return out


def _quad(texture=None, split_untextured=False) -> TexturedMesh:
    v = np.array([[X0, Y0, 0], [X1, Y0, 0], [X1, Y1, 0], [X0, Y1, 0]], np.float32)
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]], np.int64)  # counter-clockwise seen from +z
    col = np.tile(np.array([[0.2, 0.5, 0.8]], np.float32), (4, 1))
    if split_untextured:  # triangle 0 textured, triangle 1 shows its vertex colours
        mats = (Material("face", f[:1], f[:1], texture), Material("parts", f[1:]))
    else:
        mats = (Material("face", f, f, texture),)
    return TexturedMesh(v, np.tile([[0, 0, 1]], (4, 1)).astype(np.float32), col, uv, mats)


def _reference(cam: PerspectiveCamera, yaw: float, tex: np.ndarray):
    """Analytic UV per pixel centre of the quad turned by ``yaw`` about the origin; returns
    (inside (H, W) bool, margin (H, W) distance to the quad's border in UV, colours (N, 3))."""
    H, W = cam.size
    R = rotation_matrix(torch.tensor([[0.0, yaw, 0.0]], dtype=torch.float64))[0].numpy()
    jj, ii = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    d = np.stack([(jj - cam.center[0]) / cam.fx, -(ii - cam.center[1]) / cam.fy, -np.ones_like(jj)], -1)
    o = np.array([0.0, 0.0, cam.distance])
    n = R @ np.array([0.0, 0.0, 1.0])
    t = -(o @ n) / (d @ n)  # ray o + t d meets the plane n·x = 0
    local = (o + t[..., None] * d) @ R  # R^T x
    u = (local[..., 0] - X0) / (X1 - X0)
    v = (local[..., 1] - Y0) / (Y1 - Y0)
    margin = np.minimum.reduce([u, 1 - u, v, 1 - v])
    inside = margin > 0
    return inside, margin, u, v


@pytest.mark.parametrize("yaw_deg", [0.0, 40.0])
def test_textured_quad_matches_brute_force(yaw_deg):
    rng = np.random.default_rng(3)
    tex_u8 = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    mesh = _quad(tex_u8)
    cam = PerspectiveCamera(focal=150.0, center=(31.5, 23.5), size=(48, 64), distance=4.0)
    r = render_textured(mesh, cam, angles=(0.0, math.radians(yaw_deg), 0.0), centre=(0, 0, 0), background=0.25)
    inside, margin, u, v = _reference(cam, math.radians(yaw_deg), tex_u8)
    clear = np.abs(margin) > 1e-3  # pixel centres not on the border itself
    assert np.array_equal(r.mask.numpy()[clear], inside[clear])
    sel = inside & clear
    want = _bilinear(tex_u8.astype(np.float64) / 255.0, u[sel], v[sel])
    got = r.image.permute(1, 2, 0).numpy()[sel]
    assert sel.sum() > 300
    np.testing.assert_allclose(got, want, atol=2e-4)
    assert np.all(r.image.permute(1, 2, 0).numpy()[~r.mask.numpy()] == 0.25)
    assert set(np.unique(r.material.numpy())) == {-1, 0}


def test_materials_without_texture_show_vertex_colours():
    tex = np.full((4, 4, 3), 200, np.uint8)
    mesh = _quad(tex, split_untextured=True)
    cam = PerspectiveCamera(focal=150.0, center=(31.5, 23.5), size=(48, 64), distance=4.0)
    r = render_textured(mesh, cam, centre=(0, 0, 0))
    img, mat = r.image.permute(1, 2, 0).numpy(), r.material.numpy()
    assert (mat == 0).sum() > 100 and (mat == 1).sum() > 100
    np.testing.assert_allclose(img[mat == 0], 200 / 255.0, atol=1e-5)
    np.testing.assert_allclose(img[mat == 1], np.broadcast_to([0.2, 0.5, 0.8], img[mat == 1].shape), atol=1e-5)


def test_supersampling_is_the_mean_of_the_fine_render():
    """k× supersampling = box filter of the render at k× the resolution (same view)."""
    rng = np.random.default_rng(5)
    mesh = _quad(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    cam = PerspectiveCamera(focal=150.0, center=(31.5, 23.5), size=(48, 64), distance=4.0)
    fine_cam = PerspectiveCamera(focal=300.0, center=(63.5, 47.5), size=(96, 128), distance=4.0)
    coarse = render_textured(mesh, cam, angles=(0, 0.3, 0), centre=(0, 0, 0), supersample=2)
    fine = render_textured(mesh, fine_cam, angles=(0, 0.3, 0), centre=(0, 0, 0))
    box = fine.image.view(3, 48, 2, 64, 2).mean((2, 4))
    torch.testing.assert_close(coarse.image, box, atol=1e-5, rtol=0)
    assert coarse.verts_px.shape == (4, 3) and coarse.camera == cam


def test_head_camera_frames_every_rotation():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(500, 3)) * [0.08, 0.12, 0.07] + [0.01, -0.02, 0.03]
    cam = head_camera(v, (128, 160))
    c = mesh_centre(v)
    for yaw in np.linspace(-math.pi, math.pi, 13):
        px = cam.project(pose_vertices(v, (0.1, yaw, 0.0), c))
        assert px[:, 0].min() >= 0 and px[:, 0].max() <= 159 and px[:, 1].min() >= 0 and px[:, 1].max() <= 127
    np.testing.assert_allclose(pose_vertices(v).numpy().mean(0) + c, v.mean(0), atol=1e-12)


def test_project_points_agrees_with_the_rendering():
    mesh = _quad(np.zeros((2, 2, 3), np.uint8))
    cam = PerspectiveCamera(focal=150.0, center=(31.5, 23.5), size=(48, 64), distance=4.0)
    c = np.array([0.1, 0.0, 0.05])
    r = render_textured(mesh, cam, angles=(0.1, 0.5, 0.0), centre=c, supersample=3)
    from facegcn.render.textured import project_points

    np.testing.assert_allclose(project_points(mesh.vertices, cam, (0.1, 0.5, 0.0), c), r.project(np.arange(4)),
                               atol=1e-4)
    with pytest.raises(ValueError):
        project_points(mesh.vertices, cam)
