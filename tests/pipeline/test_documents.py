"""coeffs.json / report.json carry the fitted landmarks in photo pixels and the pose checks."""

import numpy as np
import pytest

from facegcn.pipeline.export import coefficients_document, report_document


@pytest.fixture(scope="module")
def rec():
    from skimage import data

    from facegcn import Config, Reconstructor

    cfg = Config.preset("fast")
    cfg.refine.enabled = False
    cfg.progress = False
    return Reconstructor(cfg)(data.astronaut())[0]


def test_fitted_landmarks_in_photo_pixels(rec):
    doc = coefficients_document(rec)
    fit68, det68 = np.asarray(doc["landmarks68_photo"]), np.asarray(doc["detected68_photo"])
    assert fit68.shape == (68, 2) and det68.shape == (68, 2)
    iod = np.linalg.norm(det68[36] - det68[45])
    inner = np.arange(17, 68)  # brows, nose, eyes, mouth: the same anatomy in both conventions
    assert np.linalg.norm(fit68[inner] - det68[inner], axis=1).mean() < 0.06 * iod  # the fit follows the photo
    # the jaw is written in the AFLW2000-3D convention (3-D points): lower on the cheek (image y
    # down) than the model's outline vertices that the fit matched to the detector's, yet within a
    # third of the inter-ocular distance of the detection
    A = np.asarray(rec.observation.transform_inv)
    outline = rec.model.landmarks(rec.coarse.state.verts_px)[0].detach().double().numpy() @ A[:, :2].T + A[:, 2]
    cheeks = np.r_[1, 2, 3, 13, 14, 15]
    assert ((fit68[cheeks, 1] - outline[cheeks, 1]) / iod).mean() > 0.03
    assert np.linalg.norm(fit68[:17] - det68[:17], axis=1).max() < 0.33 * iod
    fit468, det468 = np.asarray(doc["landmarks468_photo"]), np.asarray(doc["detected468_photo"])
    assert fit468.shape == (468, 2) and det468.shape == (468, 3)
    dense = np.r_[33, 133, 362, 263, 1, 61, 291]  # eye corners, nose tip, mouth corners
    assert np.linalg.norm(fit468[dense] - det468[dense, :2], axis=1).mean() < 0.1 * iod
    # the projected dense points agree with the 68: nose tip (dense 1) near landmark 30
    assert np.linalg.norm(fit468[1] - fit68[30]) < 0.15 * iod


def test_report_has_scores_and_both_poses(rec):
    rep = report_document(rec)
    assert 0.5 < rep["landmark_score"] <= 1.0
    assert set(rep["fitted_pose_deg"]) == {"pitch", "yaw", "roll"}
    assert abs(rep["fitted_pose_deg"]["yaw"] - rep["frontend_pose_deg"]["yaw"]) < 15.0


def test_fit_warnings_flag_a_turn_the_fit_missed(rec):
    from dataclasses import replace

    from facegcn.pipeline.export import fit_warnings

    assert fit_warnings(rec) == []
    turned = replace(rec, observation=replace(rec.observation, head_pose=np.array([0.0, 60.0, 0.0])))
    assert any("yaw" in w for w in fit_warnings(turned))
    drawn = replace(rec, observation=replace(rec.observation, dense_score=0.1))
    assert any("landmark score" in w for w in fit_warnings(drawn))
