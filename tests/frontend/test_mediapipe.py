"""MediaPipe face mesh + iris networks ported to torch (facegcn.frontend.facemesh / tflite_graph).

References: (1) the TFLite runtime — ``ai_edge_litert.interpreter.Interpreter`` running the same
``.tflite`` files on the same crops (real photo crops at many rotations / scales / offsets, other
photos, synthetic images); (2) dlib's 68-point predictor on the astronaut photo, an independent
landmark detector; (3) finite differences for the gradients; (4) analytic geometry (a blob placed
at a known sub-pixel photo position, a rotated photo) for the crop conventions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

litert = pytest.importorskip("ai_edge_litert.interpreter")

from facegcn.errors import ModelFileError  # noqa: E402
from facegcn.frontend import facemesh as fm  # noqa: E402
from facegcn.frontend.models import mediapipe_model_path  # noqa: E402

try:
    FACE_PATH, IRIS_PATH = mediapipe_model_path(fm.FACE_MODEL), mediapipe_model_path(fm.IRIS_MODEL)
except ModelFileError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"MediaPipe model files not installed: {exc}", allow_module_level=True)

ASTRONAUT_BOX = np.array([175.0, 76.0, 265.0, 166.0])  # dlib HOG's box (checked live below)


def run_litert(path, batch: np.ndarray) -> list[np.ndarray]:
    """Each image of an NHWC float32 batch through the TFLite runtime; outputs stacked."""
    it = litert.Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    inp, outs = it.get_input_details()[0], it.get_output_details()
    res = [[] for _ in outs]
    for x in batch:
        it.set_tensor(inp["index"], np.ascontiguousarray(x[None], dtype=np.float32))
        it.invoke()
        for r, o in zip(res, outs):
            r.append(it.get_tensor(o["index"])[0].copy())
    return [np.stack(r) for r in res]


def _rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float32)
    a = a / 255.0 if a.max() > 1.5 else a
    return np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a


def synthetic_images(size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Noise, gradients, a checkerboard, flat fields and a smooth cartoon face, (S, S, 3) in [0, 1]."""
    v, u = np.mgrid[0:size, 0:size] / (size - 1)
    r = np.hypot(u - 0.5, v - 0.5)
    cartoon = np.ones((size, size, 3)) * [0.35, 0.45, 0.6]
    skin = ((u - 0.5) / 0.3) ** 2 + ((v - 0.52) / 0.4) ** 2 < 1
    cartoon[skin] = [0.85, 0.65, 0.55]
    for ex in (0.38, 0.62):
        cartoon[np.hypot(u - ex, v - 0.42) < 0.04] = [0.1, 0.08, 0.08]
    cartoon[(np.abs(u - 0.5) < 0.1) & (np.abs(v - 0.7) < 0.015)] = [0.6, 0.2, 0.2]
    cartoon[(np.abs(u - 0.5) < 0.015) & (v > 0.45) & (v < 0.6)] = [0.7, 0.5, 0.45]
    return [
        rng.random((size, size, 3)),
        np.clip(0.5 + 0.2 * rng.standard_normal((size, size, 3)), 0, 1),
        np.stack([u, v, 1 - u], -1),
        np.stack([np.clip(1 - 2 * r, 0, 1)] * 3, -1),
        np.stack([((np.floor(u * 8) + np.floor(v * 8)) % 2)] * 3, -1),
        np.full((size, size, 3), 0.5), np.zeros((size, size, 3)), np.ones((size, size, 3)),
        np.clip(cartoon + 0.02 * rng.standard_normal(cartoon.shape), 0, 1),
    ]


