"""MediaPipe's face mesh (468 points) and iris networks in torch, with MediaPipe's crop geometry.

The networks are MediaPipe's own ``face_landmark.tflite`` and ``iris_landmark.tflite`` (from the
``mediapipe`` wheel, located by :func:`~facegcn.frontend.models.mediapipe_model_path`), run by
:class:`~facegcn.frontend.tflite_graph.TFLiteGraph`; no MediaPipe or TFLite code runs.

Geometry (MediaPipe's ``face_landmark_front_cpu`` / ``iris_landmark_left_and_right_cpu`` graphs):

* **Face ROI** — a rotated square. From a detection: centre = box centre, side = 1.5 × the box's
  longer side, rotation from the right-eye → left-eye keypoints (image-left → image-right eye).
  From landmarks: the axis-aligned bounding box of all 468 points, side 1.5 × its longer side,
  rotation from point 33 → point 263 (eye corners). The rotation makes the eye line horizontal in
  the 192² crop; MediaPipe tracks a video by re-using the landmark ROI of the previous frame.
* **Eye ROIs** — MediaPipe's "left" eye is the image-left one (points 33 → 133), its "right" eye
  the image-right one (362 → 263); side = 2.3 × the larger axis extent of the two corners, rotation
  along the corners. The iris model was trained on image-left eyes only: the image-right eye is
  flipped horizontally before the network and its points flipped back.
* **Pixel conventions** — photo pixel centres are at integer coordinates (as in the rest of this
  repo). A crop of ``S`` pixels samples, at crop pixel (u, v), the photo point
  ``centre + R·F·((u, v)/S − ½)·side`` (R the ROI rotation, F = diag(−1, 1) when flipped) with
  bilinear interpolation and replicated borders, exactly MediaPipe's ``ImageToTensor`` mapping;
  the networks' outputs are in those crop-pixel units and map back through the same transform.
  z is scaled like x (``z · side / S``): relative depth in photo pixels, smaller = nearer.

On CUDA, torch's default TF32 cuDNN convolutions round differently from float32 (not measured
here: no GPU); set ``torch.backends.cudnn.allow_tf32 = False`` to stay close to CPU / TFLite.

Input range: both networks take RGB in [0, 1] (MediaPipe: ``output_tensor_float_range {0, 1}``
for the mesh, ``zero_center: false`` for the iris). The face score is the sigmoid of the
face-flag logit (MediaPipe drops faces below 0.5).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facegcn.errors import InputError
from facegcn.frontend.models import mediapipe_model_path
from facegcn.frontend.tflite_graph import TFLiteGraph

FACE_MODEL = "modules/face_landmark/face_landmark.tflite"
IRIS_MODEL = "modules/iris_landmark/iris_landmark.tflite"
FACE_SIZE, IRIS_SIZE = 192, 64
FACE_SCALE, EYE_SCALE = 1.5, 2.3
EYE_CORNERS = ((33, 133), (362, 263))  # MediaPipe's "left" (image-left) and "right" eye
ROTATION_POINTS = (33, 263)


class FaceMeshNet(nn.Module):
    """``face_landmark.tflite``: 468 3-D points and a face score from a 192² face crop.

    Args:
        path: the ``.tflite`` file; default: the one in the installed ``mediapipe`` wheel.
    """

    def __init__(self, path=None):
        super().__init__()
        self.graph = TFLiteGraph(path or mediapipe_model_path(FACE_MODEL))

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            crops: (B, 3, 192, 192) float RGB in [0, 1], on the module's device.

        Returns:
            landmarks: (B, 468, 3) float32 (x, y, z) in crop pixels; score: (B,) float32
            probability that the crop holds a face. Differentiable in ``crops``.
        """
        mesh, flag = self.graph(crops)
        return mesh.reshape(-1, 468, 3), torch.sigmoid(flag.reshape(-1))


