"""CoMA-style mesh hierarchy: quadric-error down-sampling, selection and barycentric up-sampling.

``build_hierarchy(vertices, faces, factors=(4, 4, 4, 4))`` returns a :class:`MeshHierarchy` with
``len(factors) + 1`` levels (level 0 = the input mesh). For each step ``l -> l+1``:

1. ``fast_simplification`` (quadric error metrics) simplifies level ``l`` to
   ``ceil(V_l / factor)`` vertices — its target is a triangle count, so the count is searched
   (bisection) for the one whose vertex count is closest to the target;
2. as in CoMA, the coarse level keeps a SUBSET of the fine vertices: each simplified vertex is
   mapped to its nearest fine vertex, uniquely (greedy by increasing distance, ties by index);
   the coarse faces are the simplified connectivity on those kept vertices, which are ordered by
   their fine index. ``down[l]`` (V_{l+1} x V_l) selects them;
3. ``up[l]`` (V_l x V_{l+1}) holds, for every fine vertex, the barycentric coordinates of its
   closest point on the coarse surface (closest triangle, exact search) — so a kept vertex gets
   weight 1 on itself and a fine vertex lying on the coarse surface is reproduced exactly;
4. ``laplacians[l]`` is the scaled Laplacian ``L_hat`` of every level (see
   :mod:`facegcn.graph.laplacian`; ``lambda_max = 2`` by default).

Everything is deterministic. The expensive part (levels and up-sampling weights) is cached as an
``.npz`` (no pickle) in ``facegcn.cache.cache_dir("hierarchy")`` under
``array_digest(vertices, faces, extra=params)``, and rebuilt when missing or unreadable.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from facegcn.errors import ConfigError, FaceGCNError, ModelFileError
from facegcn.graph.laplacian import check_mesh, mesh_edges, scaled_laplacian

__all__ = ["MeshHierarchy", "build_hierarchy", "hierarchy_report", "closest_points_on_mesh"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------------------------


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
    """For each point: ``(triangle index, barycentric weights (3,), distance)`` of its closest point on
    the triangle mesh. Exact: candidates are all triangles whose bounding sphere can beat the best
    of the 8 triangles with the nearest centroids. Ties go to the lowest triangle index."""
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


def _unique_nearest(query, targets) -> np.ndarray:
    """Map each query point to a distinct target index, nearest first (greedy by distance)."""
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


def _simplify_to(vertices, faces, n_target: int):
    """Quadric-error simplification (fast_simplification) to the vertex count closest to n_target."""
    import fast_simplification

    nv = len(vertices)
    nf = len(faces)
    cache: dict[int, tuple] = {}

    def run(t):
        if t not in cache:
            p, f = fast_simplification.simplify(vertices, faces.astype(np.int32), target_count=int(t))
            f = np.asarray(f, np.int64).reshape(-1, 3)
            used = np.unique(f)
            if len(used) != len(p):  # drop unreferenced points (not expected from the library)
                remap = np.full(len(p), -1, np.int64)
                remap[used] = np.arange(len(used))
                p, f = p[used], remap[f]
            cache[t] = (np.asarray(p, np.float64), f)
        return cache[t]

    # the vertex count is (essentially) non-decreasing in the triangle target: bisection for the
    # target whose vertex count is n_target, starting from the proportional guess
    lo, hi = 1, nf
    guess = int(np.clip(round(nf * n_target / nv), lo + 1, hi - 1)) if nf > 2 else lo
    for t in [guess] + [None] * 64:
        if t is None:
            if hi - lo <= 1:
                break
            t = (lo + hi) // 2
        n = len(run(t)[0])
        if n == n_target:
            break
        if n < n_target:
            lo = t
        else:
            hi = t
    best_t = min(cache, key=lambda t: (abs(len(cache[t][0]) - n_target), t))
    return cache[best_t]


# --------------------------------------------------------------------------------------------
# the hierarchy
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MeshHierarchy:
    """Levels of a down-sampled mesh and the sparse operators between them (numpy / scipy).

    ``vertices[l]`` (V_l, 3) float32 and ``faces[l]`` (F_l, 3) int64 for l = 0..L; ``kept[l]`` are
    the level-l indices of the vertices that form level l+1 (``vertices[l+1] == vertices[l][kept[l]]``);
    ``up[l]`` is the (V_l, V_{l+1}) barycentric up-sampling matrix and ``up_distance[l]`` the
    distance of each level-l vertex to the coarse surface. Torch operators: :meth:`operators`.
    """

    vertices: tuple
    faces: tuple
    kept: tuple
    up: tuple
    up_distance: tuple
    factors: tuple
    digest: str
    lambda_max: float | str = 2.0
    lambda_used: tuple = ()
    laplacians: tuple = ()
    cache_path: str | None = None
    from_cache: bool = False
    targets: tuple = field(default=())

    @property
    def num_levels(self) -> int:
        """Number of levels including the input mesh (``len(factors) + 1``)."""
        return len(self.vertices)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.vertices)

    @cached_property
    def down(self) -> tuple:
        """Selection matrices ``(V_{l+1}, V_l)`` (one 1 per row, at the kept vertex)."""
        out = []
        for l, k in enumerate(self.kept):
            n = len(k)
            out.append(sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), k)),
                                     shape=(n, len(self.vertices[l]))))
        return tuple(out)

    def laplacian(self, level: int) -> sp.csr_matrix:
        return self.laplacians[level]

    def operators(self):
        """Torch module with every level's Laplacian and the down/up-sampling matrices."""
        from facegcn.graph.operators import MeshOperators

        return MeshOperators.from_hierarchy(self)


