"""The exported UV texture: the GCN albedo as the base, the photo's own detail wherever it is seen.

For a texel ``x`` of the face's UV layout, with surface point ``s(x)`` (barycentric interpolation
of the posed, fitted mesh) and its mirror ``s_m(x)`` (the same barycentrics on the mirrored
vertices)::

    c_d(x) = photo(P s(x)) / max(E(s(x)), f ḡ)        de-lit photo colour (E = fitted SH irradiance,
                                                      floored at f = 0.6 of its mean ḡ)
    w_d(x) = vis(s) · ramp(cos θ(s)) · M(p(s))        visibility × viewing angle × face-region mask
    c_m, w_m: the same at s_m(x)                      the unseen side takes its mirror
    α_d = min(w_d / τ, 1),   α_m = (1 − α_d) · min(w_m / τ, 1)
    photo layer: c_p = (α_d c_d + α_m c_m) / (α_d + α_m),   alpha α = α_d + α_m
    exposure:    every colour × ḡ = Σ w_v E_v / Σ w_v    the light's mean over the seen face moves
                                                      into the albedo (its free scale, per channel)
    partial de-lighting (``delight`` s < 1; ``"lit"`` is s = 0): the blend × (max(E, f ḡ) / ḡ)^(1−s)

``P`` maps the aligned crop to the original photo (full resolution: the texture takes the photo's
own pixels, not the 224² crop's; read by Catmull-Rom interpolation by default, which keeps the
photo's finest detail where bilinear halves it: the detail ratio of 9 real photos 0.59 → 0.64,
:mod:`facegcn.render._sample_kernels`), ``θ`` is the angle between the normal and the direction to the
camera, ``M`` is the front-end's face-region mask (skin weighted by the per-image skin-colour
model; brows, eyes, nose, lips) ∩ the coarse render's coverage, both eroded: hair, glasses, hands
and background never enter. The photo layer is then blended into the GCN albedo (baked from the
per-vertex colours, with skin filled in where the photo showed none: :mod:`facegcn.refine.skin`)
with a Laplacian pyramid (Burt & Adelson 1983: each band blended with the
alpha blurred to that band's scale), so the seam between photo and model colour is invisible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter, minimum_filter

from facegcn.errors import ConfigError
from facegcn.render import sh_irradiance
from facegcn.refine.skin import skin_filled_albedo
from facegcn.render._sample_kernels import bicubic, gather, observe
from facegcn.render.bake import _sample_bilinear, fill_gutter, rasterize_uv

__all__ = ["UVTexture", "TEXTURE_MODES", "PHOTO_FILTERS", "compose_texture", "laplacian_blend", "exposure_gain"]

TEXTURE_MODES = ("albedo", "lit", "gcn")
PHOTO_FILTERS = ("bicubic", "bilinear")  # how the photo is read at the texels


@dataclass(frozen=True, eq=False)
class UVTexture:
    """A composed face texture.

    Attributes:
        image: ``(S, S, 3)`` float32 in [0, 1] (row 0 = top = ``v`` 1).
        photo_alpha: ``(S, S)`` float32 in [0, 1], how much of each texel comes from the photo.
        photo_share: mean ``photo_alpha`` over the covered texels of the UV layout.
        mode: ``"albedo"`` (de-lit, the default), ``"lit"`` (as photographed) or ``"gcn"`` (the
            per-vertex GCN albedo only).
        vertex_albedo: ``(V, 3)`` float64, the per-vertex base under the texture: the GCN albedo
            with skin filled in where the photo showed no skin (:mod:`facegcn.refine.skin`;
            not filled in ``"gcn"`` mode) — the colours for vertex-coloured exports.
        exposure: ``(3,)`` the factor applied to every albedo (``exposure`` of
            :func:`compose_texture`; ones when off) — the parts' colours take it too.
        photo_filter: how the photo was read (one of :data:`PHOTO_FILTERS`).
        delight: the share of the fitted shading removed (``delight`` of :func:`compose_texture`).
    """

    image: np.ndarray
    photo_alpha: np.ndarray
    photo_share: float
    mode: str
    vertex_albedo: np.ndarray
    exposure: np.ndarray = field(default_factory=lambda: np.ones(3))
    photo_filter: str = "bicubic"
    delight: float = 1.0


def _skin_colour_weight(observation, max_log_lum: float = 0.6, max_chroma: float = 0.12) -> np.ndarray:
    """``(224, 224)`` in [0, 1]: how close each aligned pixel's colour is to this face's own skin
    (the median of the skin-labelled pixels below the eyes), in luminance ratio and chromaticity.
    Rejects what a generic skin-colour model lets through on the forehead and the jaw: a fringe,
    a beard, a collar, a dark or bright background."""
    img = observation.image.cpu().numpy().astype(np.float64)  # (3, H, W)
    labels = observation.labels.cpu().numpy()
    eye_y = float(np.asarray(observation.landmarks)[36:48, 1].max())
    rows = np.arange(labels.shape[0])[:, None]
    ref_px = (labels == 1) & (rows > eye_y)
    if ref_px.sum() < 50:
        return np.ones(labels.shape, np.float32)
    lum = img.mean(0) + 1e-3
    chroma = img / lum
    ref_lum = np.median(lum[ref_px])
    ref_chroma = np.median(chroma[:, ref_px], axis=1)[:, None, None]
    d = np.maximum(np.abs(np.log(lum / ref_lum)) / max_log_lum,
                   np.linalg.norm(chroma - ref_chroma, axis=0) / max_chroma)
    return np.clip(2.0 - d, 0.0, 1.0).astype(np.float32)  # 1 up to the limits, 0 at twice them


def _region_mask(observation, coverage: torch.Tensor, erode: int = 5) -> np.ndarray:
    """``(224, 224, 1)`` float32: the face-region weight (skin × skin model, other regions 1) ∩ the
    render coverage, eroded by ``erode`` pixels so that no border pixel is sampled."""
    labels = observation.labels.cpu().numpy()
    skin = observation.skin_weight.cpu().numpy().astype(np.float32) * _skin_colour_weight(observation)
    m = np.where(labels == 1, skin, (labels > 0).astype(np.float32))
    m = m * (coverage.reshape(m.shape).cpu().numpy() > 0.5)
    m = gaussian_filter(m, 1.5)  # the skin model's per-pixel weight is patchy: no islands
    return minimum_filter(m, size=2 * erode + 1, mode="constant")[..., None]


def laplacian_blend(top: torch.Tensor, base: torch.Tensor, alpha: torch.Tensor, levels: int = 6,
                    band_gain=None) -> torch.Tensor:
    """Multi-band blend of ``top`` over ``base`` (Burt & Adelson 1983).

    Each Laplacian band of the two images is mixed with the alpha's Gaussian-pyramid level of the
    same scale; the result is the collapsed pyramid. With ``alpha`` ≡ 1 it returns ``top``, with
    ``alpha`` ≡ 0 ``base`` (up to float rounding). ``band_gain(i)`` (optional) scales the alpha of
    band ``i`` (0 = finest; the last band is the low-pass residual).

    Shapes:
        top, base: ``(C, H, W)`` float; alpha: ``(1, H, W)`` in [0, 1] → ``(C, H, W)``.
    """
    def down(x):
        return F.avg_pool2d(x[None], 2, ceil_mode=True)[0]

    def up(x, like):
        return F.interpolate(x[None], size=like.shape[-2:], mode="bilinear", align_corners=False)[0]

    g_t, g_b, g_a = [top], [base], [alpha]
    for _ in range(levels):
        if min(g_t[-1].shape[-2:]) < 4:
            break
        g_t.append(down(g_t[-1]))
        g_b.append(down(g_b[-1]))
        g_a.append(down(g_a[-1]))
    def gain(i):
        return 1.0 if band_gain is None else band_gain(i)

    n = len(g_t) - 1
    a = g_a[n] * gain(n)
    out = a * g_t[n] + (1 - a) * g_b[n]
    for i in range(n - 1, -1, -1):
        # up(out) + a (g_t − up(g_t')) + (1 − a)(g_b − up(g_b')) with up linear: two upsamplings
        # (of out − g_b' and g_t' − g_b') instead of three
        a = g_a[i] * gain(i)
        out = (a * g_t[i] + (1 - a) * g_b[i] + up(out - g_b[i + 1], g_t[i])
               - a * up(g_t[i + 1] - g_b[i + 1], g_t[i]))
    return out


def drop_photo_islands(alpha: np.ndarray, level: float = 0.5, min_share: float = 0.05) -> np.ndarray:
    """Photo alpha without its small islands: texels that a few skin-coloured pixels far from the
    face fed (a blond fringe's highlight, a gap in the hair), which would bake a stray patch of
    photo, framed by hair colour, into the model-filled forehead.

    The components (4-neighbours) of ``alpha ≥ level`` smaller than ``min_share`` of the largest
    are islands; every texel takes the component of its nearest ``≥ level`` texel, and those
    belonging to an island get alpha 0 (their soft fringe goes with them).

    Args:
        alpha: ``(S, S)`` float in [0, 1] (unblurred).

    Returns:
        ``(S, S)`` float32, ``alpha`` with the islands zeroed (unchanged when there are none).
    """
    from scipy import ndimage

    solid = alpha >= level
    comp, n = ndimage.label(solid)
    if n <= 1:
        return alpha.astype(np.float32)
    sizes = np.bincount(comp.ravel(), minlength=n + 1)
    island = sizes < min_share * sizes[1:].max()
    island[0] = False
    if not island.any():
        return alpha.astype(np.float32)
    _, (iy, ix) = ndimage.distance_transform_edt(~solid, return_indices=True)
    out = alpha.astype(np.float32).copy()
    out[island[comp[iy, ix]]] = 0.0
    return out


def _feature_vertices(model, rings: int = 2) -> np.ndarray | None:
    """``(V,)`` bool: the model's brow, eye, nose and mouth vertices and ``rings`` rings around
    them (None when the model names none of these regions)."""
    names = [n for n in ("brows", "eyes", "nose", "mouth") if n in model.region_names]
    if not names:
        return None
    m = np.zeros(model.n_vertices, bool)
    for n in names:
        m[model.region(n).cpu().numpy()] = True
    faces = model.faces.cpu().numpy()
    for _ in range(rings):
        m[faces[m[faces].any(1)].ravel()] = True
    return m


def _bake(colors: np.ndarray, corners, bary, covered: np.ndarray, size: int) -> np.ndarray:
    """Per-vertex ``colors (V, 3)`` over the covered texels, gutter-filled: ``(S, S, 3)`` float32."""
    tex = np.zeros((size, size, 3), np.float32)
    tex[covered] = gather(colors, corners, bary)
    return fill_gutter(tex, covered, 8, "mean")


def _vertex_terms(model, synthesis, observation, coarse) -> dict[str, np.ndarray]:
    """Per-vertex inputs of the texture: photo and crop positions, visibility, cos θ, irradiance."""
    st, c = coarse.state, coarse.coeffs
    px = st.verts_px[0].detach().cpu().double().numpy()  # (V, 2) aligned crop
    A = np.asarray(observation.transform_inv, np.float64)  # (2, 3) aligned → photo
    photo_px = px @ A[:, :2].T + A[:, 2]
    verts = st.vertices[0].detach()
    cam = torch.tensor([0.0, 0.0, float(synthesis.camera.distance)], dtype=verts.dtype, device=verts.device)
    view = torch.nn.functional.normalize(cam - verts, dim=-1)
    cos = (st.normals[0].detach() * view).sum(-1)
    irr = sh_irradiance(st.normals.detach(), c.sh.detach())[0]
    vis = coarse.rendering.visibility.reshape(-1).to(torch.float64)
    return {"photo": photo_px, "crop": px, "vis": vis.cpu().numpy()[:, None],
            "cos": cos.cpu().double().numpy()[:, None], "irr": irr.cpu().double().numpy()}


_COLUMNS = ("photo", "crop", "vis", "cos", "irr")  # per-vertex terms, gathered as one (V, 9) block


def exposure_gain(model, synthesis, observation, coarse, cos_lo: float = 0.25, cos_hi: float = 0.6) -> np.ndarray:
    """``(3,)`` float64: the albedo factor of :func:`compose_texture`'s ``exposure`` (the fitted
    irradiance's mean over the seen face), for colours made elsewhere (the closed head's parts)."""
    terms = _vertex_terms(model, synthesis, observation, coarse)
    m_v, _ = _sample_bilinear(_region_mask(observation, coarse.rendering.mask[0]), terms["crop"])
    ramp_v = np.clip((terms["cos"][:, 0] - cos_lo) / (cos_hi - cos_lo), 0.0, 1.0)
    return _exposure_gain(terms["irr"], m_v[:, 0] * terms["vis"][:, 0] * ramp_v)


def _exposure_gain(irr: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``(3,)`` the weighted mean irradiance ``Σ w E / Σ w`` over the vertices (1 where nothing is seen)."""
    w = np.clip(weight, 0.0, None)
    if w.sum() < 1e-6:
        return np.ones(3)
    g = (irr * w[:, None]).sum(0) / w.sum()
    return np.clip(g, 0.2, 5.0)


