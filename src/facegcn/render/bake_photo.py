"""Photo → UV texture baking (:func:`bake_from_photo`), with the texel ↔ UV convention and the
gutter fill of :mod:`facegcn.render.bake`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from facegcn.errors import ConfigError, InputError
from facegcn.io.imageops import to_uint8
from facegcn.io.texture import as_numpy
from facegcn.render.bake import (  # package-internal helpers shared with the vertex-colour bake
    Background,
    _colors01,
    _interp,
    _sample_bilinear,
    _size,
    _uv_faces_pair,
    _uv_fragments,
    fill_gutter,
)
from facegcn.render.rasterize import Fragments
from facegcn.render.sampling import sample_texture

__all__ = ["bake_from_photo"]


def _image_hwc(image) -> np.ndarray:
    img = _colors01(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise InputError(f"image must be (3, H, W) or (H, W, 3), got {img.shape}")
    if img.shape[0] in (1, 3, 4) and img.shape[2] not in (1, 3, 4):
        img = np.moveaxis(img, 0, -1)
    return np.ascontiguousarray(img, np.float32)


class _PhotoInputs(NamedTuple):
    img: np.ndarray  # (H, W, C) float32
    P: np.ndarray  # (V, 2) float64 photo positions
    f: np.ndarray  # (F, 3) mesh faces
    uv: np.ndarray  # (T, 2) float64
    fuv: np.ndarray  # (F, 3) UV faces
    vis: np.ndarray  # (V,) or (F,) float64
    per_face: bool
    nz: np.ndarray | None  # (V,) float64
    mir: np.ndarray | None  # (V,) int64
    msk: np.ndarray | None  # (H, W, 1) float32, eroded


def _photo_visibility(vis: np.ndarray, visibility_per: str, V: int, F: int) -> bool:
    """Whether ``vis`` is per face (else per vertex), checking its length."""
    if visibility_per == "auto":
        if len(vis) == V:
            visibility_per = "vertex"
        elif len(vis) == F:
            visibility_per = "face"
        else:
            raise InputError(f"visibility must have V={V} or F={F} entries, got {len(vis)}")
    if visibility_per not in ("vertex", "face") or len(vis) != (V if visibility_per == "vertex" else F):
        raise InputError(f"visibility ({len(vis)}) does not match visibility_per={visibility_per!r}")
    return visibility_per == "face"


def _photo_mask(image_mask, shape: tuple[int, int]) -> np.ndarray:
    """The foreground mask eroded by a 3×3 minimum filter, clipped to [0, 1] → ``(H, W, 1)``."""
    # lazy: scipy.ndimage costs ~0.5 s at import and only the gutter fill / photo mask use it
    from scipy.ndimage import minimum_filter

    msk = as_numpy(image_mask, np.float32)
    if msk.ndim > 2:  # (1, H, W) / (H, W, 1)
        msk = np.squeeze(msk)
    if msk.shape != shape:
        raise InputError(f"image_mask must be (H, W) = {shape}, got {msk.shape}")
    return np.clip(minimum_filter(msk, size=3, mode="nearest"), 0.0, 1.0)[..., None]


def _photo_inputs(image, verts_px, visibility, faces, uv, faces_uv, normals_z, mirror, image_mask,
                  visibility_per: str) -> _PhotoInputs:
    """Validate and convert the inputs of :func:`bake_from_photo` (in its documented order)."""
    img = _image_hwc(image)
    P = as_numpy(verts_px, np.float64)
    if P.ndim != 2 or P.shape[1] not in (2, 3):
        raise InputError(f"verts_px must be (V, 2) or (V, 3), got {P.shape}")
    P = P[:, :2]
    V = len(P)
    f, uvn, fuv = _uv_faces_pair(faces, uv, faces_uv, V)
    vis = as_numpy(visibility, np.float64).reshape(-1)
    per_face = _photo_visibility(vis, visibility_per, V, len(f))
    nz = None
    if normals_z is not None:
        nz = as_numpy(normals_z, np.float64)
        nz = nz[:, 2] if nz.ndim == 2 else nz.reshape(-1)
        if len(nz) != V:
            raise InputError(f"normals_z must have V={V} entries, got {len(nz)}")
    mir = None
    if mirror is not None:
        mir = as_numpy(mirror).reshape(-1).astype(np.int64)
        if len(mir) != V or (V and (mir.min() < 0 or mir.max() >= V)):
            raise InputError(f"mirror must be a (V,) vertex map with V={V}")
    msk = None if image_mask is None else _photo_mask(image_mask, img.shape[:2])
    return _PhotoInputs(img, P, f, uvn, fuv, vis, per_face, nz, mir, msk)


def _photo_attributes(inp: _PhotoInputs, H: int, W: int):
    """One interpolation pass of every per-vertex quantity over the UV raster:
    ``P | vis | n_z`` (``| P[m] | vis[m] | n_z[m]`` with a mirror) → ``(frags, mask, att (N, 4|8))``
    for the N covered texels."""
    V = len(inp.P)
    if inp.per_face:  # per-vertex version for the mirror side: mean of its faces
        cnt = np.bincount(inp.f.reshape(-1), minlength=V).astype(np.float64)
        vis_v = np.bincount(inp.f.reshape(-1), np.repeat(inp.vis, 3), minlength=V) / np.maximum(cnt, 1.0)
    else:
        vis_v = inp.vis
    nz, mir = inp.nz, inp.mir
    cols = [inp.P, vis_v[:, None], (nz if nz is not None else np.ones(V))[:, None]]
    if mir is not None:
        cols += [inp.P[mir], vis_v[mir, None], (nz[mir] if nz is not None else np.ones(V))[:, None]]
    frags = _uv_fragments(inp.uv, inp.fuv, H, W)
    mask = frags.mask[0].numpy()
    att = _interp(frags, np.concatenate(cols, 1).astype(np.float64), inp.f, inp.fuv)[mask]
    return frags, mask, att


def _observe(inp: _PhotoInputs, src: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Photo colour ``(N, C)`` and weight ``(N,)`` at interpolated attributes ``a (N, 4)``
    (position, visibility, n_z): inside-image × eroded mask × |n_z| (visibility applied later)."""
    C = inp.img.shape[2]
    c, w = _sample_bilinear(src, a[:, :2])
    w = w.astype(np.float64)
    if inp.msk is not None:
        w *= c[:, C]
        c = c[:, :C]
    if inp.nz is not None:
        w *= np.abs(a[:, 3])
    return c, w


