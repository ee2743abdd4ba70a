#!/usr/bin/env python
"""Regenerate the README's pictures from a real run (nothing is drawn by hand).

    .venv/bin/python scripts/make_readme_figures.py                 # full settings, ~minutes on a CPU
    .venv/bin/python scripts/make_readme_figures.py --fast          # preview settings
    .venv/bin/python scripts/make_readme_figures.py --video         # + a strip from the video pipeline

Writes into ``--out`` (default ``docs/figures``):

* ``demo_figure.png``   — the reconstruction of skimage's public-domain astronaut photo (NASA):
  photo | coarse 3DMM fit | GCN-refined texture | geometry | landmarks (the pipeline's figure.png);
* ``demo_overlay.png``  — the final render composited on the photo (the pipeline's overlay.png);
* ``demo_views.png``    — the photo's face, then the exported textured mesh (``mesh.obj``/``.glb``
  as written: closed head, texel-resolution albedo texture) at −30°, 0° and +30° of yaw under a
  soft viewer light, rendered with facegcn's own textured renderer;
* ``views_<stem>.png``  — with ``--photos DIR``: the same row for each of your photos (these are
  not committed: the repository ships only public-domain photos);
* ``video_strip.png``   — with ``--video``: 4 frames of ``facegcn video`` on a synthetic clip made
  from the same photo (photo | smoothed render);
* ``figures.json``      — provenance: settings, metrics, timings, git commit, versions;

and prints the Markdown to paste into the README.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _video_strip(rec, work: Path, n_frames: int = 24, picks=(0, 6, 12, 18)) -> tuple[np.ndarray, dict]:
    from PIL import Image
    from skimage import data

    from facegcn.apps.video import VideoOptions, VideoWriter, read_video, reconstruct_video

    clip = work / "clip.mp4"
    img = Image.fromarray(data.astronaut())
    w = VideoWriter(clip, 15, quality=8)
    for t in range(n_frames):  # a slow drift and zoom of a 256² window
        ph = 2 * math.pi * t / n_frames
        z, dx, dy = 1.0 + 0.05 * math.sin(ph), 8 * math.sin(ph), 5 * math.cos(ph)
        half = 128 / z
        w.write(np.asarray(img.transform((256, 256), Image.EXTENT,
                                         (220 + dx - half, 125 + dy - half, 220 + dx + half, 125 + dy + half), Image.BILINEAR)))
    w.close()
    res = reconstruct_video(rec, clip, work / "video", VideoOptions(mesh_format="none"), progress=True)
    _, frames = read_video(res.files["video"])
    got = [f for i, f in enumerate(frames) if i in picks]
    strip = np.concatenate(got, axis=0) if len(got) == 1 else np.concatenate(
        [np.concatenate(got[: len(got) // 2], axis=1), np.concatenate(got[len(got) // 2:], axis=1)], axis=0)
    return strip, {"frames": res.n_frames, "jitter_raw": res.jitter_raw, "jitter_smoothed": res.jitter_smoothed,
                   "timings": res.timings}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "figures", help="output folder (default docs/figures)")
    ap.add_argument("--fast", action="store_true", help="the pipeline's preview settings (fewer steps)")
    ap.add_argument("--no-refine", action="store_true", help="skip the GCN texture refinement")
    ap.add_argument("--video", action="store_true", help="also run the video pipeline and save a strip")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--photos", type=Path, help="also write views_<stem>.png for each photo of this folder")
    args = ap.parse_args(argv)

    from PIL import Image
    from skimage import data

    import facegcn
    from facegcn.cli.reconstruct import build_config
    from facegcn.pipeline import Reconstructor
    from facegcn.pipeline.export import export_mesh
    from facegcn.pipeline.figures import face_crop, yaw_views

    def views(r) -> np.ndarray:
        return yaw_views(export_mesh(r, r.config.output), first=face_crop(r))

    args.out.mkdir(parents=True, exist_ok=True)
    cfg = build_config(fast=args.fast, refine=not args.no_refine, device=args.device)
    t0 = time.perf_counter()
    rec = Reconstructor(cfg)
    photo = data.astronaut()  # public domain (NASA), shipped with scikit-image
    results = rec(photo)
    result = results[0]
    made: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="facegcn-figures-") as tmp:
        work = Path(tmp)
        files = rec.write(result, work / "demo")
        for key, name in (("figure", "demo_figure.png"), ("overlay", "demo_overlay.png")):
            shutil.copyfile(files[key], args.out / name)
            made[key] = name
        Image.fromarray(views(result)).save(args.out / "demo_views.png")
        made["views"] = "demo_views.png"
        for p in sorted(args.photos.iterdir()) if args.photos else ():
            if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"):
                Image.fromarray(views(rec(str(p))[0])).save(args.out / f"views_{p.stem}.png")
                made[f"views_{p.stem}"] = f"views_{p.stem}.png"
        video_info = None
        if args.video:
            strip, video_info = _video_strip(rec, work)
            Image.fromarray(strip).save(args.out / "video_strip.png")
            made["video"] = "video_strip.png"
    import torch

    meta = {
        "generated_by": "scripts/make_readme_figures.py",
        "photo": "skimage.data.astronaut() (public domain, NASA)",
        "git_commit": _git_commit(),
        "facegcn": facegcn.__version__, "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "device": args.device,
        "settings": {"fast": args.fast, "refine": not args.no_refine},
        "config": json.loads(cfg.to_json()),
        "metrics": result.metrics, "timings": result.timings, "total_s": time.perf_counter() - t0,
        "files": made, "video": video_info,
    }
    (args.out / "figures.json").write_text(json.dumps(meta, indent=1, default=float))
    rel = args.out.resolve().relative_to(REPO) if args.out.resolve().is_relative_to(REPO) else args.out
    m = result.metrics
    caption = (f"landmark NME {m['landmark_nme']:.3f}, coarse PSNR {m['psnr_coarse']:.1f} dB"
               + (f", refined PSNR {m['psnr_refined']:.1f} dB" if "psnr_refined" in m else ""))
    print(f"wrote {', '.join(made.values())} and figures.json to {args.out}")
    print("\nMarkdown for the README:\n")
    print(f"![photo | coarse | refined | geometry | landmarks]({rel}/demo_figure.png)\n")
    print(f"*The `facegcn demo` photo (skimage's public-domain astronaut) reconstructed: {caption}.*\n")
    print(f"![the photo, then the exported mesh at -30, 0 and +30 degrees]({rel}/demo_views.png)")
    if "video" in made:
        print(f"\n![facegcn video: photo | smoothed render]({rel}/video_strip.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
