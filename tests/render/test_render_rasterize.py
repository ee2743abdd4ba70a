"""Rasterizer. Independent references: brute-force per-pixel ray casting (Möller–Trumbore in
camera space, float64) for ids/coverage/depth/barycentrics incl. near-plane clipping; analytic
sphere silhouette area (π r²) and plane depths; closed-form sphere visibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facegcn.render import (
    PerspectiveCamera,
    face_front_facing,
    rasterize,
    vertex_visibility,
)
from facegcn.render.meshgen import grid_faces, icosphere

BACKENDS = ["numba", "torch"]


def _raycast(cam_pts: np.ndarray, faces: np.ndarray, cam: PerspectiveCamera, near: float):
    """Brute force: for every pixel centre (u=j, v=i) cast the camera ray through it and intersect
    every triangle (Möller–Trumbore). Returns ids, depth, bary and an 'ambiguous' mask for pixels
    within 1e-9 of an edge, of the near plane, or of a depth tie (where any answer is fine)."""
    H, W = cam.size
    jj, ii = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    d = np.stack([(jj - cam.center[0]) / cam.fx, -(ii - cam.center[1]) / cam.fy, np.ones_like(jj)], -1)
    best = np.full((H, W), np.inf)
    second = np.full((H, W), np.inf)
    ids = np.full((H, W), -1)
    bary = np.zeros((H, W, 3))
    amb = np.zeros((H, W), bool)
    for t, (a, b, c) in enumerate(faces):
        p0, p1, p2 = cam_pts[a], cam_pts[b], cam_pts[c]
        e1, e2 = p1 - p0, p2 - p0
        pv = np.cross(d, e2)
        det = pv @ e1
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / det
            s = -p0  # ray origin at 0
            b1 = (s * pv).sum(-1) * inv
            qv = np.cross(s, e1)
            b2 = (d * qv).sum(-1) * inv
            tt = (qv @ e2) * inv
        w = np.stack([1 - b1 - b2, b1, b2], -1)
        ok = np.isfinite(tt) & (w.min(-1) >= 0) & (tt >= near)
        near_edge = np.isfinite(tt) & (np.abs(w).min(-1) < 1e-9) & (w.min(-1) > -1e-9)
        near_clip = np.isfinite(tt) & (w.min(-1) >= -1e-9) & (np.abs(tt - near) < 1e-9)
        amb |= near_edge | near_clip
        closer = ok & (tt < best)
        second = np.where(ok & ~closer, np.minimum(second, tt), np.where(closer, best, second))
        ids = np.where(closer, t, ids)
        bary = np.where(closer[..., None], w, bary)
        best = np.where(closer, tt, best)
    both = np.isfinite(second) & np.isfinite(best)
    with np.errstate(invalid="ignore"):
        amb |= both & (np.abs(second - best) < 1e-9 * np.abs(best))
    return ids, np.where(ids >= 0, best, 0.0), bary, amb


def _random_scene(seed: int, n_tri: int = 40, with_near: bool = True):
    rng = np.random.default_rng(seed)
    cam = PerspectiveCamera(focal=18.0, center=(11.5, 9.0), size=(20, 25), distance=0.0)
    near = 0.1
    pts = []
    for _ in range(n_tri):
        c = rng.uniform([-0.6, -0.5, 0.4], [0.6, 0.5, 2.5])
        tri = c + rng.normal(scale=0.35, size=(3, 3))
        pts.append(tri)
    pts = np.concatenate(pts)
    if with_near:  # some vertices near / behind the camera plane
        k = rng.choice(len(pts), size=len(pts) // 5, replace=False)
        pts[k, 2] = rng.uniform(-0.8, 0.25, size=k.size)
    faces = np.arange(len(pts)).reshape(-1, 3)
    return cam, near, pts, faces


def _to_screen(cam: PerspectiveCamera, pts: np.ndarray) -> torch.Tensor:
    return cam.camera_to_screen(torch.from_numpy(pts)[None])  # float64


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_raycasting(backend, seed):
    cam, near, pts, faces = _random_scene(seed)
    ids, depth, bary, amb = _raycast(pts, faces, cam, near)
    fr = rasterize(_to_screen(cam, pts), torch.from_numpy(faces), cam.size, near=near, backend=backend)
    assert amb.mean() < 0.01
    sure = ~amb
    np.testing.assert_array_equal(fr.tri_id[0].numpy()[sure], ids[sure])
    np.testing.assert_array_equal(fr.mask[0].numpy()[sure], ids[sure] >= 0)
    cov = sure & (ids >= 0)
    assert cov.sum() > 50
    np.testing.assert_allclose(fr.depth[0].numpy()[cov], depth[cov], rtol=1e-5)
    np.testing.assert_allclose(fr.bary[0].numpy()[cov], bary[cov], atol=2e-5)
    assert (fr.depth[0][~fr.mask[0]] == 0).all() and (fr.tri_id[0][~fr.mask[0]] == -1).all()


def test_backends_agree_on_a_dense_mesh_and_are_watertight():
    """Face-sized relief grid: identical coverage on both backends; no cracks (every pixel inside
    the projected outline of the grid is covered, even where pixel centres fall exactly on edges)."""
    from facegcn.render.meshgen import relief_grid

    v, f = relief_grid(rows=61, cols=61, seed=None)
    cam = PerspectiveCamera()
    vpx = cam.to_screen(v[None])
    a = rasterize(vpx, f, cam.size, backend="numba")
    b = rasterize(vpx, f, cam.size, backend="torch")
    assert torch.equal(a.mask, b.mask)
    same = a.tri_id == b.tri_id
    # different ids only on exact ties (pixel centre on a shared edge): equal depth there
    assert same.float().mean() > 0.995
    torch.testing.assert_close(a.depth[~same], b.depth[~same], rtol=1e-6, atol=0)
    torch.testing.assert_close(a.depth, b.depth, rtol=1e-6, atol=0)
    # watertight: the grid is a height field over a rectangle; rows of the mask have no holes
    m = a.mask[0].numpy()
    for row in m:
        idx = np.flatnonzero(row)
        if idx.size:
            assert row[idx[0] : idx[-1] + 1].all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_sphere_silhouette_area(backend):
    R, D = 1.0, 10.0
    v, f = icosphere(4, R)
    cam = PerspectiveCamera(focal=600.0, center=(99.5, 99.5), size=(200, 200), distance=D)
    fr = rasterize(cam.to_screen(v[None]), f, cam.size, backend=backend)
    r_px = cam.fx * R / math.sqrt(D * D - R * R)  # silhouette cone: tan(asin(R / D))
    area = fr.mask.sum().item()
    assert abs(area - math.pi * r_px**2) / (math.pi * r_px**2) < 0.01
    # nearest depth at the centre pixel = D - R
    assert abs(fr.depth[0, 100, 100].item() - (D - R)) < 2e-3


@pytest.mark.parametrize("backend", BACKENDS)
def test_plane_depth_frontal_and_tilted(backend):
    cam = PerspectiveCamera(size=(48, 64), center=(31.5, 23.5), focal=80.0)
    g = grid_faces(2, 2)
    # frontal quad at world z = 1.5 covering the whole view
    q = torch.tensor([[-5.0, 5.0, 1.5], [5.0, 5.0, 1.5], [-5.0, -5.0, 1.5], [5.0, -5.0, 1.5]])
    fr = rasterize(cam.to_screen(q[None]), g, cam.size, backend=backend)
    assert fr.mask.all()
    torch.testing.assert_close(fr.depth, torch.full_like(fr.depth, 8.5))
    # tilted plane z_cam = a + b * x_cam: depth along a row is a / (1 - b (u - cx) / f)
    a, bb = 8.0, 0.4
    xs = torch.tensor([-6.0, 6.0])
    zc = a + bb * xs
    q = torch.stack(
        [torch.stack([xs[i], torch.tensor(yy), 10.0 - zc[i]]) for yy in (6.0, -6.0) for i in (0, 1)]
    )
    fr = rasterize(cam.to_screen(q[None]), g, cam.size, backend=backend)
    assert fr.mask.all()
    u = torch.arange(cam.width, dtype=torch.float64)
    ref = a / (1 - bb * (u - cam.center[0]) / cam.fx)
    ref = ref.expand(cam.height, -1).contiguous()
    torch.testing.assert_close(fr.depth[0].double(), ref, rtol=2e-6, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_near_plane_clips_exactly(backend):
    """A plane z_cam = 0.5 + 0.5 x_cam spanning x in [-8, 8] (so from behind the camera to 4.5):
    pixels whose analytic depth is below `near` are empty, all others carry the analytic depth."""
    cam = PerspectiveCamera(size=(40, 60), center=(29.5, 19.5), focal=30.0)
    g = grid_faces(2, 2)
    xs = torch.tensor([-8.0, 8.0])
    zc = 0.5 + 0.5 * xs  # z_cam in [-3.5, 4.5]
    q = torch.stack(
        [torch.stack([xs[i], torch.tensor(yy), 10.0 - zc[i]]) for yy in (9.0, -9.0) for i in (0, 1)]
    )
    near = 0.6
    fr = rasterize(cam.to_screen(q[None]), g, cam.size, near=near, backend=backend)
    u = torch.arange(cam.width, dtype=torch.float64)
    den = 1 - 0.5 * (u - cam.center[0]) / cam.fx
    depth = torch.where(den > 0, 0.5 / den, torch.full_like(den, -1.0))  # ray hits the plane?
    # the plane spans x_cam in [-8, 8] so check only columns whose hit point is inside it
    xcam = depth * (u - cam.center[0]) / cam.fx
    valid = (xcam.abs() < 7.9) | (depth < 0)
    expect = (depth >= near) & valid
    got = fr.mask[0].all(0)
    assert 5 < int(expect.sum()) < cam.width - 5  # the test really clips
    assert torch.equal(got[valid], expect[valid])
    assert (~fr.mask[0][:, ~expect & valid]).all()
    torch.testing.assert_close(
        fr.depth[0][:, expect].double(), depth[expect].expand(cam.height, -1), rtol=2e-6, atol=0
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_backface_culling_and_front_facing_flag(backend):
    cam = PerspectiveCamera(size=(32, 32), center=(15.5, 15.5), focal=40.0)
    tri = torch.tensor([[[-2.0, -2.0, 0.0], [2.0, -2.0, 0.0], [0.0, 2.0, 0.0]]])  # CCW from +z
    f_ccw = torch.tensor([[0, 1, 2]])
    f_cw = torch.tensor([[0, 2, 1]])
    vs = cam.to_screen(tri)
    a = rasterize(vs, f_ccw, cam.size, backend=backend)
    b = rasterize(vs, f_cw, cam.size, backend=backend)
    assert a.mask.sum() > 50 and torch.equal(a.mask, b.mask)
    torch.testing.assert_close(a.depth, b.depth)
    assert face_front_facing(vs, f_ccw).tolist() == [[True]]
    assert face_front_facing(vs, f_cw).tolist() == [[False]]


def test_batch_and_thread_split_are_consistent():
    from facegcn.render.meshgen import relief_grid

    v, f = relief_grid(rows=41, cols=41)
    cam = PerspectiveCamera()
    ang = torch.tensor([[0.0, 0.0, 0.0], [0.2, -0.5, 0.1], [-0.3, 0.9, 0.0]])
    from facegcn.render import rigid_transform

    vb = cam.to_screen(rigid_transform(v.expand(3, -1, -1), ang, torch.zeros(3, 3)))
    full = rasterize(vb, f, cam.size, threads=1)
    for th in (2, 3, 5):
        other = rasterize(vb, f, cam.size, threads=th)
        assert torch.equal(full.tri_id, other.tri_id) and torch.equal(full.bary, other.bary)
    for k in range(3):
        one = rasterize(vb[k : k + 1], f, cam.size, threads=2)
        assert torch.equal(one.tri_id[0], full.tri_id[k])


@pytest.mark.parametrize("backend", BACKENDS)
def test_sphere_vertex_visibility(backend):
    R, D = 1.0, 6.0
    v, f = icosphere(3, R)
    cam = PerspectiveCamera(focal=300.0, center=(63.5, 63.5), size=(128, 128), distance=D)
    vs = cam.to_screen(v[None])
    fr = rasterize(vs, f, cam.size, backend=backend)
    vis = vertex_visibility(vs, f, fr, backend=backend)[0]
    # a sphere point p is visible from c iff (c - p) . p > 0  <=>  D p_z > R^2
    margin = D * v[:, 2] - R * R
    sure = margin.abs() > 0.3  # away from the grazing band
    assert torch.equal(vis[sure], (margin > 0)[sure])


@pytest.mark.parametrize("backend", BACKENDS)
def test_visibility_occlusion_by_depth(backend):
    cam = PerspectiveCamera(size=(64, 64), center=(31.5, 31.5), focal=100.0)
    g = grid_faces(5, 5)
    ys, xs = torch.meshgrid(torch.linspace(1, -1, 5), torch.linspace(-1, 1, 5), indexing="ij")
    back = torch.stack([xs, ys, torch.zeros_like(xs)], -1).reshape(-1, 3)
    front = back * torch.tensor([0.45, 0.45, 1.0]) + torch.tensor([0.0, 0.0, 2.0])
    verts = torch.cat([back, front])[None]
    faces = torch.cat([g, g + 25])
    vs = cam.to_screen(verts)
    fr = rasterize(vs, faces, cam.size)
    vis = vertex_visibility(vs, faces, fr, backend=backend)[0]
    assert vis[25:].all()  # the small front plane is fully visible
    # back vertices hidden behind the front plane: projected strictly inside its outline
    pf = vs[0, 25:, :2]
    lo, hi = pf.min(0).values + 1.0, pf.max(0).values - 1.0
    pb = vs[0, :25, :2]
    hidden = ((pb > lo) & (pb < hi)).all(1)
    assert hidden.any()
    assert not vis[:25][hidden].any()
    outside = ((pb < pf.min(0).values - 1.0) | (pb > pf.max(0).values + 1.0)).any(1)
    assert outside.sum() >= 16
    assert vis[:25][outside].all()


def test_torch_backend_chunking_is_invisible():
    """Tiny candidate budgets (many chunks, single oversized triangles) give the same result."""
    from facegcn.render._torch_raster import rasterize_torch

    cam, near, pts, faces = _random_scene(11)
    vs = _to_screen(cam, pts)
    f = torch.from_numpy(faces)
    ref = rasterize_torch(vs, f, cam.size, near, float("inf"))
    for budget in (1, 37, 500):
        got = rasterize_torch(vs, f, cam.size, near, float("inf"), max_candidates=budget)
        for a, b in zip(ref, got):
            assert torch.equal(a, b)


def test_far_plane_and_degenerate_inputs():
    cam = PerspectiveCamera(size=(16, 16), center=(7.5, 7.5), focal=20.0)
    g = grid_faces(2, 2)
    q = torch.tensor([[-5.0, 5.0, 0.0], [5.0, 5.0, 0.0], [-5.0, -5.0, 0.0], [5.0, -5.0, 0.0]])
    vs = cam.to_screen(q[None])
    for be in BACKENDS:
        assert rasterize(vs, g, cam.size, far=9.0, backend=be).mask.sum() == 0
        assert rasterize(vs, g, cam.size, far=11.0, backend=be).mask.all()
        # degenerate (zero-area) and NaN triangles are skipped, empty face lists work
        bad = torch.tensor([[0, 0, 1], [0, 1, 2]])
        vbad = vs.clone()
        vbad[0, 2] = float("nan")
        assert rasterize(vbad, bad, cam.size, backend=be).mask.sum() == 0
        e = rasterize(vs, torch.zeros(0, 3, dtype=torch.int64), cam.size, backend=be)
        assert e.mask.sum() == 0 and (e.tri_id == -1).all()


def test_visibility_backends_agree():
    from facegcn.render import rigid_transform
    from facegcn.render.meshgen import relief_grid

    v, f = relief_grid(rows=61, cols=61)
    cam = PerspectiveCamera()
    ang = torch.tensor([[0.0, 0.0, 0.0], [0.1, 1.0, 0.0], [0.0, 2.8, 0.3]])
    t = torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [0, 0, 8.0]])
    vs = cam.to_screen(rigid_transform(v.expand(3, -1, -1), ang, t))
    fr = rasterize(vs, f, cam.size)
    a = vertex_visibility(vs, f, fr, backend="numba")
    b = vertex_visibility(vs, f, fr, backend="torch")
    assert torch.equal(a, b)
    assert a[0].float().mean() > 0.9 and a[2].sum() == 0  # seen from behind: back faces only