def _params_tag(factors) -> str:
    import fast_simplification

    ver = getattr(fast_simplification, "__version__", "?")
    return f"facegcn-hierarchy-v{FORMAT_VERSION};factors={','.join(map(str, factors))};fast_simplification={ver}"


def _build_levels(v0: np.ndarray, f0: np.ndarray, factors) -> dict:
    vertices, faces, kept, ups, dists, targets = [v0], [f0], [], [], [], []
    for factor in factors:
        v, f = vertices[-1], faces[-1]
        n_target = math.ceil(len(v) / factor)
        if n_target < 4:
            raise ConfigError(f"mesh too small for {len(factors)} down-sampling steps: level "
                              f"{len(vertices)} would have {n_target} vertices")
        ps, fs = _simplify_to(v, f, n_target)
        if abs(len(ps) - n_target) > 0.01 * n_target:
            log.warning("level %d: simplification reached %d vertices for a target of %d "
                        "(the mesh resists further decimation)", len(vertices), len(ps), n_target)
        nearest = _unique_nearest(ps, v)
        k = np.sort(nearest)
        fc = np.searchsorted(k, nearest)[fs]
        # drop degenerate / duplicate triangles, keep first occurrences (deterministic order)
        fc = fc[(fc[:, 0] != fc[:, 1]) & (fc[:, 1] != fc[:, 2]) & (fc[:, 2] != fc[:, 0])]
        _, first = np.unique(np.sort(fc, axis=1), axis=0, return_index=True)
        fc = fc[np.sort(first)]
        # vertices not referenced by any coarse triangle would be isolated: drop them
        used = np.unique(fc)
        if len(used) != len(k):
            k = k[used]
            fc = np.searchsorted(used, fc)
        vc = v[k]
        tri, w, d = closest_points_on_mesh(v, vc, fc)
        rows = np.repeat(np.arange(len(v)), 3)
        cols = fc[tri].ravel()
        up = sp.csr_matrix((w.ravel(), (rows, cols)), shape=(len(v), len(vc)))
        up.sum_duplicates()
        up.eliminate_zeros()
        up.sort_indices()
        vertices.append(vc)
        faces.append(fc)
        kept.append(k)
        ups.append(up)
        dists.append(d)
        targets.append(n_target)
    return dict(vertices=vertices, faces=faces, kept=kept, up=ups, up_distance=dists, targets=targets)


