"""observe(): the FaceObservation contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from facegcn.errors import NoFaceError
from facegcn.frontend import FrontendConfig, observe


def test_observation_fields(obs_dlib):
    o = obs_dlib
    assert o.image.shape == (3, 224, 224) and o.image.dtype == torch.float32
    assert 0 <= o.image.min() and o.image.max() <= 1
    assert o.transform.shape == (2, 3) and o.transform_inv.shape == (2, 3)
    assert o.landmarks.shape == (68, 2) and o.landmarks_photo.shape == (68, 2)
    assert ((o.landmarks > 0) & (o.landmarks < 224)).all()
    assert o.box.shape == (4,) and 0.99 < o.score <= 1.0 and o.detector == "dlib"
    assert o.labels.shape == (224, 224) and o.labels.dtype == torch.int64
    assert o.skin_weight.shape == (224, 224) and o.skin_weight.dtype == torch.float32
    assert o.face_mask.shape == (224, 224) and o.face_mask.dtype == torch.bool
    assert o.identity.shape == (128,) and o.identity.dtype == torch.float32
    assert o.chip_transform.shape == (2, 3) and o.photo_size == (512, 512)


def test_identity_is_dlibs_descriptor(obs_dlib, astronaut, dlib_models):
    rect = dlib_models["hog"](astronaut, 1)[0]
    ref = np.asarray(dlib_models["rec"].compute_face_descriptor(astronaut, dlib_models["sp5"](astronaut, rect)))
    got = obs_dlib.identity.double().numpy()
    assert np.abs(got - ref).max() <= 1e-3
    o = observe(astronaut, config=FrontendConfig(identity="dlib"))[0]
    np.testing.assert_allclose(o.identity.double().numpy(), ref, atol=1e-6)


def test_mtcnn_observation_agrees_with_dlib(obs_dlib, obs_mtcnn):
    assert obs_mtcnn.detector == "mtcnn" and obs_mtcnn.score > 0.99
    iod = np.linalg.norm(obs_dlib.points5_photo[1] - obs_dlib.points5_photo[0])
    assert np.linalg.norm(obs_mtcnn.landmarks_photo - obs_dlib.landmarks_photo, axis=1).mean() < 0.05 * iod
    assert np.linalg.norm(obs_mtcnn.points5_photo - obs_dlib.points5_photo, axis=1).max() < 0.05 * iod
    assert torch.nn.functional.cosine_similarity(obs_mtcnn.identity, obs_dlib.identity, dim=0) > 0.97
    assert (obs_mtcnn.image - obs_dlib.image).abs().mean() < 0.05


def test_observe_from_path(tmp_path, astronaut, obs_dlib):
    p = tmp_path / "astronaut.jpg"
    Image.fromarray(astronaut).save(p, quality=95)
    o = observe(p)[0]
    assert np.abs(o.landmarks_photo - obs_dlib.landmarks_photo).mean() < 1.5
    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((120, 160, 3), 200, np.uint8)).save(blank)
    with pytest.raises(NoFaceError, match="wall.png"):
        observe(blank)