def _observe(block: np.ndarray, corners, bary, photo: np.ndarray, region: np.ndarray, cos_lo: float, cos_hi: float,
             photo_filter: str = "bicubic", irr_floor=0.05, *, remap=None, rows=None):
    """The photo's observation at the surface points of ``corners`` / ``bary``, by one fused numba
    pass (:func:`facegcn.render._sample_kernels.observe`; numpy form: :func:`_observe_reference`).

    Args:
        block: ``(V, 9)`` float32, the vertex terms of :data:`_COLUMNS` side by side.
        corners: ``(N, 3)`` int vertex ids; bary: ``(N, 3)`` float32 barycentrics.
        photo: ``(H, W, 3)`` float32 in [0, 1]; region: ``(224, 224, 1)`` float32 (:func:`_region_mask`).
        cos_lo, cos_hi: the viewing-angle ramp.
        photo_filter: one of :data:`PHOTO_FILTERS`.
        irr_floor: scalar or ``(3,)``, the least irradiance divided by.
        remap: optional ``(V,)`` int applied to ``corners`` (the mirror map: the mirrored points).
        rows: optional ``(R,)`` int, the points to evaluate (default all); the others get zeros.

    Returns:
        ``(col (N, 3), w (N,), irr (N, 3))`` float64: de-lit photo colour, weight (visibility ×
        viewing angle × region mask × inside the photo), floored irradiance.
    """
    return observe(block, corners, bary, photo, region, cos_lo, cos_hi, photo_filter == "bicubic", irr_floor,
                   remap=remap, rows=rows)