def _save(path: Path, levels: dict) -> None:
    from facegcn.io.atomic import atomic_open

    arrays = {"format_version": np.array(FORMAT_VERSION), "num_levels": np.array(len(levels["vertices"])),
              "targets": np.asarray(levels["targets"], np.int64)}
    for l, (v, f) in enumerate(zip(levels["vertices"], levels["faces"])):
        arrays[f"vertices_{l}"] = np.asarray(v, np.float64)
        arrays[f"faces_{l}"] = np.asarray(f, np.int64)
    for l, (k, u, d) in enumerate(zip(levels["kept"], levels["up"], levels["up_distance"])):
        arrays[f"kept_{l}"] = np.asarray(k, np.int64)
        arrays[f"up_indptr_{l}"] = u.indptr.astype(np.int64)
        arrays[f"up_indices_{l}"] = u.indices.astype(np.int64)
        arrays[f"up_data_{l}"] = u.data.astype(np.float64)
        arrays[f"up_shape_{l}"] = np.asarray(u.shape, np.int64)
        arrays[f"up_distance_{l}"] = np.asarray(d, np.float64)
    with atomic_open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def _load(path: Path, v0: np.ndarray, f0: np.ndarray, n_steps: int) -> dict:
    with np.load(path, allow_pickle=False) as z:
        if int(z["format_version"]) != FORMAT_VERSION or int(z["num_levels"]) != n_steps + 1:
            raise ModelFileError(f"hierarchy cache {path} has an unexpected format")
        vertices = [z[f"vertices_{l}"] for l in range(n_steps + 1)]
        faces = [z[f"faces_{l}"] for l in range(n_steps + 1)]
        kept, ups, dists = [], [], []
        for l in range(n_steps):
            kept.append(z[f"kept_{l}"])
            shape = tuple(int(s) for s in z[f"up_shape_{l}"])
            ups.append(sp.csr_matrix((z[f"up_data_{l}"], z[f"up_indices_{l}"], z[f"up_indptr_{l}"]), shape=shape))
            dists.append(z[f"up_distance_{l}"])
        targets = [int(t) for t in z["targets"]]
    # integrity checks: the cache must describe this very mesh, consistently
    if not (np.array_equal(vertices[0], v0) and np.array_equal(faces[0], f0)):
        raise ModelFileError(f"hierarchy cache {path} does not match the mesh")
    for l in range(n_steps):
        if not np.array_equal(vertices[l + 1], vertices[l][kept[l]]) or ups[l].shape != (len(vertices[l]), len(vertices[l + 1])):
            raise ModelFileError(f"hierarchy cache {path} is inconsistent at level {l + 1}")
        if len(faces[l + 1]) and (faces[l + 1].min() < 0 or faces[l + 1].max() >= len(vertices[l + 1])):
            raise ModelFileError(f"hierarchy cache {path} has bad faces at level {l + 1}")
    return dict(vertices=vertices, faces=faces, kept=kept, up=ups, up_distance=dists, targets=targets)