@pytest.fixture(scope="module")
def face_crops(astronaut) -> np.ndarray:
    """≥ 20 (192, 192, 3) float32 crops in [0, 1]: the astronaut's face at 12 rotations / scales /
    offsets, three other photos, two upsampled LFW faces, nine synthetic images."""
    from skimage import data
    from skimage.transform import resize

    crops = []
    base = fm.roi_from_box(ASTRONAUT_BOX)
    for k, (deg, scale, dx, dy) in enumerate([(0, 1.0, 0, 0), (-45, 1.0, 0, 0), (30, 1.2, 10, -5), (90, 1.0, 0, 0),
                                               (180, 1.0, 0, 0), (15, 0.7, -8, 4), (-20, 1.6, 20, 10), (5, 2.5, 0, 30),
                                               (-70, 0.9, -15, -15), (60, 1.3, 5, 5), (0, 0.5, 0, 0), (135, 1.1, 30, 0)]):
        roi = fm.RoiTransform(base.centre + (dx, dy), base.size * scale, np.deg2rad(deg), 192, flip=k % 5 == 4)
        crops.append(fm.crop_photo(astronaut, roi)[0].permute(1, 2, 0).numpy())
    for img, box in ((data.camera(), (190, 40, 300, 150)), (data.coffee(), (100, 50, 500, 400)),
                     (data.chelsea(), (80, 10, 340, 270))):
        crops.append(fm.crop_photo(_rgb(img), fm.roi_from_box(np.array(box, float)))[0].permute(1, 2, 0).numpy())
    for face in data.lfw_subset()[:2]:
        crops.append(resize(_rgb(face), (192, 192), order=1).astype(np.float32))
    crops += synthetic_images(192, np.random.default_rng(0))
    return np.stack(crops).astype(np.float32)


@pytest.fixture(scope="module")
def eye_crops(astronaut) -> np.ndarray:
    """≥ 20 (64, 64, 3) float32 eye crops: both astronaut eyes under perturbed ROIs (some flipped
    as MediaPipe flips the image-right eye) plus synthetic images."""
    pts = fm.dense_landmarks(astronaut, ASTRONAUT_BOX).points_photo
    crops = []
    for k, roi in enumerate(fm.eye_rois(pts) * 7):
        j = k // 2
        roi = fm.RoiTransform(roi.centre + (j - 3, 3 - j), roi.size * (0.8 + 0.1 * j), roi.rotation + 0.15 * (j - 3), 64, roi.flip)
        crops.append(fm.crop_photo(astronaut, roi)[0].permute(1, 2, 0).numpy())
    crops += synthetic_images(64, np.random.default_rng(1))
    return np.stack(crops).astype(np.float32)


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()


def test_facemesh_matches_litert(face_crops):
    assert len(face_crops) >= 20
    ref_mesh, ref_flag = run_litert(FACE_PATH, face_crops)
    with torch.no_grad():
        pts, score = fm.load_facemesh()(_nchw(face_crops))
    d_pts = np.abs(pts.numpy() - ref_mesh.reshape(-1, 468, 3)).max()
    d_score = np.abs(score.numpy() - 1 / (1 + np.exp(-ref_flag.reshape(-1)))).max()
    print(f"facemesh vs LiteRT over {len(face_crops)} crops: max |Δ| {d_pts:.2e} px, score {d_score:.2e}")
    assert d_pts < 0.01 and d_score < 1e-4
    assert score[0] > 0.9 and score[-3] < 0.5  # the upright astronaut is a face, flat grey is not


def test_iris_matches_litert(eye_crops):
    assert len(eye_crops) >= 20
    ref_contour, ref_iris = run_litert(IRIS_PATH, eye_crops)
    with torch.no_grad():
        contour, iris = fm.load_iris()(_nchw(eye_crops))
    d_c = np.abs(contour.numpy() - ref_contour.reshape(-1, 71, 3)).max()
    d_i = np.abs(iris.numpy() - ref_iris.reshape(-1, 5, 3)).max()
    print(f"iris vs LiteRT over {len(eye_crops)} crops: contour {d_c:.2e} px, iris {d_i:.2e} px")
    assert d_c < 0.01 and d_i < 0.01


