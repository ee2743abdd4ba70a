"""Benchmark of the per-photo coarse fit (facegcn.coarse.CoarseFitter) on the astronaut photo.

Workload: ``skimage.data.astronaut()`` observed once with the default front-end (not timed), then
the full per-image fit with the pipeline's default steps (60 rigid, 120 landmark, 150 photometric,
30 identity; ``--fast``: 30/60/40/0) on the ICT model (9,409 vertices, 18,460 triangles, 224²).

Reference (same run, same inputs, same seed): the identical fit with the naive pure-torch
rasterizer/interpolation backend (``Renderer(backend="torch")``, the any-device fallback) instead
of the numba kernels. Each side is warmed up with a short fit (numba JIT / cache load, identity
network load excluded) and timed ``--repeat`` times; we report the minimum (least disturbed on a
shared machine) and the median, plus per-stage seconds of the best run and the final landmark
error of both sides (they must agree: the backends compute the same images). torch runs with
one intra-op thread by default (``--threads``; more threads spin and slow down on a shared CPU).

    python benchmarks/coarse.py [--repeat 2] [--ref-repeat 1] [--fast] [--threads 1] [--device cpu|cuda] [--json PATH]

The last line printed is the headline: fit ms, reference ms and the speed ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace

import numpy as np
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(repeat: int = 2, ref_repeat: int = 1, fast: bool = False, device: str = "cpu", reference: bool = True) -> dict:
    from skimage import data

    from facegcn.cli.reconstruct import build_config
    from facegcn.io.image import photo_from_array
    from facegcn.pipeline import Reconstructor

    cfg = build_config(quiet=True, fast=fast, refine=False, device=device)
    rec = Reconstructor(cfg)
    photo = photo_from_array(data.astronaut())
    _, obs = rec.observe(photo)
    obs = obs[0]
    fitter = rec.fitter
    full_cfg = fitter.cfg
    dev = torch.device(device)
    steps = {k: getattr(full_cfg, f"steps_{k}") for k in ("rigid", "landmark", "photo", "identity")}

    def fit_once():
        torch.manual_seed(0)
        _sync(dev)
        t0 = time.perf_counter()
        res = rec.fit_coarse(obs)
        _sync(dev)
        return time.perf_counter() - t0, res

    def measure(backend: str, n: int) -> dict:
        fitter.syn.renderer.backend = backend
        fitter.cfg = replace(full_cfg, steps_rigid=2, steps_landmark=2, steps_photo=3, steps_identity=min(2, steps["identity"]))
        fit_once()  # warm-up: JIT / caches / identity network
        fitter.cfg = full_cfg
        runs = [fit_once() for _ in range(max(n, 1))]
        best_t, best_res = min(runs, key=lambda r: r[0])
        lm = best_res.state.landmarks[0].detach().cpu().numpy()
        return {
            "backend": backend,
            "best_ms": best_t * 1e3,
            "median_ms": statistics.median(r[0] for r in runs) * 1e3,
            "runs": len(runs),
            "stage_s": dict(best_res.timings),
            "landmark_px": float(np.linalg.norm(lm - obs.landmarks, axis=1).mean()),
        }

    ours = measure("auto", repeat)
    out = {"photo": "astronaut 512x512", "model": rec.model.name, "vertices": rec.model.n_vertices,
           "triangles": rec.model.n_faces, "steps": steps, "device": device, "threads": torch.get_num_threads(),
           "ours": ours}
    if reference:
        ref = measure("torch", ref_repeat)
        out["reference"] = ref
        out["ratio"] = ref["best_ms"] / ours["best_ms"]
    fitter.syn.renderer.backend = "auto"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--ref-repeat", type=int, default=1)
    ap.add_argument("--fast", action="store_true", help="the --fast step counts (30/60/40/0)")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads, both sides (default 1: on a shared CPU more threads spin and slow down)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    r = run(args.repeat, args.ref_repeat, args.fast, args.device, reference=not args.no_reference)
    s = r["steps"]
    print(f"{r['photo']}, model {r['model']} ({r['vertices']:,} vertices, {r['triangles']:,} triangles), steps "
          f"{s['rigid']}/{s['landmark']}/{s['photo']}/{s['identity']} (rigid/landmark/photo/identity), "
          f"{r['device']}, {r['threads']} torch threads, {os.cpu_count()} cores")
    sides = [("numba (ours)", r["ours"])] + ([("naive torch", r["reference"])] if "reference" in r else [])
    for label, d in sides:
        st = ", ".join(f"{k} {v:.2f} s" for k, v in d["stage_s"].items())
        print(f"{label:14s} fit: best {d['best_ms']:.0f} ms, median {d['median_ms']:.0f} ms of {d['runs']}; "
              f"stages {st}; landmark error {d['landmark_px']:.2f} px")
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps(r, indent=1))
    o = r["ours"]["best_ms"]
    if "reference" in r:
        print(f"coarse fit per photo (astronaut, ICT): {o:.0f} ms vs naive torch rasterizer "
              f"{r['reference']['best_ms']:.0f} ms = {r['ratio']:.2f}x faster")
    else:
        print(f"coarse fit per photo (astronaut, ICT): {o:.0f} ms")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