def _photo_blend(inp: _PhotoInputs, frags: Fragments, mask: np.ndarray, att: np.ndarray, tau: float):
    """Direct and mirrored observations of the covered texels → ``(num (N, C), a_p (N,), w_d (N,))``:
    the weighted photo colour ``a_d c_d + a_m c_m``, its total weight ``a_d + a_m`` and ``w_d``."""
    src = inp.img if inp.msk is None else np.concatenate([inp.img, inp.msk], -1)  # the mask as one more channel
    c_d, w_d = _observe(inp, src, att[:, :4])
    if inp.per_face:
        w_d *= np.clip(inp.vis[frags.tri_id[0].numpy()[mask]], 0.0, 1.0)
    else:
        w_d *= np.clip(att[:, 2], 0.0, 1.0)
    a_d = np.minimum(w_d / tau, 1.0)
    num = a_d[:, None] * c_d
    a_m = np.zeros_like(a_d)
    if inp.mir is not None:
        c_m, w_m = _observe(inp, src, att[:, 4:])
        w_m *= np.clip(att[:, 6], 0.0, 1.0)
        a_m = (1.0 - a_d) * np.minimum(w_m / tau, 1.0)
        num = num + a_m[:, None] * c_m
    return num, a_d + a_m, w_d


def _photo_fallback(inp: _PhotoInputs, fallback, mask: np.ndarray, num: np.ndarray, a_p: np.ndarray,
                    dilate: int, background: Background) -> np.ndarray:
    """The fallback colour ``c_f (N, 3)`` float64 of the covered texels: the given fallback texture
    (resampled to ``mask``'s size), or the photo part extended by :func:`fill_gutter`."""
    H, W = mask.shape
    C = inp.img.shape[2]
    if fallback is not None:
        fb = _colors01(fallback)
        if fb.ndim != 3 or fb.shape[2] != C:
            raise InputError(f"fallback must be an (H, W, {C}) texture, got {fb.shape}")
        if fb.shape[:2] != (H, W):
            rr, cc = np.mgrid[0:H, 0:W]
            uvg = np.stack([(cc + 0.5) / W, 1.0 - (rr + 0.5) / H], -1)
            fb = sample_texture(
                torch.from_numpy(np.moveaxis(fb, -1, 0).copy()), torch.from_numpy(uvg[None]).float()
            )[0].numpy()
        return fb[mask].astype(np.float64)
    photo = np.zeros((H, W, C), np.float32)
    have = np.zeros((H, W), bool)
    ok = a_p > 0
    sel = np.flatnonzero(mask.reshape(-1))[ok]
    photo.reshape(-1, C)[sel] = num[ok] / a_p[ok, None]
    have.reshape(-1)[sel] = True
    bg = background
    if not have.any() and bg == "mean":
        bg = inp.img.reshape(-1, C).mean(0)
    return fill_gutter(photo, have, dilate, bg)[mask].astype(np.float64)


