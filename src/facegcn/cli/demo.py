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
    """Reconstruct the demo photo into ``out`` with the default (or ``fast``) preset."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    photo = demo_photo_path(out)
    run([photo], out, build_config(fast=fast))
    print(f"open {out}/mesh.obj (or mesh.glb) in a 3D viewer; see {out}/figure.png")
    return out


def demo(
    out: Path = typer.Option(Path("out/demo"), "-o", "--out", help="Output folder."),
    fast: bool = typer.Option(False, "--fast", help="Fewer optimisation steps."),
) -> None:
    """Reconstruct the bundled example photo (skimage's public-domain astronaut) into OUT."""
    run_demo(out, fast=fast)


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to a typer application."""
    opts.register_command(app, demo, "demo")
