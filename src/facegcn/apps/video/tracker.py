"""Following one face through a clip: observe each frame, fit it, smooth the fits over time.

Each frame is fitted in its own 224² aligned crop (:class:`FaceTracker`); the fits are then carried
into the reference crop (the first key frame's), where :class:`Smoother` filters them.
"""

from __future__ import annotations

import numpy as np
import torch

from facegcn.apps.video.keyframes import KeyFrames
from facegcn.coarse.losses import CoarseLoss
from facegcn.coarse.synthesis import FaceSynthesis
from facegcn.coarse.track import TrackConfig, crop_change, observation_targets, track_frame, transfer_pose
from facegcn.errors import NoFaceError
from facegcn.frontend import FaceObservation, FrontendConfig, observe
from facegcn.io.image import Photo
from facegcn.morphable import Coefficients
from facegcn.render import PerspectiveCamera

__all__ = ["FaceTracker", "Smoother", "coefficient_vectors", "coefficients_from_vectors", "nearest_face"]

MOVING = ("angles", "trans", "exp", "sh")  # what changes from frame to frame (identity is fixed)


def coefficient_vectors(c: Coefficients) -> dict[str, np.ndarray]:
    """The moving groups of batch-1 coefficients as float64 vectors: ``{"angles", "trans", "exp", "sh"}``."""
    return {k: getattr(c, k).detach().cpu().double().numpy()[0] for k in MOVING}


def coefficients_from_vectors(vectors: dict[str, np.ndarray], keys: KeyFrames,
                              device: torch.device | str) -> Coefficients:
    """Batch-1 float32 coefficients on ``device`` from :func:`coefficient_vectors`-style vectors and
    the clip's shared identity."""
    moving = {k: torch.as_tensor(v, dtype=torch.float32, device=device)[None] for k, v in vectors.items()}
    return Coefficients(id=keys.id.to(device), tex=keys.tex.to(device), **moving)


def nearest_face(observations: list[FaceObservation], prev_box: np.ndarray | None) -> FaceObservation:
    """The face whose box centre is nearest to ``prev_box``'s (the first one without a previous box).

    Shapes:
        prev_box: ``(4,)`` x1, y1, x2, y2 photo pixels.
    """
    if prev_box is None or len(observations) == 1:
        return observations[0]
    pc = (prev_box[:2] + prev_box[2:]) / 2
    return min(observations, key=lambda o: float(np.linalg.norm((o.box[:2] + o.box[2:]) / 2 - pc)))


class FaceTracker:
    """Observes and fits one frame after another, each from the previous frame's fit.

    Every frame is observed (detection, 68 landmarks, alignment, face mask; no identity embedding)
    and fitted by :func:`~facegcn.coarse.track.track_frame` with the shared identity fixed. When
    several faces are visible the one nearest to the previous face is followed; a frame without a
    face keeps the previous fit.

    Args:
        synthesis: the forward model (``Reconstructor.synthesis``).
        loss: the coarse loss (``CoarseFitter.loss``).
        keys: the clip's key frames and shared identity.
        config: the per-frame fit's settings.
        detector: ``"dlib"`` or ``"mtcnn"``.
        device: where the fit runs.
        box_exp: clamp expression weights to [0, 1] (``CoarseFitter.box_exp``).
    """

    def __init__(self, synthesis: FaceSynthesis, loss: CoarseLoss, keys: KeyFrames, config: TrackConfig, *,
                 detector: str, device: torch.device | str, box_exp: bool = False):
        self.synthesis, self.loss, self.keys, self.config = synthesis, loss, keys, config
        self.detector, self.device, self.box_exp = detector, device, box_exp
        self.frontend = FrontendConfig(identity=None)
        self.current: tuple[Coefficients, np.ndarray] | None = None  # last fit and its crop matrix
        self.box = np.asarray(keys.reference.observation.box, np.float64)  # follow the key frame's face

    def observe(self, index: int, frame: np.ndarray) -> FaceObservation | None:
        """The followed face in frame ``index`` (a key frame's own observation), or ``None``."""
        key = self.keys.at(index)
        if key is not None:
            return key.observation
        try:
            found = observe(Photo(frame), detector=self.detector, all_faces=True, config=self.frontend)
        except NoFaceError:
            return None
        return nearest_face(found, self.box)

    def _init(self, index: int, crop: np.ndarray) -> Coefficients:
        key = self.keys.at(index)
        cam = self.synthesis.camera
        if key is not None:  # a key frame starts from its own full fit (in its own crop)
            return self.keys.with_identity(key.coarse.coeffs)
        if self.current is not None:
            c, prev_crop = self.current
            return transfer_pose(c, crop_change(prev_crop, crop), cam)
        # frames before the first key frame start from it
        init = self.keys.with_identity(self.keys.reference.coarse.coeffs)
        return transfer_pose(init, crop_change(self.keys.reference_crop, crop), cam)

    def fit(self, index: int, obs: FaceObservation) -> float:
        """Fit frame ``index``'s observed face; it becomes :attr:`current`.

        Returns:
            the mean landmark error in aligned-crop pixels.
        """
        crop = np.asarray(obs.transform, np.float64)
        res = track_frame(self.synthesis, self.loss, self._init(index, crop), *observation_targets(obs, self.device),
                          albedo=self.keys.albedo, config=self.config, box_exp=self.box_exp)
        self.current, self.box = (res.coeffs, crop), obs.box
        return res.landmark_px


class Smoother:
    """Carries per-crop fits into the reference crop and filters them over time.

    Args:
        filt: a temporal filter (:func:`~facegcn.apps.video.filters.make_filter`), called ``filt(x, t)``.
        reference_crop: ``(2, 3)`` photo → crop similarity of the reference frame.
        camera: the crops' camera.
        box_exp: clip smoothed expression weights to [0, 1].
    """

    def __init__(self, filt, reference_crop: np.ndarray, camera: PerspectiveCamera, box_exp: bool = False):
        self.filt, self.reference_crop, self.camera, self.box_exp = filt, reference_crop, camera, box_exp

    def __call__(self, c: Coefficients, crop: np.ndarray, t: float) -> tuple[dict, dict]:
        """Raw and smoothed moving coefficients of one frame, both in the reference crop.

        Args:
            c: the frame's fit in its own crop.
            crop: ``(2, 3)`` photo → crop similarity of that crop.
            t: the frame's time, seconds.

        Returns:
            ``(raw, smoothed)``: each ``{"angles", "trans", "exp", "sh"}`` → float64 vector
            (radians, decimetres, blendshape weights, SH coefficients).
        """
        raw = coefficient_vectors(transfer_pose(c, crop_change(crop, self.reference_crop), self.camera))
        flat = np.concatenate([raw[k] for k in MOVING])
        parts = np.split(self.filt(flat, t), np.cumsum([len(raw[k]) for k in MOVING])[:-1])
        smoothed = dict(zip(MOVING, parts))
        if self.box_exp:
            smoothed["exp"] = np.clip(smoothed["exp"], 0.0, 1.0)
        return raw, smoothed
