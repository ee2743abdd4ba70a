"""Albedo of the parts that close the face (:mod:`facegcn.morphable.parts`): skin continued onto
the head and neck, eyes, teeth, gums and tongue, dark sockets — and their atlas texture.

* **Head and neck**: a screened-Poisson fill from the face's border vertices, ``-Δc + (c - m) / ℓ²
  = 0`` on the head's edge graph (weights ``1 / |e|²`` on the fitted shape), Dirichlet values at the
  face border, ``m`` = the face's median skin colour and ``ℓ`` = :data:`SKIN_FILL_LENGTH`: the
  border colour fades into ``m`` over a few centimetres (to 1/e about 2.5 cm from the face on
  ICT's head). Border colours far from ``m`` (hair,
  background, shadow baked into the face albedo) are pulled to ``m`` first, so the head never
  continues hair or background.
* **Eyes**: the outer (sclera) shell carries the cornea, so the iris is painted on it (and on the
  inner shell): a disc of radius :data:`IRIS_RADIUS` around the eye's axis, pupil
  :data:`PUPIL_RADIUS`, darker limbal ring, soft edge into a near-white, slightly warm sclera. The
  iris colour comes from the photo where the iris is visible: the closed mesh is posed with the
  coarse fit and rendered with the fit's camera; pixels whose triangle (``tri_id``) is an iris
  triangle give ``photo / SH irradiance`` (albedo); their robust median (highlights dropped),
  clamped to plausible iris colours, replaces the brown default in proportion to the pixel count.
  The sclera likewise, from the pixels of the white around the iris (the lids and lashes leave
  it greyer than the default), nearly neutral, luminance in [0.45, 0.9]. Then the eyeball's visible
  front (outer shell, vertices whose pixel shows the eyeball, one pixel in from the lids) takes the
  photo itself, ``photo / irradiance`` at the vertex (``eye_photo``): the lash shadow across the top
  of the eye and the iris where the person looks come with it — with the pattern alone the eyes
  stared, wide and white, from every angle. Photo colours are put on the face texture's scale (its
  ``exposure``, :func:`facegcn.refine.texture_map.exposure_gain`).
* **Teeth**: off-white, tinted (yellow ↔ white, ±3 %) by the photo where teeth pixels are
  visible (mouth open).
* **Gums and tongue** pinkish red; **mouth socket** and **eye sockets** dark.

:func:`settle_parts` (geometry, used by the export before colouring): ICT's blendshapes are
linear, so combinations such as ``mouthRollUpper`` + ``mouthSmile`` push the gums or teeth (and a
closing lid the eyeball) a few millimetres through the skin. Looking along the face's axis
(``-z``), a part vertex less than :data:`SETTLE_REACH` in front of the front-most skin
(face + head; a near-orthographic depth map of :data:`SETTLE_TEXEL` texels) is moved back
behind that skin layer's deepest point among the 3×3 texels around it, by :data:`SETTLE_MARGIN`. Parts seen through the mouth
or the eye opening have only the far side of the head behind them (> 7 cm on ICT) and stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from facegcn.refine.parts_photo import LUMA as _LUMA, eyeball_from_photo, observed, posed_rendering, robust_colour
from facegcn.refine.texture_map import exposure_gain
from facegcn.render import bake_vertex_colors, rasterize

if TYPE_CHECKING:
    from facegcn.morphable import ModelParts, MorphableModel

__all__ = [
    "DEFAULT_COLORS",
    "IRIS_RADIUS",
    "PUPIL_RADIUS",
    "PartColors",
    "bake_parts_texture",
    "eye_coordinates",
    "part_colors",
    "settle_parts",
    "skin_fill",
]

#: default albedo per part (floats in [0, 1])
DEFAULT_COLORS = {
    "sclera": (0.86, 0.82, 0.77),
    "iris": (0.34, 0.21, 0.12),
    "pupil": (0.03, 0.025, 0.025),
    "teeth": (0.88, 0.86, 0.80),
    "gums_and_tongue": (0.66, 0.30, 0.30),
    "mouth_socket": (0.24, 0.09, 0.08),
    "eye_socket": (0.12, 0.07, 0.06),
}
IRIS_RADIUS = 0.055  # decimetres (ICT's iris disc: 5.5 mm)
PUPIL_RADIUS = 0.02  # decimetres
SKIN_FILL_LENGTH = 0.2  # decimetres (graph units: the colour falls to 1/e about 2.5 cm from the face)
SETTLE_REACH = 0.3  # decimetres: deepest penetration corrected (a lip is ~1 cm thick)
SETTLE_MARGIN = 0.005  # decimetres behind the skin
SETTLE_TEXEL = 0.003  # decimetres: the skin depth map's pixel
SETTLE_GROUPS = ("teeth", "gums_and_tongue", "eyeball_left", "eyeball_right")


@dataclass(frozen=True)
class PartColors:
    """Per part-vertex albedo and where its colours came from.

    Attributes:
        colors: ``(P, 3)`` float32 in [0, 1], parallel to ``model.parts`` vertices.
        iris: ``(2, 3)`` float32 iris albedo of the left / right eye.
        teeth: ``(3,)`` float32 teeth albedo.
        observed_pixels: photo pixels used per source (``iris_left``, ``iris_right``, ``teeth``).
    """

    colors: np.ndarray
    iris: np.ndarray
    teeth: np.ndarray
    observed_pixels: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- geometry
def settle_parts(model: "MorphableModel", vertices, reach: float = SETTLE_REACH,
                 margin: float = SETTLE_MARGIN) -> np.ndarray:
    """Move interior part vertices that poke through the skin back behind it (module docstring).

    Args:
        model: a model with parts.
        vertices: ``(V + P, 3)`` closed-mesh vertices in the canonical pose (model units; e.g.
            ``model.closed_shape(id, exp)[0]``).
        reach, margin: model units (decimetres).

    Returns:
        ``(V + P, 3)`` float32: a copy, only ``z`` of penetrating teeth / gums / eyeball vertices changed.
    """
    parts, V = model.parts, model.n_vertices
    v = np.asarray(vertices.detach().cpu() if isinstance(vertices, torch.Tensor) else vertices, np.float64).copy()
    skin = np.concatenate([model.faces.cpu().numpy(), parts.faces[parts.faces_of("head_and_neck")]])
    idx = parts.vertices_of(*SETTLE_GROUPS) + V
    lo = v[idx, :2].min(0) - 3 * SETTLE_TEXEL
    hi = v[idx, :2].max(0) + 3 * SETTLE_TEXEL
    W, H = (np.ceil((hi - lo) / SETTLE_TEXEL).astype(int) + 1).tolist()
    far = float(np.abs(v[:, 2]).max()) * 100 + 1.0  # a near-orthographic view down -z
    px = np.stack([(v[:, 0] - lo[0]) / SETTLE_TEXEL, (hi[1] - v[:, 1]) / SETTLE_TEXEL, far - v[:, 2]], 1)
    fr = rasterize(torch.from_numpy(px).float()[None], torch.from_numpy(skin), (H, W))
    depth = np.where(fr.mask[0].numpy(), fr.depth[0].numpy().astype(np.float64), np.inf)
    x = np.clip(np.round(px[idx, 0]).astype(np.int64), 0, W - 1)
    y = np.clip(np.round(px[idx, 1]).astype(np.int64), 0, H - 1)
    skin_depth = depth[y, x]
    pen = skin_depth + margin - px[idx, 2]  # > 0: in front of (or within margin of) the skin
    hit = np.isfinite(skin_depth) & (pen > 0) & (pen < reach)
    # behind the same skin layer over the 3×3 texels around (the skin may slope within a texel)
    pad = np.pad(depth, 1, constant_values=np.inf)
    around = np.stack([pad[y + 1 + dy, x + 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    layer = np.where(np.abs(around - skin_depth) < 10 * margin, around, skin_depth)
    target = layer.max(0) + margin
    v[idx[hit], 2] = far - np.maximum(target[hit], px[idx[hit], 2])
    return v.astype(np.float32)


# --------------------------------------------------------------------------- skin
def _edges(faces: np.ndarray) -> np.ndarray:
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(e, 1), axis=0)


def skin_fill(model: "MorphableModel", face_colors: np.ndarray, vertices: np.ndarray | None = None,
              length: float = SKIN_FILL_LENGTH) -> np.ndarray:
    """Skin colour for the head-and-neck vertices, continued from the face (module docstring).

    Args:
        model: a model with parts.
        face_colors: ``(V, 3)`` float in [0, 1], the face's final albedo (per face vertex).
        vertices: ``(V + P, 3)`` closed-mesh positions (model units) for the edge weights; default
            the mean shape.
        length: fade length ``ℓ``, model units.

    Returns:
        ``(n_head, 3)`` float32 in [0, 1], for ``model.parts.vertices_of("head_and_neck")``.
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    parts, V = model.parts, model.n_vertices
    face_colors = np.clip(np.asarray(face_colors, np.float64), 0, 1)
    skin = model.region("skin").cpu().numpy() if "skin" in model.region_names else np.arange(V)
    median = np.median(face_colors[skin], 0)
    if vertices is None:
        vertices = np.concatenate([model.mean_shape.cpu().numpy(), parts.neutral])
    vertices = np.asarray(vertices, np.float64)
    head = parts.vertices_of("head_and_neck") + V
    e = _edges(parts.faces[parts.faces_of("head_and_neck")])
    w = 1.0 / np.maximum(((vertices[e[:, 0]] - vertices[e[:, 1]]) ** 2).sum(1), 1e-12)
    n = len(vertices)
    W = sp.coo_matrix((np.r_[w, w], (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), shape=(n, n)).tocsr()
    deg = np.asarray(W.sum(1)).ravel()
    known = np.zeros(n, bool)
    known[:V] = True
    border = np.flatnonzero(known & (deg > 0))
    # pull implausible border colours (hair, background, shadows) to the median skin colour
    dev = np.linalg.norm(face_colors[border] - median, axis=1) / max(float(np.linalg.norm(median)), 1e-3)
    trust = np.clip((0.35 - dev) / 0.2, 0.0, 1.0)[:, None]
    value = np.zeros((n, 3))
    value[border] = trust * face_colors[border] + (1 - trust) * median
    Wuu = W[head][:, head]
    A = sp.diags(deg[head] + 1.0 / length**2) - Wuu
    rhs = W[head][:, border] @ value[border] + median[None] / length**2
    out = spsolve(A.tocsc(), rhs)
    return np.clip(np.asarray(out, np.float32).reshape(-1, 3), 0, 1)


# --------------------------------------------------------------------------- eyes
def eye_coordinates(parts: "ModelParts") -> tuple[np.ndarray, np.ndarray]:
    """Distance of each eyeball vertex from its eye's optical axis, on the neutral.

    The eye centre is a least-squares sphere fit of the sclera shell, the axis points to the
    cornea's apex (the shell's 5 most forward vertices).

    Args:
        parts: the model's parts.

    Returns:
        ``rho (P,)`` float32 distance from the axis (model units; +inf off the eyeballs) and
        ``front (P,)`` bool (in front of the eye centre along the axis).
    """
    rho = np.full(parts.n_vertices, np.inf, np.float32)
    front = np.zeros(parts.n_vertices, bool)
    for g in ("eyeball_left", "eyeball_right"):
        idx = parts.vertices_of(g)
        q = parts.neutral[idx].astype(np.float64)
        shell = q[parts.eyeball_part[idx] == 1]
        A = np.c_[2 * shell, np.ones(len(shell))]
        c = np.linalg.lstsq(A, (shell**2).sum(1), rcond=None)[0][:3]
        apex = shell[np.argsort(shell[:, 2])[-5:]].mean(0)
        axis = (apex - c) / np.linalg.norm(apex - c)
        d = q - c
        h = d @ axis
        rho[idx] = np.linalg.norm(d - h[:, None] * axis, axis=1)
        front[idx] = h > 0
    return rho, front


def _smoothstep(a: float, b: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _eye_pattern(t: np.ndarray, front: np.ndarray, iris: np.ndarray, sclera: np.ndarray | None = None) -> np.ndarray:
    """Albedo at normalised axis distance ``t = rho / IRIS_RADIUS``: pupil, iris with a brighter
    collarette and a darker limbal ring, soft edge to the sclera (behind the centre: sclera)."""
    sclera = np.asarray(DEFAULT_COLORS["sclera"] if sclera is None else sclera, np.float32)
    pupil = np.asarray(DEFAULT_COLORS["pupil"], np.float32)
    p = PUPIL_RADIUS / IRIS_RADIUS
    shade = 1.15 - 0.25 * _smoothstep(p, 0.75, t) - 0.45 * _smoothstep(0.8, 1.0, t)
    col = iris[None] * shade[:, None]
    col = np.where((t < p)[:, None], pupil, col)
    edge = _smoothstep(p * 0.85, p * 1.1, t)[:, None]
    col = edge * col + (1 - edge) * pupil
    out_w = _smoothstep(1.0, 1.12, t)[:, None]
    col = out_w * sclera + (1 - out_w) * col
    return np.where(front[:, None], col, sclera).astype(np.float32)


# --------------------------------------------------------------------------- the photo
def _iris_colour(samples: np.ndarray) -> tuple[np.ndarray, float]:
    """Plausible iris albedo from photo samples (highlights and sclera dropped, luminance and
    saturation clamped) and its weight against the default (0 → default)."""
    default = np.asarray(DEFAULT_COLORS["iris"], np.float32)
    if len(samples) < 3:
        return default, 0.0
    col = np.clip(robust_colour(samples, 0.3), 0, 1)
    lum = float(col @ _LUMA)
    target = float(np.clip(lum, 0.04, 0.4))
    grey = np.full(3, lum, np.float32)
    col = grey + np.clip(col - grey, -0.15, 0.15)  # limit the saturation
    col = col * (target / max(lum, 1e-3))
    return np.clip(col, 0, 1).astype(np.float32), min(1.0, len(samples) / 12.0)


def _sclera_colour(samples: np.ndarray) -> tuple[np.ndarray, float]:
    """The photo's sclera (the white of the eye as the lids and lashes leave it: greyer than the
    default), luminance clamped to [0.45, 0.9], nearly neutral, and its weight (0 → default)."""
    default = np.asarray(DEFAULT_COLORS["sclera"], np.float32)
    if len(samples) < 6:
        return default, 0.0
    col = np.clip(robust_colour(samples, 0.1), 0, 1)
    lum = float(col @ _LUMA)
    grey = np.full(3, lum, np.float32)
    col = grey + np.clip(col - grey, -0.04, 0.04)
    col = col * (float(np.clip(lum, 0.45, 0.9)) / max(lum, 1e-3))
    return np.clip(col, 0, 1).astype(np.float32), min(1.0, len(samples) / 12.0)


def _teeth_colour(samples: np.ndarray) -> tuple[np.ndarray, float]:
    """Off-white, tinted by the photo's teeth (their chroma only: the mouth's shadow is not in
    the light model)."""
    default = np.asarray(DEFAULT_COLORS["teeth"], np.float32)
    if len(samples) < 20:
        return default, 0.0
    col = np.maximum(robust_colour(samples, 0.1), 1e-3)
    tint = np.clip(col / col.mean(), 0.97, 1.03)
    tint[:2] = tint[:2].mean()  # yellower or whiter, never pink (lips in the samples)
    return (default * tint / (tint @ _LUMA)).clip(0, 1).astype(np.float32), min(1.0, len(samples) / 60.0)


def _tris_of(model, names, vertex_ok: np.ndarray | None = None) -> np.ndarray:
    """Closed-mesh triangle ids of the named part groups (optionally: all corners in ``vertex_ok``)."""
    parts, V = model.parts, model.n_vertices
    fi = parts.faces_of(*names)
    if vertex_ok is not None:
        ok = np.concatenate([np.zeros(V, bool), vertex_ok])
        fi = fi[ok[parts.faces[fi]].all(1)]
    return fi + model.n_faces


# --------------------------------------------------------------------------- everything
def part_colors(rec, face_colors: np.ndarray | None = None, vertices: np.ndarray | None = None,
                exposure: np.ndarray | None = None, eye_photo: bool = True) -> PartColors:
    """Per part-vertex albedo of a reconstruction (module docstring).

    Args:
        rec: a :class:`~facegcn.pipeline.Reconstruction` whose model has parts (uses ``model``,
            ``synthesis``, ``coarse.coeffs``, ``observation.image`` (3, 224, 224) in [0, 1]).
        face_colors: ``(V, 3)`` float in [0, 1], the face colour the head continues (default:
            ``rec.albedo``; pass the face texture sampled at the vertices so the seam matches it).
        vertices: ``(V + P, 3)`` the closed mesh in the canonical pose, model units (default:
            :func:`settle_parts` of ``closed_shape`` of the fit).
        eye_photo: the visible front of each eyeball takes the photo (module docstring); False:
            the procedural pattern alone.
        exposure: ``(3,)`` the face texture's albedo factor (:attr:`UVTexture.exposure`; default
            :func:`~facegcn.refine.texture_map.exposure_gain` of ``rec``): colours seen in the
            photo (iris, teeth, sclera) take it, so they sit on the face texture's scale.

    Returns:
        :class:`PartColors` with ``colors (P, 3)`` float32 in [0, 1].
    """
    m = rec.model
    parts = m.parts
    if parts is None:
        raise ValueError(f"model {m.name!r} has no parts")
    if face_colors is None:
        face_colors = rec.albedo.detach().cpu().numpy()
    col = np.zeros((parts.n_vertices, 3), np.float32)
    c = rec.coarse.coeffs
    if vertices is None:
        with torch.no_grad():
            vertices = settle_parts(m, m.closed_shape(c.id, c.exp)[0])
    shape = np.asarray(vertices, np.float32)
    col[parts.vertices_of("head_and_neck")] = skin_fill(m, face_colors, shape)
    for g, key in (("mouth_socket", "mouth_socket"), ("eye_socket_left", "eye_socket"),
                   ("eye_socket_right", "eye_socket"), ("gums_and_tongue", "gums_and_tongue")):
        col[parts.vertices_of(g)] = DEFAULT_COLORS[key]
    irr, tri_id = posed_rendering(rec, shape)
    if exposure is None:
        exposure = exposure_gain(m, rec.synthesis, rec.observation, rec.coarse)
    irr = irr / np.asarray(exposure, np.float32).reshape(3, 1, 1)  # photo / (E / ḡ): the texture's scale
    rho, front = eye_coordinates(parts)
    t = rho / IRIS_RADIUS
    irises, seen = [], {}
    for side in ("left", "right"):
        idx = parts.vertices_of(f"eyeball_{side}")
        ok = np.zeros(parts.n_vertices, bool)
        ok[idx] = front[idx] & (t[idx] < 0.9) & (parts.eyeball_part[idx] == 1)
        samples, npx = observed(rec, irr, tri_id, _tris_of(m, [f"eyeball_{side}"], ok))
        obs, w = _iris_colour(samples)
        iris = w * obs + (1 - w) * np.asarray(DEFAULT_COLORS["iris"], np.float32)
        ok[:] = False
        ok[idx] = front[idx] & (t[idx] > 1.3) & (t[idx] < 2.6) & (parts.eyeball_part[idx] == 1)
        samples, n_sclera = observed(rec, irr, tri_id, _tris_of(m, [f"eyeball_{side}"], ok), erode=False)
        obs, w = _sclera_colour(samples)
        seen[f"sclera_{side}"] = n_sclera
        sclera = w * obs + (1 - w) * np.asarray(DEFAULT_COLORS["sclera"], np.float32)
        col[idx] = _eye_pattern(t[idx], front[idx], iris, sclera)
        if eye_photo:
            alb, vis = eyeball_from_photo(rec, shape, irr, tri_id, idx, _tris_of(m, [f"eyeball_{side}"]))
            # the outer shell's front (sclera + cornea) is what is seen; the back half projects onto
            # the same pixels, hidden behind it
            vis &= (parts.eyeball_part[idx] == 1) & front[idx]
            col[idx[vis]] = alb[vis]
            seen[f"eyeball_photo_{side}"] = int(vis.sum())
        irises.append(iris)
        seen[f"iris_{side}"] = npx
    samples, npx = observed(rec, irr, tri_id, _tris_of(m, ["teeth"]), erode=False)
    obs, w = _teeth_colour(samples)
    teeth = w * obs + (1 - w) * np.asarray(DEFAULT_COLORS["teeth"], np.float32)
    col[parts.vertices_of("teeth")] = teeth
    seen["teeth"] = npx
    return PartColors(np.clip(col, 0, 1), np.stack(irises).astype(np.float32), teeth.astype(np.float32), seen)


def bake_parts_texture(model: "MorphableModel", closed_colors: np.ndarray, size: int = 1024) -> np.ndarray:
    """The parts-atlas texture (layout: :mod:`facegcn.morphable.parts`).

    :func:`~facegcn.render.bake_vertex_colors` without its gutter; then the texel under each UV
    corner not covered by a triangle gets that corner's colour (ICT's teeth, eyes and sockets have
    UV triangles smaller than a texel), and every other texel the colour of the nearest filled
    one: bilinear / mip-mapped lookups near a chart's border read that chart's colours, never the
    atlas's mean (a brown-grey between teeth, eyes and skin).

    Args:
        model: a model with parts.
        closed_colors: ``(V + P, 3)`` float in [0, 1]: the face's colours, then the parts' (the
            face's are used by the triangles across the seam and the sockets' rims).
        size: the texture's side, texels.

    Returns:
        ``(size, size, 3)`` uint8 texture (row 0 = top, ``v`` = 1).
    """
    p = model.parts
    col = np.clip(np.asarray(closed_colors, np.float32), 0, 1)
    tex, mask = bake_vertex_colors(col, p.faces, p.uv, p.faces_uv, size=size, dilate=0, background=None,
                                   return_mask=True)
    tex = tex.copy()
    vid, ty, tx, iy, ix = _parts_fill_plan(p, mask, size)
    tex[ty, tx] = np.round(col[vid] * 255).astype(np.uint8)
    return tex[iy, ix]


def _parts_fill_plan(p, mask: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
    """What :func:`bake_parts_texture` does after the bake, which depends on the atlas's layout
    only: the UV corners on uncovered texels (vertex ids ``vid`` and texels ``ty, tx``) and, for
    every texel, the nearest filled one (``iy, ix``, a Euclidean distance transform). Kept in
    ``cache_dir("parts-fill")`` per layout and size (:func:`facegcn.io.cached.cached_arrays`; the
    transform is ~60 ms at 1024²)."""
    from facegcn.cache import array_digest
    from facegcn.io.cached import cached_arrays

    def plan() -> dict[str, np.ndarray]:
        from scipy.ndimage import distance_transform_edt

        from facegcn.render import uv_to_pixel

        filled = mask.copy()
        corners = np.unique(np.stack([p.faces.reshape(-1), p.faces_uv.reshape(-1)], 1), axis=0)
        xy = np.clip(np.round(uv_to_pixel(p.uv[corners[:, 1]], size)).astype(np.int64), 0, size - 1)
        free = ~filled[xy[:, 1], xy[:, 0]]
        filled[xy[free, 1], xy[free, 0]] = True
        iy, ix = distance_transform_edt(~filled, return_distances=False, return_indices=True)
        out = {"vid": corners[free, 0], "ty": xy[free, 1], "tx": xy[free, 0], "iy": iy, "ix": ix}
        return {k: v.astype(np.int32) for k, v in out.items()}

    z = cached_arrays("parts-fill", array_digest(p.faces, p.faces_uv, p.uv, mask, extra=str(size)), plan)
    return tuple(z[k].astype(np.int64) for k in ("vid", "ty", "tx", "iy", "ix"))
