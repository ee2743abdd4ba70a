"""FixedViewRenderer (rasterise once, sparse pixel × vertex operator) against Renderer itself, and
the lazily computed Rendering fields (depth, visibility) against their eager definitions."""

from __future__ import annotations

import pytest
import torch

from facegcn.render import Renderer, interpolate, rasterize, rigid_transform, vertex_visibility
from facegcn.render.meshgen import relief_grid


def _scene(B=2, rows=61):
    v, f = relief_grid(rows=rows, cols=rows)
    ang = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.3, 0.05]])[:B]
    verts = rigid_transform(v.expand(B, -1, -1), ang, torch.zeros(B, 3))
    g = torch.Generator().manual_seed(0)
    return verts, f, torch.rand(B, v.shape[0], 3, generator=g), g


@pytest.mark.parametrize("background", [0.0, 0.3, "tensor"])
def test_fixed_view_equals_renderer(background):
    verts, f, col, g = _scene()
    bg = torch.tensor([0.2, 0.5, 1.0]) if background == "tensor" else background
    r = Renderer(faces=f, background=bg)
    a_col, b_col = col.clone().requires_grad_(True), col.clone().requires_grad_(True)
    a, b = r(verts, a_col), r.fixed(verts)(b_col)
    torch.testing.assert_close(b.image, a.image, rtol=0, atol=1e-6)
    assert torch.equal(b.mask, a.mask) and torch.equal(b.tri_id, a.tri_id)
    torch.testing.assert_close(b.depth, a.depth, rtol=1e-6, atol=1e-6)
    assert torch.equal(b.visibility, a.visibility)
    go = torch.randn(a.image.shape, generator=g)
    (ga,), (gb,) = torch.autograd.grad(a.image, a_col, go), torch.autograd.grad(b.image, b_col, go)
    torch.testing.assert_close(gb, ga, rtol=0, atol=1e-5 * ga.abs().max().item())


def test_fixed_view_float64_and_shared_colours():
    verts, f, col, _ = _scene(B=1, rows=31)
    r = Renderer(faces=f)
    view = r.fixed(verts.double())
    out = view(col[0].double())  # (V, C) colours shared by the batch
    ref = r(verts.double(), col.double())
    torch.testing.assert_close(out.image, ref.image, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda c: view(c).image, (col[0].double().requires_grad_(True),), fast_mode=True)


def test_fixed_view_rejects_antialiasing():
    verts, f, _, _ = _scene(B=1, rows=11)
    with pytest.raises(ValueError):
        Renderer(faces=f, antialias=True).fixed(verts)


def test_lazy_depth_and_visibility_match_their_definitions():
    verts, f, col, _ = _scene()
    verts = verts.clone().requires_grad_(True)
    r = Renderer(faces=f)
    out = r(verts, col)
    vpx = r.camera.to_screen(verts)
    fr = rasterize(vpx.detach(), f, r.camera.size)
    depth = interpolate(vpx[..., 2:3], f, fr, vpx).permute(0, 3, 1, 2)
    torch.testing.assert_close(out.depth, depth)
    assert out.depth is out.depth  # computed once
    assert torch.equal(out.visibility, vertex_visibility(vpx.detach(), f, fr))
    (gd,) = torch.autograd.grad(out.depth.sum(), verts)  # still differentiable
    (gr,) = torch.autograd.grad(depth.sum(), verts)
    torch.testing.assert_close(gd, gr)


def test_gpu_form_of_the_torch_rasterizer_equals_the_compact_one(monkeypatch):
    """The torch rasterizer's sync-free form (fixed shapes, masks instead of nonzero(): what runs
    on a GPU) gives exactly the CPU form's fragments, here on the CPU; and the near-plane clipping
    branch is exercised (a mesh crossing the camera plane)."""
    import facegcn.render._torch_raster as tr

    v, f = relief_grid(rows=41, cols=41)
    ang = torch.tensor([[0.0, 0.0, 0.0], [0.1, 1.4, 0.0]])
    trans = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 9.3]])  # the second one reaches behind the camera
    verts = rigid_transform(v.expand(2, -1, -1), ang, trans)
    r = Renderer(faces=f)
    vpx = r.camera.to_screen(verts)
    outs = []
    for compact in (True, False):
        monkeypatch.setattr(tr, "COMPACT_ON_CPU", compact)
        outs.append(tr.rasterize_torch(vpx, f, r.camera.size, 0.1, float("inf"), max_candidates=5000))
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    assert (vpx[1, :, 2] < 0.1).any() and outs[1][3][1].any()  # clipped at the near plane, yet visible
    numba = rasterize(vpx, f, r.camera.size, backend="numba")
    # the backends' depth keys differ in precision (float32 vs float64): rare exact ties may differ
    assert (outs[1][0] != numba.tri_id).float().mean() < 2e-3
    c = torch.rand(2, v.shape[0], 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(interpolate(c, f, numba, vpx, backend="torch"), interpolate(c, f, numba, vpx),
                               rtol=1e-4, atol=1e-4)
