#!/usr/bin/env python
"""Derive where MediaPipe's 468 face-mesh points lie on a morphable model's surface.

    .venv/bin/python tools/make_dense_correspondence.py                      # ICT → the shipped file
    .venv/bin/python tools/make_dense_correspondence.py --model /path/BFM_model_front.mat --out bfm.npz

Method (see :mod:`facegcn.morphable.dense` for the file it writes):

1. ``--renders`` random views of the model with known geometry (:mod:`facegcn.frontend.dense_synth`:
   identity, expression, albedo × skin tone, yaw ±40°, pitch ±20°, roll ±10°, SH light, a neutral
   background), each run through MediaPipe's face mesh (``dense_landmarks`` from the box of the
   model's projected 68 landmarks + eye centres, 2 passes, as the front-end does).
2. Each predicted point is read back through the rasterizer's triangle-id buffer (4× supersampled)
   with exact perspective-correct barycentrics: a *sample* (triangle, barycentrics) when it falls
   on a visible face-model pixel (or within 1.5 px of one: the lid margin over the eyeball, the
   inner lip over the teeth), else a miss.
3. Per point, among its samples (at most 150, evenly spaced) the one whose projection best
   predicts the network's point in the renders that hit it (least mean Geman–McClure cost of the
   2-D error, σ = 2 px: a robust 2-D medoid) is kept, and refined: over its triangle and the
   adjacent ones, the barycentric point minimising that cost (a few Gauss–Newton steps of the
   IRLS-weighted least squares per triangle, clamped to the triangle).
4. Reliability ``weight = hit_rate / (1 + (spread / 2 px)²)`` with ``spread`` the median over all
   renders of the 2-D distance between the embedded point's projection and the network's point.

Prints the number of renders, the per-point spread and hit-rate statistics (overall and per
MediaPipe region) and the output path.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

SIGMA = 2.0  # px, Geman–McClure scale of the medoid cost and of the reliability
MAX_CANDIDATES = 150  # samples tried as the medoid per point (evenly spaced over the renders)


def _gm(e2: np.ndarray) -> np.ndarray:
    return e2 / (e2 + SIGMA**2)


def collect(model, n: int, seed0: int, log_every: int = 50):
    """Render, detect and locate; returns per-render arrays (R = renders kept)."""
    from facegcn.frontend.dense_synth import HeadRenderer, sample_view
    from facegcn.frontend.facemesh import dense_landmarks

    hr = HeadRenderer(model)
    preds, tris, barys, projs, yaws = [], [], [], [], []
    t0 = time.perf_counter()
    dropped = 0
    for i in range(n):
        r = hr.render(sample_view(model, seed0 + i))
        d = dense_landmarks(r.image, r.box_spec())
        if d.score < 0.5:
            dropped += 1
            continue
        tri, bary, _ = r.locate(d.points_photo)
        preds.append(d.points_photo[:, :2].astype(np.float32))
        tris.append(tri)
        barys.append(np.nan_to_num(bary).astype(np.float32))
        projs.append(r.project(r.world).astype(np.float32))
        yaws.append(np.rad2deg(r.view.angles[1]))
        if log_every and (i + 1) % log_every == 0:
            print(f"  {i + 1}/{n} renders, {time.perf_counter() - t0:.0f} s", flush=True)
    if not preds:
        raise SystemExit(f"all {n} renders dropped: the face-mesh network found no face on this model's renders")
    print(f"renders: {n} ({dropped} dropped: face score < 0.5), {time.perf_counter() - t0:.0f} s; "
          f"yaw {min(yaws):.0f}..{max(yaws):.0f} deg")
    return np.stack(preds), np.stack(tris), np.stack(barys), np.stack(projs)


def _refine(faces, adj, projs, preds, t, b, steps: int = 4):
    """Best barycentric point on triangle ``t`` and its neighbours for one point (robust 2-D cost)."""
    best = (np.inf, t, b)
    for tt in [t] + adj[t]:
        c = projs[:, faces[tt]]  # (R, 3, 2)
        lam = b.copy() if tt == t else np.full(3, 1 / 3)
        for _ in range(steps):
            p = np.einsum("rkd,k->rd", c, lam)
            e = p - preds
            w = SIGMA**2 / (SIGMA**2 + (e**2).sum(1)) ** 2  # IRLS weights of Geman–McClure
            J = c[:, 1:] - c[:, :1]  # (R, 2 params, 2): d p / d (λ1, λ2)
            A = np.einsum("r,rid,rjd->ij", w, J, J) + 1e-9 * np.eye(2)
            g = np.einsum("r,rid,rd->i", w, J, e)
            step = np.linalg.solve(A, -g)
            l12 = lam[1:] + step
            lam = np.clip(np.array([1 - l12.sum(), *l12]), 0, None)
            lam /= lam.sum()
        cost = _gm(((np.einsum("rkd,k->rd", c, lam) - preds) ** 2).sum(1)).mean()
        if cost < best[0]:
            best = (cost, tt, lam)
    return best[1], best[2]


def aggregate(model, preds, tris, barys, projs):
    """Per point: robust 2-D medoid of its samples, refined; spread, hit rate, weight."""
    faces = model.faces.cpu().numpy()
    R = len(preds)
    adj: dict[int, list[int]] = {}
    from collections import defaultdict

    by_vertex = defaultdict(set)
    for f, (a, b, c) in enumerate(faces):
        for v in (a, b, c):
            by_vertex[v].add(f)
    out_t, out_b = np.zeros(468, np.int64), np.zeros((468, 3))
    spread, hit, spread3d = np.zeros(468), np.zeros(468), np.full(468, np.nan)
    mean = model.mean_shape.detach().cpu().numpy().astype(np.float64)
    for j in range(468):
        h = np.flatnonzero(tris[:, j] >= 0)
        hit[j] = len(h) / R
        if len(h) == 0:
            out_t[j], out_b[j], spread[j] = 0, 1 / 3, np.inf
            continue
        c_idx = h if len(h) <= MAX_CANDIDATES else h[np.linspace(0, len(h) - 1, MAX_CANDIDATES).astype(int)]
        ct, cb = tris[c_idx, j], barys[c_idx, j].astype(np.float64)  # candidates (C,)
        pr = projs[h]  # (Rh, V, 2) renders that hit
        cand = np.einsum("rckd,ck->crd", pr[:, faces[ct]], cb)  # (C, Rh, 2)
        cost = _gm(((cand - preds[h, j][None]) ** 2).sum(-1)).mean(1)
        k = int(np.argmin(cost))
        t = int(ct[k])
        if t not in adj:
            adj[t] = sorted(set().union(*(by_vertex[v] for v in faces[t])) - {t})
        t, b = _refine(faces, adj, pr, preds[h, j], t, cb[k])
        out_t[j], out_b[j] = t, b
        p_all = np.einsum("rkd,k->rd", projs[:, faces[t]], b)
        spread[j] = np.median(np.linalg.norm(p_all - preds[:, j], axis=1))
        samples = np.einsum("ckd,ck->cd", mean[faces[tris[h, j]]], barys[h, j].astype(np.float64))
        spread3d[j] = np.median(np.linalg.norm(samples - mean[faces[t]].T @ b, axis=1))
    weight = hit / (1.0 + (spread / SIGMA) ** 2)
    return out_t, out_b, spread, hit, weight, spread3d


def report(spread, hit, weight, spread3d) -> None:
    from facegcn.frontend.facemesh_regions import REGIONS, region_mask

    def q(a):
        return "median {:.2f}, p10 {:.2f}, p90 {:.2f}, max {:.2f}".format(*np.percentile(a, [50, 10, 90, 100]))

    print(f"spread (px at 224², median |projection − network| over renders): {q(spread)}")
    print(f"hit rate (network point on a visible face pixel): {q(hit)}")
    print(f"weight: {q(weight)}")
    print(f"3-D spread of the samples on the mean shape (mm, median distance to the chosen point): "
          f"{q(spread3d[np.isfinite(spread3d)] * 100.0)}")
    for name in [*REGIONS, "inner"]:
        m = region_mask(name)
        print(f"  {name:14s} n={m.sum():3d}  spread median {np.median(spread[m]):.2f} px  "
              f"({np.nanmedian(spread3d[m]) * 100:.1f} mm)  hit {np.median(hit[m]):.2f}  "
              f"weight median {np.median(weight[m]):.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--model", default="ict", help='"ict" or a model file (BFM_model_front.mat, ICT-format .npz)')
    ap.add_argument("--renders", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0, help="first view seed (held-out tests use seeds ≥ 1,000,000)")
    ap.add_argument("--out", type=Path, default=None, help="default: the package's data/dense468_<model>.npz")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from facegcn.morphable import load_model
    from facegcn.morphable.dense import correspondence_path, write_correspondence
    from facegcn.render import set_num_threads

    set_num_threads(a.threads)
    model = load_model(a.model)
    print(f"model {model.name}: {model.n_vertices} vertices, {model.n_faces} triangles"
          f"{' (+ closing parts drawn)' if model.parts is not None else ''}")
    preds, tris, barys, projs = collect(model, a.renders, a.seed)
    t0 = time.perf_counter()
    tri, bary, spread, hit, weight, spread3d = aggregate(model, preds, tris, barys, projs)
    print(f"aggregated in {time.perf_counter() - t0:.0f} s")
    report(spread, hit, weight, spread3d)
    out = a.out or correspondence_path(model.name)
    write_correspondence(out, model, tri, bary, weight, spread_px=spread, hit_rate=hit, n_renders=len(preds))
    print(f"wrote {out} ({out.stat().st_size / 1024:.1f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