class IrisNet(nn.Module):
    """``iris_landmark.tflite``: eye contour + brow (71 points) and iris (5 points) of a 64² crop
    of an image-left eye (flip image-right eyes first).

    Args:
        path: the ``.tflite`` file; default: the one in the installed ``mediapipe`` wheel.
    """

    def __init__(self, path=None):
        super().__init__()
        self.graph = TFLiteGraph(path or mediapipe_model_path(IRIS_MODEL))

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            crops: (B, 3, 64, 64) float RGB in [0, 1], on the module's device.

        Returns:
            contour: (B, 71, 3) float32 and iris: (B, 5, 3) float32 (centre first), (x, y, z) in
            crop pixels. Differentiable in ``crops``.
        """
        contour, iris = self.graph(crops)
        return contour.reshape(-1, 71, 3), iris.reshape(-1, 5, 3)


_NET_CACHE: dict[tuple, nn.Module] = {}
_NET_LOCK = threading.Lock()


def _load(cls, device) -> nn.Module:
    key = (cls.__name__, str(device))
    with _NET_LOCK:
        net = _NET_CACHE.get(key)
        if net is None:
            net = cls().to(device).eval()
            for p in net.parameters():
                p.requires_grad_(False)
            _NET_CACHE[key] = net
    return net


def load_facemesh(device: str | torch.device = "cpu") -> FaceMeshNet:
    """The shared :class:`FaceMeshNet` on ``device`` (frozen weights; do not modify in place)."""
    return _load(FaceMeshNet, device)


def load_iris(device: str | torch.device = "cpu") -> IrisNet:
    """The shared :class:`IrisNet` on ``device`` (frozen weights; do not modify in place)."""
    return _load(IrisNet, device)


# ---- ROI geometry ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RoiTransform:
    """A rotated square region of a photo and its S×S crop (see the module docstring).

    Attributes:
        centre: (2,) float64 photo pixels; size: side in photo pixels; rotation: radians, the
        angle of the crop's x axis in the photo (y down, positive = clockwise on screen);
        crop: S; flip: the crop is mirrored horizontally.
    """

    centre: np.ndarray
    size: float
    rotation: float
    crop: int
    flip: bool = False

    def matrix(self) -> np.ndarray:
        """(2, 3) float64 affine: crop pixels (u, v, 1) → photo pixels (x, y)."""
        c, s = np.cos(self.rotation), np.sin(self.rotation)
        lin = np.array([[c, -s], [s, c]]) @ np.diag([-1.0 if self.flip else 1.0, 1.0]) * (self.size / self.crop)
        return np.concatenate([lin, (np.asarray(self.centre, np.float64) - lin @ np.full(2, self.crop / 2.0))[:, None]], 1)

    def to_photo(self, points: np.ndarray) -> np.ndarray:
        """(N, 2|3) crop pixels → photo pixels (z, if given, scaled by size / S), float64."""
        p = np.asarray(points, np.float64)
        m = self.matrix()
        out = p.copy()
        out[:, :2] = p[:, :2] @ m[:, :2].T + m[:, 2]
        if p.shape[1] > 2:
            out[:, 2:] = p[:, 2:] * (self.size / self.crop)
        return out

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_photo`."""
        p = np.asarray(points, np.float64)
        m = self.matrix()
        out = p.copy()
        out[:, :2] = np.linalg.solve(m[:, :2], (p[:, :2] - m[:, 2]).T).T
        if p.shape[1] > 2:
            out[:, 2:] = p[:, 2:] * (self.crop / self.size)
        return out


def _angle(p0: np.ndarray, p1: np.ndarray) -> float:
    a = float(np.arctan2(p1[1] - p0[1], p1[0] - p0[0]))  # MediaPipe: 0 − atan2(−dy, dx), normalised
    return a - 2 * np.pi * np.floor((a + np.pi) / (2 * np.pi))


