"""MorphableModel.vertex_normals (numba kernels on the CPU, sparse incidence products elsewhere)
against the gather form (vertex_normals_reference) and finite differences (gradcheck)."""

from __future__ import annotations

import pytest
import torch

import facegcn.morphable.model as model_mod


@pytest.fixture(params=["kernels", "torch"])
def path(request, monkeypatch):
    monkeypatch.setattr(model_mod, "_KERNELS_ENABLED", request.param == "kernels")
    return request.param


def test_matches_the_gather_form_float64(ict, path):
    g = torch.Generator().manual_seed(0)
    v = (ict.mean_shape.double()[None] + 0.02 * torch.randn(3, ict.n_vertices, 3, generator=g, dtype=torch.float64))
    a_in, b_in = v.clone().requires_grad_(True), v.clone().requires_grad_(True)
    a, b = ict.vertex_normals(a_in), ict.vertex_normals_reference(b_in)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    go = torch.randn(a.shape, generator=g, dtype=torch.float64)
    (ga,), (gb,) = torch.autograd.grad(a, a_in, go), torch.autograd.grad(b, b_in, go)
    torch.testing.assert_close(ga, gb, rtol=1e-9, atol=1e-9)


def test_float32_close_to_the_gather_form(ict, path):
    v = ict.mean_shape[None].clone().requires_grad_(True)
    a, b = ict.vertex_normals(v), ict.vertex_normals_reference(v)
    torch.testing.assert_close(a, b, rtol=0, atol=2e-5)
    assert a.dtype == torch.float32


def test_gradcheck_small_mesh(path):
    from facegcn.morphable.model import _Incidence, _NormalSums
    from facegcn.render.meshgen import icosphere

    verts, faces = icosphere(1)
    inc = _Incidence(faces, verts.shape[0], torch.float64, torch.device("cpu"))
    x = (verts.double()[None] * torch.linspace(0.8, 1.2, verts.shape[0], dtype=torch.float64)[None, :, None])
    x = x.repeat(2, 1, 1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: _NormalSums.apply(t, inc), (x,))
