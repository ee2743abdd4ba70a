"""GPU check and benchmark: the whole pipeline with ``--device cuda`` against the CPU path.

One prepared run (a few minutes on one GPU; a machine lent for minutes, so nothing here is
interactive):

1. CUDA present? Otherwise print one line and exit with status 2 (nothing else is imported).
2. CPU reference (after a one-step warm-up: numba kernels): ``Reconstructor`` (default preset, 1 thread) on the demo photo
   (``skimage.data.astronaut()``): coefficients, metrics, stage seconds.
3. CUDA: the same with ``device="cuda"``: one untimed warm-up (1 step per stage: CUDA context,
   kernels, caches), then ``--repeat`` timed reconstructions (+ writing the files), stage seconds
   (``torch.cuda.synchronize`` around each).
4. Checks, CUDA vs CPU:
   * forward model, same coefficients on both devices (deterministic): render and landmarks must
     agree to 1e-3 (float rounding and the torch vs numba rasteriser only);
   * the fits (an optimisation is chaotic at the level of float rounding: on the CPU alone a
     1e-3 px perturbation of the landmarks moves the refined PSNR by up to ±1 dB): landmark NME
     within 0.004, coarse PSNR within 0.5 dB, refined PSNR within 1.5 dB, pose (angles within
     0.03 rad, translation within 0.05 dm) — the same fit, not the same digits;
   * host syncs: one photometric step of the coarse fit and one refinement step run under
     ``torch.cuda.set_sync_debug_mode("warn")``; the synchronising calls are counted and the first
     few printed (expected: the rasteriser's one ``cumsum(...).cpu()`` that sizes its candidate
     buffer, nothing in the refinement loop, which renders through a fixed sparse operator).
5. Throughput: ``--batch`` photos through one ``Reconstructor`` (models loaded once), photos per
   minute; and ``facegcn batch --device cuda`` on the same photos (whole command, start-up
   included).

The last line: CUDA reconstruct seconds, CPU seconds, speed-up, check verdict, photos/min.

    python benchmarks/gpu.py [--repeat 2] [--batch 8] [--fast] [--no-cpu] [--profile] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


DEVICE = "cuda"  # --dry-run-cpu: the same script with "cpu" (checks the script itself, no GPU needed)


def _sync():
    import torch

    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def _config(device: str, fast: bool, one_step: bool = False):
    from facegcn.config import Config

    cfg = Config.preset("fast" if fast else "default")
    cfg.device, cfg.progress, cfg.threads = device, False, 1
    if one_step:
        for k in ("steps_rigid", "steps_landmark", "steps_photo", "steps_identity"):
            setattr(cfg.coarse, k, 1)
        cfg.refine.steps = 1
    return cfg


def _reconstruct(rec, photo, device: str, out: str | None = None) -> tuple[object, dict]:
    t0 = time.perf_counter()
    _sync()
    face = rec(photo)[0]
    _sync()
    t1 = time.perf_counter()
    if out is not None:
        rec.write(face, out)
    t2 = time.perf_counter()
    return face, {**{k: v for k, v in face.timings.items() if k == "coarse_s" or not k.startswith("coarse_")},
                  "reconstruct_s": t1 - t0, "write_s": t2 - t1}


def forward_model_check(cpu_rec, gpu_rec, face) -> dict:
    """Render + landmarks of the same coefficients on both devices (no optimisation involved)."""
    import torch

    x = cpu_rec.model.join(face.coarse.coeffs).detach().cpu()
    out = {}
    with torch.no_grad():
        for name, rec in (("cpu", cpu_rec), ("cuda", gpu_rec)):
            c = rec.model.split(x.to(rec.device))
            st = rec.synthesis.state(c)
            r = rec.synthesis.render(st)
            out[name] = (r.image.cpu(), r.mask.cpu(), st.landmarks.cpu())
    (ic, mc, lc), (ig, mg, lg) = out["cpu"], out["cuda"]
    both = (mc * mg).bool().expand_as(ic)
    return {"image_max_abs": float((ic - ig).abs()[both].max()) if both.any() else 0.0,
            "mask_differs_px": int((mc != mg).sum()), "landmarks_max_px": float((lc - lg).abs().max())}


@contextlib.contextmanager
def _short_loops(rec, photo, *, landmark: int, photometric: int, refine: int):
    """``(label, fn)`` pairs that run a short coarse fit and a short refinement of the photo's face
    (the refinement from a fit of the same length, made first); the step counts are restored after."""
    from facegcn.coarse.fit import FitConfig

    _, obs = rec.observe(photo)
    obs = obs[0]
    old_cfg, old_steps = rec.fitter.cfg, rec.cfg.refine.steps
    try:
        rec.fitter.cfg = FitConfig(steps_rigid=1, steps_landmark=landmark, steps_photo=photometric, steps_identity=0)
        rec.cfg.refine.steps = refine
        coarse = rec.fit_coarse(obs)
        yield ((f"coarse, 1 rigid + {landmark} landmark + {photometric} photometric steps", lambda: rec.fit_coarse(obs)),
               (f"refinement, {refine} steps", lambda: rec.refine(obs, coarse)))
    finally:
        rec.fitter.cfg, rec.cfg.refine.steps = old_cfg, old_steps


def sync_count(rec, photo) -> dict:
    """Synchronising calls in a 5-step coarse fit (3 photometric steps) and 3 refinement steps (CUDA)."""
    import torch

    res = {}
    with _short_loops(rec, photo, landmark=1, photometric=3, refine=3) as loops:
        for stage, fn in loops:
            _sync()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    fn()
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            msgs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()]
            res[stage] = {"count": len(msgs), "first": msgs[:4]}
    return res


def profile_steps(rec, photo, out_dir: str | None) -> dict:
    """Where a CUDA step's time goes: 10 landmark + 10 photometric coarse steps and 10 refinement
    steps under ``torch.profiler``: wall seconds, GPU-busy seconds (the kernels' own time), kernel
    launches per step, and the top host-side ops (the table also goes to ``out_dir``)."""
    from torch.profiler import ProfilerActivity, profile

    res = {}
    with _short_loops(rec, photo, landmark=10, photometric=10, refine=10) as loops:
        for stage, fn in loops:
            _sync()
            t = time.perf_counter()
            with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEVICE == "cuda" else [])) as prof:
                fn()
                _sync()
            wall = time.perf_counter() - t
            ev = prof.key_averages()
            dev_us = sum(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0)) for e in ev)
            launches = sum(e.count for e in ev if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
            res[stage] = {"wall_s": wall, "gpu_busy_s": dev_us / 1e6, "kernel_launches": launches}
            print(f"profile, {stage}: wall {wall:.2f} s (under the profiler), GPU busy {dev_us / 1e6:.3f} s, "
                  f"{launches} kernel launches", flush=True)
            table = ev.table(sort_by="self_cpu_time_total", row_limit=15)
            print(table, flush=True)
            if out_dir:
                with open(Path(out_dir) / "gpu_profile.txt", "a") as f:
                    f.write(f"== {stage}\n{table}\n")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8, help="photos for the throughput figures")
    ap.add_argument("--fast", action="store_true", help="the fast preset (fewer steps) on both devices")
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU reference (no comparison)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--profile", action="store_true", help="profile 10-step runs of each loop (torch.profiler)")
    ap.add_argument("--dry-run-cpu", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    import torch

    global DEVICE
    if args.dry_run_cpu:
        DEVICE = "cpu"
    elif not torch.cuda.is_available():
        print("gpu benchmark: CUDA is not available on this machine (torch "
              f"{torch.__version__}, cuda build {torch.version.cuda}); nothing was run")
        return 2
    torch.set_num_threads(1)
    from skimage import data

    from facegcn.io.image import photo_from_array
    from facegcn.pipeline import Reconstructor

    from facegcn.evaluate.machine import machine_line

    name = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "CPU (dry run)"
    print(machine_line(), flush=True)
    print(f"GPU: {name}; torch {torch.__version__} (CUDA {torch.version.cuda}); CPU threads 1; "
          f"{'fast' if args.fast else 'default'} preset", flush=True)
    photo = photo_from_array(data.astronaut())
    result: dict = {"gpu": name, "preset": "fast" if args.fast else "default"}
    tmp = tempfile.TemporaryDirectory(prefix="facegcn-gpu-")

    # CUDA: warm-up, then timed runs
    t = time.perf_counter()
    warm = Reconstructor(_config(DEVICE, args.fast, one_step=True))
    warm(photo)
    print(f"CUDA warm-up (context, kernels, caches): {time.perf_counter() - t:.1f} s", flush=True)
    gpu = Reconstructor(_config(DEVICE, args.fast))
    if DEVICE == "cpu":  # dry run: take the any-device (CUDA) torch rasteriser, not numba
        warm.synthesis.renderer.backend = gpu.synthesis.renderer.backend = "torch"
    runs = [_reconstruct(gpu, photo, DEVICE, tmp.name) for _ in range(max(args.repeat, 1))]
    gface, _ = runs[-1]
    gst = {k: statistics.median(r[1][k] for r in runs) for k in runs[0][1]}
    result["cuda_stages_s"] = gst
    print("CUDA stages [s, median of %d]: " % len(runs) + ", ".join(f"{k} {v:.2f}" for k, v in gst.items()), flush=True)
    sub = {k: v for k, v in gface.timings.items() if k.startswith("coarse_") and k != "coarse_s"}
    result["cuda_coarse_parts_s"] = sub
    print("CUDA coarse parts [s, last run]: " + ", ".join(f"{k[7:-2]} {v:.2f}" for k, v in sub.items()), flush=True)

    ok = True
    if not args.no_cpu:
        t = time.perf_counter()
        Reconstructor(_config("cpu", args.fast, one_step=True))(photo)  # numba kernels, caches
        print(f"CPU warm-up (numba kernels, caches): {time.perf_counter() - t:.1f} s", flush=True)
        cpu = Reconstructor(_config("cpu", args.fast))
        cface, cst = _reconstruct(cpu, photo, "cpu")
        result["cpu_stages_s"] = cst
        print("CPU stages [s]: " + ", ".join(f"{k} {v:.2f}" for k, v in cst.items()), flush=True)
        fm = forward_model_check(cpu, gpu, cface)
        result["forward_model"] = fm
        ok_fm = fm["image_max_abs"] <= 1e-3 and fm["landmarks_max_px"] <= 1e-3 and fm["mask_differs_px"] <= 20
        print(f"forward model, same coefficients: render max |diff| {fm['image_max_abs']:.2e}, mask differs on "
              f"{fm['mask_differs_px']} px, landmarks max {fm['landmarks_max_px']:.2e} px -> {'ok' if ok_fm else 'FAIL'}")
        mc, mg = cface.metrics, gface.metrics
        cc, gc = cface.coarse.coeffs, gface.coarse.coeffs
        d_ang = float((cc.angles.cpu() - gc.angles.cpu()).abs().max())
        d_tr = float((cc.trans.cpu() - gc.trans.cpu()).abs().max())
        checks = {"landmark_nme": (abs(mc["landmark_nme"] - mg["landmark_nme"]), 0.004),
                  "psnr_coarse": (abs(mc["psnr_coarse"] - mg["psnr_coarse"]), 0.5),
                  "psnr_refined": (abs(mc.get("psnr_refined", 0) - mg.get("psnr_refined", 0)), 1.5),
                  "angles_rad": (d_ang, 0.03), "trans_dm": (d_tr, 0.05)}
        result["fit_checks"] = {k: {"diff": d, "tol": tol} for k, (d, tol) in checks.items()}
        ok_fit = all(d <= tol for d, tol in checks.values())
        for k in ("landmark_nme", "psnr_coarse", "psnr_refined", "identity_cos_photo_refined"):
            print(f"  {k:28s} cpu {mc.get(k, float('nan')):8.4f}  cuda {mg.get(k, float('nan')):8.4f}")
        print("fit, CUDA vs CPU: " + ", ".join(f"{k} |diff| {d:.4f} (tol {tol})" for k, (d, tol) in checks.items())
              + f" -> {'ok' if ok_fit else 'FAIL'}", flush=True)
        ok = ok_fm and ok_fit
        result["cpu_reconstruct_s"] = cst["reconstruct_s"]

    syncs = sync_count(gpu, photo) if DEVICE == "cuda" else {}
    result["syncs"] = syncs
    for stage, d in syncs.items():
        print(f"host syncs, {stage}: {d['count']}" + (f" (first: {' | '.join(d['first'])})" if d["first"] else ""))

    if args.profile:
        result["profile"] = profile_steps(gpu, photo, str(Path(args.json).parent) if args.json else None)

    # throughput: one Reconstructor, models loaded once
    n = max(args.batch, 1)
    _sync()
    t = time.perf_counter()
    for _ in range(n):
        gpu(photo)
    _sync()
    ppm = n / (time.perf_counter() - t) * 60.0
    result["inprocess_photos_per_min"] = ppm
    print(f"throughput, one Reconstructor (models loaded once), {n} photos: {ppm:.1f} photos/min", flush=True)
    folder = Path(tmp.name) / "batch"
    folder.mkdir()
    from PIL import Image

    for i in range(n):
        Image.fromarray(data.astronaut()).save(folder / f"photo_{i:02d}.png")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p))
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "facegcn", "batch", str(folder), "-o", str(Path(tmp.name) / "bout"),
                        "--device", DEVICE, "-q"], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    done = len(list((Path(tmp.name) / "bout").rglob("report.json")))
    result["batch_command"] = {"photos": n, "done": done, "wall_s": wall, "rc": p.returncode,
                               "photos_per_min": done / wall * 60.0}
    print(f"facegcn batch --device {DEVICE}, {n} photos: {done} done in {wall:.1f} s = {done / wall * 60.0:.1f} photos/min"
          + (f" [exit {p.returncode}: {(p.stderr or p.stdout)[-300:]}]" if p.returncode else ""), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    tmp.cleanup()
    cpu_s = result.get("cpu_reconstruct_s")
    speed = f", CPU {cpu_s:.1f} s = {cpu_s / gst['reconstruct_s']:.1f}x" if cpu_s else ""
    print(f"gpu: reconstruct {gst['reconstruct_s']:.2f} s on {name}{speed}; checks "
          f"{'ok' if ok else 'FAILED'}; {ppm:.1f} photos/min in-process")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
