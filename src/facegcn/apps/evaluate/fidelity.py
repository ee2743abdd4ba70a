"""Fidelity of the exported mesh where users look: skin detail, see-through holes, novel-view identity.

For a :class:`~facegcn.pipeline.Reconstruction` and its exported
:class:`~facegcn.io.textured.TexturedMesh` (:func:`facegcn.pipeline.export.export_mesh`), the mesh
(canonical pose: yaw 0 is the model's frontal direction, +z towards the camera) is turned by yaw
0° and ±30° about its bounding-box centre and rendered unlit
(:func:`facegcn.render.textured.render_textured`, one :func:`~facegcn.render.textured.head_camera`
for all views, 512², 2× supersampled, over mid-grey). Then (metrics in
:mod:`facegcn.evaluate.fidelity`):

* ``detail``: detail ratio of the frontal render vs the photo; that render (:func:`detail_render`) is
  framed on the face at an inter-ocular distance of 160 px, so that the metric's resampling to 80 px
  only ever shrinks it, whatever the mesh's extent. The render's 68 landmarks are the
  *projected* landmark vertices of the model (``rec.model.landmark_idx``; exact, and independent
  of how well a detector copes with a render); the photo's are the front-end's
  (``observation.landmarks_photo``).
* ``seethrough``: see-through share, the mean over the three views (per view in ``seethrough_<view>``).
* ``iddist`` / ``idaccept``: dlib descriptor distance of each render to the photo and the share
  below 0.6, over the views where a face was found. A render's descriptor is computed exactly as
  a photo's: :func:`facegcn.frontend.observe` on the render image (detection, 68 landmarks,
  5-point chip, ported dlib ResNet). ``idmiss``: views where no face was found (left out).
* folder level (:func:`add_pair_columns`), photos grouped by person: ``idsame`` /
  ``idsame_accept``: renders vs the person's *other* photos; ``idother_reject``: renders vs other
  people's photos, share at or above 0.6; ``idsame_photo`` / ``idsame_photo_accept``: the photo
  itself vs the person's other photos (what dlib does on real photos: the reference).

Variants (the ``_<variant>`` suffix, :func:`variant_meshes`): ``coarse`` — the 3DMM albedo alone;
``gcn`` — the GCN-refined albedo alone (no refinement: blank); ``final`` — the export as written.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from facegcn.errors import InputError, NoFaceError
from facegcn.evaluate.fidelity import EYE_CORNERS, descriptor_distance, detail_ratio, pair_statistics, see_through_share
from facegcn.frontend import observe
from facegcn.io.image import photo_from_array
from facegcn.io.imageops import image_to_uint8
from facegcn.io.textured import TexturedMesh
from facegcn.pipeline.export import export_mesh
from facegcn.render.camera import PerspectiveCamera
from facegcn.render.textured import TexturedRendering, head_camera, mesh_centre, project_points, render_textured

__all__ = ["FIDELITY_YAWS", "VARIANTS", "MeshFidelity", "view_name", "render_views", "render_descriptor",
           "detail_render", "measure_views", "measure_mesh", "variant_meshes", "fidelity_row", "read_labels", "person_of", "add_pair_columns"]

FIDELITY_YAWS = (0.0, -30.0, 30.0)  # degrees; positive: the face turns to its left
VARIANTS = ("coarse", "gcn", "final")
RENDER_SIZE = 512
DETAIL_RENDER_IOD = 160.0  # px between the outer eye corners in the detail render (2× the metric's 80)
SUPERSAMPLE = 2
BACKGROUND = 0.5


def view_name(yaw: float) -> str:
    """Column suffix of a view: ``0``, ``m30``, ``p30``."""
    y = int(round(yaw))
    return "0" if y == 0 else f"{'m' if y < 0 else 'p'}{abs(y)}"


@dataclass
class MeshFidelity:
    """What one mesh scored.

    Attributes:
        detail: detail ratio of the frontal render vs the photo.
        see_through: ``{yaw: share}``.
        descriptors: ``{yaw: (128,) float64 descriptor, or None when no face was found}``.
        photo_distance: ``{yaw: distance to the photo's descriptor}`` (NaN for a miss).
        renders: ``{yaw: (3, H, W) image}`` (for figures).
    """

    detail: float
    see_through: dict[float, float]
    descriptors: dict[float, np.ndarray | None]
    photo_distance: dict[float, float]
    renders: dict[float, torch.Tensor] = field(default_factory=dict)

    @property
    def misses(self) -> int:
        return sum(d is None for d in self.descriptors.values())


def render_views(mesh: TexturedMesh, yaws=FIDELITY_YAWS, size: int = RENDER_SIZE,
                 supersample: int = SUPERSAMPLE) -> dict[float, TexturedRendering]:
    """Unlit renders of ``mesh`` turned by each yaw (degrees), one camera for all views."""
    cam = head_camera(mesh.vertices, (size, size))
    return {float(y): render_textured(mesh, cam, angles=(0.0, math.radians(y), 0.0), background=BACKGROUND,
                                      supersample=supersample) for y in yaws}


def detail_render(mesh: TexturedMesh, landmarks3d: np.ndarray, size: int = RENDER_SIZE,
                  iod: float = DETAIL_RENDER_IOD) -> tuple[TexturedRendering, np.ndarray]:
    """The frontal render for the detail ratio, framed on the face: the view of
    :func:`render_views` (same camera distance, so the same perspective) zoomed so that the outer
    eye corners are ``iod`` px apart and the landmarks are centred, whatever the mesh's extent
    (face only, or head and shoulders). Returns the rendering and its ``(68, 2)`` landmarks."""
    c = mesh_centre(mesh.vertices)
    cam0 = head_camera(mesh.vertices, (size, size))
    lm = project_points(landmarks3d, cam0, centre=c)
    k = iod / max(float(np.linalg.norm(lm[EYE_CORNERS[1]] - lm[EYE_CORNERS[0]])), 1e-6)
    mid = (lm.min(0) + lm.max(0)) / 2.0
    half = (size - 1) / 2.0
    cam = PerspectiveCamera(focal=cam0.fx * k, size=(size, size), distance=cam0.distance, near=cam0.near,
                            center=(half - k * (mid[0] - cam0.center[0]), half - k * (mid[1] - cam0.center[1])))
    r = render_textured(mesh, cam, centre=c, background=BACKGROUND, supersample=SUPERSAMPLE)
    return r, project_points(landmarks3d, cam, centre=c)


def render_descriptor(image: torch.Tensor, detector: str = "dlib") -> np.ndarray | None:
    """The dlib descriptor of a render, computed as for a photo (:func:`facegcn.frontend.observe`).

    Args:
        image: ``(3, H, W)`` float in [0, 1].
        detector: the front-end's detector (``dlib`` or ``mtcnn``).

    Returns:
        ``(128,)`` float64, or None when no face is found.
    """
    try:
        obs = observe(photo_from_array(image_to_uint8(image)), detector=detector)[0]
    except NoFaceError:
        return None
    d = obs.identity.detach().cpu().double().numpy()
    return d if np.isfinite(d).all() else None


def measure_views(mesh: TexturedMesh, landmarks3d: np.ndarray, photo_pixels: np.ndarray, photo_landmarks: np.ndarray,
                  photo_descriptor, *, detector: str = "dlib", yaws=FIDELITY_YAWS, size: int = RENDER_SIZE,
                  keep_renders: bool = False) -> MeshFidelity:
    """Render ``mesh`` at each yaw and score it against a photo.

    Args:
        mesh: the exported mesh.
        landmarks3d: ``(68, 3)`` the mesh's landmark points (its frame and unit), projected into the
            frontal render for the detail patches.
        photo_pixels: ``(H, W, 3)`` uint8; ``photo_landmarks (68, 2)`` its landmarks.
        photo_descriptor: ``(128,)`` its dlib descriptor.
        detector: the front-end's detector for the renders.
        yaws: the views in degrees (the detail ratio has its own frontal render, :func:`detail_render`).
        size: render side in pixels.
        keep_renders: keep the images in the result.
    """
    views = render_views(mesh, yaws, size)
    pd = np.asarray(photo_descriptor.detach().cpu() if isinstance(photo_descriptor, torch.Tensor)
                    else photo_descriptor, np.float64)
    front, lm = detail_render(mesh, landmarks3d, size)
    detail = detail_ratio(front.image, lm, photo_pixels, np.asarray(photo_landmarks))
    descs = {y: render_descriptor(v.image, detector) for y, v in views.items()}
    return MeshFidelity(
        detail=detail,
        see_through={y: see_through_share(v.mask) for y, v in views.items()},
        descriptors=descs,
        photo_distance={y: descriptor_distance(d, pd) for y, d in descs.items()},
        renders={y: v.image for y, v in views.items()} if keep_renders else {},
    )


def measure_mesh(rec, mesh: TexturedMesh, *, yaws=FIDELITY_YAWS, size: int = RENDER_SIZE,
                 keep_renders: bool = False) -> MeshFidelity:
    """:func:`measure_views` of ``mesh`` (the export of ``rec``: vertex ``i`` of ``mesh`` is vertex
    ``i`` of ``rec.model``, so the model's landmark vertices are its landmarks) against ``rec``'s
    photo, landmarks (``observation.landmarks_photo``) and descriptor."""
    obs = rec.observation
    lm3 = np.asarray(mesh.vertices, np.float64)[rec.model.landmark_idx.cpu().numpy()]
    return measure_views(mesh, lm3, rec.photo.pixels, obs.landmarks_photo, obs.identity,
                         detector=rec.config.frontend.detector, yaws=yaws, size=size, keep_renders=keep_renders)


def _replace(obj, **changes):
    """``dataclasses.replace`` with only the fields ``obj`` has (older/newer layouts)."""
    names = {f.name for f in fields(obj)}
    return replace(obj, **{k: v for k, v in changes.items() if k in names})


def variant_meshes(rec, output=None) -> dict[str, TexturedMesh]:
    """The exports compared: ``coarse`` (the 3DMM albedo baked alone), ``gcn`` (the GCN-refined
    albedo baked alone; absent without refinement) and ``final`` (the export as written, with the
    configured texture mode, e.g. the photo's detail over the GCN albedo).

    ``output``: the output options (default ``rec.config.output``); the formats are set to
    ``obj`` so that the texture is baked as for a written ``mesh.obj``.
    """
    output = _replace(output or rec.config.output, formats=("obj",))
    model_only = _replace(output, texture="gcn")
    out = {"coarse": export_mesh(_replace(rec, refined_albedo=None, refined_render=None, texture=None), model_only)}
    if rec.refined_albedo is not None:
        out["gcn"] = export_mesh(_replace(rec, texture=None), model_only)
    out["final"] = export_mesh(rec, output)
    return out


def fidelity_row(rec, *, variants: tuple[str, ...] = VARIANTS, yaws=FIDELITY_YAWS, output=None,
                 keep_renders: bool = False) -> tuple[dict, dict[str, MeshFidelity]]:
    """Fidelity columns of one reconstruction (see the module docstring) and the raw results.

    Returns:
        ``row`` with ``detail_<v>``, ``seethrough_<v>``, ``seethrough_<view>_<v>``, ``iddist_<v>``,
        ``iddist_<view>_<v>``, ``idaccept_<v>``, ``idmiss_<v>`` for each variant ``v``; and
        ``{variant: MeshFidelity}`` (with the ``final`` renders when ``keep_renders``).
    """
    meshes = variant_meshes(rec, output)
    row: dict = {}
    res: dict[str, MeshFidelity] = {}
    for v in variants:
        if v not in meshes:
            continue
        f = res[v] = measure_mesh(rec, meshes[v], yaws=yaws, keep_renders=keep_renders and v == "final")
        row[f"detail_{v}"] = f.detail
        row[f"seethrough_{v}"] = float(np.nanmean(list(f.see_through.values())))
        for y in f.see_through:
            row[f"seethrough_{view_name(y)}_{v}"] = f.see_through[y]
            row[f"iddist_{view_name(y)}_{v}"] = f.photo_distance[y]
        st = pair_statistics(f.photo_distance.values())
        row[f"iddist_{v}"] = st.mean
        row[f"idaccept_{v}"] = st.accept
        row[f"idmiss_{v}"] = f.misses
    return row, res


# ------------------------------------------------------------------------ people and pairs
def read_labels(path: str | Path) -> dict[str, str]:
    """``{file: person}`` from a CSV of ``file,person`` lines (an optional ``file,person`` header;
    ``file`` relative to the photo folder)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read the labels ({exc})") from None
    out: dict[str, str] = {}
    for k, r in enumerate(csv.reader(text.splitlines())):
        if not r or not "".join(r).strip() or r[0].lstrip().startswith("#"):
            continue
        if len(r) < 2 or not r[0].strip() or not r[1].strip():
            raise InputError(f"{p}:{k + 1}: expected 'file,person'")
        if k == 0 and [c.strip().lower() for c in r[:2]] == ["file", "person"]:
            continue
        out[Path(r[0].strip()).as_posix()] = r[1].strip()
    return out


def person_of(rel: str, labels: dict[str, str] | None = None) -> str | None:
    """The person of a photo given its path relative to the folder (posix): its label (by path, or
    by file name), else its sub-folder, else None (unknown: left out of the pair statistics)."""
    if labels:
        if rel in labels:
            return labels[rel]
        name = Path(rel).name
        if name in labels:
            return labels[name]
    parts = Path(rel).parts
    return parts[0] if len(parts) > 1 else None


def add_pair_columns(rows: list[dict], persons: list[str | None], photo_descs: list[np.ndarray | None],
                     results: list[dict[str, MeshFidelity]]) -> None:
    """Add the person-level identity columns to ``rows`` (in place).

    Args:
        rows: one per photo.
        persons: each photo's person (None: unknown, no pairs).
        photo_descs: each photo's descriptor (``observation.identity``).
        results: each photo's ``{variant: MeshFidelity}``.
    """
    n = len(rows)
    for i in range(n):
        if persons[i] is None:
            continue
        same = [j for j in range(n) if j != i and persons[j] == persons[i]]
        other = [j for j in range(n) if persons[j] is not None and persons[j] != persons[i]]
        if same:
            st = pair_statistics(descriptor_distance(photo_descs[i], photo_descs[j]) for j in same)
            rows[i]["idsame_photo"], rows[i]["idsame_photo_accept"] = st.mean, st.accept
        for v, f in results[i].items():
            renders = [d for d in f.descriptors.values() if d is not None]
            if same:
                st = pair_statistics(descriptor_distance(d, photo_descs[j]) for d in renders for j in same)
                rows[i][f"idsame_{v}"], rows[i][f"idsame_accept_{v}"] = st.mean, st.accept
            if other:
                st = pair_statistics(descriptor_distance(d, photo_descs[j]) for d in renders for j in other)
                rows[i][f"idother_reject_{v}"] = st.reject
