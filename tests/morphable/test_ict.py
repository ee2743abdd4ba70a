"""ICT-FaceKit loader, geometry and albedo space. References: the original asset, an analytic
sphere, and a dense generalised eigen-solve."""

import numpy as np
import pytest
import scipy.linalg
import torch
import trimesh

from facegcn.morphable import PAPER_LAYOUT, CoeffLayout, ModelData, MorphableModel
from facegcn.morphable.albedo import cotangent_laplacian, laplacian_eigenbasis


def test_counts(ict):
    s = ict.summary()
    assert s["vertices"] == 9409
    assert s["identity_components"] == 100
    assert s["expression_components"] == 53
    assert s["landmarks"] == 68
    assert ict.faces.shape == (18460, 3)
    assert ict.uv is not None and ict.faces_uv.shape == ict.faces.shape
    assert 0 <= float(ict.uv.min()) and float(ict.uv.max()) <= 1


def test_deltas_reproduce_original_vertices(ict, shared_ict_npz):
    """shape(id, exp) equals the original (cm, uncompressed) model, up to the float16 storage."""
    d = np.load(shared_ict_npz)
    g = np.random.default_rng(0)
    a = g.standard_normal(100).astype(np.float32)
    b = g.uniform(0, 1, 53).astype(np.float32)
    ref = d["neutral"][:9409] + np.einsum("k,kvc->vc", a, d["identity_deltas"][:, :9409]) \
        + np.einsum("k,kvc->vc", b, d["expression_deltas"][:, :9409])
    centre = d["neutral"][:9409].astype(np.float64).mean(0)
    ref_dm = (ref - centre) / 10.0
    got = ict.shape(torch.from_numpy(a)[None], torch.from_numpy(b)[None])[0].numpy()
    err_cm = np.abs(got - ref_dm).max() * 10
    assert err_cm < 5e-3, err_cm  # float16 deltas: < 0.05 mm anywhere
    # a named vertex: the nose-tip landmark
    k = int(d["landmarks68"][30])
    np.testing.assert_allclose(got[k], ref_dm[k], atol=5e-4)


def test_normals_point_outwards_and_landmarks(ict):
    v = ict.mean_shape[None]
    n = ict.vertex_normals(v)
    torch.testing.assert_close(n.norm(dim=-1), torch.ones(1, ict.n_vertices), atol=1e-5, rtol=0)
    nose = int(ict.landmark_idx[30])
    assert n[0, nose, 2] > 0.9  # nose tip faces the camera (+z)
    lm = ict.landmarks(v)[0]
    assert lm[36, 0] < 0 < lm[45, 0]  # eye corners on either side (x)
    assert lm[8, 1] < lm[57, 1] < lm[33, 1] < lm[27, 1]  # chin < lower lip < nose < nose bridge


def test_vertex_normals_match_analytic_sphere():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=2.0)
    V = len(sphere.vertices)
    data = ModelData(
        name="sphere", mean_shape=np.asarray(sphere.vertices), id_basis=np.zeros((3 * V, 1)),
        exp_basis=np.zeros((3 * V, 1)), mean_albedo=np.full((V, 3), 0.5), albedo_basis=np.zeros((3 * V, 1)),
        faces=np.asarray(sphere.faces), landmarks68=np.arange(68), recenter=False,
    )
    m = MorphableModel(data)
    n = m.vertex_normals(m.mean_shape[None].double())[0]
    ref = m.mean_shape.double() / m.mean_shape.double().norm(dim=-1, keepdim=True)
    ang = torch.rad2deg(torch.acos((n * ref).sum(-1).clamp(-1, 1)))
    assert float(ang.max()) < 0.5, float(ang.max())


def test_albedo_eigenbasis_against_dense_solve():
    mesh = trimesh.creation.icosphere(subdivisions=2)
    lam, phi = laplacian_eigenbasis(mesh.vertices, mesh.faces, 6)
    L, mass = cotangent_laplacian(mesh.vertices, mesh.faces)
    ref = scipy.linalg.eigh(L.toarray(), np.diag(mass), eigvals_only=True)[:6]
    np.testing.assert_allclose(lam, np.maximum(ref, 0), atol=1e-6)
    # sphere harmonics: 1 constant mode, then 3 modes with λ = 2 (l = 1), unit radius
    np.testing.assert_allclose(lam[1:4], 2.0, rtol=0.02)
    np.testing.assert_allclose(phi.T @ (mass[:, None] * phi), np.eye(6), atol=1e-8)


