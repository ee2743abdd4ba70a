"""Camera conventions. References: hand-built per-axis rotation matrices (Deep3DFaceRecon's
formula), analytic pinhole projection, and the rasterizer itself for pixel-centre agreement."""

from __future__ import annotations

import math

import numpy as np
import torch

from facegcn.render import PerspectiveCamera, rasterize, rigid_transform, rotation_matrix


def _rx(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def test_rotation_matrix_is_rz_ry_rx():
    ang = torch.tensor([[0.3, -0.7, 1.1], [0.0, 0.0, 0.0], [-2.0, 0.4, -0.2]], dtype=torch.float64)
    R = rotation_matrix(ang)
    for k in range(ang.shape[0]):
        x, y, z = ang[k].tolist()
        ref = _rz(z) @ _ry(y) @ _rx(x)
        np.testing.assert_allclose(R[k].numpy(), ref, atol=1e-12)
        np.testing.assert_allclose((R[k] @ R[k].T).numpy(), np.eye(3), atol=1e-12)
    # yaw about +y turns the +z (towards camera) axis towards +x
    Ry = rotation_matrix(torch.tensor([[0.0, math.pi / 2, 0.0]]))[0]
    np.testing.assert_allclose((Ry @ torch.tensor([0.0, 0.0, 1.0])).numpy(), [1, 0, 0], atol=1e-6)


def test_rigid_transform():
    torch.manual_seed(0)
    v = torch.randn(2, 5, 3, dtype=torch.float64)
    ang = torch.randn(2, 3, dtype=torch.float64)
    t = torch.randn(2, 3, dtype=torch.float64)
    out = rigid_transform(v, ang, t)
    R = rotation_matrix(ang)
    ref = torch.einsum("bij,bvj->bvi", R, v) + t[:, None]
    torch.testing.assert_close(out, ref)


def test_projection_formula_and_defaults():
    cam = PerspectiveCamera()
    assert cam.size == (224, 224) and cam.fx == 1015.0 and cam.center == (112.0, 112.0)
    assert cam.distance == 10.0
    p = torch.tensor([[[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.2, -0.3, 1.0]]])
    px = cam.project(p)[0]
    np.testing.assert_allclose(px[0].numpy(), [112, 112], atol=1e-5)
    np.testing.assert_allclose(px[1].numpy(), [112 + 1015 * 0.5 / 10, 112], atol=1e-4)
    # world y up -> image row decreases
    np.testing.assert_allclose(px[2].numpy(), [112, 112 - 1015 * 0.5 / 10], atol=1e-4)
    np.testing.assert_allclose(px[3].numpy(), [112 + 1015 * 0.2 / 9, 112 + 1015 * 0.3 / 9], atol=1e-4)
    assert torch.allclose(cam.depth(p)[0], torch.tensor([10.0, 10.0, 10.0, 9.0]))
    back = cam.unproject(px[None], cam.depth(p))
    torch.testing.assert_close(back, p, atol=1e-5, rtol=0)
    # to_camera is not in place
    q = p.clone()
    cam.to_camera(q)
    assert torch.equal(q, p)


def test_pixel_centre_convention_matches_rasterizer():
    """A tiny triangle around a projected point lights exactly the pixel whose integer
    coordinates are the rounded projection (pixel centres at integer u, v)."""
    cam = PerspectiveCamera()
    for target in [(37.0, 150.0), (100.06, 3.93), (223.0, 0.0), (0.08, 223.0)]:
        px = torch.tensor([[target[0], target[1], 9.0]])
        w = cam.unproject(px[None, :, :2], px[None, :, 2])[0, 0]
        # screen-space triangle of radius 0.3 px centred on the projection
        off = torch.tensor([[0.3, 0.0], [-0.15, 0.26], [-0.15, -0.26]])
        vs = torch.cat([px[:, :2] + off, torch.full((3, 1), 9.0)], 1)[None]
        fr = rasterize(vs, torch.tensor([[0, 1, 2]]), cam.size)
        hits = fr.mask[0].nonzero().tolist()
        assert hits == [[round(target[1]), round(target[0])]]
        assert torch.allclose(cam.project(w[None, None])[0, 0], px[0, :2], atol=1e-3)