def test_facemesh_is_differentiable(face_crops):
    """Autograd of a landmark functional vs a central finite difference (float64 copy of the net).
    The step is tiny because PReLU / max-pool kinks are dense: at 1e-4 the difference quotient
    is off by ~50 %, at 1e-6 by ~1 %, at 1e-8 by ~1e-5."""
    net = fm.FaceMeshNet().double()
    x = _nchw(face_crops[:1]).double().requires_grad_(True)
    w = torch.randn(468, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def f(t):
        pts, score = net(t)
        return (pts[0] * w).sum() + 10 * score.sum()

    (g,) = torch.autograd.grad(f(x), x)
    d = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    eps = 1e-8
    with torch.no_grad():
        fd = (f(x + eps * d) - f(x - eps * d)) / (2 * eps)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert abs(float((g * d).sum()) - float(fd)) < 1e-3 * max(1.0, abs(float(fd)))


@pytest.mark.gpu
def test_cuda_matches_cpu(face_crops, eye_crops, monkeypatch):
    """Reference: the CPU module. cuDNN's TF32 convolutions (torch's default) are switched off so
    the comparison measures the port, not TF32 rounding."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    x = _nchw(face_crops)
    with torch.no_grad():
        cpu = fm.FaceMeshNet()(x)
        gpu = fm.FaceMeshNet().to("cuda")(x.cuda())
        ci, gi = fm.IrisNet()(_nchw(eye_crops)), fm.IrisNet().cuda()(_nchw(eye_crops).cuda())
    assert gpu[0].device.type == "cuda"
    assert (gpu[0].cpu() - cpu[0]).abs().max() < 0.01 and (gpu[1].cpu() - cpu[1]).abs().max() < 1e-4
    assert max((g.cpu() - c).abs().max() for g, c in zip(gi, ci)) < 0.01


def test_landmarks_land_on_the_astronauts_face(astronaut, dlib_models):
    """Independent check against dlib's 68-point predictor: mesh points 4 (nose tip, dlib's
    definition), 33 / 133 / 362 / 263 (eye corners), 61 / 291 (mouth corners), 152 (chin) vs dlib
    30, 36, 39, 42, 45, 48, 54, 8; mesh point 1 (pronasale) just below dlib's nose tip; the irises
    vs dlib's eye centres."""
    rect = dlib_models["hog"](astronaut, 1)[0]
    box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], float)
    np.testing.assert_allclose(box, ASTRONAUT_BOX, atol=2)
    p68 = np.array([[p.x, p.y] for p in dlib_models["sp68"](astronaut, rect).parts()], float)
    res = fm.dense_landmarks(astronaut, box)
    assert res.points_photo.shape == (468, 3) and res.points_photo.dtype == np.float64
    assert res.iris.shape == (2, 5, 3) and res.eye_contours.shape == (2, 71, 3)
    assert res.score > 0.9
    pairs = [(4, 30), (33, 36), (133, 39), (362, 42), (263, 45), (61, 48), (291, 54), (152, 8)]
    err = [np.linalg.norm(res.points_photo[a, :2] - p68[b]) for a, b in pairs]
    assert max(err) < 3.0, err
    assert np.linalg.norm(res.points_photo[1, :2] - p68[30]) < 6.0 and p68[30, 1] < res.points_photo[1, 1] < p68[33, 1]
    lo, hi = box[:2] - 0.1 * (box[2:] - box[:2]), box[2:] + 0.25 * (box[2:] - box[:2])
    assert ((res.points_photo[:, :2] >= lo) & (res.points_photo[:, :2] <= hi)).all()
    for eye, idx in ((0, slice(36, 42)), (1, slice(42, 48))):  # image-left eye first
        assert np.linalg.norm(res.iris[eye, 0, :2] - p68[idx].mean(0)) < 3.0
        assert np.linalg.norm(res.eye_contours[eye, :, :2].mean(0) - p68[idx].mean(0)) < 6.0
    # the nose is nearer the camera than the eye corners (z: smaller = nearer)
    assert res.points_photo[1, 2] < res.points_photo[[33, 263], 2].min()


