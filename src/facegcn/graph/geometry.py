"""Closest-point geometry on triangle meshes (numpy / scipy), used to build the mesh hierarchy:
exact closest points with barycentric coordinates, and a one-to-one nearest-point assignment.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from facegcn.errors import ConfigError, FaceGCNError

__all__ = ["closest_points_on_mesh", "unique_nearest"]


def _closest_point_barycentric(p, a, b, c):
    """Barycentric coordinates ``(N, 3)`` of the closest point to ``p`` on triangles ``abc``
    (all ``(N, 3)`` float64), following Ericson, *Real-Time Collision Detection*, 5.1.5."""
    ab, ac, ap = b - a, c - a, p - a
    d1 = np.einsum("ij,ij->i", ab, ap)
    d2 = np.einsum("ij,ij->i", ac, ap)
    bp = p - b
    d3 = np.einsum("ij,ij->i", ab, bp)
    d4 = np.einsum("ij,ij->i", ac, bp)
    cp = p - c
    d5 = np.einsum("ij,ij->i", ab, cp)
    d6 = np.einsum("ij,ij->i", ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2

    n = len(p)
    w = np.zeros((n, 3))
    done = np.zeros(n, bool)

    def take(mask, *weights):
        m = mask & ~done
        for i, wi in enumerate(weights):
            w[m, i] = wi[m] if np.ndim(wi) else wi
        done[m] = True

    with np.errstate(divide="ignore", invalid="ignore"):
        take((d1 <= 0) & (d2 <= 0), 1.0, 0.0, 0.0)  # vertex a
        take((d3 >= 0) & (d4 <= d3), 0.0, 1.0, 0.0)  # vertex b
        t = d1 / (d1 - d3)
        take((vc <= 0) & (d1 >= 0) & (d3 <= 0), 1.0 - t, t, 0.0)  # edge ab
        take((d6 >= 0) & (d5 <= d6), 0.0, 0.0, 1.0)  # vertex c
        t = d2 / (d2 - d6)
        take((vb <= 0) & (d2 >= 0) & (d6 <= 0), 1.0 - t, 0.0, t)  # edge ac
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        take((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), 0.0, 1.0 - t, t)  # edge bc
        denom = va + vb + vc
        tv, tw = vb / denom, vc / denom
        take(np.ones(n, bool), 1.0 - tv - tw, tv, tw)  # interior
    bad = ~np.all(np.isfinite(w), axis=1)
    if bad.any():  # degenerate triangle: fall back to its nearest corner
        dist = np.stack([((p - q) ** 2).sum(1) for q in (a, b, c)], axis=1)[bad]
        w[bad] = 0.0
        w[np.flatnonzero(bad), dist.argmin(1)] = 1.0
    return w


def closest_points_on_mesh(points, vertices, faces):
    """Closest point on a triangle mesh for each query point (exact).

    Candidates are all triangles whose bounding sphere can beat the best of the 8 triangles with
    the nearest centroids. Ties go to the lowest triangle index.

    Args:
        points: ``(N, 3)`` query points.
        vertices: ``(V, 3)`` mesh vertices.
        faces: ``(F, 3)`` integer triangles.

    Returns:
        ``(tri, weights, distance)``: the closest triangle of each point, the barycentric
        coordinates of the closest point on it, and the Euclidean distance (mesh units).

    Shapes:
        tri: ``(N,)`` int64; weights: ``(N, 3)`` float64 (rows sum to 1); distance: ``(N,)``
        float64.
    """
    points = np.asarray(points, np.float64)
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    tri = vertices[faces]  # (F, 3, 3)
    centroid = tri.mean(axis=1)
    radius = np.sqrt(((tri - centroid[:, None]) ** 2).sum(-1)).max(axis=1)
    tree = cKDTree(centroid)

    def distances(pi, fi):
        w = _closest_point_barycentric(points[pi], tri[fi, 0], tri[fi, 1], tri[fi, 2])
        q = np.einsum("ij,ijk->ik", w, tri[fi])
        return w, np.sqrt(((points[pi] - q) ** 2).sum(1))

    k = min(8, len(faces))
    _, cand = tree.query(points, k=k)
    cand = cand.reshape(len(points), k)
    pi = np.repeat(np.arange(len(points)), k)
    _, d = distances(pi, cand.ravel())
    best = d.reshape(-1, k).min(axis=1)
    # any triangle closer than `best` has its centroid within best + radius_max of the point
    lists = tree.query_ball_point(points, best + radius.max() + 1e-12, return_sorted=True)
    lens = np.array([len(x) for x in lists])
    pi = np.repeat(np.arange(len(points)), lens)
    fi = np.concatenate([np.asarray(x, np.int64) for x in lists]) if len(pi) else np.zeros(0, np.int64)
    gap = np.sqrt(((points[pi] - centroid[fi]) ** 2).sum(1)) - radius[fi]
    keep = gap <= best[pi] + 1e-12
    pi, fi = pi[keep], fi[keep]
    w, d = distances(pi, fi)
    order = np.lexsort((fi, d, pi))
    first = np.ones(len(order), bool)
    first[1:] = pi[order][1:] != pi[order][:-1]
    sel = order[first]
    assert np.array_equal(pi[sel], np.arange(len(points)))
    return fi[sel], w[sel], d[sel]


def unique_nearest(query, targets) -> np.ndarray:
    """Map each query point to a distinct target point, nearest first.

    Greedy by increasing distance (ties by query index, then target index), so the result is
    deterministic.

    Args:
        query: ``(Q, 3)`` float points (e.g. the vertices of a simplified mesh).
        targets: ``(T, 3)`` float points with ``T >= Q`` (e.g. the original vertices).

    Returns:
        ``(Q,)`` int64 distinct indices into ``targets``.

    Raises:
        ConfigError: more query points than targets.
    """
    nq, nt = len(query), len(targets)
    if nq > nt:
        raise ConfigError(f"cannot map {nq} simplified vertices onto {nt} original ones")
    tree = cKDTree(targets)
    assign = np.full(nq, -1, np.int64)
    used = np.zeros(nt, bool)
    k = min(8, nt)
    while True:
        todo = np.flatnonzero(assign < 0)
        if len(todo) == 0:
            return assign
        d, j = tree.query(query[todo], k=k)
        d, j = d.reshape(len(todo), k), j.reshape(len(todo), k)
        qi = np.repeat(todo, k)
        d, j = d.ravel(), j.ravel()
        order = np.lexsort((j, qi, d))
        for q_, t_ in zip(qi[order].tolist(), j[order].tolist()):
            if assign[q_] < 0 and not used[t_]:
                assign[q_] = t_
                used[t_] = True
        if k == nt:
            # every remaining query saw all targets: cannot happen while nq <= nt
            if (assign < 0).any():  # pragma: no cover
                raise FaceGCNError("internal error: unique nearest-vertex assignment failed")
        k = min(nt, k * 4)

