"""Small synthetic meshes for the graph tests."""

from __future__ import annotations

import numpy as np


def sphere_mesh(n_points: int = 400, seed: int = 0):
    """A random closed triangle mesh: the convex hull of random points on the unit sphere."""
    from scipy.spatial import ConvexHull

    rng = np.random.default_rng(seed)
    p = rng.standard_normal((n_points, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    hull = ConvexHull(p)
    return p.astype(np.float32), hull.simplices.astype(np.int64)


def disk_mesh(n_points: int = 500, seed: int = 0):
    """A random open mesh: Delaunay triangulation of random points, lifted onto a bumpy surface."""
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(seed)
    xy = rng.uniform(-1, 1, (n_points, 2))
    tri = Delaunay(xy)
    z = 0.3 * np.sin(2 * xy[:, 0]) * np.cos(3 * xy[:, 1])
    return np.column_stack([xy, z]).astype(np.float32), tri.simplices.astype(np.int64)


def grid_mesh(n: int):
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    idx = ii * n + jj
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    verts = np.stack([ii.ravel() / (n - 1), jj.ravel() / (n - 1), np.zeros(n * n)], 1)
    return verts.astype(np.float32), faces.astype(np.int64)