def roi_from_box(box, eyes=None, *, scale: float = FACE_SCALE, crop: int = FACE_SIZE) -> RoiTransform:
    """MediaPipe's detection → ROI (``FaceDetectionFrontDetectionToRoi``).

    Args:
        box: (4,) x1, y1, x2, y2 photo pixels.
        eyes: optional (2, 2) image-left eye, image-right eye (BlazeFace keypoints 0, 1); without
            them the ROI is upright.

    Returns:
        The face ROI (side = scale × the box's longer side).
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, np.float64).reshape(4))
    rot = 0.0 if eyes is None else _angle(*np.asarray(eyes, np.float64).reshape(2, 2))
    return RoiTransform(np.array([(x1 + x2) / 2, (y1 + y2) / 2]), max(x2 - x1, y2 - y1) * scale, rot, crop)


def roi_from_landmarks(points: np.ndarray) -> RoiTransform:
    """MediaPipe's landmarks → ROI (``FaceLandmarkLandmarksToRoi``) from (468, 2|3) photo points."""
    p = np.asarray(points, np.float64)[:, :2]
    lo, hi = p.min(0), p.max(0)
    rot = _angle(p[ROTATION_POINTS[0]], p[ROTATION_POINTS[1]])
    return RoiTransform((lo + hi) / 2, float((hi - lo).max()) * FACE_SCALE, rot, FACE_SIZE)


def eye_rois(points: np.ndarray) -> tuple[RoiTransform, RoiTransform]:
    """MediaPipe's eye ROIs (``IrisLandmarkLandmarksToRoi``) from (468, 2|3) photo points:
    (image-left eye, image-right eye, flipped)."""
    p = np.asarray(points, np.float64)[:, :2]
    out = []
    for k, (a, b) in enumerate(EYE_CORNERS):
        lo, hi = np.minimum(p[a], p[b]), np.maximum(p[a], p[b])
        out.append(RoiTransform((lo + hi) / 2, float((hi - lo).max()) * EYE_SCALE, _angle(p[a], p[b]), IRIS_SIZE, k == 1))
    return out[0], out[1]


def warp_crops(images: torch.Tensor, matrices: torch.Tensor, size: int, padding: str = "border") -> torch.Tensor:
    """Differentiable crops: ``out[b, :, v, u] = images[b]`` sampled bilinearly at ``matrices[b] @ (u, v, 1)``.

    Args:
        images: (B, C, H, W) float, any device; matrices: (B, 2, 3) crop → image pixels (pixel
            centres at integers), same device; size: crop side S; padding: ``"border"``
            (replicate, MediaPipe's landmark crops) or ``"zeros"``.

    Returns:
        (B, C, S, S) float crops, differentiable in ``images`` and ``matrices``.
    """
    b, _, h, w = images.shape
    m = matrices.to(images.dtype)
    r = torch.arange(size, dtype=images.dtype, device=images.device)
    vv, uu = torch.meshgrid(r, r, indexing="ij")
    uv1 = torch.stack([uu, vv, torch.ones_like(uu)], -1).reshape(1, -1, 3)
    xy = uv1 @ m.transpose(1, 2)  # (B, S², 2)
    grid = torch.stack([2 * xy[..., 0] / max(w - 1, 1) - 1, 2 * xy[..., 1] / max(h - 1, 1) - 1], -1)
    return F.grid_sample(images, grid.reshape(b, size, size, 2), mode="bilinear", padding_mode=padding, align_corners=True)


def _checked_photo(photo) -> np.ndarray:
    arr = np.asarray(photo)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"expected an (H, W, 3) RGB photo, got shape {arr.shape}")
    return arr


