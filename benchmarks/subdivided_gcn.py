"""Does the GCN gain from a denser mesh? The ICT face subdivided once (every edge split at its
midpoint: 9,409 → ~37k vertices, ≈ BFM's 35k) against the ICT face, on the same photos.

    python benchmarks/subdivided_gcn.py PHOTO [PHOTO ...] [--steps 120]

For each photo the coarse fit runs once, on the ICT face (the default pipeline); the subdivided
model is the same linear 3DMM (every basis, the mean albedo, the UVs and regions interpolated at
the midpoints), so the coarse coefficients carry over exactly and both GCNs start from the same
geometry, light and pose. Each then runs the per-image GCN refinement (default options, its own
mesh hierarchy) and is measured the same way: same-view masked PSNR of the refined render vs the
aligned photo (render ∩ face mask), the detail ratio of the GCN albedo baked alone (unlit frontal
render of the export, :mod:`facegcn.apps.evaluate.fidelity`), and the refinement time. Prints one
row per photo, the means, their ratio, the machine and the commit.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


def subdivide(data):
    """Midpoint subdivision of a :class:`~facegcn.morphable.ModelData` (parts dropped: the face
    surface only). New vertex = mean of the edge's two ends in every per-vertex array."""
    faces = np.asarray(data.faces, np.int64)
    V = len(data.mean_shape)
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    edges, inv = np.unique(e, axis=0, return_inverse=True)
    inv = inv.reshape(3, -1).T + V  # (F, 3) midpoint ids of edges (01, 12, 20)
    a, b = edges[:, 0], edges[:, 1]

    def per_vertex(x):  # (V, C)
        return np.concatenate([x, 0.5 * (x[a] + x[b])])

    def basis(B):  # (3V, K) row 3v + axis
        K = B.shape[1]
        return per_vertex(B.reshape(V, 3 * K)).reshape(-1, K)

    v0, v1, v2 = faces.T
    m01, m12, m20 = inv.T
    new_faces = np.stack([np.stack([v0, m01, m20], 1), np.stack([m01, v1, m12], 1),
                          np.stack([m20, m12, v2], 1), np.stack([m01, m12, m20], 1)], 1).reshape(-1, 3)
    uv = fuv = None
    if data.uv is not None:
        fu = np.asarray(data.faces_uv, np.int64)
        T = len(data.uv)
        eu = np.sort(np.concatenate([fu[:, [0, 1]], fu[:, [1, 2]], fu[:, [2, 0]]]), 1)
        uedges, uinv = np.unique(eu, axis=0, return_inverse=True)
        uinv = uinv.reshape(3, -1).T + T
        uv = np.concatenate([data.uv, 0.5 * (data.uv[uedges[:, 0]] + data.uv[uedges[:, 1]])])
        u0, u1, u2 = fu.T
        n01, n12, n20 = uinv.T
        fuv = np.stack([np.stack([u0, n01, n20], 1), np.stack([n01, u1, n12], 1),
                        np.stack([n20, n12, u2], 1), np.stack([n01, n12, n20], 1)], 1).reshape(-1, 3)
    regions = {}
    for k, idx in data.regions.items():
        inside = np.zeros(V, bool)
        inside[np.asarray(idx, np.int64)] = True
        regions[k] = np.flatnonzero(np.concatenate([inside, inside[a] & inside[b]]))
    skin = None if data.skin_weight is None else per_vertex(np.asarray(data.skin_weight)[:, None])[:, 0]
    return dataclasses.replace(
        data, name=data.name + "-subdivided", mean_shape=per_vertex(data.mean_shape), id_basis=basis(data.id_basis),
        exp_basis=basis(data.exp_basis), mean_albedo=per_vertex(data.mean_albedo),
        albedo_basis=basis(data.albedo_basis), faces=new_faces, regions=regions, uv=uv, faces_uv=fuv,
        skin_weight=skin, parts=None, recenter=data.recenter)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip() or "?"
    except OSError:
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", nargs="+")
    ap.add_argument("--steps", type=int, default=None, help="refinement steps (default: the config's)")
    args = ap.parse_args(argv)

    from facegcn.apps.evaluate.fidelity import measure_mesh
    from facegcn.coarse.fit import CoarseResult
    from facegcn.coarse.synthesis import FaceSynthesis
    from facegcn.config import Config
    from facegcn.evaluate.metrics import masked_psnr
    from facegcn.morphable import MorphableModel, load_model_data
    from facegcn.pipeline import Reconstructor
    from facegcn.pipeline.export import export_mesh
    from facegcn.refine.per_image import refine_texture

    cfg = Config.preset("default")
    cfg.progress = False
    if args.steps is not None:
        cfg.refine.steps = args.steps
    base = Reconstructor(cfg)
    dense = MorphableModel(subdivide(load_model_data("ict")))
    dense_syn = FaceSynthesis(dense, base.synthesis.camera)
    print(f"ICT face {base.model.n_vertices} vertices / {base.model.n_faces} triangles; subdivided "
          f"{dense.n_vertices} / {dense.n_faces}")
    rows = []
    for p in args.photos:
        photo, observations = base.observe(p)
        obs = observations[0]
        torch.manual_seed(cfg.seed)
        coarse = base.fit_coarse(obs)
        row = {"photo": Path(p).name}
        for name, model, syn in (("ict", base.model, base.synthesis), ("subdivided", dense, dense_syn)):
            with torch.no_grad():
                st = syn.state(coarse.coeffs)
                co = coarse if model is base.model else CoarseResult(coarse.coeffs, st, syn.render(st))
            torch.manual_seed(cfg.seed)
            t0 = time.perf_counter()
            ref = refine_texture(model, syn, obs, co, cfg.refine)
            row[f"refine_s_{name}"] = time.perf_counter() - t0
            mask = co.rendering.mask[0] * obs.face_mask.to(torch.float32)[None]
            row[f"psnr_{name}"] = masked_psnr(ref.render, obs.image, mask)
            if model is base.model:  # the export path knows the ICT model: detail of the GCN albedo alone
                from facegcn.pipeline.reconstructor import Reconstruction

                rec = Reconstruction(photo, obs, co, model, syn, cfg, refined_albedo=ref.albedo,
                                     refined_render=ref.render)
                mesh = export_mesh(rec, dataclasses.replace(cfg.output, formats=("obj",), texture="gcn"))
                row["detail_gcn_ict"] = measure_mesh(rec, mesh, yaws=(0.0,)).detail
        rows.append(row)
        print(f"{row['photo']:28s}  PSNR ict {row['psnr_ict']:.2f} dB, subdivided {row['psnr_subdivided']:.2f} dB;"
              f"  refine {row['refine_s_ict']:.1f} s vs {row['refine_s_subdivided']:.1f} s", flush=True)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "photo"}
    print(f"\nmeans over {len(rows)} photo(s): same-view PSNR ict {mean['psnr_ict']:.2f} dB, subdivided "
          f"{mean['psnr_subdivided']:.2f} dB (Δ {mean['psnr_subdivided'] - mean['psnr_ict']:+.2f} dB); refinement "
          f"{mean['refine_s_ict']:.1f} s vs {mean['refine_s_subdivided']:.1f} s "
          f"(×{mean['refine_s_subdivided'] / mean['refine_s_ict']:.2f})")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s), "
          f"torch {torch.__version__}, commit {_commit()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