def build_hierarchy(vertices, faces, factors=(4, 4, 4, 4), *, lambda_max: float | str = 2.0,
                    cache: bool = True, rebuild: bool = False) -> MeshHierarchy:
    """Build (or load from the cache) the CoMA-style hierarchy of a triangle mesh.

    ``vertices`` (V, 3) and ``faces`` (F, 3) as numpy arrays or torch tensors; ``factors`` the
    down-sampling factor of each step (default four steps of 4, as in the paper);
    ``lambda_max`` for the scaled Laplacians (2.0 or ``"compute"``). ``cache=False`` neither reads
    nor writes the on-disk cache; ``rebuild=True`` ignores a cached file and overwrites it.
    """
    try:
        import torch

        if isinstance(vertices, torch.Tensor):
            vertices = vertices.detach().cpu().numpy()
        if isinstance(faces, torch.Tensor):
            faces = faces.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    try:
        factors = tuple(int(f) for f in factors)
    except (TypeError, ValueError):
        raise ConfigError(f"factors must be a sequence of integers, got {factors!r}") from None
    if any(f < 2 for f in factors):
        raise ConfigError(f"every down-sampling factor must be >= 2, got {factors}")
    v, f = check_mesh(vertices, faces)
    # normalise so that the same mesh in another dtype hits the same cache entry
    v32 = v.astype(np.float32)
    v0 = v32.astype(np.float64)
    digest = _digest(v32, f, factors)

    path = None
    levels = None
    if cache:
        from facegcn.cache import cache_dir

        try:
            path = cache_dir("hierarchy") / f"{digest}.npz"
        except OSError as exc:
            log.warning("hierarchy cache unavailable (%s); building without it", exc)
            path = None
        if path is not None and path.is_file() and not rebuild:
            try:
                levels = _load(path, v0, f, len(factors))
            except Exception as exc:  # unreadable / truncated / stale: rebuild
                log.warning("ignoring hierarchy cache %s (%s); rebuilding", path, exc)
                levels = None
    from_cache = levels is not None
    if levels is None:
        levels = _build_levels(v0, f, factors)
        if path is not None:
            try:
                _save(path, levels)
            except (OSError, FaceGCNError) as exc:
                log.warning("could not write hierarchy cache %s (%s)", path, exc)
                path = None

    laps, lams = [], []
    for lv, lf in zip(levels["vertices"], levels["faces"]):
        lap, lam = scaled_laplacian(lf, len(lv), lambda_max)
        laps.append(lap)
        lams.append(lam)
    return MeshHierarchy(
        vertices=tuple(np.asarray(x, np.float32) for x in levels["vertices"]),
        faces=tuple(np.asarray(x, np.int64) for x in levels["faces"]),
        kept=tuple(np.asarray(x, np.int64) for x in levels["kept"]),
        up=tuple(sp.csr_matrix(u, dtype=np.float32) for u in levels["up"]),
        up_distance=tuple(np.asarray(d, np.float64) for d in levels["up_distance"]),
        factors=factors,
        digest=digest,
        lambda_max=lambda_max,
        lambda_used=tuple(lams),
        laplacians=tuple(laps),
        cache_path=str(path) if path is not None else None,
        from_cache=from_cache,
        targets=tuple(levels["targets"]),
    )


def _digest(v32: np.ndarray, f: np.ndarray, factors) -> str:
    from facegcn.cache import array_digest

    return array_digest(v32, f, extra=_params_tag(factors))


def hierarchy_report(h: MeshHierarchy) -> str:
    """Human-readable summary of a hierarchy (for ``facegcn model hierarchy``)."""
    lam = h.lambda_max if isinstance(h.lambda_max, str) else f"{float(h.lambda_max):g}"
    lines = [
        f"mesh hierarchy {h.digest}: {h.num_levels} levels, factors {'x'.join(map(str, h.factors))}, "
        f"lambda_max {lam}",
        f"cache: {h.cache_path or 'disabled'}{' (loaded)' if h.from_cache else ''}",
        f"{'level':>5} {'vertices':>9} {'target':>8} {'dev%':>6} {'faces':>7} {'edges':>7} {'deg':>5} "
        f"{'L nnz':>8} {'lam':>6} {'up nnz':>8} {'up dist mean/max':>18}",
    ]
    for l in range(h.num_levels):
        nv, nf = len(h.vertices[l]), len(h.faces[l])
        ne = len(mesh_edges(h.faces[l]))
        if l == 0:
            tgt, dev = "-", "-"
        else:
            t = h.targets[l - 1]
            tgt, dev = str(t), f"{100.0 * (nv - t) / t:+.2f}"
        if l < h.num_levels - 1:
            up = h.up[l]
            d = h.up_distance[l]
            upn, upd = str(up.nnz), f"{d.mean():.2e}/{d.max():.2e}"
        else:
            upn, upd = "-", "-"
        lines.append(
            f"{l:>5} {nv:>9} {tgt:>8} {dev:>6} {nf:>7} {ne:>7} {2.0 * ne / nv:>5.2f} "
            f"{h.laplacians[l].nnz:>8} {h.lambda_used[l]:>6.3f} {upn:>8} {upd:>18}"
        )
    ext = np.ptp(h.vertices[0], axis=0)
    lines.append(f"bounding box of level 0: {ext[0]:.4g} x {ext[1]:.4g} x {ext[2]:.4g} (mesh units)")
    return "\n".join(lines)
