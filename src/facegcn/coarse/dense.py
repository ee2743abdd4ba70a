"""The dense-landmark loss: MediaPipe's 468 detected points vs the model's embedded points.

The model side is the embedding of :mod:`facegcn.morphable.dense` (each MediaPipe point is a fixed
barycentric point of one model triangle). :class:`DenseLandmarkTerm` evaluates those 468 points
from the coefficients cheaply — only the ≤ 1,404 corner vertices, as
:meth:`~facegcn.coarse.synthesis.FaceSynthesis.landmarks_only` does for the 68 — or from a full
:class:`~facegcn.coarse.synthesis.FaceState`, projects them with the fitting camera and compares
them with the detected points in the aligned 224² frame
(:attr:`facegcn.frontend.FaceObservation.dense`).

Per-point weight = reliability (the embedding's ``weight``) × visibility × the caller's
per-point weight. Visibility: the 3-D points on the far side of a turned face are hidden, and the
network's guesses for them are poor, so each point is weighted by a smoothstep of the cosine
between the surface normal there and the direction to the camera (0 at ``cos ≤ vis_lo``, 1 at
``cos ≥ vis_hi``). It is computed without gradient (a re-weighting, as in IRLS): otherwise the
optimiser could lower the loss by turning points away from the camera.

Robust cost per point of the squared pixel distance ``d²``: Huber (``d²`` up to ``scale``,
then linear: ``2·scale·d − scale²``) or Geman–McClure (``scale²·d² / (scale² + d²)``); both
equal ``d²`` for small errors, so with unit weights and small residuals the loss equals the 68-point
:func:`facegcn.coarse.losses.landmark_loss` normalisation: ``Σ w ρ(d²) / (B · N)``, squared pixels.

Optional relative depth (``depth_weight > 0``): MediaPipe's z (relative depth, smaller = nearer,
in the x/y pixel scale) against the points' camera depth converted to pixels at the face's mean
depth (``depth_scale · f / z̄``), both centred by their weighted mean. ``depth_scale`` = 0.95: on 16
held-out renders of the ICT head MediaPipe's z was 0.86-1.0 × the true depth in pixels
(correlation ≥ 0.975).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from facegcn.morphable.dense import load_dense_correspondence
from facegcn.render import rigid_transform

ROBUST = ("huber", "geman_mcclure", "l2")


def robust_cost(d2: torch.Tensor, kind: str = "huber", scale: float = 4.0) -> torch.Tensor:
    """ρ(d²) elementwise (``kind`` in :data:`ROBUST`, ``scale`` in pixels); ≈ d² near 0."""
    if kind == "l2":
        return d2
    s2 = float(scale) ** 2
    if kind == "geman_mcclure":
        return s2 * d2 / (s2 + d2)
    if kind == "huber":
        d = torch.sqrt(d2.clamp_min(1e-12))
        return torch.where(d2 <= s2, d2, 2.0 * float(scale) * d - s2)
    raise ValueError(f"unknown robust cost {kind!r} (choose from {ROBUST})")


def dense_landmark_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, *,
                        robust: str = "huber", scale: float = 4.0) -> torch.Tensor:
    """``Σ w ρ(|pred − target|²) / (B · N)``; pred, target (B, N, 2) pixels, weight (B, N) or (N,)."""
    d = robust_cost(((pred[..., :2] - target[..., :2]) ** 2).sum(-1), robust, scale)
    if weight is not None:
        d = d * weight
    return d.sum() / (pred.shape[0] * pred.shape[1])


def visibility_weight(points: torch.Tensor, normals: torch.Tensor, camera, lo: float = -0.1, hi: float = 0.2
                      ) -> torch.Tensor:
    """(B, N) in [0, 1], no gradient: smoothstep of cos(normal, direction to the camera), 0 at
    ``cos ≤ lo``, 1 at ``cos ≥ hi``. points / normals (B, N, 3) world space."""
    with torch.no_grad():
        eye = points.new_tensor([0.0, 0.0, float(camera.distance)])
        view = torch.nn.functional.normalize(eye - points, dim=-1)
        n = torch.nn.functional.normalize(normals, dim=-1)
        t = (((n * view).sum(-1) - lo) / (hi - lo)).clamp(0.0, 1.0)
        return t * t * (3.0 - 2.0 * t)


class DenseLandmarkTerm(nn.Module):
    """The dense-landmark loss of one model and camera (see the module docstring). The model's
    rows for the embedded triangles' corners are copied at construction (``.to(device)`` moves
    them with the term); build a new term for another model.

    Args:
        model: the morphable model (its embedding is loaded with
            :func:`~facegcn.morphable.dense.load_dense_correspondence`, or from ``path``).
        camera: the fitting camera (``FaceSynthesis.camera``).
        robust, scale: :func:`robust_cost`; vis_lo, vis_hi: :func:`visibility_weight` (None
            disables the visibility weight); depth_weight: relative-depth term's weight (0 = x, y only);
            depth_scale: MediaPipe's z per pixel of true depth.
    """

    def __init__(self, model, camera, *, path=None, robust: str = "huber", scale: float = 4.0,
                 vis_lo: float | None = -0.1, vis_hi: float = 0.2, depth_weight: float = 0.0,
                 depth_scale: float = 0.95):
        super().__init__()
        if robust not in ROBUST:
            raise ValueError(f"unknown robust cost {robust!r} (choose from {ROBUST})")
        self.camera = camera
        self.model_name = model.name
        self.robust, self.scale, self.vis_lo, self.vis_hi = robust, float(scale), vis_lo, float(vis_hi)
        self.depth_weight, self.depth_scale = float(depth_weight), float(depth_scale)
        tri, bary, weight = load_dense_correspondence(model, path)
        corners = model.faces[tri]  # (N, 3)
        uniq, inv = torch.unique(corners.reshape(-1), return_inverse=True)
        rows = (uniq[:, None] * 3 + torch.arange(3, device=uniq.device)).reshape(-1)
        self.register_buffer("tri", tri, persistent=False)
        self.register_buffer("bary", bary, persistent=False)
        self.register_buffer("reliability", weight, persistent=False)
        self.register_buffer("corners", corners, persistent=False)
        self.register_buffer("vertex_ids", uniq, persistent=False)
        self.register_buffer("corner_index", inv.view(-1, 3), persistent=False)
        # the model rows of the corner vertices, gathered once (the cheap path of points())
        self.register_buffer("mean_corners", model.mean_shape[uniq].detach().clone(), persistent=False)
        self.register_buffer("id_rows", model.id_basis[rows].detach().clone(), persistent=False)
        self.register_buffer("exp_rows", model.exp_basis[rows].detach().clone(), persistent=False)

    @property
    def n_points(self) -> int:
        return int(self.tri.shape[0])

    def points(self, c) -> tuple[torch.Tensor, torch.Tensor]:
        """World-space points (B, N, 3) and unit normals (B, N, 3) of the embedded points for
        coefficients ``c`` (only the corner vertices are evaluated; the normal is the embedded
        triangle's own)."""
        B = c.id.shape[0]
        offs = c.id @ self.id_rows.T + c.exp @ self.exp_rows.T
        v = self.mean_corners.unsqueeze(0) + offs.view(B, -1, 3)
        v = rigid_transform(v, c.angles, c.trans)
        tri_v = v[:, self.corner_index.reshape(-1)].view(B, -1, 3, 3)  # (B, N, 3 corners, 3)
        pts = (tri_v * self.bary.to(v.dtype)[None, :, :, None]).sum(2)
        fn = torch.linalg.cross(tri_v[:, :, 1] - tri_v[:, :, 0], tri_v[:, :, 2] - tri_v[:, :, 0], dim=-1)
        return pts, torch.nn.functional.normalize(fn, dim=-1, eps=1e-12)

    def points_from_mesh(self, vertices: torch.Tensor, normals: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`points` from a posed mesh (B, V, 3) (e.g. ``FaceState.vertices``); with
        ``normals`` (B, V, 3) the vertex normals are interpolated, else the triangle's own."""
        B = vertices.shape[0]
        tri_v = vertices[:, self.corners.reshape(-1)].view(B, -1, 3, 3)
        w = self.bary.to(vertices.dtype)[None, :, :, None]
        pts = (tri_v * w).sum(2)
        if normals is not None:
            n = (normals[:, self.corners.reshape(-1)].view(B, -1, 3, 3) * w).sum(2)
        else:
            n = torch.linalg.cross(tri_v[:, :, 1] - tri_v[:, :, 0], tri_v[:, :, 2] - tri_v[:, :, 0], dim=-1)
        return pts, torch.nn.functional.normalize(n, dim=-1, eps=1e-12)

    def weights(self, points: torch.Tensor, normals: torch.Tensor, target_weight: torch.Tensor | None = None
                ) -> torch.Tensor:
        """(B, N) reliability × visibility × ``target_weight`` (no gradient)."""
        w = self.reliability.to(points.dtype).expand(points.shape[0], -1)
        if self.vis_lo is not None:
            w = w * visibility_weight(points, normals, self.camera, self.vis_lo, self.vis_hi)
        if target_weight is not None:
            w = w * target_weight.to(points.dtype)
        return w.detach()

    def forward(self, c=None, target: torch.Tensor | None = None, target_weight: torch.Tensor | None = None, *,
                vertices: torch.Tensor | None = None, normals: torch.Tensor | None = None) -> torch.Tensor:
        """The loss (a scalar, squared pixels).

        Args:
            c: :class:`~facegcn.morphable.Coefficients` (cheap path), or None with ``vertices``
                (B, V, 3) posed world-space vertices (+ optional ``normals``) of a full state.
            target: (B, N, 2) detected points in the aligned frame, or (B, N, 3) with MediaPipe's
                relative depth (used when ``depth_weight > 0``).
            target_weight: optional (B, N) or (N,) per-point weights (e.g. the detection score).
        """
        if target is None:
            raise ValueError("target is required")
        if vertices is not None:
            pts, nrm = self.points_from_mesh(vertices, normals)
        else:
            pts, nrm = self.points(c)
        w = self.weights(pts, nrm, target_weight)
        px = self.camera.project(pts)
        loss = dense_landmark_loss(px, target.to(px.dtype), w, robust=self.robust, scale=self.scale)
        if self.depth_weight > 0 and target.shape[-1] > 2:
            loss = loss + self.depth_weight * self._depth_loss(pts, target[..., 2].to(px.dtype), w)
        return loss

    def _depth_loss(self, pts: torch.Tensor, z_target: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        zc = self.camera.depth(pts)  # (B, N) camera depth, larger = farther
        wn = w / w.sum(1, keepdim=True).clamp_min(1e-12)
        mean_z = (zc * wn).sum(1, keepdim=True)
        z_px = (zc - mean_z) * (self.depth_scale * self.camera.fx / mean_z)
        zt = z_target - (z_target * wn).sum(1, keepdim=True)
        return dense_landmark_loss(z_px[..., None], zt[..., None], w, robust=self.robust, scale=self.scale)


def yaw_ramp(yaw_deg: float | None, ramp: tuple[float, float]) -> float:
    """The dense term's share for a face turned by ``yaw_deg`` (the front-end's estimate): 0 up to
    ``|yaw| = ramp[0]``, 1 from ``ramp[1]`` on, linear between (smoothstep-free: the measured
    gains grow with the turn); 1 when the yaw is unknown and the ramp starts at 0, else 0.

    Args:
        yaw_deg: degrees, or None (no dense landmarks).
        ramp: ``(start, full)`` degrees, ``0 <= start <= full``.
    """
    lo, hi = float(ramp[0]), float(ramp[1])
    if yaw_deg is None or not math.isfinite(yaw_deg):
        return 1.0 if lo <= 0.0 else 0.0
    a = abs(float(yaw_deg))
    if hi <= lo:
        return 1.0 if a >= lo else 0.0
    return min(max((a - lo) / (hi - lo), 0.0), 1.0)
