"""The pictures written next to a reconstruction: the comparison strip, the overlay on the photo
and the region mask."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

from facegcn.frontend import save_label_png, warp_to_photo
from facegcn.io.imageops import composite, image_to_uint8, write_png
from facegcn.morphable import Coefficients
from facegcn.render import sh_shading

if TYPE_CHECKING:
    from facegcn.pipeline.reconstructor import Reconstruction

__all__ = ["shaded_geometry", "landmark_panel", "comparison_strip", "photo_overlay", "yaw_views", "write_figures"]


def shaded_geometry(syn, state, size_hw=(224, 224)) -> torch.Tensor:
    """Grey clay rendering of the fitted geometry under a fixed light.

    Args:
        syn: the :class:`~facegcn.coarse.synthesis.FaceSynthesis` (its renderer and camera).
        state: the posed :class:`~facegcn.coarse.synthesis.FaceState` (batch of 1).

    Returns:
        ``(3, H, W)`` float in [0, 1], white background.
    """
    sh = torch.zeros(1, 27, device=state.vertices.device)
    for ch in range(3):
        sh[0, ch * 9 + 1] = 0.25
        sh[0, ch * 9 + 2] = 0.35
        sh[0, ch * 9 + 3] = -0.1
    grey = torch.full_like(state.albedo, 0.72)
    col = sh_shading(state.normals, grey, sh)
    r = syn.renderer(state.vertices, col, background=1.0)
    return r.image[0].clamp(0, 1)


def landmark_panel(image: torch.Tensor, detected: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """The aligned image with detected (green) and fitted (red) landmarks.

    Shapes: ``image (3, H, W)`` float; ``detected``, ``fitted`` ``(68, 2)`` pixels → ``(H, W, 3)`` uint8.
    """
    im = Image.fromarray(image_to_uint8(image))
    d = ImageDraw.Draw(im)
    for (x, y) in detected:
        d.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=(40, 220, 60))
    for (x, y) in fitted:
        d.ellipse([x - 1.2, y - 1.2, x + 1.2, y + 1.2], fill=(230, 40, 40))
    return np.asarray(im)


def comparison_strip(rec: "Reconstruction") -> np.ndarray:
    """Photo | coarse render | refined render (if any) | clay geometry | landmarks, side by side:
    ``(224, 224·k, 3)`` uint8."""
    img, co = rec.observation.image, rec.coarse
    mask = co.rendering.mask[0].cpu()
    panels = [img, composite(co.rendering.image[0].cpu(), mask, img)]
    if rec.refined_render is not None:
        panels.append(composite(rec.refined_render.cpu(), mask, img))
    panels.append(shaded_geometry(rec.synthesis, co.state).cpu())
    row = [image_to_uint8(p) for p in panels]
    row.append(landmark_panel(img, rec.observation.landmarks, co.state.landmarks[0].cpu().numpy()))
    return np.concatenate(row, axis=1)


def photo_overlay(rec: "Reconstruction") -> np.ndarray:
    """The final render warped back onto the original photo: ``(H, W, 3)`` uint8 at photo size."""
    mask = rec.coarse.rendering.mask[0].cpu()
    H, W = rec.photo.pixels.shape[:2]
    rgba = torch.cat([rec.final_render.cpu().clamp(0, 1), mask], 0)
    back = warp_to_photo(rgba, rec.observation.alignment, (H, W))
    base = torch.from_numpy(np.array(rec.photo.pixels)).permute(2, 0, 1).float() / 255
    return image_to_uint8(composite(back[:3], back[3:4].clamp(0, 1), base))


def yaw_views(rec: "Reconstruction", yaws_deg=(-35.0, 0.0, 35.0), distance_dm: float = 3.0) -> np.ndarray:
    """The fitted face (canonical shape and expression, final albedo) under one fixed soft key light,
    turned to each yaw angle and rendered with the package's renderer, side by side.

    Args:
        rec: the reconstruction.
        yaws_deg: the yaw angles in degrees (positive: the face turns to its left).
        distance_dm: how far the head is moved back from the fitting camera's default (decimetres),
            so that the whole head fits the 224² frame.

    Returns:
        ``(224, 224·len(yaws_deg), 3)`` uint8, white background.
    """
    c, syn = rec.coarse.coeffs, rec.synthesis
    dev = c.id.device
    sh = torch.zeros(1, 27, device=dev)
    for ch in range(3):  # a soft key light from above (on top of the renderer's ambient term)
        sh[0, ch * 9 + 1] = 0.2
        sh[0, ch * 9 + 2] = 0.3
        sh[0, ch * 9 + 3] = -0.1
    albedo = rec.albedo.detach().to(dev)[None]
    panels = []
    for yaw in yaws_deg:
        ang = torch.tensor([[0.0, math.radians(yaw), 0.0]], device=dev)
        cc = Coefficients(id=c.id, exp=c.exp, tex=c.tex, angles=ang, sh=sh,
                          trans=torch.tensor([[0.0, 0.0, -distance_dm]], device=dev))
        with torch.no_grad():
            st = syn.state(cc, albedo=albedo)
            r = syn.renderer(st.vertices, sh_shading(st.normals, albedo, sh), background=1.0)
        panels.append(image_to_uint8(r.image[0]))
    return np.concatenate(panels, axis=1)


def write_figures(rec: "Reconstruction", outdir: Path) -> dict[str, str]:
    """``figure.png`` (:func:`comparison_strip`), ``overlay.png`` (:func:`photo_overlay`) and
    ``mask.png`` (the front-end's region labels). Returns ``{kind: path}``."""
    obs = rec.observation
    files = {"figure": str(write_png(outdir / "figure.png", comparison_strip(rec))),
             "overlay": str(write_png(outdir / "overlay.png", photo_overlay(rec)))}
    save_label_png(outdir / "mask.png", obs.labels.cpu().numpy(), image_to_uint8(obs.image))
    files["mask"] = str(outdir / "mask.png")
    return files
