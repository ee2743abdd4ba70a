"""Synthetic meshes for tests and benchmarks (generic shapes, CCW-outward winding)."""

from __future__ import annotations

import math

import torch

__all__ = ["grid_faces", "relief_grid", "icosphere"]


def grid_faces(rows: int, cols: int) -> torch.Tensor:
    """Faces ``(2 (rows-1)(cols-1), 3)`` of a ``rows x cols`` vertex grid (row-major, row index
    growing with world -y, column index with world +x), CCW seen from +z."""
    r = torch.arange(rows - 1).view(-1, 1)
    c = torch.arange(cols - 1).view(1, -1)
    v00 = (r * cols + c).reshape(-1)
    v01 = v00 + 1
    v10 = v00 + cols
    v11 = v10 + 1
    # grid row grows downwards (−y): (v00, v10, v11) is CCW when seen from +z
    f1 = torch.stack([v00, v10, v11], 1)
    f2 = torch.stack([v00, v11, v01], 1)
    return torch.stack([f1, f2], 1).reshape(-1, 3).to(torch.int64)


def relief_grid(
    rows: int = 189,
    cols: int = 189,
    half_width: float = 0.9,
    half_height: float = 1.05,
    depth: float = 0.6,
    seed: int | None = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A face-sized displaced grid (default 35,721 vertices / 70,688 triangles, like the BFM):
    an elliptic dome with a bump in the middle and mild noise, facing +z, centred at the origin,
    units of decimetres (fills most of a 224² image with the default camera)."""
    y = torch.linspace(half_height, -half_height, rows).view(-1, 1).expand(rows, cols)
    x = torch.linspace(-half_width, half_width, cols).view(1, -1).expand(rows, cols)
    rr = (x / half_width) ** 2 + (y / half_height) ** 2
    z = depth * torch.sqrt(torch.clamp(1.0 - 0.7 * rr, min=0.0))
    z = z + 0.25 * torch.exp(-((x / 0.12) ** 2 + ((y + 0.05) / 0.3) ** 2))  # a "nose"
    if seed is not None:
        g = torch.Generator().manual_seed(seed)
        z = z + 0.003 * torch.randn(rows, cols, generator=g)
    verts = torch.stack([x, y, z - z.mean()], -1).reshape(-1, 3).float()
    return verts, grid_faces(rows, cols)


def icosphere(subdivisions: int = 3, radius: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit icosphere (outward CCW faces) scaled by ``radius``: ``(V, 3)`` float32, ``(F, 3)``."""
    t = (1.0 + math.sqrt(5.0)) / 2.0
    verts = [
        (-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0),
        (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
        (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1),
    ]  # fmt: skip
    faces = [
        (0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11),
        (1, 5, 9), (5, 11, 4), (11, 10, 2), (10, 7, 6), (7, 1, 8),
        (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9),
        (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1),
    ]  # fmt: skip
    v = [tuple(c / math.sqrt(sum(x * x for x in p)) for c in p) for p in verts]
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                p = [(v[a][i] + v[b][i]) / 2 for i in range(3)]
                n = math.sqrt(sum(c * c for c in p))
                v.append(tuple(c / n for c in p))
                cache[key] = len(v) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return torch.tensor(v, dtype=torch.float32) * radius, torch.tensor(faces, dtype=torch.int64)
