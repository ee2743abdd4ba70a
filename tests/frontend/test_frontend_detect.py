"""Detection: MTCNN port, dlib HOG false-positive filtering, ranking, several faces, no face."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facegcn.errors import ConfigError, NoFaceError
from facegcn.frontend import observe
from facegcn.frontend.align import five_from_68
from facegcn.frontend.detect import detect_dlib, find_faces
from facegcn.frontend.mtcnn import detect_mtcnn, nms
from facegcn.io.image import photo_from_array


def test_nms():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 4, 4]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 2]
    assert nms(boxes, scores, 0.5, mode="min").tolist() == [3, 2]  # the small box lies inside box 0
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0


def test_mtcnn_finds_the_astronaut_and_agrees_with_dlib(astronaut, dlib_models):
    faces = detect_mtcnn(astronaut)
    assert len(faces) == 1
    f = faces[0]
    assert f.score > 0.99
    rect = dlib_models["hog"](astronaut, 1)[0]
    lm = np.array([[p.x, p.y] for p in dlib_models["sp68"](astronaut, rect).parts()], float)
    five = five_from_68(lm)
    iod = np.linalg.norm(five[1] - five[0])
    err = np.linalg.norm(f.points - five, axis=1) / iod
    assert err.max() <= 0.05, err
    # the box contains the points
    assert (f.points[:, 0] > f.box[0]).all() and (f.points[:, 0] < f.box[2]).all()
    assert (f.points[:, 1] > f.box[1]).all() and (f.points[:, 1] < f.box[3]).all()


def test_dlib_false_positive_is_rejected(astronaut, dlib_models):
    rects, scores, _ = dlib_models["hog"].run(astronaut, 1, 0.0)
    assert len(rects) >= 2  # dlib's HOG alone reports a second "face" (on the suit)
    cands = detect_dlib(astronaut)
    assert len(cands) == len(rects)
    conf = sorted(c.confidence for c in cands)
    assert conf[-1] > 0.99 and conf[-2] < 0.1
    faces, rejected = find_faces(astronaut, "dlib")
    assert len(faces) == 1 and rejected >= 1
    assert faces[0].box[1] < 200  # the real face, not the suit


@pytest.fixture(scope="module")
def two_faces(astronaut):
    from skimage.transform import rescale

    face = astronaut[20:300, 90:360]  # 280 x 270
    small = (rescale(face, 0.65, channel_axis=2, anti_aliasing=True) * 255).astype(np.uint8)
    canvas = np.full((320, 620, 3), 235, np.uint8)
    canvas[20:20 + small.shape[0], 10:10 + small.shape[1]] = small
    canvas[20:300, 330:600] = face
    return photo_from_array(canvas)


@pytest.mark.parametrize("detector", ["dlib", "mtcnn"])
def test_several_faces(two_faces, detector):
    obs = observe(two_faces, detector=detector, all_faces=True)
    assert len(obs) == 2
    sizes = [o.box[2] - o.box[0] for o in obs]
    assert sizes[0] > sizes[1]  # largest first
    assert obs[0].box[0] > 300 and obs[1].box[0] < 300
    best = observe(two_faces, detector=detector)
    assert len(best) == 1 and np.allclose(best[0].box, obs[0].box)
    # same person: descriptors close (dlib's threshold is 0.6)
    assert torch.linalg.norm(obs[0].identity - obs[1].identity) < 0.45


def test_no_face():
    blank = photo_from_array(np.full((200, 240, 3), 128, np.uint8))
    for det in ("dlib", "mtcnn"):
        with pytest.raises(NoFaceError) as e:
            observe(blank, detector=det)
        assert "\n" not in str(e.value) and "no face" in str(e.value)
    rng = np.random.default_rng(0)
    faces = detect_mtcnn(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8))  # must not crash
    assert isinstance(faces, list)


def test_unknown_detector(astronaut_photo):
    with pytest.raises(ConfigError):
        observe(astronaut_photo, detector="yolo")


def test_cached_frontal_face_detector_matches_dlib(astronaut, dlib_models, tmp_path, monkeypatch):
    """The detector read back from the cache folder (fast start-up) finds exactly what dlib's own
    ``get_frontal_face_detector()`` finds: same rectangles, scores and sub-detector indices."""
    from facegcn.frontend.detect import _frontal_face_detector

    monkeypatch.setenv("FACEGCN_CACHE", str(tmp_path))
    first = _frontal_face_detector()  # builds dlib's detector and saves the copy
    assert list(tmp_path.glob("frontend/dlib_frontal_face_detector-*.svm"))
    cached = _frontal_face_detector()  # reads the copy
    ref = dlib_models["hog"].run(astronaut, 1, 0.0)
    small = astronaut[::2, ::2].copy()
    for det in (first, cached):
        for img, up in ((astronaut, 1), (small, 0), (small, 2)):
            a, b = det.run(img, up, 0.0), dlib_models["hog"].run(img, up, 0.0)
            assert [(r.left(), r.top(), r.right(), r.bottom()) for r in a[0]] == \
                [(r.left(), r.top(), r.right(), r.bottom()) for r in b[0]]
            assert list(a[1]) == list(b[1]) and list(a[2]) == list(b[2])
    assert len(ref[0]) >= 2
    # an unreadable copy is rebuilt
    for f in tmp_path.glob("frontend/dlib_frontal_face_detector-*.svm"):
        f.write_bytes(b"garbage")
    assert len(_frontal_face_detector().run(astronaut, 1, 0.0)[0]) == len(ref[0])
