"""Numba texture-sampling kernels against the numpy references and an analytic case."""

import numpy as np
import pytest

from facegcn.render._sample_kernels import bicubic, bicubic_reference, bilinear, gather, gather_reference
from facegcn.render.bake import sample_bilinear_reference


def test_bilinear_is_exact_on_a_linear_image():
    # f(x, y) = 2x - 3y + 1 is reproduced exactly by bilinear interpolation inside the image
    H, W = 7, 9
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    img = np.stack([2 * xs - 3 * ys + 1, xs * 0 + 5], -1)
    rng = np.random.default_rng(0)
    p = np.stack([rng.uniform(0, W - 1, 500), rng.uniform(0, H - 1, 500)], 1)
    v, inside = bilinear(img, p)
    np.testing.assert_allclose(v[:, 0], 2 * p[:, 0] - 3 * p[:, 1] + 1, atol=1e-12)
    np.testing.assert_allclose(v[:, 1], 5.0)
    assert inside.all()


@pytest.mark.parametrize("kind", ["bilinear", "bicubic"])
@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 5, 2), (6, 1, 1), (2, 3, 1), (33, 47, 3)])
def test_kernels_match_their_references(kind, shape):
    kernel, reference = {"bilinear": (bilinear, sample_bilinear_reference),
                         "bicubic": (bicubic, bicubic_reference)}[kind]
    rng = np.random.default_rng(1)
    img = rng.random(shape).astype(np.float32)
    H, W = shape[:2]
    p = np.stack([rng.uniform(-3, W + 3, 2000), rng.uniform(-3, H + 3, 2000)], 1)
    p[:5] = [[np.nan, 1.0], [1.0, np.nan], [-0.5, -0.5], [W - 0.5, 0.0], [W - 1.0, H - 1.0]]
    v, inside = kernel(img, p)
    rv, rin = reference(img, p)
    np.testing.assert_allclose(v, rv, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(inside, rin)
    assert not inside[0] and not inside[1] and inside[2] and not inside[3]
    assert np.isfinite(v).all()


def test_gather_matches_reference():
    rng = np.random.default_rng(2)
    attr = rng.random((50, 9))
    corners = rng.integers(0, 50, (3000, 3))
    bary = rng.dirichlet(np.ones(3), 3000)
    np.testing.assert_allclose(gather(attr, corners, bary), gather_reference(attr, corners, bary), rtol=1e-12,
                               atol=1e-12)
    # a corner with weight 1 returns that vertex's attribute exactly
    one = gather(attr, np.array([[7, 3, 4]]), np.array([[1.0, 0.0, 0.0]]))
    np.testing.assert_array_equal(one[0], attr[7])


def test_bicubic_interpolates_and_reproduces_quadratics():
    H, W = 9, 11
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    img = np.stack([0.5 * xs**2 - xs * ys + 2 * ys**2 - 3 * xs + 1, xs * 0 + 4], -1)
    rng = np.random.default_rng(4)
    # interior points (all 4 x 4 taps inside): Keys' cubic (a = -1/2) is exact on quadratics
    p = np.stack([rng.uniform(1, W - 2, 500), rng.uniform(1, H - 2, 500)], 1)
    v, _ = bicubic(img, p)
    x, y = p[:, 0], p[:, 1]
    np.testing.assert_allclose(v[:, 0], 0.5 * x**2 - x * y + 2 * y**2 - 3 * x + 1, atol=1e-9)
    # a constant stays constant everywhere, borders included (the weights sum to 1)
    q = np.stack([rng.uniform(-1, W, 500), rng.uniform(-1, H, 500)], 1)
    np.testing.assert_allclose(bicubic(img, q)[0][:, 1], 4.0, atol=1e-12)
    # at the pixel centres it returns the pixels
    nodes = np.stack([xs.ravel(), ys.ravel()], 1)
    np.testing.assert_allclose(bicubic(img, nodes)[0], img.reshape(-1, 2), atol=1e-12)


def test_bicubic_keeps_fine_detail_that_bilinear_loses():
    # a sinusoid at 0.4 cycles / pixel read at half-pixel offsets: bilinear keeps cos(0.4 pi) = 31 %
    # of its amplitude, Catmull-Rom 45 % (its response at a 1/2-pixel shift, 0.4 cycles / pixel)
    W = 200
    xs = np.arange(W, dtype=np.float64)
    img = np.sin(2 * np.pi * 0.4 * xs)[None, :, None].repeat(3, 0)
    x = np.arange(10, W - 10) + 0.5
    p = np.stack([x, np.ones_like(x)], 1)
    truth = np.sin(2 * np.pi * 0.4 * x)
    amp = {name: float(np.dot(f(img, p)[0][:, 0], truth) / np.dot(truth, truth)) for name, f in
           (("bilinear", bilinear), ("bicubic", bicubic))}
    t = 0.5
    w = [-0.5 * t**3 + t**2 - 0.5 * t, 1.5 * t**3 - 2.5 * t**2 + 1]  # taps at -1/2 and +1/2 (x 2 by symmetry)
    expected = 2 * (w[1] * np.cos(np.pi * 0.4) + w[0] * np.cos(3 * np.pi * 0.4))
    assert amp["bilinear"] == pytest.approx(np.cos(np.pi * 0.4), abs=0.02)
    assert amp["bicubic"] == pytest.approx(expected, abs=0.02)
    assert amp["bicubic"] > 1.4 * amp["bilinear"]
