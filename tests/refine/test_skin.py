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
    out = skin_filled_albedo(albedo, trust, faces, fallback=np.array([0.6, 0.6, 0.6]), agree=None)
    assert np.allclose(out[0], 0.4)


def test_a_partly_trusted_colour_far_from_the_fill_is_not_kept():
    """The agreement factor: d = max |log albedo − log fill| ≤ d0 keeps the linear blend, ≥ d1
    takes the fill, linear in between; trusted vertices are never touched."""
    faces, idx = _grid(5)
    albedo = np.full((25, 3), 0.5)
    trust = np.zeros(25)
    trust[idx[:, 0]] = 1.0  # the fill is 0.5 everywhere (the harmonic extension of a constant)
    probe = idx[2, 3]
    trust[probe] = 0.25  # t = 0.5 before the agreement factor
    for ratio, share in ((np.exp(-0.1), 0.5), (np.exp(-0.25), 0.25), (np.exp(-0.5), 0.0), (np.exp(0.25), 0.25)):
        a = albedo.copy()
        a[probe] = 0.5 * ratio
        out = skin_filled_albedo(a, trust, faces, agree=(0.15, 0.35))
        assert np.allclose(out[probe], share * a[probe] + (1 - share) * 0.5, atol=1e-3), (ratio, out[probe])
        assert np.allclose(out[idx[:, 0]], a[idx[:, 0]])


def test_feature_vertices_keep_their_partly_trusted_colour():
    faces, idx = _grid(5)
    albedo = np.full((25, 3), 0.5)
    trust = np.zeros(25)
    trust[idx[:, 0]] = 1.0
    probe = idx[2, 3]
    trust[probe] = 0.25
    albedo[probe] = 0.5 * np.exp(-0.6)  # a brow's edge: far darker than the skin fill
    features = np.zeros(25, bool)
    features[probe] = True
    out = skin_filled_albedo(albedo, trust, faces, features=features)
    assert np.allclose(out[probe], skin_filled_albedo(albedo, trust, faces, agree=None)[probe])
    assert np.allclose(skin_filled_albedo(albedo, trust, faces)[probe], 0.5, atol=1e-3)  # not a feature: filled
