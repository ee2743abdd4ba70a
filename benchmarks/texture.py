"""Benchmark of UV baking on CPU: vertex-colour bake, photo bake (facegcn.render), xatlas UV atlas.

Workloads:

* ``bake_vertex_colors`` of the ICT face model (9,409 vertices, 18,460 triangles, its own UVs)
  at 1024² and 2048², split into the UV rasterization (:func:`rasterize_uv`, the project's numba
  rasterizer) and the gutter fill (8 dilation rings + mean background).
* ``bake_from_photo`` of a 256² rendering of the ICT mean shape turned by 0.6 rad, with
  per-vertex visibility, |n_z| foreshortening, mirror fill and a foreground mask, at 1024².
* ``uv_atlas`` (xatlas) on a generated face-like relief grid: 67² vertices (8,712 triangles)
  cold (``cache=False``) and as a cache hit; ``--bfm`` adds the BFM-sized 189² grid
  (35,721 vertices / 70,688 triangles; tens of seconds).

Each timing is the minimum (least disturbed by other processes on a shared machine) and the
median of ``--repeat`` runs after one warm-up (numba JIT / cache load excluded).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch


def _time(fn, repeat: int, warmup: int = 1) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts) * 1e3, statistics.median(ts) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--bfm", action="store_true", help="also time xatlas on a BFM-sized grid")
    args = ap.parse_args()
    os.environ.setdefault("FACEGCN_CACHE", tempfile.mkdtemp(prefix="facegcn-bench-"))

    from facegcn.io.texture import uv_atlas
    from facegcn.morphable import load_model
    from facegcn.render import (
        PerspectiveCamera,
        bake_from_photo,
        bake_vertex_colors,
        fill_gutter,
        interpolate,
        rasterize,
        rasterize_uv,
        rigid_transform,
        vertex_normals,
        vertex_visibility,
    )
    from facegcn.render.meshgen import relief_grid

    m = load_model("ict")
    f, uv, fuv = m.faces.numpy(), m.uv.numpy(), m.faces_uv.numpy()
    v = m.mean_shape.numpy().astype(np.float64)
    col = 0.1 + 0.8 * (v - v.min(0)) / (v.max(0) - v.min(0))
    print(f"ICT: {m.n_vertices} vertices, {m.n_faces} triangles; torch threads {torch.get_num_threads()}")
    bake_ms = {}
    for S in (1024, 2048):
        tot = bake_ms[S] = _time(lambda: bake_vertex_colors(col, f, uv, fuv, S), args.repeat)
        ras = _time(lambda: rasterize_uv(uv, fuv, S), args.repeat)
        tri, _ = rasterize_uv(uv, fuv, S)
        tex = np.zeros((S, S, 3), np.float32)
        fil = _time(lambda: fill_gutter(tex, tri >= 0, 8), args.repeat)
        print(
            f"bake_vertex_colors {S}²: {tot[0]:.1f} ms (median {tot[1]:.1f}); "
            f"rasterize_uv {ras[0]:.1f} ms, fill_gutter {fil[0]:.1f} ms; coverage {np.mean(tri >= 0):.3f}"
        )

    cam = PerspectiveCamera(focal=1015.0 * 256 / 224, center=(128.0, 128.0), size=(256, 256))
    verts = rigid_transform(m.mean_shape[None], torch.tensor([[0.0, 0.6, 0.0]]))
    vpx = cam.to_screen(verts)
    frags = rasterize(vpx, m.faces, cam.size)
    img = interpolate(torch.from_numpy(col).float(), m.faces, frags)[0]
    vis = vertex_visibility(vpx, m.faces, frags)[0].numpy().astype(float)
    nz = vertex_normals(verts, m.faces)[0, :, 2].numpy()
    mirror = m.mirror_index().numpy()
    P = vpx[0].numpy()
    fb = bake_vertex_colors(np.full_like(col, 0.5), f, uv, fuv, 256)
    ph = _time(
        lambda: bake_from_photo(
            img, P, vis, f, uv, fuv, 1024, normals_z=nz, mirror=mirror, image_mask=frags.mask[0],
            fallback=fb,
        ),
        args.repeat,
    )  # fmt: skip
    print(f"bake_from_photo 1024² (mirror, mask, fallback): {ph[0]:.1f} ms (median {ph[1]:.1f})")

    grids = [67] + ([189] if args.bfm else [])
    for n in grids:
        gv, gf = relief_grid(n, n, seed=None)
        gv, gf = gv.numpy(), gf.numpy()
        t0 = time.perf_counter()
        uv_atlas(gv, gf, cache=True)  # cold, writes the cache
        cold = (time.perf_counter() - t0) * 1e3
        hit = _time(lambda: uv_atlas(gv, gf, cache=True), args.repeat, warmup=0)
        print(
            f"uv_atlas {len(gv)} vertices / {len(gf)} triangles: cold {cold:.0f} ms, "
            f"cache hit {hit[0]:.2f} ms"
        )
    print(
        f"headline: bake_vertex_colors ICT 1024² {bake_ms[1024][0]:.1f} ms, "
        f"bake_from_photo 1024² {ph[0]:.1f} ms"
    )


if __name__ == "__main__":
    main()
