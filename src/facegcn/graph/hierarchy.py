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
   closest point on the coarse surface (closest triangle, exact search:
   :func:`facegcn.graph.geometry.closest_points_on_mesh`) — so a kept vertex gets
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

import fast_simplification
import numpy as np
import scipy.sparse as sp
import torch

from facegcn.cache import array_digest, cache_dir
from facegcn.errors import ConfigError, FaceGCNError, ModelFileError
from facegcn.graph.geometry import closest_points_on_mesh, unique_nearest
from facegcn.graph.laplacian import check_mesh, mesh_edges, scaled_laplacian
from facegcn.graph.operators import MeshOperators
from facegcn.io.atomic import atomic_open

__all__ = ["MeshHierarchy", "build_hierarchy", "hierarchy_report"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def _simplify_to(vertices, faces, n_target: int):
    """Quadric-error simplification (fast_simplification) to the vertex count closest to n_target."""
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
        """Vertex count of every level, ``(V_0, ..., V_L)``."""
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
        """Scaled Laplacian ``L_hat`` of one level: ``(V_l, V_l)`` float CSR matrix."""
        return self.laplacians[level]

    def operators(self) -> MeshOperators:
        """Torch module with every level's Laplacian and the down/up-sampling matrices (float32,
        CPU; move it like any module)."""
        return MeshOperators.from_hierarchy(self)


def _params_tag(factors) -> str:
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
        nearest = unique_nearest(ps, v)
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


def _cached_levels(digest: str, v0: np.ndarray, f: np.ndarray, factors: tuple, rebuild: bool):
    """``(levels or None, cache path or None)``: the cached levels of this mesh, when readable."""
    try:
        path = cache_dir("hierarchy") / f"{digest}.npz"
    except OSError as exc:
        log.warning("hierarchy cache unavailable (%s); building without it", exc)
        return None, None
    if path.is_file() and not rebuild:
        try:
            return _load(path, v0, f, len(factors)), path
        except Exception as exc:  # unreadable / truncated / stale: rebuild
            log.warning("ignoring hierarchy cache %s (%s); rebuilding", path, exc)
    return None, path


def build_hierarchy(vertices, faces, factors=(4, 4, 4, 4), *, lambda_max: float | str = 2.0,
                    cache: bool = True, rebuild: bool = False) -> MeshHierarchy:
    """Build (or load from the cache) the CoMA-style hierarchy of a triangle mesh.

    Args:
        vertices: ``(V, 3)`` float mesh vertices (numpy or torch; normalised to float32 first, so
            the same mesh in another dtype hits the same cache entry).
        faces: ``(F, 3)`` integer triangles (numpy or torch).
        factors: the down-sampling factor (>= 2) of each step; default four steps of 4, as in the
            paper.
        lambda_max: for the scaled Laplacians, ``2.0`` or ``"compute"`` (largest eigenvalue).
        cache: read / write the ``.npz`` in ``cache_dir("hierarchy")``; ``False`` neither reads
            nor writes it.
        rebuild: ignore a cached file and overwrite it.

    Returns:
        The :class:`MeshHierarchy` with ``len(factors) + 1`` levels (level 0 = the input mesh).

    Raises:
        ConfigError: bad factors, or a mesh too small for that many steps.
    """
    if isinstance(vertices, torch.Tensor):
        vertices = vertices.detach().cpu().numpy()
    if isinstance(faces, torch.Tensor):
        faces = faces.detach().cpu().numpy()
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

    levels, path = _cached_levels(digest, v0, f, factors, rebuild) if cache else (None, None)
    from_cache = levels is not None
    if levels is None:
        levels = _build_levels(v0, f, factors)
        if path is not None:
            try:
                _save(path, levels)
            except (OSError, FaceGCNError) as exc:
                log.warning("could not write hierarchy cache %s (%s)", path, exc)
                path = None
    return _assemble(levels, factors, digest, lambda_max, path, from_cache)


def _assemble(levels: dict, factors: tuple, digest: str, lambda_max: float | str, path: Path | None,
              from_cache: bool) -> MeshHierarchy:
    """The :class:`MeshHierarchy` of built or loaded levels, with every level's scaled Laplacian."""
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
    return array_digest(v32, f, extra=_params_tag(factors))


def hierarchy_report(h: MeshHierarchy) -> str:
    """Human-readable summary of a hierarchy (for ``facegcn model hierarchy``).

    Args:
        h: the hierarchy.

    Returns:
        A multi-line table: per level the vertex count and its target, faces, edges, mean degree,
        Laplacian non-zeros and ``lambda``, up-sampling non-zeros and distances (mesh units).
    """
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
