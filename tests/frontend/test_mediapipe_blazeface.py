"""BlazeFace (MediaPipe's short- and full-range face detectors) ported to torch.

References: the TFLite runtime (``ai_edge_litert``) on the raw tensors; MediaPipe's anchor layout
counted by hand (896 = 16²·2 + 8²·6, 2304 = 48²); a brute-force weighted NMS on hand-made boxes;
dlib's HOG box and 68 landmarks on the astronaut photo; a translated photo for the letterbox
mapping.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit

litert = pytest.importorskip("ai_edge_litert.interpreter")

from facegcn.errors import ModelFileError  # noqa: E402
from facegcn.frontend import blazeface as bf  # noqa: E402
from facegcn.frontend import facemesh as fm  # noqa: E402
from facegcn.frontend.models import mediapipe_model_path  # noqa: E402

try:
    PATHS = {k: mediapipe_model_path(s.model) for k, s in bf.SPECS.items()}
except ModelFileError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"MediaPipe model files not installed: {exc}", allow_module_level=True)


def _inputs(photo: np.ndarray, size: int) -> np.ndarray:
    """≥ 20 (size, size, 3) float32 detector inputs in [−1, 1]: letterboxed photos, crops at
    rotations / scales, noise and gradients."""
    from skimage import data

    out = []
    h, w = photo.shape[:2]
    for img in (photo, data.coffee(), data.chelsea(), data.rocket(), np.repeat(data.camera()[..., None], 3, -1)):
        roi = bf.letterbox_roi(img.shape[1], img.shape[0], size)
        out.append(fm.crop_photo(img, roi, padding="zeros")[0])
    for k in range(10):
        roi = fm.RoiTransform(np.array([220.0 + 9 * k, 120.0 + 5 * k]), 150.0 + 35 * k, 0.3 * (k - 5), size)
        out.append(fm.crop_photo(photo, roi, padding="zeros")[0])
    rng = np.random.default_rng(5)
    v, u = np.mgrid[0:size, 0:size] / (size - 1)
    for img in (rng.random((size, size, 3)), np.stack([u, v, u * v], -1), np.full((size, size, 3), 0.5),
                np.zeros((size, size, 3)), np.clip(0.5 + 0.3 * rng.standard_normal((size, size, 3)), 0, 1)):
        out.append(torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1))
    x = torch.stack(out).permute(0, 2, 3, 1).numpy() * 2 - 1
    return x.astype(np.float32)


@pytest.mark.parametrize("kind", ["short", "full"])
def test_raw_tensors_match_litert(astronaut, kind):
    spec = bf.SPECS[kind]
    x = _inputs(astronaut, spec.size)
    assert len(x) >= 20
    it = litert.Interpreter(model_path=str(PATHS[kind]), num_threads=1)
    it.allocate_tensors()
    outs = it.get_output_details()
    ref_reg, ref_cls = [], []
    for img in x:
        it.set_tensor(it.get_input_details()[0]["index"], img[None])
        it.invoke()
        by_name = {o["name"]: it.get_tensor(o["index"])[0].copy() for o in outs}
        reg, cls = sorted(by_name.values(), key=lambda a: -a.shape[-1])  # (N, 16), (N, 1)
        ref_reg.append(reg)
        ref_cls.append(cls[:, 0])
    with torch.no_grad():
        reg, logits = bf.load_blazeface(kind)(torch.from_numpy(x).permute(0, 3, 1, 2))
    ref_reg, ref_cls = np.stack(ref_reg), np.stack(ref_cls)
    d_reg, d_cls = np.abs(reg.numpy() - ref_reg), np.abs(logits.numpy() - ref_cls)
    # float32 relative agreement everywhere (a black input drives raw values to ~1e4) ...
    rel = max((d_reg / np.maximum(1, np.abs(ref_reg))).max(), (d_cls / np.maximum(1, np.abs(ref_cls))).max())
    # ... and absolute agreement on the anchors that fire
    fire = ref_cls > 0
    d_fire = max(d_reg[fire].max(), d_cls[fire].max())
    d_p = np.abs(expit(logits.numpy()) - expit(ref_cls)).max()
    print(f"blazeface {kind} vs LiteRT over {len(x)} inputs: relative {rel:.2e}; on {fire.sum()} firing anchors "
          f"{d_fire:.2e} px/logit; max |Δ| regressors {d_reg.max():.2e}, probability {d_p:.2e}")
    assert fire.sum() > 10
    assert rel < 1e-3 and d_fire < 1e-3 and d_p < 1e-4


def test_anchor_layout():
    short, full = bf.ssd_anchors(bf.SHORT_RANGE), bf.ssd_anchors(bf.FULL_RANGE)
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    np.testing.assert_allclose(short[:2], [[1 / 32, 1 / 32]] * 2)  # 16² grid, 2 anchors per cell
    np.testing.assert_allclose(short[2], [3 / 32, 1 / 32])
    np.testing.assert_allclose(short[512:518], [[1 / 16, 1 / 16]] * 6)  # 8² grid, 3 layers × 2
    np.testing.assert_allclose(short[-1], [15 / 16, 15 / 16])
    np.testing.assert_allclose(full[[0, 1, 48]], [[1 / 96, 1 / 96], [3 / 96, 1 / 96], [1 / 96, 3 / 96]])


def test_decoding_is_anchor_relative_in_input_pixels():
    net = bf.load_blazeface("short")
    reg = torch.zeros(1, 896, 16)
    reg[0, 3] = torch.tensor([2.0, -1.0, 20.0, 10.0] + [1.0, 2.0] * 6)
    boxes, kps, scores = net.decode(reg, torch.full((1, 896), 300.0))
    cx, cy = 3 / 32 * 128, 1 / 32 * 128  # anchor 3: second cell of the first row, 2nd anchor
    np.testing.assert_allclose(boxes[0, 3].numpy(), [cx + 2 - 10, cy - 1 - 5, cx + 2 + 10, cy - 1 + 5], atol=1e-5)
    np.testing.assert_allclose(kps[0, 3].numpy(), [[cx + 1, cy + 2]] * 6, atol=1e-5)
    assert float(scores[0, 3]) == pytest.approx(1 / (1 + np.exp(-100.0)))  # logits clipped at ±100


def test_weighted_nms_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0, 0, 10, 10.5]], float)
    kps = np.arange(4 * 2 * 2, dtype=float).reshape(4, 2, 2)
    scores = np.array([0.9, 0.6, 0.8, 0.3])
    b, k, s = bf.weighted_nms(boxes, kps, scores, 0.3)
    np.testing.assert_allclose(s, [0.9, 0.8])
    w = scores[[0, 1, 3]] / scores[[0, 1, 3]].sum()
    np.testing.assert_allclose(b[0], (boxes[[0, 1, 3]] * w[:, None]).sum(0))
    np.testing.assert_allclose(k[0], (kps[[0, 1, 3]] * w[:, None, None]).sum(0))
    np.testing.assert_allclose(b[1], boxes[2])
    e = bf.weighted_nms(np.zeros((0, 4)), np.zeros((0, 6, 2)), np.zeros(0))
    assert e[0].shape == (0, 4) and e[1].shape == (0, 6, 2)


@pytest.mark.parametrize("kind", ["short", "full"])
def test_detects_the_astronaut(astronaut, dlib_models, kind):
    rect = dlib_models["hog"](astronaut, 1)[0]
    p68 = np.array([[p.x, p.y] for p in dlib_models["sp68"](astronaut, rect).parts()], float)
    dbox = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], float)
    dets = bf.detect_faces(astronaut, kind=kind)
    assert len(dets) == 1 and dets[0].score > 0.8
    d = dets[0]
    lo, hi = np.maximum(d.box[:2], dbox[:2]), np.minimum(d.box[2:], dbox[2:])
    inter = np.prod(np.clip(hi - lo, 0, None))
    iou = inter / (np.prod(d.box[2:] - d.box[:2]) + np.prod(dbox[2:] - dbox[:2]) - inter)
    assert iou > 0.6
    assert np.linalg.norm(d.keypoints[0] - p68[36:42].mean(0)) < 5  # image-left eye
    assert np.linalg.norm(d.keypoints[1] - p68[42:48].mean(0)) < 5  # image-right eye
    assert np.linalg.norm(d.keypoints[2] - p68[30]) < 8  # nose tip
    # the detection ROI feeds the mesh: its eye line is near horizontal here
    roi = fm.roi_from_box(d.box, d.keypoints[:2])
    assert abs(roi.rotation) < 0.1


def test_letterbox_follows_a_translated_photo(astronaut):
    """The astronaut pasted at an offset into a wider grey canvas: the box moves by the offset.
    The face is 512/600 as large in the detector input, so the answers jitter: allow 4 % of the
    box side for the box and 1.5 input pixels (7 photo pixels) for the keypoints (measured
    jitter over canvas widths 512-700: up to ~1.2 input pixels)."""
    canvas = np.full((512, 600, 3), 128, np.uint8)
    canvas[:, 70:582] = astronaut
    for kind in ("short", "full"):
        ref = bf.detect_faces(astronaut, kind=kind)[0]
        got = bf.detect_faces(canvas, kind=kind)[0]
        tol = 0.04 * (ref.box[2] - ref.box[0])
        np.testing.assert_allclose(got.box, ref.box + [70, 0, 70, 0], atol=tol)
        np.testing.assert_allclose(got.keypoints[:4], ref.keypoints[:4] + [70, 0], atol=1.5 * 600 / bf.SPECS[kind].size)


def test_no_face_in_noise():
    rng = np.random.default_rng(0)
    assert bf.detect_faces(rng.random((300, 400, 3)).astype(np.float32)) == []
    assert bf.detect_faces(np.zeros((64, 64, 3), np.uint8), kind="full") == []
