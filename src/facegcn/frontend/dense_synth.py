"""Renders of a morphable model with known geometry, for MediaPipe's dense landmarks.

Used by ``tools/make_dense_correspondence.py`` (which derives where each of MediaPipe's 468 points
lies on the model's surface, :mod:`facegcn.morphable.dense`) and by the tests that check that
embedding on renders it never saw, and as "profile" test photos for the detectors.

A view (:func:`sample_view`, deterministic in its seed) is a random identity (N(0, 0.8²) per
coefficient), expression (ICT: each blendshape active with probability 0.2 at U(0, 0.5); other
models N(0, 0.3²)), albedo (the model's basis, N(0, 0.4²), times a random skin tone), pose (yaw /
pitch / roll uniform in the given ranges, degrees), translation (x, y ±0.1, z ±0.25 dm), SH light
(ambient + random directional band + weak second band, the renderer's convention) and a neutral
background (grey, slightly tinted). With ICT's closing parts (:mod:`facegcn.morphable.parts`) the
whole head is drawn: skin-coloured head and neck (hair on top for half the views), dark sockets,
white eyeballs with a coloured iris and a black pupil (from each eyeball vertex's direction to the
eyeball centre), teeth and gums; the face area gets darker brows and tinted lips (ICT's "brows" /
"mouth" regions, blended over two rings of vertices). Models without parts draw the face only.

Images are rendered at ``supersample``× and box-filtered (anti-aliased), with σ = 0.01 noise and
8-bit quantisation. The triangle-id buffer is kept at the supersampled resolution:
:meth:`RenderedView.locate` maps a 2-D point to the surface point under it (triangle + exact
perspective-correct barycentrics) with 1/``supersample`` px resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facegcn.morphable.dense import dense_points
from facegcn.render import PerspectiveCamera, Renderer, rigid_transform, sh_irradiance


@dataclass(frozen=True)
class View:
    """One random view (see the module docstring); arrays are float64 numpy."""

    seed: int
    id_coeff: np.ndarray
    exp_coeff: np.ndarray
    tex_coeff: np.ndarray
    angles: np.ndarray  # (3,) radians (pitch, yaw, roll) = (x, y, z), the renderer's convention
    trans: np.ndarray  # (3,) decimetres
    sh: np.ndarray  # (27,)
    tone: np.ndarray  # (3,) skin multiplier
    hair: np.ndarray | None  # (3,) hair colour or None (bald)
    brow: np.ndarray  # (3,)
    lip: np.ndarray  # (3,) lip multiplier
    iris: np.ndarray  # (3,)
    background: np.ndarray  # (3,)


def sample_view(model, seed: int, *, yaw=(-40.0, 40.0), pitch=(-20.0, 20.0), roll=(-10.0, 10.0)) -> View:
    """The random view ``seed`` of ``model`` (pose ranges in degrees)."""
    rng = np.random.default_rng(int(seed))
    L = model.layout
    idc = rng.normal(0.0, 0.8, L.id)
    if model.name == "ict":
        exp = np.where(rng.random(L.exp) < 0.2, rng.uniform(0.0, 0.5, L.exp), 0.0)
    else:
        exp = rng.normal(0.0, 0.3, L.exp)
    tex = rng.normal(0.0, 0.4, L.tex)
    angles = np.deg2rad([rng.uniform(*pitch), rng.uniform(*yaw), rng.uniform(*roll)])
    trans = np.array([rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), rng.uniform(-0.25, 0.25)])
    sh = np.zeros((3, 9))
    sh[:, 0] = rng.uniform(-0.05, 0.15) + rng.normal(0, 0.02, 3)
    d = rng.normal(size=3)
    d[2] = abs(d[2]) + 0.5  # mostly from the front
    sh[:, 1:4] = d / np.linalg.norm(d) * rng.uniform(0.15, 0.45)
    sh[:, 4:9] = rng.normal(0, 0.03, (3, 5))
    tone = rng.uniform(0.6, 1.15) * np.array([1.0, rng.uniform(0.9, 1.05), rng.uniform(0.85, 1.1)])
    hair = rng.uniform(0.03, 0.35) * np.array([1.0, 0.8, 0.6]) if rng.random() < 0.5 else None
    brow = rng.uniform(0.05, 0.3) * np.array([1.0, 0.8, 0.65])
    lip = np.array([rng.uniform(0.85, 1.0), rng.uniform(0.55, 0.75), rng.uniform(0.6, 0.8)])
    iris = rng.choice([[0.25, 0.15, 0.08], [0.2, 0.3, 0.45], [0.25, 0.3, 0.15]]) * rng.uniform(0.6, 1.2)
    bg = rng.uniform(0.25, 0.75) + rng.normal(0, 0.03, 3)
    return View(int(seed), idc, exp, tex, angles, trans, sh.reshape(27), tone, hair, brow, lip, iris, np.clip(bg, 0, 1))


@dataclass(frozen=True, eq=False)
class RenderedView:
    """A rendered view and what is needed to read the surface back (numpy).

    Attributes:
        image: (H, W, 3) float32 RGB in [0, 1] (8-bit quantised).
        tri_hi: (sH, sW) int64 at ``supersample``× resolution: the face-model triangle seen at
            each pixel, -1 background, -2 another part of the head (eyeball, teeth, head, ...).
        world: (V, 3) float64 world-space face vertices; camera: the base-resolution camera.
        landmarks68: (68, 2) projected Multi-PIE landmarks.
    """

    view: View
    image: np.ndarray
    tri_hi: np.ndarray
    world: np.ndarray
    camera: PerspectiveCamera
    faces: np.ndarray
    landmarks68: np.ndarray
    supersample: int

    def project(self, points3d: np.ndarray) -> np.ndarray:
        """(N, 3) world points → (N, 2) base-resolution pixels."""
        return self.camera.project(torch.as_tensor(points3d, dtype=torch.float64)).numpy()

    def embedded(self, tri: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """(N, 2) base-resolution projections of surface points (triangle, barycentrics)."""
        p = dense_points(torch.as_tensor(self.world)[None], torch.as_tensor(self.faces),
                         torch.as_tensor(np.asarray(tri, np.int64)), torch.as_tensor(np.asarray(bary, np.float64)))
        return self.project(p[0].numpy())

    def box_spec(self) -> np.ndarray:
        """(6, 2): the 68 landmarks' box corners, image-left and image-right eye centres, 2 zero
        rows — :func:`~facegcn.frontend.facemesh.dense_landmarks`' box + eyes input."""
        lm = self.landmarks68
        return np.concatenate([lm.min(0)[None], lm.max(0)[None], lm[36:42].mean(0)[None], lm[42:48].mean(0)[None],
                               np.zeros((2, 2))])

    def locate(self, points: np.ndarray, tol: float = 1.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The face-model surface point under each 2-D point.

        Args:
            points: (N, 2|3) base-resolution pixels (extra columns ignored).
            tol: a point off the visible face (background, eyeball, mouth interior...) snaps to the
                nearest visible face pixel when that is within ``tol`` base pixels, else misses.

        Returns:
            tri (N,) int64 (-1 = miss), bary (N, 3) float64 perspective-correct (NaN on a miss),
            dist (N,) float64 snap distance in base pixels (0 on the face).
        """
        from scipy.ndimage import distance_transform_edt

        s = self.supersample
        H, W = self.tri_hi.shape
        face = self.tri_hi >= 0
        n = len(points)
        tri, bary = np.full(n, -1, np.int64), np.full((n, 3), np.nan)
        if not face.any():
            return tri, bary, np.full(n, np.inf)
        dist, (iy, ix) = distance_transform_edt(~face, return_indices=True)
        p = np.asarray(points, np.float64)[:, :2] * s + (s - 1) / 2.0
        r = np.clip(np.rint(p).astype(np.int64), 0, [W - 1, H - 1])
        d = dist[r[:, 1], r[:, 0]] / s
        sx, sy = ix[r[:, 1], r[:, 0]], iy[r[:, 1], r[:, 0]]
        off = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
        cy = np.clip(sy[:, None] + off[:, 0], 0, H - 1)
        cx = np.clip(sx[:, None] + off[:, 1], 0, W - 1)
        cand = self.tri_hi[cy, cx]  # (N, 9), centre first is index 4 (always a face triangle)
        cand = np.where(cand >= 0, cand, cand[:, 4:5])
        hi = self.camera_hi().to_screen(torch.as_tensor(self.world)).numpy()
        corners = hi[self.faces[cand]]  # (N, 9, 3 corners, 3)
        lam = _screen_bary(corners[..., :2], p[:, None, :])
        best = np.argmax(lam.min(-1), 1)
        k = np.arange(n)
        lam = np.clip(lam[k, best], 0.0, None)
        lam /= lam.sum(1, keepdims=True)
        w = lam / corners[k, best, :, 2]  # perspective-correct: λ_k / z_k, renormalised
        ok = d <= tol
        tri[ok] = cand[k, best][ok]
        bary[ok] = (w / w.sum(1, keepdims=True))[ok]
        return tri, bary, d

    def camera_hi(self) -> PerspectiveCamera:
        return _scaled_camera(self.camera, self.supersample)


def _screen_bary(tri2: np.ndarray, p: np.ndarray) -> np.ndarray:
    """2-D barycentrics (..., 3) of points p (..., 2) in triangles (..., 3, 2) (degenerate → 1/3)."""
    a, b, c = tri2[..., 0, :], tri2[..., 1, :], tri2[..., 2, :]
    v0, v1, v2 = b - a, c - a, p - a
    den = v0[..., 0] * v1[..., 1] - v1[..., 0] * v0[..., 1]
    safe = np.where(np.abs(den) > 1e-12, den, 1.0)
    l1 = (v2[..., 0] * v1[..., 1] - v1[..., 0] * v2[..., 1]) / safe
    l2 = (v0[..., 0] * v2[..., 1] - v2[..., 0] * v0[..., 1]) / safe
    out = np.stack([1.0 - l1 - l2, l1, l2], -1)
    return np.where((np.abs(den) > 1e-12)[..., None], out, 1.0 / 3.0)


def _scaled_camera(cam: PerspectiveCamera, s: int) -> PerspectiveCamera:
    return PerspectiveCamera(focal=(cam.fx * s, cam.fy * s), center=(cam.center[0] * s + (s - 1) / 2,
                                                                      cam.center[1] * s + (s - 1) / 2),
                             size=(cam.height * s, cam.width * s), distance=cam.distance, near=cam.near, far=cam.far)


def _smooth(indicator: np.ndarray, faces: np.ndarray, rings: int = 2) -> np.ndarray:
    """Blend a (V,) 0/1 indicator over ``rings`` rings of neighbours (mean over each vertex's
    one-ring, repeated), keeping 1 inside."""
    import scipy.sparse as sp

    V = len(indicator)
    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0]])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2]])
    a = sp.csr_matrix((np.ones(len(i)), (i, j)), shape=(V, V))
    a.data[:] = 1.0
    a = a + sp.identity(V)
    deg = np.asarray(a.sum(1)).ravel()
    w = indicator.astype(np.float64)
    for _ in range(rings):
        w = np.maximum(indicator, (a @ w) / deg)
    return w


class HeadRenderer:
    """Renders :class:`View` s of ``model`` on a ``size``² canvas with the aligned frame's focal
    length (1015 px: the face has its 224² aligned-frame size, with a margin around it)."""

    def __init__(self, model, size: int = 320, supersample: int = 4, camera: PerspectiveCamera | None = None):
        self.model, self.s = model, int(supersample)
        self.camera = camera or PerspectiveCamera(focal=1015.0, center=(size / 2.0, size / 2.0), size=(size, size))
        self.V, self.F = model.n_vertices, model.n_faces
        self.faces_np = model.faces.cpu().numpy()
        self.closed = model.parts is not None
        faces = model.closed_mesh_faces() if self.closed else model.faces
        self.renderer = Renderer(_scaled_camera(self.camera, self.s), faces)
        V = self.V
        lips = np.zeros(V)
        brows = np.zeros(V)
        if "mouth" in model.region_names:
            lips[model.region("mouth").cpu().numpy()] = 1.0
        if "brows" in model.region_names:
            brows[model.region("brows").cpu().numpy()] = 1.0
        self.lip_w, self.brow_w = _smooth(lips, self.faces_np) * 0.85, _smooth(brows, self.faces_np, 1) * 0.9
        self.groups: dict[str, np.ndarray] = {}
        if self.closed:
            p = model.parts
            neutral = model.closed_shape(torch.zeros(1, model.layout.id))[0].detach().cpu().numpy()
            for name in p.group_names:
                self.groups[name] = p.vertices_of(name) + V
            top = neutral[:V, 1].max() - 0.25
            hn = self.groups["head_and_neck"]
            self.hair_idx = hn[neutral[hn, 1] > top]
            self.eye_cos = {}
            for side in ("left", "right"):
                idx = self.groups[f"eyeball_{side}"]
                d = neutral[idx] - neutral[idx].mean(0)
                self.eye_cos[side] = d[:, 2] / np.linalg.norm(d, axis=1).clip(1e-9)

    def colours(self, view: View) -> torch.Tensor:
        """(1, V[+P], 3) float32 albedo of the drawn mesh for ``view``."""
        m = self.model
        with torch.no_grad():
            alb = m.albedo(torch.as_tensor(view.tex_coeff, dtype=torch.float32)[None])[0]
        alb = alb.cpu().numpy().astype(np.float64)
        skin_mean = alb.mean(0) * view.tone
        face = np.clip(alb * view.tone, 0.0, 1.0)
        face = face * (1 - self.lip_w[:, None]) + face * view.lip * self.lip_w[:, None]
        face = face * (1 - self.brow_w[:, None]) + view.brow * self.brow_w[:, None]
        if not self.closed:
            return torch.as_tensor(face, dtype=torch.float32)[None]
        out = np.zeros((m.n_closed_vertices, 3))
        out[: self.V] = face
        g = self.groups
        out[g["head_and_neck"]] = skin_mean
        if view.hair is not None:
            out[self.hair_idx] = view.hair
        for name in ("mouth_socket", "eye_socket_left", "eye_socket_right"):
            out[g[name]] = skin_mean * 0.25
        out[g["gums_and_tongue"]] = [0.6, 0.3, 0.3]
        out[g["teeth"]] = [0.85, 0.82, 0.72]
        for side in ("left", "right"):
            idx, cos = g[f"eyeball_{side}"], self.eye_cos[side]
            out[idx] = [0.82, 0.8, 0.76]
            out[idx[cos > 0.86]] = view.iris
            out[idx[cos > 0.965]] = [0.02, 0.02, 0.02]
        return torch.as_tensor(out, dtype=torch.float32)[None]

    @torch.no_grad()
    def render(self, view: View) -> RenderedView:
        m = self.model
        f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)[None]  # noqa: E731
        idc, exc = f32(view.id_coeff), f32(view.exp_coeff)
        shape = m.closed_shape(idc, exc) if self.closed else m.shape(idc, exc)
        verts = rigid_transform(shape, f32(view.angles), f32(view.trans))
        normals = m.closed_vertex_normals(verts) if self.closed else m.vertex_normals(verts)
        col = self.colours(view) * sh_irradiance(normals, f32(view.sh))
        r = self.renderer(verts, col, background=f32(view.background)[0])
        s = self.s
        img = torch.nn.functional.avg_pool2d(r.image.clamp(0, 1), s)[0].permute(1, 2, 0).numpy()
        rng = np.random.default_rng(50_000 + view.seed)
        img = np.round(np.clip(img + rng.normal(0, 0.01, img.shape), 0, 1) * 255) / 255
        tri = r.tri_id[0].numpy()
        tri = np.where(tri >= self.F, -2, tri)
        world = verts[0, : self.V].double()
        lm = self.camera.project(world[m.landmark_idx.cpu()]).numpy()
        return RenderedView(view, img.astype(np.float32), tri, world.numpy(), self.camera, self.faces_np, lm, s)