def crop_photo(photo, roi: RoiTransform, device: str | torch.device = "cpu", padding: str = "border") -> torch.Tensor:
    """One ROI crop of an (H, W, 3) photo (float in [0, 1] or uint8) → (1, 3, S, S) float32 on
    ``device``. Only the photo window under the ROI is converted (large photos stay cheap): it
    holds every in-image sample point, and it is clipped at the photo's edges, so border / zero
    padding give what they would on the whole photo."""
    img = _checked_photo(photo)
    h, w = img.shape[:2]
    corners = roi.to_photo(np.array([[0, 0], [roi.crop, 0], [0, roi.crop], [roi.crop, roi.crop]], np.float64))
    x0, y0 = (int(np.clip(np.floor(v) - 1, 0, n - 1)) for v, n in zip(corners.min(0), (w, h)))
    x1, y1 = (int(np.clip(np.ceil(v) + 1, 0, n - 1)) for v, n in zip(corners.max(0), (w, h)))
    x0, y0 = min(x0, max(x1 - 1, 0)), min(y0, max(y1 - 1, 0))
    x1, y1 = max(x1, min(x0 + 1, w - 1)), max(y1, min(y0 + 1, h - 1))
    win = np.asarray(img[y0:y1 + 1, x0:x1 + 1], np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
    win = torch.from_numpy(np.ascontiguousarray(win)).permute(2, 0, 1)[None].to(device)
    m = roi.matrix()
    m[:, 2] -= (x0, y0)
    return warp_crops(win, torch.as_tensor(m[None], dtype=torch.float32, device=device), roi.crop, padding)


# ---- the high-level call --------------------------------------------------------------------

@dataclass(frozen=True)
class DenseLandmarks:
    """MediaPipe face mesh + irises of one face, in photo pixels (pixel centres at integers).

    Attributes:
        points_photo: (468, 3) float64 (x, y, z), z relative depth in the same pixel scale.
        score: face probability of the last mesh pass.
        iris: (2, 5, 3) float64, [image-left eye, image-right eye], centre first.
        eye_contours: (2, 71, 3) float64, same eye order (MediaPipe's eye contour + brow points).
        roi: the face ROI of the last pass; eye_rois: the two eye ROIs.
    """

    points_photo: np.ndarray
    score: float
    iris: np.ndarray
    eye_contours: np.ndarray
    roi: RoiTransform
    eye_rois: tuple[RoiTransform, RoiTransform]


@torch.no_grad()
def dense_landmarks(photo, box_or_points, *, passes: int = 2, device: str | torch.device = "cpu") -> DenseLandmarks:
    """MediaPipe's face mesh and iris landmarks of one face.

    Args:
        photo: (H, W, 3) RGB, float in [0, 1] or uint8.
        box_or_points: where the face is — a :class:`RoiTransform`; a (4,) box x1, y1, x2, y2
            (upright ROI, as MediaPipe's detection ROI without eye keypoints); a (6, 2) array of
            box corners (x1, y1), (x2, y2) followed by the image-left and image-right eye centres
            (rotated ROI) and two ignored rows; or (468, 2|3) mesh points (e.g. of the previous
            video frame), all in photo pixels.
        passes: mesh passes; each pass after the first re-crops from the previous pass's
            landmarks (MediaPipe's tracking ROI), which corrects rough boxes and rotations.
        device: where the networks run.

    Returns:
        :class:`DenseLandmarks` (float64 numpy arrays).
    """
    spec = box_or_points
    if isinstance(spec, RoiTransform):
        roi = spec
    else:
        arr = np.asarray(spec, np.float64)
        if arr.shape == (4,):
            roi = roi_from_box(arr)
        elif arr.shape == (6, 2):
            roi = roi_from_box(arr[:2].reshape(4), arr[2:4])
        elif arr.ndim == 2 and arr.shape[0] == 468 and arr.shape[1] in (2, 3):
            roi = roi_from_landmarks(arr)
        else:
            raise InputError(f"expected a (4,) box, (6, 2) box + eyes or (468, 2|3) points, got shape {arr.shape}")
    mesh_net, iris_net = load_facemesh(device), load_iris(device)
    for k in range(max(1, int(passes))):
        if k:
            roi = roi_from_landmarks(points)
        pts, score = mesh_net(crop_photo(photo, roi, device))
        points = roi.to_photo(pts[0].double().cpu().numpy())
    rois = eye_rois(points)
    crops = torch.cat([crop_photo(photo, r, device) for r in rois])
    contour, iris = iris_net(crops)
    contour, iris = contour.double().cpu().numpy(), iris.double().cpu().numpy()
    return DenseLandmarks(
        points_photo=points, score=float(score[0]),
        iris=np.stack([r.to_photo(i) for r, i in zip(rois, iris)]),
        eye_contours=np.stack([r.to_photo(c) for r, c in zip(rois, contour)]),
        roi=roi, eye_rois=rois)
