"""The "cascade" detector (dlib HOG + BlazeFace + MTCNN fallback) and the dense observation fields.

References: dlib's own detections (the astronaut must come out exactly as with detector="dlib"),
renders of the ICT head at known yaws as profile photos (dlib's frontal HOG finds none of them
beyond 30°), hand-made boxes for the overlap rule, and skimage's colour wheel (BlazeFace reports a
"face" there; O-Net rejects it)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from facegcn.errors import ConfigError, ModelFileError, NoFaceError
from facegcn.frontend import FrontendConfig, observe
from facegcn.frontend.cascade import same_face
from facegcn.frontend.detect import DetectorConfig, find_faces
from facegcn.io.image import photo_from_array

try:
    from facegcn.frontend.blazeface import SHORT_RANGE
    from facegcn.frontend.models import mediapipe_model_path

    mediapipe_model_path(SHORT_RANGE.model)
except ModelFileError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"MediaPipe model files not installed: {exc}", allow_module_level=True)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def profiles(ict) -> dict[int, np.ndarray]:
    """The ICT head (one identity, neutral) at yaw 0 / 45 / 60 / 90 degrees, 480² uint8 photos."""
    from facegcn.frontend.dense_synth import HeadRenderer, sample_view
    from facegcn.render import PerspectiveCamera

    hr = HeadRenderer(ict, camera=PerspectiveCamera(focal=1600.0, center=(240.0, 240.0), size=(480, 480)),
                      supersample=2)
    v = sample_view(ict, 7)
    out = {}
    for yaw in (0, 45, 60, 90):
        r = hr.render(replace(v, angles=np.deg2rad([0.0, yaw, 0.0]), trans=np.zeros(3), exp_coeff=v.exp_coeff * 0))
        out[yaw] = (r.image * 255 + 0.5).astype(np.uint8)
    return out


def test_same_face_rule():
    a = np.array([0.0, 0.0, 10.0, 10.0])
    assert same_face(a, a + 2)  # IoU 0.47
    assert same_face(a, np.array([4.0, 4.0, 30.0, 30.0]))  # a's centre inside the other box
    assert not same_face(a, np.array([11.0, 0.0, 21.0, 10.0]))
    assert not same_face(a, np.array([8.0, 8.0, 20.0, 20.0]))  # IoU 0.03, centres outside


def test_astronaut_is_unchanged(astronaut, astronaut_photo):
    dl, rej_dl = find_faces(astronaut, "dlib")
    ca, rej_ca = find_faces(astronaut, "cascade")
    assert len(ca) == len(dl) == 1 and ca[0].detector == "dlib"
    assert np.array_equal(ca[0].box, dl[0].box) and ca[0].confidence == dl[0].confidence
    assert rej_ca == rej_dl >= 1  # the suit
    a = observe(astronaut_photo, detector="dlib", config=FrontendConfig(dense=False))[0]
    b = observe(astronaut_photo)[0]  # the default: cascade, with dense landmarks
    assert b.detector == "dlib"
    for name in ("box", "landmarks_photo", "landmarks", "points5_photo", "transform"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(a.identity, b.identity) and torch.equal(a.labels, b.labels)
    assert a.dense is None and a.head_pose is None and a.yaw_deg is None


def test_profiles_are_found(profiles):
    for yaw, img in profiles.items():
        dl, _ = find_faces(img, "dlib")
        ca, _ = find_faces(img, "cascade")
        print(f"yaw {yaw}: dlib {len(dl)}, cascade {[(c.detector, round(c.confidence, 3)) for c in ca]}")
        assert len(ca) == 1, yaw
        if yaw >= 45:
            assert dl == [] and ca[0].detector == "blazeface"
        x1, y1, x2, y2 = ca[0].box
        assert x1 < 300 and x2 > 200 and y1 < 260 and y2 > 220  # around the face


def test_fallback_and_stage_options(profiles):
    img = profiles[60]
    only_mtcnn = DetectorConfig(cascade_add=(), cascade_fallback=("mtcnn",))
    faces, _ = find_faces(img, "cascade", only_mtcnn)
    assert len(faces) == 1 and faces[0].detector == "mtcnn"  # runs because dlib found nothing
    none, _ = find_faces(img, "cascade", DetectorConfig(cascade_add=(), cascade_fallback=()))
    assert none == []  # dlib alone
    with pytest.raises(ConfigError, match="cascade stage"):
        find_faces(img, "cascade", DetectorConfig(cascade_add=("haar",)))


def test_blazeface_false_positive_is_rejected():
    from skimage import data

    wheel = np.ascontiguousarray(data.colorwheel()[..., :3])
    from facegcn.frontend.cascade import detect_blazeface_candidates

    cands = detect_blazeface_candidates(wheel)
    assert cands and max(c.detector_score for c in cands) > 0.5  # BlazeFace alone reports a face
    faces, rejected = find_faces(wheel, "cascade")
    assert faces == [] and rejected >= 1
    with pytest.raises(NoFaceError, match="cascade"):
        observe(photo_from_array(wheel))


def test_flipped_and_rotated_astronaut(astronaut):
    from PIL import Image

    flip = np.ascontiguousarray(astronaut[:, ::-1])
    rot = np.asarray(Image.fromarray(astronaut).rotate(30, resample=Image.BILINEAR))
    for img in (flip, rot):
        faces, _ = find_faces(img, "cascade")
        assert len(faces) == 1 and faces[0].box[1] < 200


def test_dense_fields_of_the_observation(astronaut_photo):
    from facegcn.frontend.dense import points5_from_dense

    o = observe(astronaut_photo)[0]
    assert o.dense.shape == (468, 3) and o.dense_photo.shape == (468, 3) and o.iris.shape == (2, 5, 3)
    assert np.allclose(o.dense[:, :2], o.alignment.to_aligned(o.dense_photo[:, :2]))
    assert np.allclose(o.dense[:, 2], o.dense_photo[:, 2] * o.alignment.scale)
    assert o.dense_score > 0.9 and abs(o.yaw_deg) < 15.0
    # an independent detector agrees: dlib's 5 points vs those of the 468 (eyes, nose tip, mouth corners)
    iod = np.linalg.norm(o.points5_photo[1] - o.points5_photo[0])
    assert (np.linalg.norm(points5_from_dense(o.dense_photo) - o.points5_photo, axis=1) / iod).max() < 0.06
    # the irises lie inside the eyes' 68-point outlines' boxes
    for k, sl in enumerate((slice(36, 42), slice(42, 48))):
        lo, hi = o.landmarks_photo[sl].min(0), o.landmarks_photo[sl].max(0)
        assert (o.iris_photo[k, 0, :2] > lo - 1).all() and (o.iris_photo[k, 0, :2] < hi + 1).all()


def test_profile_observation(profiles):
    o = observe(photo_from_array(profiles[60]))[0]
    print(f"yaw 60 render: detector {o.detector}, score {o.score:.3f}, dense score {o.dense_score:.3f}, "
          f"pose {np.round(o.head_pose, 1)}")
    assert o.detector == "blazeface" and o.dense_score > 0.9
    assert 45.0 < o.yaw_deg < 70.0
    assert o.image.shape == (3, 224, 224) and o.landmarks.shape == (68, 2)
