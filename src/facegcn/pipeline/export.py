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
from facegcn.errors import ModelFileError
from facegcn.io.atomic import atomic_folder, atomic_write_text
from facegcn.io.jsonfile import strict_json
from facegcn.io.mesh import texture_pngs, write_glb, write_obj, write_ply
from facegcn.io.textured import Material, TexturedMesh
from facegcn.morphable.dense import load_dense_correspondence
from facegcn.morphable.landmarks3d import apply_landmarks, surface_landmarks
from facegcn.morphable.closure import MOUTH_COLOUR, mouth_backing, mouth_loop
from facegcn.io.imageops import to_uint8
from facegcn.refine.parts_color import bake_parts_texture, part_colors
from facegcn.refine.texture_map import compose_texture
from facegcn.render.bake import sample_texture_at_vertices
from facegcn.pipeline.figures import write_figures

if TYPE_CHECKING:  # only for annotations: the reconstructor imports this module
    from facegcn.pipeline.reconstructor import Reconstruction

__all__ = ["EXPORT_SCALE", "FACE_FILES", "is_face_file", "write_outputs", "canonical_mesh", "bake_texture", "export_mesh", "write_meshes",
           "coefficients_document", "report_document"]

EXPORT_SCALE = 0.1  # model decimetres → metres in every exported mesh


