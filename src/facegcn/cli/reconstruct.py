"""`facegcn reconstruct`: one or more photos → textured meshes, coefficients, figures, report."""

from __future__ import annotations

from pathlib import Path

import typer

from facegcn.cli import options as opts
from facegcn.config import Config


LOW_PHOTO_SHARE = 0.1  # below this share of photo texels the texture is mostly the model's: say so


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
    texture: str = "albedo",
) -> Config:
    """The :class:`Config` that the pipeline commands' flags describe (``fast`` = the ``"fast"`` preset)."""
    cfg = Config.preset("fast" if fast else "default")
    cfg.model, cfg.device, cfg.checkpoint, cfg.progress, cfg.threads = model, device, checkpoint, not quiet, threads
    cfg.frontend.detector = detector
    cfg.frontend.all_faces = all_faces
    cfg.refine.enabled = refine
    cfg.output.formats = tuple(f.strip().lower() for f in formats.split(",") if f.strip())
    cfg.output.texture_size = texture_size
    cfg.output.texture = texture
    return cfg.validate()


def run(photos: list[Path], out: Path, cfg: Config) -> int:
    """Reconstruct ``photos`` into ``out`` (one photo → ``out/``, several → ``out/<stem>/``; several
    faces → ``face_<i>/`` below that) and print one line per face."""
    # imported here, not at the top: they load torch (~3 s), which `facegcn --help` must not wait for
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
            share = m.get("texture_photo_share")
            if share is not None and share < LOW_PHOTO_SHARE:
                typer.echo(f"warning: {photo}: only {share:.0%} of the face texture comes from the photo "
                           "(face occluded or outside the frame?); the rest is the model's albedo", err=True)
    return 0


def reconstruct(
    photos: list[Path] = typer.Argument(..., help="Photo file(s)."),
    out: Path = typer.Option(Path("out"), "-o", "--out", help="Output folder."),
    model: str = opts.MODEL,
    detector: str = opts.DETECTOR,
    all_faces: bool = typer.Option(False, "--all-faces", help="Reconstruct every face, not only the best one."),
    checkpoint: str = opts.CHECKPOINT,
    refine: bool = typer.Option(True, "--refine/--no-refine", help="GCN texture refinement."),
    fmt: str = opts.FORMAT,
    texture_size: int = opts.TEXTURE_SIZE,
    device: str = opts.DEVICE,
    fast: bool = typer.Option(False, "--fast", help="Fewer optimisation steps (preview quality)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    threads: int = typer.Option(1, help="CPU threads (0 = torch default); 1 is fastest on small/shared CPUs."),
    texture: str = typer.Option("albedo", "--texture", help="Texture: albedo (de-lit photo detail, default), "
                                "lit (as photographed) or gcn (the GCN's per-vertex albedo only)."),
) -> None:
    """Reconstruct 3D faces from photos: meshes, coeffs.json, figures and a report per face."""
    cfg = build_config(model, detector, all_faces, checkpoint, refine, fmt, texture_size, device, quiet, fast,
                       threads, texture)
    run(photos, out, cfg)


def register(app: typer.Typer) -> None:
    """Add the ``reconstruct`` command to a typer application."""
    opts.register_command(app, reconstruct, "reconstruct")
