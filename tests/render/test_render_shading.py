"""SH shading. References: closed-form Lambertian irradiance of constant and linear radiance
fields (E = π L0 + 2π/3 L1 d·n), itself checked by numerical quadrature over the hemisphere;
the SH projection of the radiance by quadrature; gradcheck."""

from __future__ import annotations

import math

import numpy as np
import torch

from facegcn.render import (
    DEFAULT_SH_INIT,
    SH_A,
    SH_C,
    sh_basis,
    sh_irradiance,
    sh_shading,
    vertex_normals,
)
from facegcn.render.meshgen import icosphere

A_HAT = (math.pi, 2 * math.pi / 3, math.pi / 4)  # Lambertian kernel (Ramamoorthi & Hanrahan)


def _unit(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 3, dtype=torch.float64, generator=g), dim=-1)


def _sphere_quadrature(n_theta=200, n_phi=400):
    th = (np.arange(n_theta) + 0.5) * math.pi / n_theta
    ph = (np.arange(n_phi) + 0.5) * 2 * math.pi / n_phi
    T, P = np.meshgrid(th, ph, indexing="ij")
    w = np.sin(T) * (math.pi / n_theta) * (2 * math.pi / n_phi)
    d = np.stack([np.sin(T) * np.cos(P), np.sin(T) * np.sin(P), np.cos(T)], -1)
    return d.reshape(-1, 3), w.reshape(-1)


def test_constants_and_default_init():
    assert SH_A == (math.pi, 2 * math.pi / math.sqrt(3), 2 * math.pi / math.sqrt(8))
    c = (1 / math.sqrt(4 * math.pi), math.sqrt(3) / math.sqrt(4 * math.pi))
    assert SH_C == c + (3 * math.sqrt(5) / math.sqrt(12 * math.pi),)
    assert DEFAULT_SH_INIT.shape == (27,)
    assert torch.equal(DEFAULT_SH_INIT, torch.tensor(([0.8] + [0.0] * 8) * 3))
    # zero coefficients = ambient white light of 0.8 * pi / sqrt(4 pi)
    n = _unit(50)[None].float()
    alb = torch.rand(1, 50, 3)
    out = sh_shading(n, alb, torch.zeros(1, 27))
    torch.testing.assert_close(out, alb * (0.8 * math.pi / math.sqrt(4 * math.pi)))


def test_constant_radiance_closed_form():
    """Constant radiance L0 → irradiance π L0 for every normal; its SH coefficient is
    L00 = L0 sqrt(4π) and since a0 = Â0 the Deep3D coefficient is the same number."""
    n = _unit(100)[None]
    L0 = torch.tensor([0.3, 0.5, 0.9], dtype=torch.float64)
    sh = torch.zeros(1, 27, dtype=torch.float64)
    sh[0, [0, 9, 18]] = L0 * math.sqrt(4 * math.pi)
    E = sh_irradiance(n, sh, init=None)
    torch.testing.assert_close(E, (math.pi * L0).expand(1, 100, 3))
    # quadrature of the cosine-weighted hemisphere integral agrees with π
    d, w = _sphere_quadrature()
    nn = np.array([0.2, -0.5, 0.8]) / np.linalg.norm([0.2, -0.5, 0.8])
    assert abs((w * np.clip(d @ nn, 0, None)).sum() - math.pi) < 1e-4


def test_linear_radiance_closed_form_and_basis_signs():
    """Radiance L(ω) = L0 + L1 (d·ω) has irradiance E(n) = π L0 + (2π/3) L1 (d·n). Projecting L on
    the (orthonormal, Condon–Shortley) basis Y_lm = sh_basis / a_l by quadrature and scaling
    by Â_l / a_l must give coefficients whose shading equals E for every normal."""
    d, w = _sphere_quadrature()
    dirn = np.array([0.3, -0.6, 0.74])
    dirn /= np.linalg.norm(dirn)
    L0, L1 = 0.7, 0.45
    L = L0 + L1 * (d @ dirn)
    Y = sh_basis(torch.from_numpy(d)).numpy()
    scale = np.array([SH_A[0]] + [SH_A[1]] * 3 + [SH_A[2]] * 5)
    Yon = Y / scale  # orthonormal real SH (the c_l normalise)
    gram = (Yon * w[:, None]).T @ Yon
    np.testing.assert_allclose(gram, np.eye(9), atol=2e-4)
    Llm = (Yon * (w * L)[:, None]).sum(0)
    band = np.array([0] + [1] * 3 + [2] * 5)
    gamma = Llm * np.array([A_HAT[b] / SH_A[b] for b in band])
    sh = torch.from_numpy(np.concatenate([gamma, 2 * gamma, 0.5 * gamma]))[None]
    n = _unit(200, seed=5)[None]
    E = sh_irradiance(n, sh, init=None)[0]
    ref = math.pi * L0 + (2 * math.pi / 3) * L1 * (n[0].numpy() @ dirn)
    np.testing.assert_allclose(E[:, 0].numpy(), ref, atol=2e-4)
    np.testing.assert_allclose(E[:, 1].numpy(), 2 * ref, atol=4e-4)
    np.testing.assert_allclose(E[:, 2].numpy(), 0.5 * ref, atol=1e-4)
    # the linear coefficients sit at Y1 = -y, Y2 = z, Y3 = -x (Deep3DFaceRecon order):
    # L_1m = c1 L1 (4π/3) (-d_y, d_z, -d_x), scaled by Â1 / a1
    expect = (A_HAT[1] / SH_A[1]) * SH_C[1] * L1 * (4 * math.pi / 3) * np.array([-dirn[1], dirn[2], -dirn[0]])
    np.testing.assert_allclose(gamma[1:4], expect, atol=1e-4)
    np.testing.assert_allclose(gamma[4:], 0, atol=1e-4)


def test_layout_rgb_blocks_and_gradcheck():
    n = _unit(7)[None].requires_grad_(True)
    alb = torch.rand(1, 7, 3, dtype=torch.float64, requires_grad=True)
    sh = torch.zeros(1, 27, dtype=torch.float64)
    sh[0, 9 + 2] = 1.0  # G channel, z-linear term
    out = sh_shading(n, alb, sh, init=None)
    assert (out[..., 0] == 0).all() and (out[..., 2] == 0).all()
    torch.testing.assert_close(out[..., 1], alb[..., 1] * SH_A[1] * SH_C[1] * n[..., 2])
    sh = torch.randn(2, 27, dtype=torch.float64, requires_grad=True)
    n2 = _unit(6, 1).reshape(1, 6, 3).expand(2, -1, -1).clone().requires_grad_(True)
    alb2 = torch.rand(2, 6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: sh_shading(a, b, c), (n2, alb2, sh))


def test_vertex_normals_of_sphere_are_radial():
    v, f = icosphere(3, 2.0)
    vn = vertex_normals(v[None], f)[0]
    cos = (vn * torch.nn.functional.normalize(v, dim=-1)).sum(-1)
    assert cos.min() > 0.999