def test_a_second_pass_fixes_a_rotated_face(astronaut):
    """Rotate the photo by 30° about the face: from only an upright box, each pass re-crops from
    the previous landmarks (MediaPipe's tracking ROI) and three passes recover the upright result
    mapped through the rotation (measured: 27°, 9°, 0.9° of residual roll after 1, 2, 3 passes).
    Reference: the rotation itself."""
    from skimage.transform import rotate

    centre = (ASTRONAUT_BOX[:2] + ASTRONAUT_BOX[2:]) / 2
    upright = fm.dense_landmarks(astronaut, ASTRONAUT_BOX)
    ref = upright.points_photo[:, :2]
    rotated = rotate(astronaut, 30, center=centre, order=1, mode="edge")  # counter-clockwise on screen
    a = np.deg2rad(-30)  # in y-down pixel coordinates
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    expected = (ref - centre) @ rot.T + centre
    res = fm.dense_landmarks(rotated, ASTRONAUT_BOX, passes=3)
    assert abs(res.roi.rotation - (upright.roi.rotation + a)) < np.deg2rad(3)
    assert np.median(np.linalg.norm(res.points_photo[:, :2] - expected, axis=1)) < 1.0


def test_crop_geometry_puts_a_photo_point_where_the_transform_says():
    """A Gaussian blob at a sub-pixel photo position lands, in a rotated + flipped crop, at
    ``roi.to_crop(position)``; ``to_photo`` inverts ``to_crop``."""
    rng = np.random.default_rng(3)
    h, w = 300, 400
    y, x = np.mgrid[0:h, 0:w]
    p = np.array([231.3, 140.7])
    photo = np.repeat(np.exp(-((x - p[0]) ** 2 + (y - p[1]) ** 2) / (2 * 3.0**2))[..., None], 3, -1).astype(np.float32)
    for flip in (False, True):
        roi = fm.RoiTransform(np.array([220.0, 150.0]), 120.0, 0.6, 64, flip)
        crop = fm.crop_photo(photo, roi)[0, 0].numpy().astype(np.float64)
        vv, uu = np.mgrid[0:64, 0:64]
        centroid = np.array([(crop * uu).sum(), (crop * vv).sum()]) / crop.sum()
        np.testing.assert_allclose(centroid, roi.to_crop(p[None])[0], atol=0.02)
        q = rng.random((10, 3)) * 64
        np.testing.assert_allclose(roi.to_photo(roi.to_crop(roi.to_photo(q))), roi.to_photo(q), atol=1e-9)
    # the window trick: a crop reaching outside the photo equals the whole-photo warp
    roi = fm.RoiTransform(np.array([5.0, 290.0]), 80.0, -0.3, 48)
    full = fm.warp_crops(torch.from_numpy(photo).permute(2, 0, 1)[None], torch.from_numpy(roi.matrix()[None]).float(), 48)
    np.testing.assert_allclose(fm.crop_photo(photo, roi).numpy(), full.numpy(), atol=1e-5)


def test_input_errors_and_missing_files(astronaut, monkeypatch):
    from facegcn.errors import InputError
    from facegcn.frontend import models

    with pytest.raises(InputError):
        fm.dense_landmarks(astronaut, np.zeros(3))
    with pytest.raises(InputError):
        fm.dense_landmarks(astronaut[..., 0], ASTRONAUT_BOX)
    with pytest.raises(ModelFileError, match="missing"):
        mediapipe_model_path("modules/face_landmark/nope.tflite")
    with pytest.raises(ModelFileError, match="cannot read"):
        fm.FaceMeshNet(FACE_PATH.parent / "nope.tflite")
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelFileError, match="pip install --no-deps mediapipe"):
        mediapipe_model_path(fm.FACE_MODEL)
