"""Skin fill (refine.skin): trusted vertices keep their colour, the rest is the harmonic extension.

References: a dense numpy solve of the same Dirichlet problem; the maximum principle (a harmonic
function takes its extremes on the fixed set); the graph Laplacian's row sums and degrees."""

import numpy as np

from facegcn.refine.skin import graph_laplacian, skin_filled_albedo


def _grid(n=9):
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return faces, idx


def test_laplacian_degrees():
    faces, idx = _grid(5)
    L = graph_laplacian(faces, 25).toarray()
    assert np.allclose(L.sum(1), 0)
    assert L[idx[2, 2], idx[2, 2]] == 6 and L[idx[0, 0], idx[0, 0]] == 3  # interior: 6 neighbours; corner (0, 0): 3


def test_harmonic_fill_matches_a_dense_solve():
    faces, idx = _grid(9)
    V = 81
    rng = np.random.default_rng(0)
    albedo = rng.uniform(0.2, 0.9, (V, 3))
    trust = np.zeros(V)
    trust[idx[:, 0]] = 1.0
    trust[idx[:, -1]] = 1.0
    trust[idx[4, 4]] = 1.0
    out = skin_filled_albedo(albedo, trust, faces)
    known = trust >= 0.5
    assert np.allclose(out[known], albedo[known])
    L = graph_laplacian(faces, V).toarray()
    u, k = np.flatnonzero(~known), np.flatnonzero(known)
    ref = np.linalg.solve(L[np.ix_(u, u)], -L[np.ix_(u, k)] @ albedo[k])
    assert np.allclose(out[u], ref, atol=1e-4)
    assert out[u].min() >= albedo[k].min() - 1e-9 and out[u].max() <= albedo[k].max() + 1e-9


def test_no_trusted_vertex_gives_the_fallback_and_partial_trust_blends():
    faces, _ = _grid(4)
    albedo = np.full((16, 3), 0.2)
    out = skin_filled_albedo(albedo, np.zeros(16), faces, fallback=np.array([0.6, 0.5, 0.4]))
    assert np.allclose(out, [0.6, 0.5, 0.4])
    trust = np.zeros(16)
    trust[0] = 0.25  # half the threshold: halfway between its own colour and the fill
    out = skin_filled_albedo(albedo, trust, faces, fallback=np.array([0.6, 0.6, 0.6]))
    assert np.allclose(out[0], 0.4)
