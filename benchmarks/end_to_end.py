"""Benchmark of the whole reconstruction of one photo, and of the GCN texture refinement alone.

Workload: ``skimage.data.astronaut()`` (512², one face) with the pipeline's default settings (ICT
model, dlib front-end, coarse fit 60/120/150/30 steps, per-image GCN refinement 120 steps; ``--fast``:
30/60/40/0 and 30), CPU unless ``--device cuda``.

* ``reconstruct``: ``Reconstructor(photo)`` (front-end + coarse fit + refinement + metrics) plus
  ``Reconstructor.write`` (OBJ/PLY/GLB with a 1024² baked texture, coeffs, figures, report) into
  a temporary folder;
* ``refine``: ``refine_texture`` alone on the best run's coarse result.

Reference (same run, same inputs, same seeds): the same work with the naive pure-torch rasterizer
backend (``Renderer(backend="torch")``) in both the coarse fit and the refinement. Each side is
warmed up with a short run (numba JIT, the mesh hierarchy, the identity network and the front-end
models load outside the timings), then timed ``--repeat`` (``--ref-repeat``) times; the minimum and
the median are reported; torch runs with one intra-op thread unless ``--threads`` says otherwise.
The last printed line is the headline.

    python benchmarks/end_to_end.py [--repeat 2] [--ref-repeat 1] [--fast] [--no-reference] [--threads 1] [--device cpu] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace

import torch


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def run(repeat: int = 2, ref_repeat: int = 1, fast: bool = False, device: str = "cpu", reference: bool = True) -> dict:
    from skimage import data

    from facegcn.cli.reconstruct import build_config
    from facegcn.apps.evaluate.photos import refine_available
    from facegcn.io.image import photo_from_array
    from facegcn.pipeline import Reconstructor

    has_refine = refine_available()
    cfg = build_config(quiet=True, fast=fast, refine=has_refine, device=device)
    rec = Reconstructor(cfg)
    dev = torch.device(device)
    photo = photo_from_array(data.astronaut())
    full_fit, full_refine_steps = rec.fitter.cfg, rec.cfg.refine.steps
    tmp = tempfile.TemporaryDirectory(prefix="facegcn-bench-")

    def once():
        torch.manual_seed(0)
        _sync(dev)
        t0 = time.perf_counter()
        res = rec(photo)[0]
        _sync(dev)
        t1 = time.perf_counter()
        rec.write(res, tmp.name)
        t2 = time.perf_counter()
        return {"reconstruct_s": t1 - t0, "write_s": t2 - t1, "total_s": t2 - t0, "timings": dict(res.timings)}, res

    def refine_once(res):
        _sync(dev)
        t0 = time.perf_counter()
        rec.refine(res.observation, res.coarse)
        _sync(dev)
        return time.perf_counter() - t0

    def measure(backend: str, n: int) -> dict:
        rec.fitter.syn.renderer.backend = backend
        # warm-up with a few steps of everything
        rec.fitter.cfg = replace(full_fit, steps_rigid=2, steps_landmark=2, steps_photo=3,
                                 steps_identity=min(2, full_fit.steps_identity))
        rec.cfg.refine.steps = 3 if has_refine else 0
        once()
        rec.fitter.cfg, rec.cfg.refine.steps = full_fit, full_refine_steps
        runs = [once() for _ in range(max(n, 1))]
        best, best_res = min(runs, key=lambda r: r[0]["total_s"])
        d = {"backend": backend, "runs": len(runs), "best_ms": best["total_s"] * 1e3,
             "median_ms": statistics.median(r[0]["total_s"] for r in runs) * 1e3,
             "reconstruct_ms": best["reconstruct_s"] * 1e3, "write_ms": best["write_s"] * 1e3,
             "stages_s": best["timings"], "psnr_coarse": best_res.metrics.get("psnr_coarse"),
             "psnr_refined": best_res.metrics.get("psnr_refined")}
        if has_refine:
            rt = [refine_once(best_res) for _ in range(max(n, 1))]
            d["refine_best_ms"] = min(rt) * 1e3
            d["refine_median_ms"] = statistics.median(rt) * 1e3
        return d

    out = {"photo": "astronaut 512x512", "model": rec.model.name, "device": device, "threads": torch.get_num_threads(),
           "coarse_steps": [full_fit.steps_rigid, full_fit.steps_landmark, full_fit.steps_photo, full_fit.steps_identity],
           "refine_steps": full_refine_steps if has_refine else 0, "refine_available": has_refine}
    out["ours"] = measure("auto", repeat)
    if reference:
        out["reference"] = measure("torch", ref_repeat)
        out["ratio"] = out["reference"]["best_ms"] / out["ours"]["best_ms"]
        if has_refine:
            out["refine_ratio"] = out["reference"]["refine_best_ms"] / out["ours"]["refine_best_ms"]
    rec.fitter.syn.renderer.backend = "auto"
    tmp.cleanup()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--ref-repeat", type=int, default=1)
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads, both sides (default 1: on a shared CPU more threads spin and slow down)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    r = run(args.repeat, args.ref_repeat, args.fast, args.device, reference=not args.no_reference)
    cs = "/".join(str(s) for s in r["coarse_steps"])
    print(f"{r['photo']}, model {r['model']}, coarse steps {cs}, refinement steps {r['refine_steps']}"
          f"{'' if r['refine_available'] else ' (refinement module not available)'}, {r['device']}, "
          f"{r['threads']} torch threads, {os.cpu_count()} cores")
    sides = [("numba (ours)", r["ours"])] + ([("naive torch", r["reference"])] if "reference" in r else [])
    for label, d in sides:
        st = ", ".join(f"{k} {v:.2f}" for k, v in d["stages_s"].items() if not k.startswith("coarse_"))
        ref = f"; refine alone best {d['refine_best_ms']:.0f} ms" if "refine_best_ms" in d else ""
        print(f"{label:14s} reconstruct+write: best {d['best_ms']:.0f} ms (median {d['median_ms']:.0f} of {d['runs']}), "
              f"write {d['write_ms']:.0f} ms; stages [s] {st}{ref}")
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps(r, indent=1))
    o = r["ours"]
    if "refine_ratio" in r:
        print(f"refinement alone: {o['refine_best_ms']:.0f} ms vs naive torch rasterizer "
              f"{r['reference']['refine_best_ms']:.0f} ms = {r['refine_ratio']:.2f}x faster")
    if "reference" in r:
        print(f"end-to-end reconstruct+write (astronaut): {o['best_ms']:.0f} ms vs naive torch rasterizer "
              f"{r['reference']['best_ms']:.0f} ms = {r['ratio']:.2f}x faster")
    else:
        print(f"end-to-end reconstruct+write (astronaut): {o['best_ms']:.0f} ms")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