def test_albedo_space_is_plausible(ict):
    g = torch.Generator().manual_seed(0)
    tex = torch.randn(64, ict.layout.tex, generator=g)
    alb = ict.albedo(tex)
    assert 0.05 < float(alb.quantile(0.01)) and float(alb.quantile(0.99)) < 1.0
    # constant and smooth: neighbouring vertices differ far less than random vertices
    f = ict.faces
    edge_diff = (alb[:, f[:, 0]] - alb[:, f[:, 1]]).abs().mean()
    rand_diff = (alb[:, torch.randperm(ict.n_vertices)] - alb).abs().mean()
    assert edge_diff < 0.1 * rand_diff
    torch.testing.assert_close(ict.albedo(torch.zeros(1, 80))[0], ict.mean_albedo)


def test_layout_split_join():
    assert PAPER_LAYOUT.total == 257
    assert PAPER_LAYOUT.slices["sh"] == slice(227, 254)
    L = CoeffLayout(id=100, exp=53, tex=80)
    x = torch.randn(3, L.total)
    c = L.split(x)
    assert c.id.shape == (3, 100) and c.trans.shape == (3, 3)
    torch.testing.assert_close(L.join(c), x)
    with pytest.raises(ValueError):
        L.split(torch.zeros(3, 257))


def test_mirror_index_is_an_involution_on_most_vertices(ict):
    mi = ict.mirror_index()
    v = ict.mean_shape
    err = (v[mi] * torch.tensor([-1.0, 1, 1]) - v).norm(dim=-1)
    assert float(err.median()) < 0.01  # < 1 mm (decimetres)
    assert float((mi[mi] == torch.arange(len(mi))).float().mean()) > 0.8


def test_regions_are_sane(ict):
    lm = ict.landmarks(ict.mean_shape[None])[0]
    eyes = ict.mean_shape[ict.region("eyes")]
    mouth = ict.mean_shape[ict.region("mouth")]
    assert float(eyes[:, 1].min()) > float(lm[33, 1])  # eyes above the nose base
    assert float(mouth[:, 1].max()) < float(lm[33, 1])  # mouth below it
    skin = set(ict.region("skin").tolist())
    assert not skin & set(ict.region("eyes").tolist())
    assert ict.skin_weight.sum() == len(skin)
    with pytest.raises(KeyError):
        ict.region("hair")


def test_albedo_factor_form_matches_the_dense_basis(ict):
    """ICT's albedo by the basis's Kronecker factors (phi @ (δ @ colour)) equals the dense
    ``mean + B_tex δ`` (:meth:`albedo_reference`), values and gradients; the factors rebuild the
    dense basis column by column."""
    from facegcn.morphable.albedo import albedo_factors, assemble_albedo_basis

    assert ict.albedo_phi is not None
    g = torch.Generator().manual_seed(1)
    tex = torch.randn(3, ict.layout.tex, generator=g, requires_grad=True)
    w = torch.randn(3, ict.n_vertices, 3, generator=g)
    a = ict.albedo(tex)
    (ga,) = torch.autograd.grad((a * w).sum(), tex)
    b = ict.albedo_reference(tex)
    (gb,) = torch.autograd.grad((b * w).sum(), tex)
    torch.testing.assert_close(a, b, rtol=0, atol=2e-6)
    torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-3)
    rng = np.random.default_rng(0)
    lam = np.sort(rng.random(7)) * 5.0
    phi = rng.standard_normal((11, 7))
    _, basis = assemble_albedo_basis(lam, phi, 16)
    f, colour = albedo_factors(lam, phi, 16)
    np.testing.assert_allclose(np.einsum("vi,jic->vcj", f, colour).reshape(33, 16), basis, rtol=0, atol=1e-12)
