"""The pictures written next to a reconstruction: the comparison strip, the overlay on the photo
and the region mask."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageDraw

from facegcn.frontend import save_label_png, warp_to_photo
from facegcn.io.imageops import composite, image_to_uint8, write_png
from facegcn.io.textured import TexturedMesh
from facegcn.render import sh_shading
from facegcn.render.textured import head_camera, mesh_centre, pose_vertices, render_textured

if TYPE_CHECKING:
    from facegcn.pipeline.reconstructor import Reconstruction

__all__ = ["shaded_geometry", "landmark_panel", "comparison_strip", "photo_overlay", "yaw_views", "face_crop", "write_figures"]


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


def _headlight(mesh: TexturedMesh, cam, yaw: float, centre) -> torch.Tensor:
    """``(H, W)`` Lambert factor of ``mesh`` turned by ``yaw`` under a soft light from the viewer's
    upper left: the mesh's vertex normals rendered as colours through the same rasteriser."""
    n = pose_vertices(mesh.normals, (0.0, yaw, 0.0), centre=np.zeros(3)).numpy()  # the mesh's rotation
    light = np.array([-0.3, 0.35, 1.0], np.float32)
    lam = np.clip(n @ (light / np.linalg.norm(light)), 0.0, 1.0)
    flat = replace(mesh, vertex_colors=np.repeat(lam[:, None], 3, 1),
                   materials=tuple(replace(m, faces_uv=None, texture=None) for m in mesh.materials))
    return render_textured(flat, cam, angles=(0.0, yaw, 0.0), centre=centre, supersample=2).image[0]


def yaw_views(mesh: TexturedMesh, yaws_deg=(-30.0, 0.0, 30.0), size: int = 320, *, lit: bool = True,
              first: np.ndarray | None = None) -> np.ndarray:
    """An exported textured mesh (what a user opens: :func:`~facegcn.pipeline.export.export_mesh`)
    turned to each yaw about the centre of its first material (the face), framed on it, rendered with the package's textured renderer, side by side.

    Args:
        mesh: the export (canonical pose, +z towards the viewer).
        yaws_deg: yaw angles in degrees (positive: the face turns to its left).
        size: side of each square panel in pixels.
        lit: multiply the texture by a soft Lambert light from the viewer's upper left, as a mesh
            viewer shows it (False: the unlit texture, as the fidelity metrics see it).
        first: an optional ``(size, size, 3)`` uint8 panel put first (e.g. :func:`face_crop`).

    Returns:
        ``(size, size · k, 3)`` uint8 on white.
    """
    face = np.asarray(mesh.vertices)[np.unique(mesh.materials[0].faces)]  # framed on the face
    centre = mesh_centre(face)
    cam = head_camera(face, (size, size), centre=centre, fill=0.9)
    panels = [] if first is None else [np.asarray(first, np.uint8)]
    for yaw in yaws_deg:
        y = math.radians(yaw)
        r = render_textured(mesh, cam, angles=(0.0, y, 0.0), centre=centre, background=1.0, supersample=2)
        img = r.image
        if lit:
            shade = 0.45 + 0.55 * _headlight(mesh, cam, y, centre)
            img = torch.where(r.mask[None], img * shade[None], img)
        panels.append(image_to_uint8(img))
    return np.concatenate(panels, axis=1)


def face_crop(rec: "Reconstruction", size: int = 320) -> np.ndarray:
    """The photo around the face (a square 2.2× the 68 landmarks' extent), ``(size, size, 3)`` uint8."""
    lm = np.asarray(rec.observation.landmarks_photo, np.float64)
    c = (lm.min(0) + lm.max(0)) / 2.0
    half = 1.1 * float((lm.max(0) - lm.min(0)).max())
    im = Image.fromarray(np.asarray(rec.photo.pixels))
    box = (c[0] - half, c[1] - half * 1.05, c[0] + half, c[1] + half * 0.95)
    return np.asarray(im.transform((size, size), Image.EXTENT, box, Image.BICUBIC, fillcolor=(255, 255, 255)))


def write_figures(rec: "Reconstruction", outdir: Path) -> dict[str, str]:
    """``figure.png`` (:func:`comparison_strip`), ``overlay.png`` (:func:`photo_overlay`) and
    ``mask.png`` (the front-end's region labels). Returns ``{kind: path}``."""
    obs = rec.observation
    files = {"figure": str(write_png(outdir / "figure.png", comparison_strip(rec))),
             "overlay": str(write_png(outdir / "overlay.png", photo_overlay(rec)))}
    save_label_png(outdir / "mask.png", obs.labels.cpu().numpy(), image_to_uint8(obs.image))
    files["mask"] = str(outdir / "mask.png")
    return files