def _observe_reference(block: np.ndarray, corners, bary, photo: np.ndarray, region: np.ndarray, cos_lo: float,
                       cos_hi: float, photo_filter: str = "bicubic", irr_floor=0.05, *, remap=None, rows=None):
    """:func:`_observe` composed of the separate lookups and numpy temporaries (same arguments and
    returns; tests compare the two)."""
    if remap is not None or rows is not None:
        rows = np.arange(len(corners)) if rows is None else rows
        sub = corners[rows] if remap is None else np.asarray(remap)[corners[rows]]
        N = len(corners)
        out = (np.zeros((N, 3)), np.zeros(N), np.zeros((N, 3)))  # col, w, irr
        for o, x in zip(out, _observe_reference(block, sub, bary[rows], photo, region, cos_lo, cos_hi, photo_filter,
                                                irr_floor)):
            o[rows] = x
        return out
    a = gather(block, corners, bary)  # one gather for every term: (N, 9)
    col, inside = (bicubic if photo_filter == "bicubic" else _sample_bilinear)(photo, a[:, 0:2])
    m, _ = _sample_bilinear(region, a[:, 2:4])
    irr = np.maximum(a[:, 6:9], irr_floor)
    ramp = np.clip((a[:, 5] - cos_lo) / (cos_hi - cos_lo), 0.0, 1.0)
    w = np.clip(a[:, 4], 0, 1) * ramp * m[:, 0] * inside
    return np.maximum(col / irr, 0.0), w, irr


