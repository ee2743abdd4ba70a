"""Lip-slit backing for models without parts (BFM): a grid with a slit, analytic checks and a render."""

import numpy as np
import torch

from facegcn.io.textured import Material, TexturedMesh
from facegcn.morphable.closure import boundary_loops, mouth_backing, mouth_loop
from facegcn.render.textured import head_camera, render_textured

N = 11  # grid side


def _slit_grid():
    """An N×N grid in z = 0 (normals +z), the triangles of a 4×1 cell slit in the middle removed;
    landmarks: 48/54 at the slit's ends, 60–67 around it, the rest on the grid's corner."""
    xs, ys = np.meshgrid(np.linspace(-1, 1, N), np.linspace(-1, 1, N))
    v = np.stack([xs.ravel(), ys.ravel(), np.zeros(N * N)], 1)
    faces, hole = [], []
    for r in range(N - 1):
        for c in range(N - 1):
            a = r * N + c
            tris = [[a, a + 1, a + N + 1], [a, a + N + 1, a + N]]  # counter-clockwise seen from +z
            (hole if r == 5 and 3 <= c < 7 else faces).extend(tris)
    lm = np.zeros(68, np.int64)
    lm[48], lm[54] = 5 * N + 3, 5 * N + 7
    lm[60:68] = [5 * N + 3, 5 * N + 4, 5 * N + 5, 5 * N + 6, 5 * N + 7, 6 * N + 6, 6 * N + 5, 6 * N + 4]
    return v, np.asarray(faces, np.int64), lm


def _normals(v, f):
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def test_boundary_loops_and_mouth_loop():
    v, f, lm = _slit_grid()
    loops = boundary_loops(f)
    assert sorted(len(lp) for lp in loops) == [10, 4 * (N - 1)]  # the slit (2×4 edges + 2) and the outer border
    lp = mouth_loop(f, v, lm)
    expect = {5 * N + c for c in range(3, 8)} | {6 * N + c for c in range(3, 8)}
    assert set(lp.tolist()) == expect
    assert mouth_loop(_full_grid(), v, lm) is None  # no slit: nothing to back


def _full_grid():
    out = []
    for r in range(N - 1):
        for c in range(N - 1):
            a = r * N + c
            out += [[a, a + 1, a + N + 1], [a, a + N + 1, a + N]]
    return np.asarray(out, np.int64)


def test_backing_is_closed_faces_the_viewer_and_hides_the_background():
    v, f, lm = _slit_grid()
    lp = mouth_loop(f, v, lm)
    nv, nf = mouth_backing(v, lp, depth=0.3)
    allv = np.concatenate([v, nv])
    allf = np.concatenate([f, nf])
    assert len(boundary_loops(allf)) == 1  # only the outer border remains open
    n = _normals(allv, nf)
    assert (n[:, 2] > 0).all()  # every pocket triangle faces the viewer (out of the mouth)
    assert allv[len(v):, 2].max() < 0  # all behind the skin

    def seen_through(faces, verts):
        mesh = TexturedMesh(verts.astype(np.float32), np.tile([[0, 0, 1]], (len(verts), 1)).astype(np.float32),
                            np.full((len(verts), 3), 0.8, np.float32), None, (Material("face", faces),))
        cam = head_camera(verts, (96, 96), centre=np.zeros(3))
        r = render_textured(mesh, cam, centre=np.zeros(3))
        px = cam.project(torch.tensor([[0.0, 0.1, 0.0]], dtype=torch.float64)).numpy().round().astype(int)[0]  # the slit's middle
        return not bool(r.mask[px[1], px[0]])

    assert seen_through(f, v)
    assert not seen_through(allf, allv)
