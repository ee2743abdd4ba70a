"""What the GCN refinement's step count buys: same-view PSNR vs the exported mesh's fidelity.

    python benchmarks/refine_steps.py PHOTO_DIR [--steps 20 40 120] [--threads 2]
        [--variants 120:5e-3:model 40:2e-3:photo]

Each photo (sub-folders of PHOTO_DIR are people) is observed and coarse-fitted once; then, for each
step count, the per-image GCN refinement runs from the same seed, the texture is composed and the
mesh exported, and the fit's same-view masked PSNR of the refined render (``psnr_refined``, as in
``report.json``) is measured with the fidelity columns of ``facegcn evaluate`` (detail ratio, dlib
distance of the 0° / ±30° renders to the same photo and to the person's other photos, acceptance at
0.6, other people rejected) and the refinement's seconds. Prints one row per step count (means
over the photos) and the machine line. Not a timed test: the seconds are this run's.

``--variants STEPS:LR:START`` compares whole settings instead: ``START`` is ``photo`` (the default
start, :mod:`facegcn.refine.photo_start`) or ``model`` (the residual on the 3DMM albedo, as before
the photo start), e.g. ``120:5e-3:model 40:2e-3:photo`` (the defaults before and after).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
IMAGE_EXT = {".jpg", ".jpeg", ".png"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photo_dir", type=Path)
    ap.add_argument("--steps", type=int, nargs="+", default=[20, 40, 120])
    ap.add_argument("--variants", nargs="+", default=None, help="STEPS:LR:photo|model settings (instead of --steps)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    sys.path.insert(0, str(REPO))
    import torch

    torch.set_num_threads(max(a.threads, 1))
    from benchmarks.run_all import machine_info, machine_line
    from facegcn.apps.evaluate.fidelity import add_pair_columns, measure_mesh
    from facegcn.config import Config
    from facegcn.pipeline.export import export_mesh
    from facegcn.pipeline.reconstructor import Reconstruction, Reconstructor
    from facegcn.refine.per_image import refine_texture

    photos = sorted(p for p in a.photo_dir.rglob("*") if p.suffix.lower() in IMAGE_EXT)
    if not photos:
        raise SystemExit(f"{a.photo_dir}: no photos")
    cfg = Config.preset("default")
    cfg.progress = False
    if a.variants:
        settings = {}
        for v in a.variants:
            try:
                n, lr, start = v.split(":")
                if start not in ("photo", "model"):
                    raise ValueError
                settings[v] = replace(cfg.refine, steps=int(n), lr=float(lr), photo_start=start == "photo")
            except ValueError:
                raise SystemExit(f"--variants: expected STEPS:LR:photo|model, got {v!r}") from None
    else:
        settings = {str(n): replace(cfg.refine, steps=n) for n in a.steps}
    R = Reconstructor(cfg)
    per = []
    for p in photos:
        photo, obs = R.observe(p)
        o = obs[0]
        torch.manual_seed(cfg.seed)
        co = R.fit_coarse(o)
        meas, psnr, secs = {}, {}, {}
        for n, opts in settings.items():
            torch.manual_seed(cfg.seed)
            t = time.perf_counter()
            ref = refine_texture(R.model, R.synthesis, o, co, opts)
            secs[n] = time.perf_counter() - t
            rec = Reconstruction(photo, o, co, R.model, R.synthesis, cfg, face_index=0)
            rec.refined_albedo, rec.refined_render, rec.refine_history = ref.albedo, ref.render, ref.history
            rec.texture = R.texture(rec)
            psnr[n] = R.metrics(rec)["psnr_refined"]
            meas[n] = measure_mesh(rec, export_mesh(rec, replace(cfg.output, formats=("obj",))))
        per.append((p.parent.name, o.identity.double().numpy(), meas, psnr, secs))
        print(f"  {p.relative_to(a.photo_dir)}: " + ", ".join(f"{n} {psnr[n]:.2f} dB" for n in settings), flush=True)
    rows = [{} for _ in per]
    add_pair_columns(rows, [x[0] for x in per], [x[1] for x in per], [x[2] for x in per])
    w = max(5, *(len(n) for n in settings))
    print(f"\n{'steps':>{w}s} {'PSNR dB':>8s} {'detail':>6s} {'id photo':>8s} {'id other':>8s} {'accept':>6s} "
          f"{'reject':>6s} {'refine s':>8s}")
    for n in settings:
        same = np.nanmean([np.nanmean(list(x[2][n].photo_distance.values())) for x in per])
        print(f"{n:>{w}s} {np.mean([x[3][n] for x in per]):8.2f} {np.mean([x[2][n].detail for x in per]):6.3f} "
              f"{same:8.3f} {np.nanmean([r[f'idsame_{n}'] for r in rows]):8.3f} "
              f"{np.nanmean([r[f'idsame_accept_{n}'] for r in rows]):6.2f} "
              f"{np.nanmean([r[f'idother_reject_{n}'] for r in rows]):6.2f} {np.mean([x[4][n] for x in per]):8.1f}")
    print(machine_line(machine_info()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
