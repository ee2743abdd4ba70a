"""Overfitting checks on the ICT face: the networks can represent and learn colour fields.

PSNR is measured on colours in [0, 1] (the generator's tanh output mapped from [-1, 1]).
Fixed step counts (not wall-clock), so the result does not depend on machine load (the graph
tests run single-threaded, see ``conftest.py``).
"""

from __future__ import annotations

import math

import pytest
import torch

from facegcn.graph import MeshOperators, TextureDecoder, TextureGenerator


def _psnr(mse: float) -> float:
    return 10.0 * math.log10(1.0 / mse)


def _fit(model, inputs, target, steps: int, lr: float = 3e-3, to_unit=lambda y: y) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = (model(*inputs) - target).square().mean()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return _psnr(float((to_unit(model(*inputs)) - to_unit(target)).square().mean()))


def _smooth_albedo(p: torch.Tensor) -> torch.Tensor:
    x, y, z = p.unbind(-1)
    base = torch.tensor([0.72, 0.52, 0.42], dtype=p.dtype)
    return base + 0.12 * torch.stack([torch.sin(2.5 * x + y), torch.sin(2.0 * y + 0.5), torch.cos(3.0 * x - 1.5 * z)], -1)


def _vertex_normals(v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    fn = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=1)
    n = torch.zeros_like(v).index_add_(0, f.reshape(-1), fn.repeat_interleave(3, 0))
    return n / n.norm(dim=1, keepdim=True).clamp_min(1e-12)


@pytest.fixture(scope="module")
def ops(ict_hierarchy):
    return MeshOperators.from_hierarchy(ict_hierarchy)


def test_decoder_overfits_colour_field(ict_hierarchy, ops):
    """Decoder alone, fixed identity vector -> a fixed colour field (smooth albedo plus a
    mid-frequency pattern, range about [0.26, 0.87]) to PSNR >= 35 dB."""
    torch.manual_seed(0)
    p = torch.from_numpy(ict_hierarchy.vertices[0]).double()
    x, y, z = p.unbind(-1)
    detail = 0.04 * torch.stack([torch.sin(6 * x) * torch.cos(5 * y), torch.sin(7 * y + 2 * z), torch.cos(6 * x + 4 * y)], -1)
    target = (_smooth_albedo(p) + detail).float()[None]
    dec = TextureDecoder(ops)
    identity = torch.randn(1, 128)
    psnr = _fit(dec, (identity,), target, steps=600)
    print(f"decoder overfit PSNR: {psnr:.2f} dB")
    assert psnr >= 35.0


@pytest.mark.slow  # ~25 s on an idle 2-core CPU, far more on a busy one
def test_generator_overfits_textured_target(ict_hierarchy, ops):
    """Decoder + refiner + merger: inputs are a smooth 3DMM-like albedo, the photo colour (target
    texture + a lighting offset) where visible (normal.z > 0.3, 2/3 of the vertices), else 0, and
    the visibility; the target is the albedo plus a texture of wavelength ~10 edges on the visible
    part. Colours in [-1, 1] as in the authors' code. PSNR >= 30 dB."""
    torch.manual_seed(0)
    p = torch.from_numpy(ict_hierarchy.vertices[0]).double()
    f = torch.from_numpy(ict_hierarchy.faces[0])
    x, y, _ = p.unbind(-1)
    vis = (_vertex_normals(p, f)[:, 2] > 0.3).double()[:, None]
    albedo = _smooth_albedo(p)
    fr = 15.0
    texture = 0.08 * torch.stack([torch.sin(fr * x) * torch.sin(fr * y), torch.sin(fr * (x + y)),
                                  torch.cos(fr * y - 0.5 * fr * x)], -1)
    target01 = albedo + vis * texture
    photo01 = target01 + 0.1 * (x[:, None] + 0.5)
    inputs = torch.cat([2 * albedo - 1, vis * (2 * photo01 - 1), vis], -1).float()[None]
    target = (2 * target01 - 1).float()[None]
    gen = TextureGenerator(ops)
    identity = torch.randn(1, 128)
    psnr = _fit(gen, (identity, inputs), target, steps=600, to_unit=lambda t: (t + 1) / 2)
    print(f"generator (decoder+refiner+merger) overfit PSNR: {psnr:.2f} dB")
    assert psnr >= 30.0
