"""A :class:`~facegcn.pipeline.Reconstruction` → files: meshes, texture, coefficients, figures, report.

Each writer is one small function taking the reconstruction and the output folder;
:func:`write_outputs` runs them in order. Exported meshes are in metres in the model's canonical
(unposed) frame; the camera and the aligned → photo transform are in ``coeffs.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from facegcn.config import Config, OutputOptions
from facegcn.errors import OutputError
from facegcn.io.atomic import atomic_write_text, describe_write_error
from facegcn.io.jsonfile import strict_json
from facegcn.io.mesh import write_glb, write_obj, write_ply
from facegcn.io.textured import Material, TexturedMesh
from facegcn.io.imageops import to_uint8
from facegcn.refine.texture_map import compose_texture
from facegcn.pipeline.figures import write_figures

if TYPE_CHECKING:  # only for annotations: the reconstructor imports this module
    from facegcn.pipeline.reconstructor import Reconstruction

__all__ = ["EXPORT_SCALE", "write_outputs", "canonical_mesh", "bake_texture", "export_mesh", "write_meshes",
           "coefficients_document", "report_document"]

EXPORT_SCALE = 0.1  # model decimetres → metres in every exported mesh


def canonical_mesh(rec: "Reconstruction") -> tuple[torch.Tensor, torch.Tensor]:
    """The fitted identity + expression in the canonical pose, in metres.

    Returns:
        ``vertices (V, 3)`` and unit ``normals (V, 3)``, float32 on the model's device.
    """
    c = rec.coarse.coeffs
    with torch.no_grad():
        verts = rec.model.shape(c.id, c.exp)[0] * EXPORT_SCALE
        normals = rec.model.vertex_normals(verts[None])[0]
    return verts, normals


def bake_texture(rec: "Reconstruction", albedo: np.ndarray, output: OutputOptions) -> np.ndarray | None:
    """The face's UV texture as ``(S, S, 3)`` uint8 (``S = output.texture_size``, mode
    ``output.texture``; see :mod:`facegcn.refine.texture_map`) over the per-vertex ``albedo (V, 3)``,
    or None when the model has no UVs or no textured format (obj, glb) is requested. Reuses the
    reconstruction's texture when it was made with the same size and mode."""
    m, fm = rec.model, set(output.formats)
    if not m.has_uv or not fm & {"obj", "glb"}:
        return None
    tex = rec.texture
    if tex is None or tex.image.shape[0] != output.texture_size or tex.mode != output.texture:
        tex = compose_texture(m, rec.synthesis, rec.observation, rec.coarse, rec.photo.pixels,
                              torch.as_tensor(albedo), output.texture_size, output.texture)
    return to_uint8(tex.image)


def export_mesh(rec: "Reconstruction", output: OutputOptions) -> TexturedMesh:
    """The mesh every writer and the fidelity evaluation use: canonical pose, metres, albedo
    texture (when the model has UVs and a textured format is asked for), vertex colours.

    Returns:
        a :class:`~facegcn.io.textured.TexturedMesh` whose first material is the face.
    """
    m = rec.model
    verts, normals = canonical_mesh(rec)
    albedo = rec.albedo.detach().clamp(0, 1).cpu().numpy().astype(np.float32)
    texture = bake_texture(rec, albedo, output)
    faces = m.faces.cpu().numpy().astype(np.int64)
    uv = m.uv.cpu().numpy().astype(np.float32) if m.has_uv else None
    face_mat = Material("face", faces, m.faces_uv.cpu().numpy().astype(np.int64) if texture is not None else None,
                        texture)
    return TexturedMesh(verts.cpu().numpy().astype(np.float32), normals.cpu().numpy().astype(np.float32), albedo,
                        uv, (face_mat,))


def write_meshes(rec: "Reconstruction", outdir: Path, output: OutputOptions) -> dict[str, str]:
    """``mesh.obj`` (+ .mtl + texture), ``mesh.ply`` (vertex colours, normals) and ``mesh.glb``,
    as ``output.formats`` asks. Returns ``{format: path}``."""
    fm = set(output.formats)
    mesh = export_mesh(rec, output)
    face = mesh.materials[0]
    textured = dict(uv=mesh.uv, faces_uv=face.faces_uv, texture=face.texture) if face.textured else {}
    colours = None if face.textured else mesh.vertex_colors
    files: dict[str, str] = {}
    if "obj" in fm:
        files["obj"] = str(write_obj(outdir / "mesh.obj", mesh.vertices, mesh.faces, vertex_colors=colours, **textured))
    if "ply" in fm:
        files["ply"] = str(write_ply(outdir / "mesh.ply", mesh.vertices, mesh.faces, vertex_colors=mesh.vertex_colors,
                                     normals=mesh.normals))
    if "glb" in fm:
        files["glb"] = str(write_glb(outdir / "mesh.glb", mesh.vertices, mesh.faces, vertex_colors=colours, **textured))
    return files


def coefficients_document(rec: "Reconstruction") -> dict[str, Any]:
    """What ``coeffs.json`` holds: model, layout, camera, aligned → photo transform, coefficients
    and the aligned-frame landmarks."""
    cam, obs = rec.synthesis.camera, rec.observation
    return {
        "model": rec.model.name,
        "layout": rec.model.layout.sizes,
        "units": "model coefficients; translation in decimetres; angles in radians (x, y, z), R = Rz Ry Rx",
        "camera": {"focal": cam.fx, "center": list(cam.center), "size": list(cam.size), "distance": cam.distance},
        "aligned_to_photo": np.asarray(obs.transform_inv).tolist(),
        "coefficients": {k: v[0] for k, v in rec.coarse.coeffs.as_dict().items()},
        "landmarks_aligned": np.asarray(obs.landmarks).tolist(),
        "mesh_units": "metres (model decimetres × 0.1), canonical pose",
    }


def report_document(rec: "Reconstruction") -> dict[str, Any]:
    """What ``report.json`` holds: photo, face index, detector score, metrics, timings, loss logs."""
    return {
        "photo": rec.photo.name,
        "face_index": rec.face_index,
        "detector_score": rec.observation.score,
        "metrics": rec.metrics,
        "timings": rec.timings,
        "coarse_history": rec.coarse.history,
        "refine_history": rec.refine_history,
    }


def _output_dir(outdir: str | Path) -> Path:
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(describe_write_error(exc, outdir)) from None
    return outdir


def write_outputs(rec: "Reconstruction", outdir: str | Path, config: Config | None = None) -> dict[str, str]:
    """Write one face's files into ``outdir`` (created if needed): meshes, ``coeffs.json``, the
    figures (``config.output.figures``), ``report.json`` and ``config.json``.

    Args:
        rec: the reconstruction.
        outdir: the folder.
        config: whose ``output`` section decides the formats, texture size and figures, and which
            is saved as ``config.json`` (default: the config the reconstruction was made with).

    Returns:
        ``{kind: path}`` for ``obj``/``ply``/``glb``, ``coeffs``, ``figure``, ``overlay``, ``mask``
        and ``report``.
    """
    config = config or rec.config
    outdir = _output_dir(outdir)
    files = write_meshes(rec, outdir, config.output)
    atomic_write_text(outdir / "coeffs.json", strict_json(coefficients_document(rec), indent=1))
    files["coeffs"] = str(outdir / "coeffs.json")
    if config.output.figures:
        files.update(write_figures(rec, outdir))
    atomic_write_text(outdir / "report.json", strict_json(report_document(rec), indent=1))
    atomic_write_text(outdir / "config.json", config.to_json())
    files["report"] = str(outdir / "report.json")
    return files
