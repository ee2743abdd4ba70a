"""Fidelity metrics (facegcn.evaluate.fidelity) on images whose answers are known.

References: analytic — identical images (ratio 1), a heavily blurred copy (ratio ≈ 0), a
band-limited image drawn from the same continuous function at two scales (same ratio once both
are at an inter-ocular distance of 80 px), a filled disc (no see-through) and a ring (the hole's
pixel share, and its area share π r² / π R²), distances against numpy."""

import math

import numpy as np
import pytest
from scipy import ndimage

from facegcn.evaluate.fidelity import (
    DETAIL_IOD,
    SAME_PERSON,
    descriptor_distance,
    detail_energy,
    detail_ratio,
    luminance,
    pair_statistics,
    patch_centres,
    scale_to_iod,
    see_through_share,
)


def _landmarks(iod: float, cx: float, cy: float) -> np.ndarray:
    """68 points with the ones the metric uses at face-like places (the rest at the centre)."""
    lm = np.tile([[cx, cy]], (68, 1)).astype(np.float64)
    h = iod / 2
    lm[36], lm[45] = (cx - h, cy), (cx + h, cy)
    lm[2], lm[14] = (cx - 0.95 * iod, cy + 0.55 * iod), (cx + 0.95 * iod, cy + 0.55 * iod)
    lm[31], lm[35] = (cx - 0.2 * iod, cy + 0.5 * iod), (cx + 0.2 * iod, cy + 0.5 * iod)
    lm[8] = (cx, cy + 1.3 * iod)  # the chin: the crop reaches below the patches
    lm[19] = (cx, cy - 0.4 * iod)
    return lm


def _field(iod: float, shape=None, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A band-limited grey image (wavelengths 5-16 px at an inter-ocular distance of 80 px),
    sampled at pixel centres for a face of inter-ocular distance ``iod`` px; and its landmarks."""
    s = iod / DETAIL_IOD
    H, W = shape or (int(260 * s), int(260 * s))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64) / s  # in units of px at IOD 80
    img = np.full((H, W), 0.5)
    for _ in range(40):
        lam = rng.uniform(5, 16)
        th = rng.uniform(0, np.pi)
        img += 0.02 * np.cos(2 * np.pi * (xx * np.cos(th) + yy * np.sin(th)) / lam + rng.uniform(0, 2 * np.pi))
    return img, _landmarks(iod, W / 2, H / 2 - 0.3 * iod)


def test_identical_images_give_one_and_blur_gives_zero():
    img, lm = _field(120.0)
    assert detail_ratio(img, lm, img, lm) == pytest.approx(1.0, abs=1e-12)
    blurred = ndimage.gaussian_filter(img, 6.0)
    assert detail_ratio(blurred, lm, img, lm) < 0.01
    flat = np.full_like(img, 0.4)
    assert detail_ratio(flat, lm, img, lm) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(detail_ratio(img, lm, flat, lm))  # no detail in the photo: undefined


def test_detail_ratio_is_scale_invariant():
    """The same continuous image at 100 px and at 2× (200 px) inter-ocular distance."""
    a, la = _field(100.0)
    b, lb = _field(200.0)
    assert detail_ratio(b, lb, a, la) == pytest.approx(1.0, abs=0.03)
    # against the native 80 px version too
    c, lc = _field(80.0)
    assert detail_ratio(a, la, c, lc) == pytest.approx(1.0, abs=0.03)
    # an image simply upscaled 2× (bicubic) keeps its detail as well
    from PIL import Image

    up = np.asarray(Image.fromarray(a.astype(np.float32)).resize((a.shape[1] * 2, a.shape[0] * 2), Image.BICUBIC))
    assert detail_ratio(up, (la + 0.5) * 2 - 0.5, a, la) == pytest.approx(1.0, abs=0.04)


def test_scale_to_iod_and_patch_positions():
    img, lm = _field(160.0)
    g, lm2 = scale_to_iod(img, lm)
    assert np.linalg.norm(lm2[45] - lm2[36]) == pytest.approx(DETAIL_IOD, rel=0.01)
    c = patch_centres(lm)
    np.testing.assert_allclose(c[0], (lm[2] + lm[31]) / 2)
    np.testing.assert_allclose(c[1], (lm[14] + lm[35]) / 2)
    # a landmark on a bright dot stays on it after resampling
    dot = np.zeros((400, 400))
    dot[200:203, 120:123] = 1.0
    lmd = _landmarks(160.0, 200, 150)
    lmd[0] = (121, 201)
    gd, lmd2 = scale_to_iod(dot, lmd)
    y, x = np.unravel_index(np.argmax(gd), gd.shape)
    assert abs(x - lmd2[0, 0]) <= 1 and abs(y - lmd2[0, 1]) <= 1


def test_patch_outside_the_image_is_nan_and_colour_input():
    img, lm = _field(100.0)
    assert math.isnan(detail_energy(img[: int(lm[36, 1]) + 10], lm))
    rgb = (np.stack([img] * 3, -1) * 255).round().astype(np.uint8)
    np.testing.assert_allclose(luminance(rgb), np.round(img * 255) / 255, atol=1e-9)
    assert luminance(np.moveaxis(rgb.astype(np.float64) / 255, -1, 0)).shape == img.shape
    assert detail_energy(rgb, lm) == pytest.approx(detail_energy(np.round(img * 255) / 255, lm), rel=1e-9)


def test_see_through_share_of_disc_and_ring():
    yy, xx = np.mgrid[0:201, 0:201]
    r = np.hypot(xx - 100, yy - 100)
    assert see_through_share(r <= 80) == 0.0
    ring = (r <= 80) & (r > 40)
    share = see_through_share(ring)
    assert share == pytest.approx((r <= 40).sum() / (r <= 80).sum(), abs=1e-12)
    assert share == pytest.approx(0.25, abs=0.01)
    # background open to the border (a notch, a C shape) is not see-through
    c_shape = ring & ~((xx > 100) & (np.abs(yy - 100) < 10))
    assert see_through_share(c_shape) == 0.0
    assert math.isnan(see_through_share(np.zeros((5, 5), bool)))


def test_distances_and_pair_statistics():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=128), rng.normal(size=128)
    assert descriptor_distance(a, b) == pytest.approx(np.sqrt(((a - b) ** 2).sum()))
    assert descriptor_distance(a, a) == 0.0
    assert math.isnan(descriptor_distance(a, None))
    assert math.isnan(descriptor_distance(a, np.full(128, np.nan)))
    st = pair_statistics([0.3, 0.5, SAME_PERSON, 0.9, float("nan")])
    assert st.n == 4 and st.mean == pytest.approx(0.575)
    assert st.accept == pytest.approx(0.5) and st.reject == pytest.approx(0.5)  # 0.6 itself is rejected
    empty = pair_statistics([])
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.accept)
