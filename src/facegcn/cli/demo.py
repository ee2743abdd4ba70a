"""The README's demo: reconstruct skimage's public-domain astronaut photo."""

from __future__ import annotations

from pathlib import Path


def demo_photo_path(folder: Path) -> Path:
    """Write skimage.data.astronaut() (public domain, NASA) as a PNG and return its path."""
    import io

    from PIL import Image
    from skimage import data

    from facegcn.io.atomic import atomic_write_bytes

    p = folder / "astronaut.png"
    if not p.exists():
        buf = io.BytesIO()
        Image.fromarray(data.astronaut()).save(buf, format="PNG")
        atomic_write_bytes(p, buf.getvalue())
    return p


def run_demo(out: str | Path, fast: bool = False) -> Path:
    from facegcn.cli.reconstruct import build_config, run

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    photo = demo_photo_path(out)
    run([photo], out, build_config(fast=fast))
    print(f"open {out}/mesh.obj (or mesh.glb) in a 3D viewer; see {out}/figure.png")
    return out
