"""`facegcn demo`: reconstruct skimage's public-domain astronaut photo (the README's first command)."""

from __future__ import annotations

from pathlib import Path

import typer

from facegcn.cli import options as opts
from facegcn.cli.reconstruct import build_config, run


def demo_photo_path(folder: Path) -> Path:
    """Write ``skimage.data.astronaut()`` (public domain, NASA) as a PNG in ``folder``; return its path."""
    # imported here, not at the top: skimage and facegcn.io.imageops (torch) take seconds to import
    from skimage import data

    from facegcn.io.imageops import write_png

    p = folder / "astronaut.png"
    if not p.exists():
        write_png(p, data.astronaut())
    return p


def run_demo(out: str | Path, fast: bool = False) -> Path:
    """Reconstruct the demo photo (written as ``OUT/astronaut.png``) into ``OUT/astronaut/``, the
    layout of ``facegcn reconstruct``, with the default (or ``fast``) preset; returns that folder."""
    from facegcn.cli.configure import check_cache
    from facegcn.io.atomic import check_writable_folder

    out = Path(out)
    check_writable_folder(out)
    cfg = build_config(fast=fast)
    check_cache()
    out.mkdir(parents=True, exist_ok=True)
    photo = demo_photo_path(out)
    folder = run([photo], out, cfg)[0]
    print(f"open {folder}/mesh.obj (or mesh.glb) in a 3D viewer; see {folder}/figure.png")
    return folder


def demo(
    out: Path = typer.Option(Path("out/demo"), "-o", "--out", help="Output folder: the photo goes to "
                             "OUT/astronaut.png, the reconstruction to OUT/astronaut/."),
    fast: bool = typer.Option(False, "--fast", help="Fewer optimisation steps."),
) -> None:
    """Reconstruct the bundled example photo (skimage's public-domain astronaut) into OUT/astronaut/."""
    run_demo(out, fast=fast)


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to a typer application."""
    opts.register_command(app, demo, "demo")
