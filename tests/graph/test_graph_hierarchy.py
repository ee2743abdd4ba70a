"""Mesh hierarchy: sizes, selection / barycentric matrices, determinism, cache, report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facegcn.errors import ConfigError, InputError
from facegcn.graph import build_hierarchy, closest_points_on_mesh, hierarchy_report
from facegcn.graph.geometry import _closest_point_barycentric
from tests.graph.meshes import disk_mesh, sphere_mesh



def test_ict_sizes_within_one_percent(ict_hierarchy):
    h = ict_hierarchy
    print(hierarchy_report(h))
    assert h.num_levels == 5 and h.sizes[0] == 9409
    for l in range(1, h.num_levels):
        target = math.ceil(h.sizes[l - 1] / 4)
        assert target == h.targets[l - 1]
        assert abs(h.sizes[l] - target) <= 0.01 * target, (l, h.sizes, h.targets)


def test_levels_are_subsets_and_operators_consistent(ict_hierarchy):
    h = ict_hierarchy
    for l in range(h.num_levels - 1):
        k = h.kept[l]
        assert np.all(np.diff(k) > 0)  # sorted, unique
        np.testing.assert_array_equal(h.vertices[l + 1], h.vertices[l][k])
        d = h.down[l]
        assert d.shape == (h.sizes[l + 1], h.sizes[l]) and d.nnz == h.sizes[l + 1]
        np.testing.assert_array_equal(d.indices, k)
        u = h.up[l]
        assert u.shape == (h.sizes[l], h.sizes[l + 1])
        assert u.getnnz(axis=1).max() <= 3 and u.getnnz(axis=1).min() >= 1
        assert u.data.min() >= 0
        np.testing.assert_allclose(np.asarray(u.sum(axis=1)).ravel(), 1.0, atol=1e-6)
        # every coarse vertex is used by a triangle; faces index the level
        f = h.faces[l + 1]
        assert f.min() >= 0 and f.max() < h.sizes[l + 1]
        assert len(np.unique(f)) == h.sizes[l + 1]
        # up-sampling a kept vertex returns exactly its own value
        ud = (u @ d).tocsr()
        sub = ud[k]
        np.testing.assert_array_equal(sub.indices, k)
        np.testing.assert_array_equal(sub.data, 1.0)


def test_linear_field_reproduced_by_up_of_down(ict_hierarchy):
    """U (D f) == f for a linear field f(x) = a.x + b: exactly where a fine vertex lies on the coarse
    surface (kept vertices included), and elsewhere off by at most |a| * (distance to that surface)
    — which is what barycentric coordinates of the closest coarse point guarantee."""
    h = ict_hierarchy
    a = np.array([0.3, -0.7, 0.2])
    for l in range(h.num_levels - 1):
        x = h.vertices[l].astype(np.float64)
        field = x @ a + 0.1
        rec = h.up[l].astype(np.float64) @ (h.down[l].astype(np.float64) @ field)
        err = np.abs(rec - field)
        dist = h.up_distance[l]
        on = dist < 1e-9
        assert on.sum() >= h.sizes[l + 1]
        assert err[on].max() < 1e-5
        assert np.all(err <= np.linalg.norm(a) * dist + 1e-5)


def test_linear_field_exact_for_points_on_the_coarse_surface(ict_hierarchy):
    """Points lying on a coarse level's surface get barycentric weights that reproduce a linear field
    exactly (the up-sampling construction, independent of where the simplifier put vertices)."""
    h = ict_hierarchy
    rng = np.random.default_rng(0)
    a = np.array([0.3, -0.7, 0.2])
    for l in (1, 3):
        v, f = h.vertices[l].astype(np.float64), h.faces[l]
        t = rng.integers(0, len(f), 2000)
        bary = rng.dirichlet(np.ones(3), 2000)
        pts = np.einsum("ij,ijk->ik", bary, v[f[t]])
        tri, w, d = closest_points_on_mesh(pts, v, f)
        assert d.max() < 1e-9
        rec = np.einsum("ij,ij->i", w, (v @ a)[f[tri]])
        np.testing.assert_allclose(rec, pts @ a, atol=1e-9)


def test_torch_operators_match_scipy(ict_hierarchy):
    ops = ict_hierarchy.operators()
    assert ops.sizes == ict_hierarchy.sizes
    x = torch.randn(2, ict_hierarchy.sizes[1], 3)
    y = ops.upsample(x, 0)
    ref = np.stack([ict_hierarchy.up[0] @ xi.numpy() for xi in x])
    np.testing.assert_allclose(y.detach().numpy(), ref, atol=1e-5)
    z = ops.downsample(y, 0)
    np.testing.assert_allclose(z.detach().numpy(), x.numpy(), atol=1e-6)  # D U = I on kept vertices
    assert ops.state_dict() == {}


def test_sphere_hierarchy_sizes_and_determinism():
    v, f = sphere_mesh(3000, seed=4)
    h1 = build_hierarchy(v, f, factors=(4, 4, 4), cache=False)
    h2 = build_hierarchy(v.astype(np.float64), torch.from_numpy(f), factors=(4, 4, 4), cache=False)
    assert h1.digest == h2.digest
    for l in range(1, h1.num_levels):
        t = math.ceil(h1.sizes[l - 1] / 4)
        assert abs(h1.sizes[l] - t) <= 0.01 * t
    for a, b in zip(h1.faces, h2.faces):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(h1.up, h2.up):
        assert (a != b).nnz == 0
    for a, b in zip(h1.laplacians, h2.laplacians):
        assert (a != b).nnz == 0


def test_cache_roundtrip_and_corruption(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGCN_CACHE", str(tmp_path))
    v, f = disk_mesh(800, seed=6)
    h1 = build_hierarchy(v, f, factors=(4, 4))
    assert not h1.from_cache and h1.cache_path is not None
    path = tmp_path / "hierarchy" / f"{h1.digest}.npz"
    assert str(path) == h1.cache_path and path.is_file()
    with np.load(path, allow_pickle=False) as z:  # plain arrays, no pickle
        assert "vertices_0" in z.files
    h2 = build_hierarchy(v, f, factors=(4, 4))
    assert h2.from_cache
    for a, b in zip(h1.up, h2.up):
        assert (a != b).nnz == 0
    for a, b in zip(h1.faces, h2.faces):
        np.testing.assert_array_equal(a, b)
    # other factors -> another key
    assert build_hierarchy(v, f, factors=(4,)).digest != h1.digest
    # a truncated cache file is ignored and rewritten
    path.write_bytes(path.read_bytes()[:100])
    h3 = build_hierarchy(v, f, factors=(4, 4))
    assert not h3.from_cache
    assert build_hierarchy(v, f, factors=(4, 4)).from_cache
    # rebuild=True ignores the cached file and rewrites it
    mtime = path.stat().st_mtime_ns
    h5 = build_hierarchy(v, f, factors=(4, 4), rebuild=True)
    assert not h5.from_cache and path.stat().st_mtime_ns >= mtime
    assert build_hierarchy(v, f, factors=(4, 4)).from_cache
    # cache=False neither reads nor writes
    h4 = build_hierarchy(v, f, factors=(3,), cache=False)
    assert h4.cache_path is None and not (tmp_path / "hierarchy" / f"{h4.digest}.npz").exists()


def test_report(ict_hierarchy):
    text = hierarchy_report(ict_hierarchy)
    assert ict_hierarchy.digest in text
    for n in ict_hierarchy.sizes:
        assert str(n) in text
    assert "lambda_max 2" in text
    assert len(text.splitlines()) == 3 + ict_hierarchy.num_levels + 1


def test_errors():
    v, f = sphere_mesh(200)
    with pytest.raises(ConfigError):
        build_hierarchy(v, f, factors=(1,), cache=False)
    with pytest.raises(ConfigError):
        build_hierarchy(v, f, factors=("x",), cache=False)
    with pytest.raises(ConfigError):  # 200 -> 50 -> 13 -> 4 -> 1: too small
        build_hierarchy(v, f, factors=(4, 4, 4, 4), cache=False)
    with pytest.raises(InputError):
        build_hierarchy(v, f + 1000, cache=False)
    with pytest.raises(InputError):
        build_hierarchy(np.full_like(v, np.nan), f, cache=False)


def test_closest_points_against_brute_force():
    rng = np.random.default_rng(0)
    v, f = disk_mesh(150, seed=7)
    pts = rng.uniform(-1.2, 1.2, (300, 3))
    tri, w, d = closest_points_on_mesh(pts, v, f)
    assert np.all(w >= -1e-12) and np.allclose(w.sum(1), 1)
    # brute force over every triangle
    n, m = len(pts), len(f)
    pi = np.repeat(np.arange(n), m)
    fi = np.tile(np.arange(m), n)
    tv = v.astype(np.float64)[f]
    wb = _closest_point_barycentric(pts[pi], tv[fi, 0], tv[fi, 1], tv[fi, 2])
    q = np.einsum("ij,ijk->ik", wb, tv[fi])
    db = np.linalg.norm(pts[pi] - q, axis=1).reshape(n, m)
    np.testing.assert_allclose(d, db.min(1), atol=1e-12)
    q_ours = np.einsum("ij,ijk->ik", w, tv[tri])
    np.testing.assert_allclose(np.linalg.norm(pts - q_ours, axis=1), d, atol=1e-12)