def canonical_mesh(rec: "Reconstruction", closed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The fitted identity + expression in the canonical pose, in metres.

    Args:
        rec: the reconstruction.
        closed: the closed head (face + the model's parts, :meth:`MorphableModel.closed_shape`,
            interior parts that poke through the skin moved behind it,
            :func:`facegcn.refine.parts_color.settle_parts`) instead of the face alone; the same
            as the face for models without parts.

    Returns:
        ``vertices (N, 3)`` and unit ``normals (N, 3)``, float32 on the model's device; ``N = V``
        (face), or ``V + P`` with ``closed`` (the face's ``V`` first).
    """
    c, m = rec.coarse.coeffs, rec.model
    with torch.no_grad():
        if closed and m.parts is not None:
            from facegcn.refine.parts_color import settle_parts

            shape = torch.as_tensor(settle_parts(m, m.closed_shape(c.id, c.exp)[0]), device=c.id.device)
            verts = shape * EXPORT_SCALE
            normals = m.closed_vertex_normals(verts[None])[0]
        else:
            verts = m.shape(c.id, c.exp)[0] * EXPORT_SCALE
            normals = m.vertex_normals(verts[None])[0]
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
    if (tex is None or tex.image.shape[0] != output.texture_size or tex.mode != output.texture
            or tex.photo_filter != output.photo_filter or tex.delight != output.delight):
        tex = compose_texture(m, rec.synthesis, rec.observation, rec.coarse, rec.photo.pixels,
                              torch.as_tensor(albedo), output.texture_size, output.texture,
                              photo_filter=output.photo_filter, delight=output.delight)
    return to_uint8(tex.image)


def export_mesh(rec: "Reconstruction", output: OutputOptions) -> TexturedMesh:
    """The mesh every writer and the fidelity evaluation use: canonical pose, metres, albedo
    texture (when the model has UVs and a textured format is asked for), vertex colours.

    For a model with parts (ICT) the mesh is the closed head: vertices ``closed_shape`` (the face's
    ``V`` first, then the parts'), materials ``face`` (the face texture, :func:`bake_texture`) and
    ``parts`` (head, neck, sockets, mouth interior, eyeballs on the parts atlas,
    :mod:`facegcn.refine.parts_color`); vertex colours = the face albedo, then the parts' colours.

    Returns:
        a :class:`~facegcn.io.textured.TexturedMesh` whose first material is the face.
    """
    m = rec.model
    albedo = rec.albedo.detach().clamp(0, 1).cpu().numpy().astype(np.float32)
    texture = bake_texture(rec, albedo, output)
    if rec.texture is not None and rec.texture.mode == output.texture:  # its base: skin filled where the photo showed none
        albedo = rec.texture.vertex_albedo.astype(np.float32)
    faces = m.faces.cpu().numpy().astype(np.int64)
    uv = m.uv.cpu().numpy().astype(np.float32) if m.has_uv else None
    faces_uv = m.faces_uv.cpu().numpy().astype(np.int64) if m.has_uv else None
    face_mat = Material("face", faces, faces_uv if texture is not None else None, texture)
    verts, normals = canonical_mesh(rec, closed=m.parts is not None)
    verts, normals = verts.cpu().numpy().astype(np.float32), normals.cpu().numpy().astype(np.float32)
    if m.parts is None:
        return _backed_slit(m, TexturedMesh(verts, normals, albedo, uv, (face_mat,)))
    p, V = m.parts, m.n_vertices
    # the head continues what the face shows at the seam: its texture when there is one
    face_colours = albedo if texture is None else sample_texture_at_vertices(texture, uv, faces_uv, faces, V)
    exposure = rec.texture.exposure if rec.texture is not None else None
    colours = part_colors(rec, face_colours, verts / EXPORT_SCALE, exposure=exposure).colors
    parts_tex, parts_fuv, all_uv = None, None, uv
    if texture is not None:
        parts_tex = bake_parts_texture(m, np.concatenate([face_colours, colours]), output.texture_size)
        parts_fuv = p.faces_uv.astype(np.int64) + len(uv)
        all_uv = np.concatenate([uv, p.uv]).astype(np.float32)
    parts_mat = Material("parts", p.faces.astype(np.int64), parts_fuv, parts_tex)
    return TexturedMesh(verts, normals, np.concatenate([albedo, colours]).astype(np.float32), all_uv,
                        (face_mat, parts_mat))


def _backed_slit(model, mesh: TexturedMesh) -> TexturedMesh:
    """``mesh`` with a dark pocket behind the lip slit of a model without parts (BFM), as material
    ``mouth`` (vertex colours; :mod:`facegcn.morphable.closure`); unchanged when there is no slit."""
    faces = mesh.materials[0].faces
    lm = model.landmark_idx.cpu().numpy()
    loop = mouth_loop(faces, mesh.vertices, lm)
    if loop is None:
        return mesh
    width = float(np.linalg.norm(mesh.vertices[lm[54]] - mesh.vertices[lm[48]]))
    new_v, new_f = mouth_backing(mesh.vertices, loop, depth=0.35 * width)
    verts = np.concatenate([mesh.vertices, new_v]).astype(np.float32)
    n_new = np.tile(np.array([[0.0, 0.0, 1.0]], np.float32), (len(new_v), 1))
    colours = np.concatenate([mesh.vertex_colors, np.tile(np.asarray(MOUTH_COLOUR, np.float32), (len(new_v), 1))])
    return TexturedMesh(verts, np.concatenate([mesh.normals, n_new]), colours.astype(np.float32), mesh.uv,
                        (*mesh.materials, Material("mouth", new_f)))


def write_meshes(rec: "Reconstruction", outdir: Path, output: OutputOptions) -> dict[str, str]:
    """``mesh.obj`` (+ ``mesh.mtl``, one texture per material: ``mesh.png`` for the face,
    ``mesh_<material>.png`` for the others), ``mesh.ply`` (vertex colours, normals) and ``mesh.glb``
    (one primitive per material), as ``output.formats`` asks. Returns ``{format: path}``."""
    fm = set(output.formats)
    mesh = export_mesh(rec, output)
    pngs = texture_pngs(mesh) if fm & {"obj", "glb"} else {}  # encoded once for both files
    files: dict[str, str] = {}
    if "obj" in fm:
        files["obj"] = str(write_obj(outdir / "mesh.obj", mesh, textures_png=pngs))
    if "ply" in fm:
        files["ply"] = str(write_ply(outdir / "mesh.ply", mesh.vertices, mesh.faces, vertex_colors=mesh.vertex_colors,
                                     normals=mesh.normals))
    if "glb" in fm:
        files["glb"] = str(write_glb(outdir / "mesh.glb", mesh, textures_png=pngs))
    return files


def coefficients_document(rec: "Reconstruction") -> dict[str, Any]:
    """What ``coeffs.json`` holds: model, layout, camera, aligned → photo transform, coefficients
    and the aligned-frame landmarks."""
    cam, obs = rec.synthesis.camera, rec.observation
    fitted = _fitted_landmarks_photo(rec)
    return {
        "model": rec.model.name,
        "layout": rec.model.layout.sizes,
        "units": "model coefficients; translation in decimetres; angles in radians (x, y, z), R = Rz Ry Rx",
        "camera": {"focal": cam.fx, "center": list(cam.center), "size": list(cam.size), "distance": cam.distance},
        "aligned_to_photo": np.asarray(obs.transform_inv).tolist(),
        "coefficients": {k: v[0] for k, v in rec.coarse.coeffs.as_dict().items()},
        "landmarks_aligned": np.asarray(obs.landmarks).tolist(),
        "landmarks_units": "x, y pixels, pixel centres at integers, y down",
        # the fitted mesh's 68 Multi-PIE landmarks projected into the photo in AFLW2000-3D's
        # convention (BFM's keypoints as surface points, hidden ones included: morphable.landmarks3d)
        # and MediaPipe's 468 points on the fitted mesh
        "landmarks68_photo": fitted["68"],
        "landmarks468_photo": fitted["468"],
        # what the front-end detected: dlib's 68 and MediaPipe's 468 (x, y, z) in photo pixels
        "detected68_photo": np.asarray(obs.landmarks_photo).tolist(),
        "detected468_photo": None if obs.dense_photo is None else np.asarray(obs.dense_photo).tolist(),
        "mesh_units": "metres (model decimetres × 0.1), canonical pose",
    }


def _fitted_landmarks_photo(rec: "Reconstruction") -> dict[str, list | None]:
    """The fit's 68 landmarks (3-D surface points, the AFLW2000-3D convention:
    :mod:`facegcn.morphable.landmarks3d`) and (when the model has the correspondence) its 468 dense
    points, projected with the fit's camera into the photo: ``{"68": (68, 2), "468": (468, 2)}``."""
    A = np.asarray(rec.observation.transform_inv, np.float64)
    px = rec.coarse.state.verts_px[0].detach().cpu().double()  # (V, 2) aligned
    lm68 = apply_landmarks(surface_landmarks(rec.model), rec.model.faces.cpu(), px[None])[0]
    out: dict[str, list | None] = {"68": _to_photo(lm68.numpy(), A), "468": None}
    try:
        tri, bary, _ = load_dense_correspondence(rec.model)
    except ModelFileError:
        return out
    corners = rec.model.faces.cpu()[tri.cpu().long()]  # (468, 3)
    out["468"] = _to_photo((px[corners] * bary.cpu().double()[..., None]).sum(1).numpy(), A)
    return out


def _to_photo(p: np.ndarray, A: np.ndarray) -> list:
    return (p @ A[:, :2].T + A[:, 2]).tolist()


POSE_GAP_DEG = 25.0  # fitted vs landmark yaw beyond this: the fit may not follow the head's turn
LOW_LANDMARK_SCORE = 0.5  # MediaPipe's own face threshold


def fit_warnings(rec: "Reconstruction") -> list[str]:
    """One-line warnings about a fit that may be wrong: a low landmark score (a drawing, a statue,
    a heavily occluded face) or a fitted yaw far from the dense landmarks' (a frontal face fitted
    onto a turned head)."""
    out = []
    obs = rec.observation
    if obs.dense_score is not None and obs.dense_score < LOW_LANDMARK_SCORE:
        out.append(f"low landmark score {obs.dense_score:.2f}: the face may be occluded, drawn or not a face")
    if obs.head_pose is not None:
        fit, seen = fit_pose_degrees(rec)["yaw"], float(obs.head_pose[1])
        if abs(fit - seen) > POSE_GAP_DEG:
            out.append(f"the fit's yaw {fit:+.0f}° differs from the landmarks' {seen:+.0f}°: "
                       "the head's turn may not be followed")
    return out


def fit_pose_degrees(rec: "Reconstruction") -> dict[str, float]:
    """The fitted head pose (pitch, yaw, roll) in degrees, the renderer's angle convention."""
    a = rec.coarse.coeffs.angles[0].detach().cpu().double().numpy() * 180.0 / np.pi
    return {"pitch": float(a[0]), "yaw": float(a[1]), "roll": float(a[2])}


def report_document(rec: "Reconstruction") -> dict[str, Any]:
    """What ``report.json`` holds: photo, face index, detector score, metrics, timings, loss logs."""
    return {
        "photo": rec.photo.name,
        "face_index": rec.face_index,
        "detector_score": rec.observation.score,
        "detector": rec.observation.detector,
        # MediaPipe's face score of the dense landmarks (None when they were not computed) and the
        # head pose they give, beside the pose the fit found: a large gap is a suspicious fit
        "landmark_score": rec.observation.dense_score,
        "frontend_pose_deg": None if rec.observation.head_pose is None else
        dict(zip(("pitch", "yaw", "roll"), map(float, rec.observation.head_pose))),
        "fitted_pose_deg": fit_pose_degrees(rec),
        "warnings": fit_warnings(rec),
        "metrics": rec.metrics,
        "timings": rec.timings,
        "coarse_history": rec.coarse.history,
        "refine_history": rec.refine_history,
    }


#: what :func:`write_outputs` may write into a face's folder (``mesh*.png`` too: one texture per material)
FACE_FILES = frozenset({"mesh.obj", "mesh.mtl", "mesh.ply", "mesh.glb", "coeffs.json", "report.json", "config.json",
                        "figure.png", "overlay.png", "mask.png"})


def is_face_file(name: str) -> bool:
    """Whether ``name`` is one of the files of a face's set (see :data:`FACE_FILES`)."""
    return name in FACE_FILES or (name.startswith("mesh") and name.endswith(".png"))


def write_outputs(rec: "Reconstruction", outdir: str | Path, config: Config | None = None) -> dict[str, str]:
    """Write one face's files into ``outdir`` (created if needed): meshes, ``coeffs.json``, the
    figures (``config.output.figures``), ``report.json`` and ``config.json``.

    The files are written as a set (:func:`facegcn.io.atomic.atomic_folder`): into a temporary
    sibling folder, then moved into ``outdir``; a failure leaves ``outdir`` as it was. Files of an
    earlier face set in ``outdir`` that this one does not write (another ``--format``) are
    removed; anything else there is left alone.

    Args:
        rec: the reconstruction.
        outdir: the folder.
        config: whose ``output`` section decides the formats, texture size and figures, and which
            is saved as ``config.json`` (default: the config the reconstruction was made with).

    Returns:
        ``{kind: path}`` (paths in ``outdir``) for ``obj``/``ply``/``glb``, ``coeffs``, ``figure``,
        ``overlay``, ``mask`` and ``report``.

    Raises:
        OutputError: the folder or one of the files cannot be written.
    """
    config = config or rec.config
    outdir = Path(outdir)
    with atomic_folder(outdir, stale=is_face_file) as tmp:
        files = write_meshes(rec, tmp, config.output)
        atomic_write_text(tmp / "coeffs.json", strict_json(coefficients_document(rec), indent=1))
        files["coeffs"] = str(tmp / "coeffs.json")
        if config.output.figures:
            files.update(write_figures(rec, tmp))
        atomic_write_text(tmp / "report.json", strict_json(report_document(rec), indent=1))
        atomic_write_text(tmp / "config.json", config.to_json())
        files["report"] = str(tmp / "report.json")
    return {k: str(outdir / Path(v).name) for k, v in files.items()}
