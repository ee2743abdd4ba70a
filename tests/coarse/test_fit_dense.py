"""The fitter's dense-landmark term: gated by the front-end's yaw (off on frontal faces), and
when on it pulls the pose towards the dense targets (targets made from a known pose; the 68-point
term is given the wrong pose)."""

import pytest
import torch

from facegcn.coarse.dense import DenseLandmarkTerm, yaw_ramp
from facegcn.coarse.fit import CoarseFitter, FitConfig
from facegcn.config import CoarseOptions


def test_dense_term_is_used_and_pulls_the_yaw(ict, syn):
    assert CoarseOptions().dense_weight > 0 and CoarseOptions().dense_yaw[0] > 0  # on, but not for frontal faces
    L = ict.layout
    truth = L.zeros(1)
    truth = type(truth)(**{**truth.__dict__, "angles": torch.tensor([[0.0, 0.35, 0.0]])})
    term = DenseLandmarkTerm(ict, syn.camera)
    with torch.no_grad():
        pts, _ = term.points(truth)
        dense = syn.camera.project(pts)  # (1, 468, 2): the truth's dense points
        lm_front = syn.landmarks_only(L.zeros(1))  # the 68 say: frontal
    image = torch.zeros(1, 3, 224, 224)
    mask = torch.zeros(1, 1, 224, 224)
    yaws = {}
    for w in (0.0, 1.0):
        f = CoarseFitter(ict, FitConfig(steps_rigid=80, steps_landmark=0, steps_photo=0, steps_identity=0,
                                        dense_weight=w), synthesis=syn)
        r = f.fit(image, lm_front, mask, dense=dense)
        yaws[w] = float(r.coeffs.angles[0, 1])
        if w:
            assert any("dense" in h for h in r.history)
    assert abs(yaws[0.0]) < 0.08  # the 68 alone: frontal
    assert yaws[1.0] > 0.15  # the dense term pulls towards 0.35 rad


def test_yaw_ramp():
    r = (15.0, 35.0)
    assert yaw_ramp(0.0, r) == 0.0 and yaw_ramp(-15.0, r) == 0.0
    assert yaw_ramp(25.0, r) == pytest.approx(0.5) and yaw_ramp(-25.0, r) == pytest.approx(0.5)
    assert yaw_ramp(35.0, r) == 1.0 and yaw_ramp(-80.0, r) == 1.0
    assert yaw_ramp(None, r) == 0.0 and yaw_ramp(float("nan"), r) == 0.0  # unknown turn: the 68 only
    assert yaw_ramp(None, (0.0, 0.0)) == 1.0 and yaw_ramp(3.0, (0.0, 0.0)) == 1.0  # a ramp from 0: always on


def test_zero_dense_weight_fits_as_without_dense_targets(ict, syn):
    """A frontal face's dense weight is 0 (the yaw ramp): the fit skips the term and is the same to
    the bit as a fit without dense targets; a positive weight changes it."""
    L = ict.layout
    term = DenseLandmarkTerm(ict, syn.camera)
    turned = type(L.zeros(1))(**{**L.zeros(1).__dict__, "angles": torch.tensor([[0.0, 0.35, 0.0]])})
    with torch.no_grad():
        dense = syn.camera.project(term.points(turned)[0])
        lm = syn.landmarks_only(L.zeros(1))
    image, mask = torch.zeros(1, 3, 224, 224), torch.zeros(1, 1, 224, 224)
    f = CoarseFitter(ict, FitConfig(steps_rigid=20, steps_landmark=10, steps_photo=0, steps_identity=0), synthesis=syn)
    ref = L.join(f.fit(image, lm, mask).coeffs)
    zero = f.fit(image, lm, mask, dense=dense, dense_weight=torch.zeros(1, 1))
    assert torch.equal(L.join(zero.coeffs), ref)
    assert not any("dense" in h for h in zero.history)
    on = f.fit(image, lm, mask, dense=dense, dense_weight=torch.ones(1, 1))
    assert (L.join(on.coeffs) - ref).abs().max() > 1e-3


def test_downscaled_synthesis_is_the_average_pooled_render(ict, syn):
    """The half-resolution forward model of the coarse-to-fine photometric steps: its render of a
    face is the full render average-pooled 2x2 (up to the silhouette's pixels)."""
    import torch.nn.functional as F

    c = ict.layout.zeros(1)
    with torch.no_grad():
        st = syn.state(c)
        full = syn.render(st, background=0.0)
        half = syn.downscaled(2).render(st, background=0.0)
    pooled = F.avg_pool2d(full.image, 2)
    inside = (F.avg_pool2d(full.mask, 2) == 1) & (half.mask == 1)
    assert half.image.shape[-2:] == (112, 112) and inside.sum() > 2000
    err = (half.image - pooled).abs().amax(1, keepdim=True)[inside]
    assert float(err.median()) < 2e-3 and float(err.quantile(0.99)) < 0.03
    iou = ((F.avg_pool2d(full.mask, 2) > 0.5) & (half.mask > 0.5)).sum() / ((F.avg_pool2d(full.mask, 2) > 0.5) | (half.mask > 0.5)).sum()
    assert float(iou) > 0.98


def test_coarse_to_fine_photometric_steps_fit_a_render(ict, syn):
    """photo_coarse_steps > 0: the first photometric steps see the half-resolution render and
    photo; the fit of a known face's render lowers the full-resolution photometric error about as
    far as the full-resolution fit, and differs from it (the half-resolution steps were taken)."""
    L = ict.layout
    truth = L.zeros(1)
    with torch.no_grad():
        r = syn.render(syn.state(truth))
        lm = syn.landmarks_only(truth)
    image, mask = r.image, r.mask
    fits = {}
    for n in (0, 6):
        f = CoarseFitter(ict, FitConfig(steps_rigid=0, steps_landmark=0, steps_photo=8, steps_identity=0,
                                        photo_coarse_steps=n), synthesis=syn)
        start = L.split(L.join(truth) + 0.05)
        fits[n] = f.fit(image, lm, mask, init=start)
    from facegcn.coarse.losses import photo_loss

    with torch.no_grad():
        r0 = syn.render(syn.state(start))
        err = {n: float(photo_loss(fits[n].rendering.image, image, fits[n].rendering.mask * mask)) for n in fits}
        err_start = float(photo_loss(r0.image, image, r0.mask * mask))
    assert err[6] < 0.5 * err_start and err[6] < 1.5 * err[0]  # full-resolution error, start vs fits
    assert (L.join(fits[6].coeffs) - L.join(fits[0].coeffs)).abs().max() > 0
