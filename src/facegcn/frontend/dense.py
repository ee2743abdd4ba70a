"""The dense landmarks of one detected face, for :func:`facegcn.frontend.observe`.

* :func:`face_spec` — MediaPipe's face-mesh input for a detection: its box and the two eye
  centres (BlazeFace keypoints, MTCNN points, or the eye centres of dlib's 68 points), which set
  the crop's rotation; :func:`~facegcn.frontend.facemesh.dense_landmarks` then runs 2 passes (the
  second re-crops from the first pass's points, as MediaPipe tracks).
* :func:`points5_from_dense` — the 5 alignment points (eye centres, nose tip, mouth corners, as
  :func:`~facegcn.frontend.align.five_from_68`) from the 468: the mean of each eye's 16 contour
  points, point 4 (the nose tip, dlib's 30) and points 61 / 291 (mouth corners). On the astronaut
  they lie within 4 % of the inter-ocular distance of dlib's.
* :func:`head_pose` — pitch, yaw, roll (degrees, the renderer's convention: ``R = Rz Ry Rx``,
  positive yaw turns the face towards image right) of a weighted similarity (Umeyama) fit of the
  ICT mean-shape points of MediaPipe's 468 (:mod:`facegcn.morphable.dense`, weighted by their
  reliability) to the detected (x, −y, −z): MediaPipe's z is relative depth in the x/y pixel scale,
  smaller = nearer. A rough estimate (weak perspective), for reports and for choosing a strategy.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from facegcn.frontend.facemesh import dense_landmarks
from facegcn.frontend.facemesh_regions import LEFT_EYE, RIGHT_EYE

NOSE_TIP, MOUTH_LEFT, MOUTH_RIGHT = 4, 61, 291


@dataclass(frozen=True)
class DenseFace:
    """MediaPipe's landmarks of one face in photo pixels (float64).

    Attributes:
        points: (468, 3) x, y, z; score: face probability of the mesh network; iris: (2, 5, 3)
        image-left then image-right eye, centre first; pose_deg: (3,) pitch, yaw, roll.
    """

    points: np.ndarray
    score: float
    iris: np.ndarray
    pose_deg: np.ndarray


def face_spec(box: np.ndarray, eyes: np.ndarray) -> np.ndarray:
    """(6, 2) box + eyes input of ``dense_landmarks``: box (4,), eyes (2, 2) image-left first."""
    return np.concatenate([np.asarray(box, np.float64).reshape(2, 2), np.asarray(eyes, np.float64).reshape(2, 2),
                           np.zeros((2, 2))])


def points5_from_dense(points: np.ndarray) -> np.ndarray:
    """(5, 2): image-left eye, image-right eye, nose tip, image-left and image-right mouth corner."""
    p = np.asarray(points, np.float64)[:, :2]
    return np.stack([p[list(RIGHT_EYE)].mean(0), p[list(LEFT_EYE)].mean(0), p[NOSE_TIP], p[MOUTH_LEFT],
                     p[MOUTH_RIGHT]])


_REF: dict[str, tuple[np.ndarray, np.ndarray]] = {}
_REF_LOCK = threading.Lock()


def reference_points() -> tuple[np.ndarray, np.ndarray]:
    """(468, 3) ICT mean-shape points (decimetres, model frame) and their (468,) reliabilities."""
    with _REF_LOCK:
        if "ict" not in _REF:
            from facegcn.morphable.dense import correspondence_path, read_correspondence

            c = read_correspondence(correspondence_path("ict"))
            _REF["ict"] = (c.mean_points.astype(np.float64), c.weight.astype(np.float64))
        return _REF["ict"]


def rotation_to_angles(r: np.ndarray) -> np.ndarray:
    """(pitch, yaw, roll) radians of ``R = Rz(roll) Ry(yaw) Rx(pitch)`` (:func:`facegcn.render.rotation_matrix`)."""
    yaw = float(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    return np.array([np.arctan2(r[2, 1], r[2, 2]), yaw, np.arctan2(r[1, 0], r[0, 0])])


def head_pose(points: np.ndarray, reference: np.ndarray | None = None, weight: np.ndarray | None = None) -> np.ndarray:
    """(3,) degrees pitch, yaw, roll of the face (module docstring).

    Args:
        points: (468, 3) photo pixels (x, y, MediaPipe z).
        reference, weight: (468, 3) model-frame points and (468,) weights (default: ICT's).
    """
    if reference is None:
        reference, w0 = reference_points()
        weight = w0 if weight is None else weight
    w = np.ones(len(reference)) if weight is None else np.asarray(weight, np.float64)
    w = w / w.sum()
    x = np.asarray(points, np.float64) * np.array([1.0, -1.0, -1.0])
    m = np.asarray(reference, np.float64)
    mx, mm = w @ x, w @ m
    cov = ((x - mx) * w[:, None]).T @ (m - mm)  # Σ w (x − x̄)(m − m̄)ᵀ
    u, _, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1.0, 1.0, d]) @ vt
    return np.degrees(rotation_to_angles(r))


def observe_dense(pixels: np.ndarray, spec, device="cpu") -> DenseFace:
    """MediaPipe's mesh + irises of one face (``spec``: see :func:`face_spec`), with :func:`head_pose`."""
    d = dense_landmarks(pixels, spec, device=device)
    return DenseFace(points=d.points_photo, score=d.score, iris=d.iris, pose_deg=head_pose(d.points_photo))
