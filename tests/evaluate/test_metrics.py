"""Metrics against independent references: scikit-image (PSNR, SSIM), numpy, scipy's
Rotation.align_vectors (rigid alignment), and the identity network's own invariants."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from facegcn.evaluate.metrics import (
    composite,
    error_map,
    identity_cosine,
    masked_l1,
    masked_psnr,
    masked_ssim,
    rigid_aligned_error,
    ssim_map,
    vertex_psnr,
)


def _pair(seed=0, size=64, noise=0.08):
    g = torch.Generator().manual_seed(seed)
    # smooth-ish content so SSIM is neither ~0 nor ~1
    base = torch.nn.functional.interpolate(torch.rand(1, 3, size // 8, size // 8, generator=g), size=(size, size),
                                           mode="bilinear", align_corners=False)[0]
    a = (base + 0.05 * torch.rand(3, size, size, generator=g)).clamp(0, 1)
    b = (a + noise * torch.randn(3, size, size, generator=g)).clamp(0, 1)
    return a, b


def _hwc(t):
    return t.permute(1, 2, 0).double().numpy()


def _sk_ssim_map(a, b):
    _, S = structural_similarity(_hwc(a), _hwc(b), channel_axis=2, data_range=1.0, gaussian_weights=True,
                                 sigma=1.5, use_sample_covariance=False, full=True)
    return S.mean(-1)


def test_psnr_full_mask_matches_skimage():
    a, b = _pair()
    ref = peak_signal_noise_ratio(_hwc(b), _hwc(a), data_range=1.0)
    assert masked_psnr(a, b, torch.ones(64, 64)) == pytest.approx(ref, abs=1e-4)


def test_psnr_and_l1_partial_mask_match_numpy():
    a, b = _pair(1)
    m = torch.zeros(64, 64)
    m[10:40, 5:50] = 1
    sel = m.bool().numpy()
    x, y = _hwc(a)[sel], _hwc(b)[sel]
    assert masked_psnr(a, b, m) == pytest.approx(peak_signal_noise_ratio(y, x, data_range=1.0), abs=1e-4)
    assert masked_l1(a, b, m) == pytest.approx(np.abs(x - y).mean(), abs=1e-6)
    assert math.isnan(masked_psnr(a, b, torch.zeros(64, 64))) and math.isnan(masked_l1(a, b, torch.zeros(64, 64)))


def test_ssim_map_matches_skimage():
    a, b = _pair(2, size=224)
    ours = ssim_map(a, b).double().numpy()
    ref = _sk_ssim_map(a, b)
    # identical away from the border (the two differ only in how they pad the Gaussian window)
    assert np.abs(ours[5:-5, 5:-5] - ref[5:-5, 5:-5]).max() < 1e-4  # float32 vs float64
    mssim = structural_similarity(_hwc(a), _hwc(b), channel_axis=2, data_range=1.0, gaussian_weights=True,
                                  sigma=1.5, use_sample_covariance=False)
    # skimage's mean SSIM averages the map without its 5-pixel border: the same mask gives the same value
    m = torch.zeros(224, 224)
    m[5:-5, 5:-5] = 1
    assert masked_ssim(a, b, m) == pytest.approx(mssim, abs=1e-5)
    # the whole image as the mask: only the border pixels differ
    assert masked_ssim(a, b, torch.ones(224, 224)) == pytest.approx(mssim, abs=0.01)
    assert masked_ssim(a, a, torch.ones(224, 224)) == pytest.approx(1.0, abs=1e-6)


def test_masked_ssim_is_the_mask_average_of_the_full_map():
    a, b = _pair(3)
    m = torch.zeros(64, 64)
    m[12:50, 8:44] = 1.0
    ref = _sk_ssim_map(a, b)[m.bool().numpy()].mean()
    assert masked_ssim(a, b, m) == pytest.approx(ref, abs=1e-5)
    # computed on the full images: what lies outside the mask changes SSIM near the mask border
    b2 = b.clone()
    b2[:, :12] = 0
    assert masked_ssim(a, b2, m) != pytest.approx(masked_ssim(a, b, m), abs=1e-6)


def test_composite_and_error_map():
    a, b = _pair(4)
    m = torch.zeros(64, 64)
    m[:, :32] = 1
    c = composite(a * 2, m, b)  # render values above 1 are clamped
    assert torch.equal(c[:, :, 32:], b[:, :, 32:])
    assert torch.allclose(c[:, :, :32], (a * 2).clamp(0, 1)[:, :, :32])
    e = error_map(a, b, m)
    assert np.isnan(e[:, 32:]).all()
    assert np.allclose(e[:, :32], (a - b).abs().mean(0)[:, :32].numpy(), atol=1e-6)


def test_rigid_aligned_error_matches_scipy_align_vectors():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    b = rng.normal(size=(500, 3))
    R = Rotation.from_rotvec([0.3, -0.5, 0.2]).as_matrix()
    a = b @ R.T + np.array([1.0, 2.0, -3.0])
    assert rigid_aligned_error(a, b).max() < 1e-9  # a pure rigid motion is removed exactly
    a_noisy = a + rng.normal(scale=0.05, size=a.shape)
    err = rigid_aligned_error(a_noisy, b)
    ac, bc = a_noisy - a_noisy.mean(0), b - b.mean(0)
    _, rssd = Rotation.align_vectors(bc, ac)
    assert np.sqrt((err**2).sum()) == pytest.approx(rssd, rel=1e-6)


def test_vertex_psnr_against_skimage_and_gain():
    g = torch.Generator().manual_seed(5)
    t = torch.rand(400, 3, generator=g) * 0.7 + 0.1
    p = (t + 0.03 * torch.randn(400, 3, generator=g)).clamp(0, 1)
    sel = torch.arange(400) % 3 != 0
    ref = peak_signal_noise_ratio(t[sel].numpy().astype(np.float64), p[sel].numpy().astype(np.float64), data_range=1.0)
    assert vertex_psnr(p, t, sel) == pytest.approx(ref, abs=1e-3)
    # a global per-channel scale (albedo/light ambiguity) is removed by the gain correction
    scaled = t * torch.tensor([0.8, 0.9, 0.7])
    assert vertex_psnr(scaled, t) < 25 and vertex_psnr(scaled, t, gain=True) > 60


@pytest.fixture(scope="module")
def scene_pair():
    from facegcn.coarse.synthesis import FaceSynthesis
    from facegcn.apps.evaluate.scenes import make_scene, scene_observation
    from facegcn.morphable import load_model

    m = load_model("ict")
    syn = FaceSynthesis(m)
    s0, s1 = make_scene(m, syn, 0), make_scene(m, syn, 1)
    return s0, s1, scene_observation(s0)


def test_identity_cosine_identical_images_is_one(scene_pair):
    s0, s1, obs = scene_pair
    assert identity_cosine(s0.image, s0.image, obs.chip_transform) == pytest.approx(1.0, abs=1e-5)
    # the observation's descriptor is the descriptor of its image through its chip transform
    from facegcn.evaluate.metrics import identity_descriptor

    f = identity_descriptor(s0.image, obs.chip_transform)
    assert torch.nn.functional.cosine_similarity(f, obs.identity, dim=0) > 0.99999


def test_identity_cosine_ranks_same_face_above_other_face(scene_pair):
    s0, s1, obs = scene_pair
    darker = (s0.image * 0.85).clamp(0, 1)
    same = identity_cosine(darker, s0.image, obs.chip_transform)
    other = identity_cosine(s1.image, s0.image, obs.chip_transform)
    assert same > 0.97
    assert other < same
    assert identity_cosine(s1.image, s0.image, obs.chip_transform) == pytest.approx(
        identity_cosine(s0.image, s1.image, obs.chip_transform), abs=1e-6)
