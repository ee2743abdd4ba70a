"""Alignment to the canonical 224² template and the way back onto the photo."""

from __future__ import annotations

import numpy as np
import torch

from facegcn.frontend import FrontendConfig, observe
from facegcn.frontend.align import TEMPLATE_224, estimate_alignment, warp_to_photo
from facegcn.frontend.geometry import apply_affine, compose_affine, umeyama_similarity
from facegcn.io.image import photo_from_array


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (7, 2))
    a = 1.7 * np.array([[np.cos(0.4), -np.sin(0.4)], [np.sin(0.4), np.cos(0.4)]])
    m = np.concatenate([a, [[5.0], [-3.0]]], axis=1)
    np.testing.assert_allclose(umeyama_similarity(src, apply_affine(m, src)), m, atol=1e-9)
    no_rot = umeyama_similarity(src, 2.0 * src + 1.0, rotation=False)
    np.testing.assert_allclose(no_rot, [[2, 0, 1], [0, 2, 1]], atol=1e-9)


def test_observation_geometry_is_consistent(obs_dlib, astronaut):
    o = obs_dlib
    np.testing.assert_allclose(compose_affine(o.transform, o.transform_inv), [[1, 0, 0], [0, 1, 0]], atol=1e-9)
    np.testing.assert_allclose(apply_affine(o.transform, o.landmarks_photo), o.landmarks, atol=1e-9)
    np.testing.assert_allclose(o.alignment.to_photo(o.points5), o.points5_photo, atol=1e-9)
    # the 5 points land near the template (least squares; the astronaut's smile widens the mouth)
    res = np.linalg.norm(o.points5 - TEMPLATE_224, axis=1)
    assert res.max() < 15 and res.mean() < 9
    # a similarity: equal singular values
    sv = np.linalg.svd(o.transform[:, :2], compute_uv=False)
    assert abs(sv[0] - sv[1]) < 1e-9
    # the crop's pixel (x, y) shows the photo at transform_inv(x, y)
    for x, y in [(112, 112), (80, 82), (150, 160)]:
        px, py = apply_affine(o.transform_inv, np.array([[x, y]], float))[0]
        x0, y0 = int(np.floor(px)), int(np.floor(py))
        fx, fy = px - x0, py - y0
        p = astronaut.astype(np.float64) / 255.0
        ref = (p[y0, x0] * (1 - fx) * (1 - fy) + p[y0, x0 + 1] * fx * (1 - fy) + p[y0 + 1, x0] * (1 - fx) * fy
               + p[y0 + 1, x0 + 1] * fx * fy)
        assert np.abs(o.image[:, y, x].numpy() - ref).max() < 0.02


def test_results_map_back_onto_the_photo(obs_dlib, astronaut):
    back = warp_to_photo(obs_dlib.image, obs_dlib.alignment, astronaut.shape[:2])
    assert back.shape == (3, 512, 512)
    x1, y1, x2, y2 = obs_dlib.box.astype(int)
    diff = (back[:, y1:y2, x1:x2] - torch.tensor(astronaut[y1:y2, x1:x2]).permute(2, 0, 1) / 255.0).abs()
    assert diff.mean() < 0.03
    lab = warp_to_photo(obs_dlib.labels.float(), obs_dlib.alignment, astronaut.shape[:2], mode="nearest")
    assert lab.shape == (512, 512)
    assert set(np.unique(lab.numpy()).astype(int)) <= set(range(7))  # LABELS ids
    eye = obs_dlib.landmarks_photo[36:42].mean(0).round().astype(int)
    assert lab[eye[1], eye[0]] == 3  # an eye label lands on the eye in the photo


def test_rotated_photo_gives_the_same_crop(obs_dlib, astronaut):
    from skimage.transform import rotate

    tilted = (rotate(astronaut, 12, mode="edge") * 255 + 0.5).astype(np.uint8)  # in-plane roll
    o = observe(photo_from_array(tilted), config=FrontendConfig(identity=None))[0]
    assert (o.image - obs_dlib.image).abs().mean() < 0.05
    assert np.abs(o.landmarks - obs_dlib.landmarks).mean() < 3.0


def test_scale_translation_only_alignment(astronaut_photo):
    o = observe(astronaut_photo, config=FrontendConfig(rotate=False, identity=None))[0]
    assert abs(o.transform[0, 1]) < 1e-12 and abs(o.transform[1, 0]) < 1e-12
    a = estimate_alignment(o.points5_photo, rotation=False)
    np.testing.assert_allclose(a.matrix, o.transform)
