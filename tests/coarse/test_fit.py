"""Per-image fitting against synthetic ground truth (the ICT model rendered with known
coefficients) and on the real astronaut photo."""

import pytest
import torch

from facegcn.coarse.fit import CoarseFitter, FitConfig
from facegcn.evaluate.metrics import rigid_aligned_error
from tests.coarse.conftest import random_face


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 4])
def test_fit_recovers_synthetic_geometry(ict, syn, seed):
    gt = random_face(ict, seed)
    with torch.no_grad():
        st = syn.state(gt)
        r = syn.render(st, background=torch.tensor([0.3, 0.5, 0.4]))
    res = CoarseFitter(ict, FitConfig(steps_identity=0), synthesis=syn).fit(r.image, st.landmarks, r.mask)
    front = ict.region("front").numpy()
    truth = ict.shape(gt.id, gt.exp)[0].numpy()[front]
    got = ict.shape(res.coeffs.id, res.coeffs.exp)[0].numpy()[front]
    err_mm = rigid_aligned_error(got, truth).mean() * 100  # decimetres → mm
    base_mm = rigid_aligned_error(ict.mean_shape.numpy()[front], truth).mean() * 100
    lm_px = float((res.state.landmarks - st.landmarks).norm(dim=-1).mean())
    print(f"seed {seed}: geometry {err_mm:.2f} mm (mean face {base_mm:.2f} mm), landmarks {lm_px:.2f} px")
    assert lm_px <= 2.0
    assert err_mm <= 2.0 and err_mm < 0.6 * base_mm
    # the photometric fit reproduces the image inside the face
    diff = ((res.rendering.image - r.image).abs() * r.mask * res.rendering.mask).sum() / (r.mask.sum() * 3)
    assert float(diff) < 0.03


def test_landmark_stage_alone_converges(ict, syn):
    gt = random_face(ict, 7)
    lm = syn.landmarks_only(gt)
    cfg = FitConfig(steps_photo=0, steps_identity=0)
    res = CoarseFitter(ict, cfg, synthesis=syn).fit(torch.zeros(1, 3, 224, 224), lm, torch.zeros(1, 1, 224, 224))
    assert float((res.state.landmarks - lm).norm(dim=-1).mean()) < 1.5
    assert res.history[0]["landmark"] > 20 * res.history[-1]["landmark"]


def test_ict_expression_stays_in_unit_box(ict, syn):
    gt = random_face(ict, 3)
    lm = syn.landmarks_only(gt)
    res = CoarseFitter(ict, FitConfig(steps_photo=0, steps_identity=0), synthesis=syn).fit(
        torch.zeros(1, 3, 224, 224), lm, torch.zeros(1, 1, 224, 224))
    assert float(res.coeffs.exp.min()) >= 0 and float(res.coeffs.exp.max()) <= 1


def test_the_identity_stage_runs_when_asked(ict, syn):
    # off by default (coarse.steps_identity = 0); opt-in it adds the identity term to the photometric fit
    gt = random_face(ict, 5)
    with torch.no_grad():
        st = syn.state(gt)
        r = syn.render(st, background=torch.tensor([0.3, 0.5, 0.4]))
    target = torch.nn.functional.normalize(torch.randn(1, 128, generator=torch.Generator().manual_seed(0)), dim=-1)
    cfg = FitConfig(steps_rigid=3, steps_landmark=3, steps_photo=2, steps_identity=3, identity_every=2)
    res = CoarseFitter(ict, cfg, synthesis=syn).fit(r.image, st.landmarks, r.mask, identity=target)
    stages = [h for h in res.history if h["stage"] == "identity"]
    assert stages and "identity" in stages[0] and 0.0 < stages[0]["identity"] < 2 * cfg.weights.identity
    assert "identity" in res.timings
    assert FitConfig().steps_identity == 0


def test_the_photo_stage_takes_its_own_learning_rate(ict, syn):
    # albedo and light are free only in the photometric stage: at lr_photo 0 they keep their start
    # values, at lr_photo None they move with the shared lr; from_options carries the option
    from facegcn.config import CoarseOptions

    assert FitConfig.from_options(CoarseOptions(lr_photo=0.03)).lr_photo == 0.03
    assert FitConfig.from_options(CoarseOptions(lr_photo=None)).lr_photo is None
    gt = random_face(ict, 6)
    with torch.no_grad():
        st = syn.state(gt)
        r = syn.render(st, background=torch.tensor([0.3, 0.5, 0.4]))
    moved = {}
    for lr_photo in (0.0, None):
        cfg = FitConfig(steps_rigid=2, steps_landmark=2, steps_photo=3, steps_identity=0, lr_photo=lr_photo)
        res = CoarseFitter(ict, cfg, synthesis=syn).fit(r.image, st.landmarks, r.mask)
        moved[lr_photo] = float(res.coeffs.tex.abs().max() + res.coeffs.sh.sub(0).abs().max())
    still = CoarseFitter(ict, FitConfig(0, 0, 0, 0), synthesis=syn).fit(r.image, st.landmarks, r.mask)
    start = float(still.coeffs.tex.abs().max() + still.coeffs.sh.abs().max())
    assert abs(moved[0.0] - start) < 1e-7
    assert moved[None] > start + 1e-3