def compose_texture(model, synthesis, observation, coarse, photo_pixels: np.ndarray, albedo: torch.Tensor,
                    size: int, mode: str = "albedo", *, min_weight: float = 0.5, cos_lo: float = 0.25,
                    cos_hi: float = 0.6, alpha_sigma: float = 3.0, coarse_bands: float = 1.0,
                    exposure: bool = True, photo_filter: str = "bicubic", shade_floor: float = 0.6,
                    delight: float = 1.0) -> UVTexture:
    """The face's UV texture at texel resolution (see the module docstring).

    Args:
        model: the morphable model (must have UVs: ``model.uv``, ``model.faces_uv``).
        synthesis: the forward model of the fit (its camera).
        observation: the face's :class:`~facegcn.frontend.FaceObservation` (labels, skin weight,
            aligned → photo transform).
        coarse: the :class:`~facegcn.coarse.fit.CoarseResult` (posed state, SH light, visibility).
        photo_pixels: ``(H, W, 3)`` uint8, the original photo.
        albedo: ``(V, 3)`` float in [0, 1], the per-vertex base (GCN-refined) albedo.
        size: texture size S (square).
        mode: one of :data:`TEXTURE_MODES`.
        min_weight: ``τ``: the weight at which a texel is taken fully from the photo.
        cos_lo, cos_hi: the viewing-angle ramp: no photo below ``cos θ = cos_lo`` (grazing), full
            weight above ``cos_hi``.
        alpha_sigma: Gaussian blur of the photo alpha in texels (at S = 1024; scaled with S).
        coarse_bands: factor on the alpha of the bands coarser than the mesh's vertex spacing
            (1 = the photo's colour everywhere it is seen; 0 = only its fine detail).
        exposure: fix the albedo's scale, which a single photo leaves free (albedo × light), so
            that the fitted irradiance averages 1 per channel over the seen face: the albedo is
            multiplied by that mean ``ḡ = Σ w E / Σ w`` (weights: visibility × viewing angle ×
            face region). The texture then has the photo's own brightness and white balance on
            average, and only the shading is removed (False: the fit's own scale).
        photo_filter: ``"bicubic"`` (Catmull-Rom; the default) or ``"bilinear"``: how the photo is
            read at each texel's point.
        shade_floor: the photo is divided by ``max(E, shade_floor × ḡ)`` (and at least 0.05):
            where the fitted SH irradiance falls far below its mean — creases whose fitted normals
            turn away from the light while the photo shows them lit (the upper eyelids of a
            smile) — dividing by it alone paints bright bands into the albedo. 0.6 touches ~10 %
            of the seen vertices of a frontal photo (E / ḡ: 1st / 5th / 10th / 50th percentiles
            0.39 / 0.46 / 0.57 / 1.0 on obama.jpg).
        delight: how much of the fitted shading the ``"albedo"`` texture removes (``s``): the
            blended albedo (photo layer and model base alike) is multiplied by ``(E / ḡ)^(1-s)``
            (floored ``E``), so 1 = the pure albedo, 0 = ``"lit"``. Shading the base too, not only
            dividing the photo by ``ḡ^(1-s) E^s``, keeps the model-filled and mirrored texels on
            the photo's shading (9 real photos at s = 0.5, renders at 0°/±30°: dlib distance to
            the person's other photos 0.562 → 0.534, to the same photo 0.495 → 0.455).

    Returns:
        :class:`UVTexture`.
    """
    if not 0.0 <= delight <= 1.0:
        raise ConfigError(f"delight must be in [0, 1], got {delight}")
    if mode not in TEXTURE_MODES:
        raise ConfigError(f"unknown texture mode {mode!r}; choose from {', '.join(TEXTURE_MODES)}")
    if photo_filter not in PHOTO_FILTERS:
        raise ConfigError(f"unknown photo filter {photo_filter!r}; choose from {', '.join(PHOTO_FILTERS)}")
    tri, bary = rasterize_uv(model.uv.cpu().numpy(), model.faces_uv.cpu().numpy(), size)
    covered = tri >= 0
    faces = model.faces.cpu().numpy()
    corners = faces[tri[covered]]  # (N, 3) vertex ids
    b = bary[covered].astype(np.float32)
    base_v = albedo.detach().clamp(0, 1).cpu().double().numpy()
    alpha = np.zeros((size, size), np.float32)
    terms = _vertex_terms(model, synthesis, observation, coarse)
    region = _region_mask(observation, coarse.rendering.mask[0])
    m_v, _ = _sample_bilinear(region, terms["crop"])
    ramp_v = np.clip((terms["cos"][:, 0] - cos_lo) / (cos_hi - cos_lo), 0.0, 1.0)
    seen_v = m_v[:, 0] * terms["vis"][:, 0] * ramp_v
    mean_irr = _exposure_gain(terms["irr"], seen_v)  # ḡ
    gain = mean_irr if exposure else np.ones(3)
    if mode == "gcn":
        base_v = np.clip(base_v * gain, 0.0, 1.0)
        return UVTexture(_bake(base_v, corners, b, covered, size), alpha, 0.0, mode, base_v, gain, photo_filter, delight)
    photo = photo_pixels.astype(np.float32) / 255.0
    base_v = np.clip(skin_filled_albedo(base_v, seen_v, faces, features=_feature_vertices(model)) * gain, 0.0, 1.0)
    base = _bake(base_v, corners, b, covered, size)
    block = np.concatenate([terms[k] for k in _COLUMNS], 1).astype(np.float32)
    floor = np.maximum(shade_floor * mean_irr, 0.05)
    c_d, w_d, irr = _observe(block, corners, b, photo, region, cos_lo, cos_hi, photo_filter, floor)
    a_d = np.minimum(w_d / min_weight, 1.0)
    c_m, w_m, _ = _observe(block, corners, b, photo, region, cos_lo, cos_hi, photo_filter, floor,
                           remap=model.mirror_index().cpu().numpy(),
                           rows=np.flatnonzero(a_d < 1.0))  # the mirror counts only where a_d < 1
    c_d, c_m = np.clip(c_d * gain, 0.0, 1.0), np.clip(c_m * gain, 0.0, 1.0)
    a_m = (1.0 - a_d) * np.minimum(w_m / min_weight, 1.0)
    a = a_d + a_m
    top = base.copy()
    seen = a > 1e-6
    idx = np.flatnonzero(covered.reshape(-1))[seen]
    top.reshape(-1, 3)[idx] = (a_d[seen, None] * c_d[seen] + a_m[seen, None] * c_m[seen]) / a[seen, None]
    alpha[covered] = a
    alpha = drop_photo_islands(alpha)
    dropped = (alpha == 0) & covered
    top[dropped] = base[dropped]  # no photo colour left where the alpha is 0 (the coarse bands would carry it)
    alpha = np.clip(gaussian_filter(alpha, alpha_sigma * size / 1024.0), 0.0, 1.0) * covered
    fine = max(1, int(round(np.log2(size / 128.0))))  # bands finer than ~8 texels at S = 1024
    out = laplacian_blend(torch.from_numpy(top).permute(2, 0, 1), torch.from_numpy(base).permute(2, 0, 1),
                          torch.from_numpy(alpha)[None],
                          band_gain=lambda i: 1.0 if i < fine else coarse_bands).permute(1, 2, 0).numpy()
    keep = 1.0 if mode == "lit" else 1.0 - delight  # the share of the shading put back: lit = all
    if keep > 0:
        shade = np.ones((size, size, 3), np.float32)  # the gutter is refilled from the covered texels below
        shade[covered] = (irr / gain) ** keep
        out = out * shade
    out = fill_gutter(np.clip(out, 0.0, 1.0).astype(np.float32), covered, 8, "mean")
    return UVTexture(out, alpha, float(alpha[covered].mean()) if covered.any() else 0.0, mode, base_v, gain,
                     photo_filter, delight)