def bake_from_photo(
    image,
    verts_px,
    visibility,
    faces,
    uv,
    faces_uv,
    size: int | Sequence[int] = 1024,
    *,
    normals_z=None,
    mirror=None,
    fallback=None,
    image_mask=None,
    min_weight: float = 0.25,
    dilate: int = 8,
    background: Background = "mean",
    visibility_per: str = "auto",
    return_float: bool = False,
):
    """Project a photo onto a UV layout.

    For a covered texel ``x`` in UV triangle ``t`` with barycentrics ``b`` and vertices
    ``i_k = faces[t, k]`` (``P`` = ``verts_px``, ``m`` = ``mirror``, ``τ`` = ``min_weight``)::

        p(x)   = Σ_k b_k P[i_k]                          photo position (affine within a triangle)
        c_d(x) = bilinear(image, p(x))
        w_d(x) = clip(Σ_k b_k vis[i_k], 0, 1) · |Σ_k b_k n_z[i_k]| · M(p(x)) · [p(x) in the image]
                 (vis[t] for per-face visibility; the |n_z| factor is 1 without normals_z;
                 M = bilinear lookup of image_mask eroded by a 3×3 minimum filter, so M = 1
                 only where every pixel of the bilinear footprint is foreground; 1 without mask)
        c_m, w_m: the same with i_k → m[i_k] (the mirrored surface point; per-face visibility is
                 turned into per-vertex visibility by averaging each vertex's faces)
        a_d = min(w_d / τ, 1),  a_m = (1 - a_d) · min(w_m / τ, 1)   (a_m = 0 without mirror)
        tex(x) = a_d c_d + a_m c_m + (1 - a_d - a_m) c_f(x)

    where ``c_f`` is the fallback texel, or without a fallback the photo part ``(a_d c_d +
    a_m c_m) / (a_d + a_m)`` extended over the texels where it is undefined by
    :func:`fill_gutter` (``dilate`` rings, then ``background``). Texels outside the UV charts are
    then filled by :func:`fill_gutter` from the covered ones.

    Args:
        image: the photo, float in ``[0, 1]`` or uint8.
        verts_px: the vertices projected into that image, pixel centres at integer coordinates
            (:meth:`PerspectiveCamera.project`); a third column (z) is ignored.
        visibility: weights in ``[0, 1]`` per vertex or per face.
        faces, uv, faces_uv: the mesh triangles and its UV layout.
        size: texture size, an int (square) or ``(H, W)``.
        normals_z: optional camera-facing component of the unit vertex normals (or the normals in
            camera-aligned axes; z is used).
        mirror: optional index of each vertex's mirror vertex (``model.mirror_index()``).
        fallback: optional texture for what the photo does not show (e.g.
            :func:`bake_vertex_colors` of the fitted albedo), bilinearly resampled if its size
            differs.
        image_mask: optional foreground mask of the photo in ``[0, 1]`` (e.g. the face/skin mask,
            or the rendered coverage of the fitted mesh), so that texels near a silhouette or a
            hole never pick up background pixels.
        min_weight: ``τ`` above, in ``(0, 1]``.
        dilate, background: the gutter fill (:func:`fill_gutter`).
        visibility_per: ``"vertex"``, ``"face"`` or ``"auto"`` (by length; decides when V == F).
        return_float: return the float texture instead of uint8.

    Returns:
        ``(texture, weight)``: ``weight`` is ``w_d`` (0 outside the charts), the confidence of the
        direct observation, e.g. for fusing several photos with ``Σ w c / Σ w``.

    Shapes:
        image: ``(3, H, W)`` or ``(H, W, 3)``; verts_px: ``(V, 2)`` or ``(V, 3)``; visibility:
        ``(V,)`` or ``(F,)``; normals_z: ``(V,)`` or ``(V, 3)``; mirror: ``(V,)`` int; fallback:
        ``(Ht, Wt, C)``; image_mask: ``(H, W)`` (or with a unit axis) → texture ``(S, S, C)``
        uint8 (float32 with ``return_float``), weight ``(S, S)`` float32.
    """
    inp = _photo_inputs(image, verts_px, visibility, faces, uv, faces_uv, normals_z, mirror, image_mask,
                        visibility_per)
    if not 0.0 < float(min_weight) <= 1.0:
        raise ConfigError(f"min_weight must be in (0, 1], got {min_weight}")
    H, W = _size(size)
    C = inp.img.shape[2]
    frags, mask, att = _photo_attributes(inp, H, W)
    num, a_p, w_d = _photo_blend(inp, frags, mask, att, float(min_weight))
    tex = np.zeros((H, W, C), np.float32)
    c_f = _photo_fallback(inp, fallback, mask, num, a_p, dilate, background)
    tex[mask] = num + (1.0 - a_p)[:, None] * c_f
    weight = np.zeros((H, W), np.float32)
    weight[mask] = w_d
    if not mask.any() and background == "mean":
        background = inp.img.reshape(-1, C).mean(0)
    out = fill_gutter(tex, mask, dilate, background)
    return (out if return_float else to_uint8(out)), weight
