"""`facegcn reconstruct`: one or more photos → textured meshes, coefficients, figures, report."""

from __future__ import annotations

from pathlib import Path

import typer

from facegcn.config import Config


def build_config(
    model: str = "ict",
    detector: str = "dlib",
    all_faces: bool = False,
    checkpoint: str | None = None,
    refine: bool = True,
    formats: str = "obj,ply,glb",
    texture_size: int = 1024,
    device: str = "cpu",
    quiet: bool = False,
    fast: bool = False,
    threads: int = 1,
) -> Config:
    cfg = Config(model=model, device=device, checkpoint=checkpoint, progress=not quiet, threads=threads)
    cfg.frontend.detector = detector
    cfg.frontend.all_faces = all_faces
    cfg.refine.enabled = refine
    cfg.output.formats = tuple(f.strip().lower() for f in formats.split(",") if f.strip())
    cfg.output.texture_size = texture_size
    if fast:  # fewer optimisation steps (tests, previews)
        cfg.coarse.steps_rigid, cfg.coarse.steps_landmark = 30, 60
        cfg.coarse.steps_photo, cfg.coarse.steps_identity = 40, 0
        cfg.refine.steps = 30
    return cfg.validate()


def run(photos: list[Path], out: Path, cfg: Config) -> int:
    from facegcn.io.image import load_image
    from facegcn.pipeline import Reconstructor

    for photo in photos:  # fail fast on unreadable inputs, before loading any model
        load_image(photo)
    rec = Reconstructor(cfg)
    for photo in photos:
        results = rec(photo)
        base = out if len(photos) == 1 else out / Path(photo).stem
        for r in results:
            d = base if len(results) == 1 else base / f"face_{r.face_index}"
            rec.write(r, d)
            m = r.metrics
            extra = f", refined PSNR {m['psnr_refined']:.2f} dB" if "psnr_refined" in m else ""
            typer.echo(f"{photo} → {d}: landmark NME {m['landmark_nme']:.4f}, coarse PSNR {m['psnr_coarse']:.2f} dB"
                       f"{extra}, {r.timings['total_s']:.1f} s")
    return 0
