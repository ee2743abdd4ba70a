"""Numba texture-sampling kernels against the numpy references and an analytic case."""

import numpy as np
import pytest

from facegcn.render._sample_kernels import bilinear, gather, gather_reference
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


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 5, 2), (6, 1, 1), (33, 47, 3)])
def test_bilinear_matches_reference(shape):
    rng = np.random.default_rng(1)
    img = rng.random(shape).astype(np.float32)
    H, W = shape[:2]
    p = np.stack([rng.uniform(-3, W + 3, 2000), rng.uniform(-3, H + 3, 2000)], 1)
    p[:5] = [[np.nan, 1.0], [1.0, np.nan], [-0.5, -0.5], [W - 0.5, 0.0], [W - 1.0, H - 1.0]]
    v, inside = bilinear(img, p)
    rv, rin = sample_bilinear_reference(img, p)
    np.testing.assert_allclose(v, rv, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(inside, rin)
    assert not inside[0] and not inside[1] and inside[2] and not inside[3]


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
