"""Backing for an open mouth: a model without parts (BFM) has a lip slit that shows the background.

BFM's front face is closed over the eyes but open between the lips. The slit is one of the mesh's
boundary loops: the one whose centroid is nearest the inner-lip landmarks (Multi-PIE 60–67). It is
backed by a small dark pocket built from the loop itself, so that it follows identity and
expression:

    ring_k   = c + s (l_k − c) − d ẑ      the loop vertex l_k, pulled towards the loop centroid c
                                          by s and pushed back by d (ẑ: the model's front)
    centre   = c − 1.6 d ẑ
    faces:   the strip l_k → ring_k (two triangles per loop edge), then the fan ring → centre,

oriented so that the pocket's inside faces the viewer (the normals point out of the mouth).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

__all__ = ["boundary_loops", "mouth_loop", "mouth_backing", "MOUTH_COLOUR"]

MOUTH_COLOUR = (0.16, 0.06, 0.06)  # a dark mouth interior (linear RGB in [0, 1])
INNER_LIPS = tuple(range(60, 68))


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """The mesh's boundary loops (edges used by one triangle), each an ordered ``(L,)`` int64
    vertex array following the triangles' winding; loops through a vertex shared by several
    boundaries (non-manifold) are split where they can be, otherwise dropped."""
    f = np.asarray(faces, np.int64)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 0)
    key = np.minimum(e[:, 0], e[:, 1]) * (int(f.max()) + 1) + np.maximum(e[:, 0], e[:, 1])
    _, inv, count = np.unique(key, return_inverse=True, return_counts=True)
    border = e[count[inv] == 1]  # directed as in their triangle
    nxt: dict[int, list[int]] = defaultdict(list)
    for a, b in border:
        nxt[int(a)].append(int(b))
    loops, used = [], set()
    for a0, b0 in border:
        if (int(a0), int(b0)) in used:
            continue
        loop, a, b = [int(a0)], int(a0), int(b0)
        ok = True
        while True:
            used.add((a, b))
            if b == loop[0]:
                break
            loop.append(b)
            cand = [c for c in nxt[b] if (b, c) not in used]
            if not cand or len(loop) > len(border):
                ok = False
                break
            a, b = b, cand[0]
        if ok and len(loop) >= 3:
            loops.append(np.asarray(loop, np.int64))
    return loops


def mouth_loop(faces: np.ndarray, vertices: np.ndarray, landmark_idx: np.ndarray) -> np.ndarray | None:
    """The boundary loop of the lip slit, or None when the mesh has none.

    Args:
        faces: ``(F, 3)`` int triangles.
        vertices: ``(V, 3)`` any shape of the model (the mean shape).
        landmark_idx: ``(68,)`` the model's Multi-PIE landmark vertices.

    Returns:
        ``(L,)`` int64: the loop (not the outer boundary, i.e. not the longest loop) whose centroid
        is nearest the inner-lip landmarks, if that centroid lies within half a mouth width of them.
    """
    loops = boundary_loops(faces)
    if len(loops) < 2:
        return None
    v = np.asarray(vertices, np.float64)
    lm = v[np.asarray(landmark_idx, np.int64)]
    lips = lm[list(INNER_LIPS)].mean(0)
    width = float(np.linalg.norm(lm[54] - lm[48])) or 1.0
    outer = max(range(len(loops)), key=lambda i: len(loops[i]))
    best, best_d = None, np.inf
    for i, lp in enumerate(loops):
        if i == outer:
            continue
        d = float(np.linalg.norm(v[lp].mean(0) - lips))
        if d < best_d:
            best, best_d = lp, d
    return best if best is not None and best_d < 0.5 * width else None


def mouth_backing(vertices: np.ndarray, loop: np.ndarray, depth: float, shrink: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """The pocket behind the slit (see the module docstring).

    Args:
        vertices: ``(V, 3)`` the posed-in-canonical-frame mesh (+z towards the viewer).
        loop: ``(L,)`` the slit's boundary loop (:func:`mouth_loop`), in the winding of the face's
            triangles.
        depth: ``d``, how far back the ring sits (same unit as ``vertices``).
        shrink: ``s``.

    Returns:
        ``new_vertices (L + 1, 3)`` (the ring, then the centre; their indices continue after
        ``V``) and ``faces (3 L, 3)`` int64 indexing ``[vertices; new_vertices]``.
    """
    v = np.asarray(vertices, np.float64)
    lp = np.asarray(loop, np.int64)
    L, V = len(lp), len(v)
    c = v[lp].mean(0)
    z = np.array([0.0, 0.0, 1.0])
    ring = c + shrink * (v[lp] - c) - depth * z
    centre = c - 1.6 * depth * z
    k = np.arange(L)
    k1 = (k + 1) % L
    r, r1 = V + k, V + k1
    # the loop runs in the face's winding (a boundary edge a→b of a front-facing triangle), so the
    # pocket, seen through the hole, needs the opposite order of a → b: (b, a, ring_a) ...
    strip = np.concatenate([np.stack([lp[k1], lp[k], r], 1), np.stack([lp[k1], r, r1], 1)], 0)
    fan = np.stack([r1, r, np.full(L, V + L)], 1)
    return np.concatenate([ring, centre[None]], 0), np.concatenate([strip, fan], 0).astype(np.int64)
