"""The shipped MediaPipe → ICT dense correspondence: file format, loading, point evaluation.

References: a per-point Python loop (the barycentric combination written out), the mean points the
derivation script stored (computed there in float64 from the same model), and hand-made files for
the error paths. How well the embedding predicts the network is tested on held-out renders in
tests/frontend/test_dense_correspondence.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from facegcn.errors import ModelFileError
from facegcn.morphable.dense import (
    N_DENSE,
    correspondence_path,
    dense_correspondence,
    dense_points,
    load_dense_correspondence,
    model_dense_points,
    read_correspondence,
    write_correspondence,
)


def test_shipped_file(ict):
    path = correspondence_path("ict")
    assert path.is_file() and path.stat().st_size < 32 * 1024  # a small file
    tri, bary, weight = load_dense_correspondence(ict)
    assert tri.shape == (N_DENSE,) and tri.dtype == torch.int64
    assert bary.shape == (N_DENSE, 3) and bary.dtype == torch.float32
    assert weight.shape == (N_DENSE,) and weight.dtype == torch.float32
    assert int(tri.min()) >= 0 and int(tri.max()) < ict.n_faces
    assert float(bary.min()) >= 0 and torch.allclose(bary.sum(1), torch.ones(N_DENSE), atol=1e-5)
    assert 0 <= float(weight.min()) and float(weight.max()) <= 1 and float(weight.mean()) > 0.2
    c = dense_correspondence(ict)
    assert c.model == "ict" and c.n_renders >= 300
    with np.load(path, allow_pickle=False) as d:  # the on-disk dtypes of the format
        assert d["tri"].dtype == np.int32 and d["bary"].dtype == np.float32 and d["weight"].dtype == np.float32


def test_dense_points_match_a_loop(ict):
    tri, bary, _ = load_dense_correspondence(ict)
    g = torch.Generator().manual_seed(0)
    verts = ict.shape(torch.randn(2, ict.layout.id, generator=g), torch.rand(2, ict.layout.exp, generator=g) * 0.5)
    got = model_dense_points(ict, verts)
    assert got.shape == (2, N_DENSE, 3)
    f = ict.faces
    for b in range(2):
        for i in range(0, N_DENSE, 7):
            ref = sum(bary[i, k] * verts[b, f[tri[i], k]] for k in range(3))
            assert torch.allclose(got[b, i], ref, atol=1e-6)
    px = dense_points(verts[..., :2], f, tri, bary)  # works on 2-D (projected) vertices too
    assert torch.allclose(px, got[..., :2])


def test_mean_points_are_the_embedding_on_the_mean_shape(ict):
    c = dense_correspondence(ict)
    got = model_dense_points(ict, ict.mean_shape[None])[0].numpy()
    assert np.abs(got - c.mean_points).max() < 1e-5


def test_gradients_flow_to_vertices(ict):
    tri, bary, _ = load_dense_correspondence(ict)
    v = ict.mean_shape[None].clone().requires_grad_(True)
    dense_points(v, ict.faces, tri, bary).sum().backward()
    # each point spreads weight 1 over its corners: total gradient = 468 per axis
    assert torch.allclose(v.grad.sum((0, 1)), torch.full((3,), float(N_DENSE)), atol=1e-3)


def test_other_mesh_is_refused(ict):
    fake = SimpleNamespace(name="ict", n_vertices=ict.n_vertices, n_faces=ict.n_faces - 1, faces=ict.faces[:-1],
                           mean_shape=ict.mean_shape)
    with pytest.raises(ModelFileError, match="another mesh"):
        load_dense_correspondence(fake)
    other = SimpleNamespace(name="bfm", n_vertices=35709, n_faces=70789, faces=torch.zeros(1, 3, dtype=torch.int64),
                            mean_shape=torch.zeros(1, 3))
    with pytest.raises(ModelFileError, match="make_dense_correspondence"):
        load_dense_correspondence(other)


def test_round_trip_and_malformed_files(ict, tmp_path):
    rng = np.random.default_rng(0)
    tri = rng.integers(0, ict.n_faces, N_DENSE)
    bary = rng.random((N_DENSE, 3)) + 0.1
    w = rng.random(N_DENSE)
    p = write_correspondence(tmp_path / "d.npz", ict, tri, bary, w, spread_px=np.ones(N_DENSE),
                             hit_rate=np.ones(N_DENSE), n_renders=3)
    t2, b2, w2 = load_dense_correspondence(ict, p)
    assert np.array_equal(t2.numpy(), tri) and np.allclose(b2.numpy(), bary / bary.sum(1, keepdims=True), atol=1e-6)
    assert np.allclose(w2.numpy(), w, atol=1e-7)
    bad = tmp_path / "bad.npz"
    with np.load(p) as d:
        arrays = dict(d)
    arrays["bary"] = arrays["bary"][:10]
    np.savez(bad, **arrays)
    with pytest.raises(ModelFileError, match="malformed"):
        read_correspondence(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError) as e:
        read_correspondence(junk)
    assert "\n" not in str(e.value)
