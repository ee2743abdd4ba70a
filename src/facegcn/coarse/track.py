"""Per-frame tracking: refit pose, expression and light of one frame with identity and albedo fixed.

:func:`track_frame` is a short Adam loop started from the previous frame's fit (landmark steps,
then a few photometric steps, with a temporal prior on the expression). Each frame is fitted in
its own 224² aligned crop; :func:`crop_change` and :func:`transfer_pose` carry coefficients from
one crop's camera frame into another's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from facegcn.coarse.losses import CoarseLoss
from facegcn.coarse.synthesis import FaceSynthesis
from facegcn.morphable import Coefficients
from facegcn.render import PerspectiveCamera

__all__ = ["TrackConfig", "TrackResult", "crop_change", "observation_targets", "track_frame", "transfer_pose"]

_MOVING = ("angles", "trans", "exp", "sh")  # the coefficient groups a tracked frame may change


@dataclass(frozen=True)
class TrackConfig:
    """Step counts and step sizes of :func:`track_frame`.

    Args:
        track_steps: landmark-only steps (pose + expression).
        photo_steps: photometric steps after them (pose + expression + SH light).
        lr_pose: Adam step size of ``angles`` (radians) and ``trans`` (decimetres).
        lr_exp: Adam step size of the expression weights.
        lr_sh: Adam step size of the SH light coefficients.
        temporal_weight: weight of ``|exp − exp_init|²`` (damps expression flicker; 0 = off).
    """

    track_steps: int = 40
    photo_steps: int = 4
    lr_pose: float = 0.004
    lr_exp: float = 0.01
    lr_sh: float = 0.01
    temporal_weight: float = 0.01


@dataclass
class TrackResult:
    """What :func:`track_frame` returns: the fitted ``coeffs`` (detached, in the frame's crop) and
    ``landmark_px``, the mean distance (aligned-crop pixels) of their landmarks to the targets."""

    coeffs: Coefficients
    landmark_px: float


def _homogeneous(m: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(m, np.float64), [0.0, 0.0, 1.0]])


def crop_change(src_matrix: np.ndarray, dst_matrix: np.ndarray) -> np.ndarray:
    """The similarity from one aligned crop's pixels to another's.

    Args:
        src_matrix: photo → crop similarity of the first crop
            (:attr:`~facegcn.frontend.FaceObservation.transform`).
        dst_matrix: photo → crop similarity of the second crop.

    Returns:
        ``dst_matrix ∘ src_matrix⁻¹``, mapping first-crop pixels to second-crop pixels.

    Shapes:
        src_matrix, dst_matrix: ``(2, 3)`` float. returns: ``(2, 3)`` float64.
    """
    return (_homogeneous(dst_matrix) @ np.linalg.inv(_homogeneous(src_matrix)))[:2]


def transfer_pose(c: Coefficients, S: np.ndarray, camera: PerspectiveCamera) -> Coefficients:
    """Carry coefficients fitted in one aligned crop into another.

    Only ``angles`` and ``trans`` change: the image rotation of ``S`` becomes a rotation about the
    optical axis (exact), its scale a change of depth and its shift a translation (exact for the
    model origin, weak-perspective for the rest of the face).

    Args:
        c: coefficients whose projection through ``camera`` fits the first crop.
        S: 2-D similarity mapping the first crop's pixels to the second's (see :func:`crop_change`).
        camera: the camera of both crops.

    Returns:
        a copy of ``c`` with new ``angles`` (radians) and ``trans`` (model units, decimetres).

    Shapes:
        c: batch ``B`` (``angles``, ``trans``: ``(B, 3)``). S: ``(2, 3)``.
    """
    S = np.asarray(S, np.float64)
    A, t = S[:, :2], S[:, 2]
    s = float(math.sqrt(abs(np.linalg.det(A))))
    theta = math.atan2(A[1, 0], A[0, 0])
    cx, cy = camera.center
    ctr = np.array([cx, cy])
    d = A @ ctr + t - ctr
    ang = c.angles.detach().clone()
    tr = c.trans.detach().clone().double()
    phi = -theta  # image rotation θ (rows down) = rotation by −θ about the camera's z axis
    cph, sph = math.cos(phi), math.sin(phi)
    ang[:, 2] = ang[:, 2] + phi
    x, y = tr[:, 0].clone(), tr[:, 1].clone()
    tr[:, 0], tr[:, 1] = cph * x - sph * y, sph * x + cph * y
    zc = (camera.distance - tr[:, 2]) / s
    tr[:, 2] = camera.distance - zc
    tr[:, 0] = tr[:, 0] + d[0] * zc / camera.fx
    tr[:, 1] = tr[:, 1] - d[1] * zc / camera.fy
    return replace(c, angles=ang, trans=tr.to(c.trans.dtype))


def observation_targets(obs, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fitting targets of one :class:`~facegcn.frontend.FaceObservation`, batched, on ``device``.

    Returns:
        ``(image, landmarks, face_mask)`` as :meth:`CoarseFitter.fit <facegcn.coarse.fit.CoarseFitter.fit>`
        and :func:`track_frame` take them.

    Shapes:
        image: ``(1, 3, 224, 224)`` float in ``[0, 1]``. landmarks: ``(1, 68, 2)`` float32, aligned
        pixels. face_mask: ``(1, 1, 224, 224)`` float32 in ``{0, 1}``.
    """
    image = obs.image[None].to(device)
    landmarks = torch.as_tensor(obs.landmarks, dtype=torch.float32, device=device)[None]
    face_mask = obs.face_mask.to(device, torch.float32)[None, None]
    return image, landmarks, face_mask


class _Tracked:
    """The moving coefficient groups of one tracked frame, as leaf tensors, with identity fixed."""

    def __init__(self, init: Coefficients, device: torch.device):
        self.fixed = {k: getattr(init, k).to(device).detach() for k in ("id", "tex")}
        self.free = {k: getattr(init, k).detach().to(device).clone().requires_grad_(True) for k in _MOVING}
        self.exp0 = self.free["exp"].detach().clone()

    def coeffs(self) -> Coefficients:
        return Coefficients(**self.fixed, **self.free)

    def optimizer(self, cfg: TrackConfig, photo: bool) -> torch.optim.Adam:
        groups = [{"params": [self.free["angles"], self.free["trans"]], "lr": cfg.lr_pose},
                  {"params": [self.free["exp"]], "lr": cfg.lr_exp}]
        if photo:
            groups.append({"params": [self.free["sh"]], "lr": cfg.lr_sh})
        return torch.optim.Adam(groups)


def _run_stage(synthesis: FaceSynthesis, loss: CoarseLoss, x: _Tracked, targets, albedo: torch.Tensor,
               cfg: TrackConfig, steps: int, photo: bool, box_exp: bool) -> None:
    if steps <= 0:
        return
    image, landmarks, face_mask = targets
    opt = x.optimizer(cfg, photo)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        c = x.coeffs()
        if photo:
            st = synthesis.state(c, albedo=albedo)
            r = synthesis.render(st)
            lt = loss(c, use={"landmark", "photo", "reg", "gamma"}, lm_pred=st.landmarks, lm_target=landmarks,
                      render=r.image, photo=image, mask=r.mask * face_mask)
        else:
            lt = loss(c, use={"landmark", "reg"}, lm_pred=synthesis.landmarks_only(c), lm_target=landmarks)
        total = lt.total
        if cfg.temporal_weight > 0:
            total = total + cfg.temporal_weight * ((x.free["exp"] - x.exp0) ** 2).sum()
        total.backward()
        opt.step()
        if box_exp:
            with torch.no_grad():
                x.free["exp"].clamp_(0.0, 1.0)


def track_frame(synthesis: FaceSynthesis, loss: CoarseLoss, init: Coefficients, image: torch.Tensor,
                landmarks: torch.Tensor, face_mask: torch.Tensor, *, albedo: torch.Tensor | None = None,
                config: TrackConfig | None = None, box_exp: bool = False) -> TrackResult:
    """Fit pose, expression and light of one frame, identity and albedo held at ``init``'s.

    ``config.track_steps`` landmark steps, then ``config.photo_steps`` photometric steps (Adam,
    one step size per group), each with the temporal prior ``temporal_weight·|exp − init.exp|²``.

    Args:
        synthesis: the forward model (e.g. ``Reconstructor.synthesis``).
        loss: the coarse loss (e.g. ``CoarseFitter.loss``); its weights apply unchanged.
        init: start coefficients in this frame's aligned crop (e.g. the previous frame's fit carried
            over with :func:`transfer_pose`); ``id`` and ``tex`` stay fixed.
        image, landmarks, face_mask: the frame's targets (:func:`observation_targets`).
        albedo: per-vertex albedo to render with; default ``synthesis.model.albedo(init.tex)``.
        config: step counts and sizes (default :class:`TrackConfig`).
        box_exp: clamp the expression weights to ``[0, 1]`` after each step (ARKit blendshapes;
            ``CoarseFitter.box_exp``).

    Returns:
        :class:`TrackResult` (detached coefficients on ``image.device``, mean landmark error in
        aligned pixels).

    Shapes:
        init: batch 1. image: ``(1, 3, 224, 224)`` in ``[0, 1]``. landmarks: ``(1, 68, 2)``
        aligned pixels. face_mask: ``(1, 1, 224, 224)``. albedo: ``(1, V, 3)`` in ``[0, 1]``.
    """
    cfg = config or TrackConfig()
    x = _Tracked(init, image.device)
    if albedo is None:
        with torch.no_grad():
            albedo = synthesis.model.albedo(x.fixed["tex"])
    targets = (image, landmarks, face_mask)
    _run_stage(synthesis, loss, x, targets, albedo, cfg, cfg.track_steps, photo=False, box_exp=box_exp)
    _run_stage(synthesis, loss, x, targets, albedo, cfg, cfg.photo_steps, photo=True, box_exp=box_exp)
    with torch.no_grad():
        c = x.coeffs().detach()
        err = float((synthesis.landmarks_only(c)[0] - landmarks[0]).norm(dim=-1).mean())
    return TrackResult(c, err)
