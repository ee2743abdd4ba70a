"""Attribute interpolation and anti-aliasing. References: torch.autograd.gradcheck (finite
differences, float64) w.r.t. attributes and vertex positions on both backends; the analytic
camera ray (interpolated camera-space positions must lie on the pixel's ray at the z-buffer
depth); exact coverage area of an axis-aligned square for the anti-aliased mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facegcn.render import PerspectiveCamera, antialias, interpolate, rasterize
from facegcn.render.meshgen import grid_faces, icosphere, relief_grid

BACKENDS = ["numba", "torch"]


def _small_scene(dtype=torch.float64):
    """Two small perturbed meshes (batch of 2) on a 12x14 image, every triangle a few pixels."""
    g = torch.Generator().manual_seed(3)
    cam = PerspectiveCamera(focal=55.0, center=(6.5, 5.5), size=(12, 14))
    ys, xs = torch.meshgrid(torch.linspace(1, -1, 4), torch.linspace(-1.2, 1.2, 4), indexing="ij")
    base = torch.stack([xs, ys, 0.3 * torch.cos(xs) * torch.cos(ys)], -1).reshape(-1, 3)
    v = base.expand(2, -1, -1) + 0.05 * torch.randn(2, 16, 3, generator=g)
    f = grid_faces(4, 4)
    vpx = cam.to_screen(v.to(dtype))
    return cam, vpx, f


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_attr_and_positions(backend):
    cam, vpx, f = _small_scene()
    fr = rasterize(vpx, f, cam.size)
    assert fr.mask.float().mean() > 0.5
    g = torch.Generator().manual_seed(0)
    attr = torch.rand(2, 16, 2, dtype=torch.float64, generator=g).requires_grad_(True)
    vp = vpx.clone().requires_grad_(True)
    fn = lambda a, p: interpolate(a, f, fr, p, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (attr, vp), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_fixed_barycentrics_and_attr_faces(backend):
    cam, vpx, f = _small_scene()
    fr = rasterize(vpx, f, cam.size)
    # attribute with its own indexing: a reversed copy of the vertex list
    perm = torch.arange(15, -1, -1)
    attr = torch.rand(2, 16, 3, dtype=torch.float64).requires_grad_(True)
    a_faces = perm[f]
    out_a = interpolate(attr[:, perm], f, fr, vpx, attr_faces=a_faces, backend=backend)
    out_b = interpolate(attr, f, fr, vpx, backend=backend)
    torch.testing.assert_close(out_a, out_b)
    # verts_px=None uses the rasterizer's (float32) barycentrics
    out_c = interpolate(attr, f, fr, None, backend=backend)
    torch.testing.assert_close(out_c, out_b, atol=1e-5, rtol=0)
    assert torch.autograd.gradcheck(
        lambda a: interpolate(a, f, fr, None, backend=backend), (attr,), eps=1e-6, atol=1e-5
    )


def test_backends_agree_forward_and_backward():
    v, f = relief_grid(rows=71, cols=71)
    cam = PerspectiveCamera()
    vpx = cam.to_screen(v[None]).expand(2, -1, -1).contiguous()
    vpx[1, :, 0] += 3.0
    fr = rasterize(vpx, f, cam.size)
    attr = torch.rand(2, v.shape[0], 3)
    gout = torch.randn(2, *cam.size, 3)
    res = {}
    for be in BACKENDS:
        a = attr.clone().requires_grad_(True)
        p = vpx.clone().requires_grad_(True)
        out = interpolate(a, f, fr, p, backend=be)
        out.backward(gout)
        res[be] = (out.detach(), a.grad, p.grad)
    for x, y in zip(res["numba"], res["torch"]):
        torch.testing.assert_close(x, y, atol=2e-4, rtol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_interpolated_position_lies_on_pixel_ray(backend):
    """Perspective-correct: interpolating camera-space positions gives the point of the pixel's
    ray at the z-buffer depth: x = (u - cx) z / f, y = -(v - cy) z / f."""
    v, f = icosphere(2, 1.0)
    cam = PerspectiveCamera(focal=150.0, center=(31.5, 31.5), size=(64, 64), distance=4.0)
    vc = cam.to_camera(v[None]).double()
    vpx = cam.camera_to_screen(vc)
    fr = rasterize(vpx, f, cam.size)
    pos = interpolate(vc, f, fr, vpx, backend=backend)[0]
    m = fr.mask[0]
    ii, jj = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    z = pos[..., 2]
    torch.testing.assert_close(z[m], fr.depth[0][m].double(), rtol=1e-5, atol=0)
    torch.testing.assert_close(pos[..., 0][m], ((jj - 31.5) * z / 150.0)[m].double())
    torch.testing.assert_close(pos[..., 1][m], (-(ii - 31.5) * z / 150.0)[m].double())
    assert (pos[~m] == 0).all()


def test_antialiased_mask_gives_square_area():
    """Axis-aligned square (two triangles) with sides between pixel centres: each side pixel's
    anti-aliased coverage is its exact covered fraction, so the image sum equals the exact area up
    to the four corner pixels (where the per-axis blend gives fx instead of fx * fy: here
    0.02 + 0.025 + 0.06 + 0.075 = 0.18). The gradient w.r.t. a side's position is the number of
    pixel rows (columns) it crosses."""
    cam = PerspectiveCamera(focal=100.0, center=(31.5, 31.5), size=(64, 64))
    x0, x1, y0, y1 = 10.3, 40.75, 12.6, 33.2  # pixel coordinates of the square's sides
    px = torch.tensor([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=torch.float64)
    vpx = torch.cat([px, torch.full((4, 1), 7.0, dtype=torch.float64)], 1)[None].requires_grad_(True)
    f = torch.tensor([[0, 2, 3], [0, 3, 1]])
    fr = rasterize(vpx.detach(), f, cam.size)
    mask = fr.mask.unsqueeze(-1).double()
    aa = antialias(mask, fr, vpx, f)
    area = aa.sum()
    exact = (x1 - x0) * (y1 - y0)
    assert abs(area.item() - (exact + 0.18)) < 1e-9
    assert abs(mask.sum().item() - exact) > 2.5  # the hard mask is 630 px
    m = aa[0, ..., 0]
    np.testing.assert_allclose(m[20, 10].item(), 0.2)  # left side: covered fraction of pixel 10
    np.testing.assert_allclose(m[20, 41].item(), 0.25)
    np.testing.assert_allclose(m[13, 20].item(), 0.9)
    np.testing.assert_allclose(m[33, 20].item(), 0.7)
    area.backward()
    rows, cols = 21, 30  # pixel rows 13..33 and columns 11..40 cross the sides
    assert abs((vpx.grad[0, 1, 0] + vpx.grad[0, 3, 0]).item() - rows) < 1e-6
    assert abs((vpx.grad[0, 0, 0] + vpx.grad[0, 2, 0]).item() + rows) < 1e-6
    assert abs((vpx.grad[0, 2, 1] + vpx.grad[0, 3, 1]).item() - cols) < 1e-6


def test_antialias_matches_finite_differences_and_skips_interior_edges():
    v, f = icosphere(2, 1.0)
    cam = PerspectiveCamera(focal=120.0, center=(23.5, 23.5), size=(48, 48), distance=4.0)
    vpx = cam.to_screen(v[None].double())
    fr = rasterize(vpx, f, cam.size)
    col = torch.rand(1, v.shape[0], 3, dtype=torch.float64)
    img = interpolate(col, f, fr, vpx)
    out = antialias(img, fr, vpx, f)
    changed = (out - img).abs().sum(-1)[0] > 0
    # only pixels at or next to the silhouette change (interior edges are not silhouettes)
    m = fr.mask[0]
    dil = lambda x: torch.nn.functional.max_pool2d(x[None, None].float(), 3, 1, 1)[0, 0].bool()  # noqa: E731
    near_sil = dil(m) & dil(~m)
    assert changed.any() and not (changed & ~near_sil).any()
    # gradient w.r.t. positions = finite differences (with fixed fragments)
    w = torch.rand_like(out)
    p = vpx.clone().requires_grad_(True)
    (antialias(interpolate(col, f, fr, p), fr, p, f) * w).sum().backward()
    g = torch.Generator().manual_seed(1)
    d = torch.randn(vpx.shape, dtype=torch.float64, generator=g) * 1e-6
    lp = (antialias(interpolate(col, f, fr, vpx + d), fr, vpx + d, f) * w).sum()
    lm = (antialias(interpolate(col, f, fr, vpx - d), fr, vpx - d, f) * w).sum()
    fd = (lp - lm).item() / 2
    an = (p.grad * d).sum().item()
    assert abs(fd - an) <= 1e-6 * max(1.0, abs(an)) + 1e-9
    assert p.grad[0, :, :2].abs().sum() > 0


def test_attr_shared_across_batch_and_shapes():
    cam, vpx, f = _small_scene(torch.float32)
    fr = rasterize(vpx, f, cam.size)
    a = torch.rand(16, 4)
    out = interpolate(a, f, fr, vpx)
    assert out.shape == (2, 12, 14, 4) and out.dtype == torch.float32
    ref = interpolate(a.expand(2, -1, -1), f, fr, vpx)
    torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError):
        interpolate(torch.rand(3, 16, 4), f, fr, vpx)
    np.testing.assert_array_equal(out[~fr.mask].numpy(), 0)
