"""UV texture baking: vertex colours → texture, photo → texture, automatic UV atlases (xatlas).

Pure functions: numpy arrays or torch tensors in, numpy out (``uint8 (S, S, C)`` textures,
``float32`` weights). Nothing here knows about morphable models; pass ``model.faces``,
``model.uv``, ``model.faces_uv`` (or the result of :func:`uv_atlas` for models without UVs, e.g.
the BFM).

Texel ↔ UV convention
---------------------
The same as :func:`facegcn.render.sample_texture` and the OBJ / OpenGL convention used by
:mod:`facegcn.io.mesh`: ``u`` in ``[0, 1]`` left → right, ``v`` in ``[0, 1]`` **bottom → top**;
texel ``(row r, col c)`` of an ``(H, W)`` texture has its centre at ::

    u = (c + 0.5) / W,        v = 1 - (r + 0.5) / H

so texture row 0 is the top (``v`` near 1). Baking rasterizes the UV layout with the project's
rasterizer (:func:`facegcn.render.rasterize`, pixel centres at integer coordinates) using the
screen-space vertices ::

    verts_px = (x, y, z) = (u * W - 0.5,  (1 - v) * H - 0.5,  1.0)        (constant depth)

(:func:`uv_to_pixel`). A texel is *covered* when its centre lies in a UV triangle (inclusive
edges; where UV triangles overlap the lowest face id wins). With a constant depth the rasterizer's
barycentrics are exactly the affine UV barycentrics, so a covered texel holds the attribute at
the surface point whose UV is the texel centre, and sampling the texture bilinearly with
:func:`facegcn.render.sample_texture` at a vertex's UV reads it back.

Seams / gutters
---------------
Covered texels are surrounded by ``dilate`` rings of *gutter* texels, each the mean of its
already-filled 8-neighbours (iterative 3×3 dilation), then every remaining texel gets the
``background`` (default: the mean colour of the covered texels). So bilinear (and a few mip
levels of) filtering across a chart border never blends in black.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from facegcn.errors import ConfigError, InputError

__all__ = [
    "uv_to_pixel",
    "rasterize_uv",
    "fill_gutter",
    "bake_vertex_colors",
    "bake_from_photo",
    "sample_texture_at_vertices",
    "uv_atlas",
    "uv_atlas_cache_path",
    "XATLAS_VERSION",
]

XATLAS_VERSION = "0.0.11"  # the version the atlas code and its cache keys were checked with

_ATLAS_FORMAT = 1  # bump when the conversion of xatlas output changes (invalidates the cache)


# --------------------------------------------------------------------------- helpers
def _np(a, dtype=None) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        H = W = int(size)
    else:
        H, W = (int(s) for s in size)
    if H < 1 or W < 1:
        raise InputError(f"texture size must be positive, got {size!r}")
    return H, W


def _faces(f, name: str, n: int | None = None) -> np.ndarray:
    f = _np(f)
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise InputError(f"{name} must be an (F, 3) integer array, got {f.dtype} {f.shape}")
    f = f.astype(np.int64, copy=False)
    if f.size and (f.min() < 0 or (n is not None and f.max() >= n)):
        raise InputError(f"{name} has indices outside [0, {n})")
    return f


def _colors01(c, name: str) -> np.ndarray:
    """Float colours in [0, 1] (uint8 is divided by 255)."""
    arr = _np(c)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return arr.astype(np.float32, copy=False)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x, np.float64) * 255.0), 0, 255).astype(np.uint8)


def _uv_faces_pair(faces, uv, faces_uv, n_vertices: int | None = None):
    uv = _np(uv, np.float64)
    if uv.ndim != 2 or uv.shape[1] != 2:
        raise InputError(f"uv must be (T, 2), got {uv.shape}")
    if not np.isfinite(uv).all():
        raise InputError("uv contains non-finite values")
    fuv = _faces(faces_uv, "faces_uv", len(uv))
    f = _faces(faces, "faces", n_vertices)
    if f.shape != fuv.shape:
        raise InputError(f"faces {f.shape} and faces_uv {fuv.shape} must have the same shape")
    return f, uv, fuv


def uv_to_pixel(uv, size: int | Sequence[int]) -> np.ndarray:
    """UV ``(..., 2)`` → texel-grid position ``(..., 2) = (x, y)`` (column, row; texel centres at
    integer coordinates): ``x = u W - 1/2``, ``y = (1 - v) H - 1/2``."""
    H, W = _size(size)
    uv = _np(uv, np.float64)
    return np.stack([uv[..., 0] * W - 0.5, (1.0 - uv[..., 1]) * H - 0.5], -1)


def _uv_fragments(uv: np.ndarray, fuv: np.ndarray, H: int, W: int):
    from facegcn.render import rasterize

    px = uv_to_pixel(uv, (H, W))
    vs = np.concatenate([px, np.ones((len(px), 1))], 1)[None]
    return rasterize(torch.from_numpy(vs), torch.from_numpy(fuv), (H, W), backend="numba")


def rasterize_uv(uv, faces_uv, size: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Rasterize the UV layout: ``tri (H, W)`` int64 face id (-1 = not covered) and affine
    barycentrics ``bary (H, W, 3)`` float32 w.r.t. ``faces_uv[tri]`` (see the module docstring)."""
    H, W = _size(size)
    uv = _np(uv, np.float64)
    fuv = _faces(faces_uv, "faces_uv", len(uv))
    frags = _uv_fragments(uv, fuv, H, W)
    return frags.tri_id[0].numpy(), frags.bary[0].numpy()


def _interp(frags, attr: np.ndarray, faces: np.ndarray, fuv: np.ndarray) -> np.ndarray:
    """Per-vertex ``attr (V, C)`` over the UV raster → ``(H, W, C)`` (0 where not covered), with
    the project's :func:`facegcn.render.interpolate` (UV triangles rasterized, ``faces`` index
    ``attr``)."""
    from facegcn.render import interpolate

    out = interpolate(
        torch.from_numpy(np.ascontiguousarray(attr)), torch.from_numpy(fuv), frags,
        attr_faces=torch.from_numpy(faces), backend="numba",
    )  # fmt: skip
    return out[0].numpy()


# --------------------------------------------------------------------------- gutter fill
def fill_gutter(
    texture: np.ndarray,
    mask: np.ndarray,
    dilate: int = 8,
    background: str | float | Sequence[float] | None = "mean",
) -> np.ndarray:
    """Fill the texels outside ``mask`` of a float ``texture (H, W, C)`` (returns a new array).

    ``dilate`` iterations of: every empty texel with at least one filled 8-neighbour becomes the
    mean of its filled 8-neighbours (Jacobi-style: values of the previous ring only). Then every
    texel still empty gets ``background``: ``"mean"`` (mean of the ``mask`` texels), a float or a
    per-channel sequence, or ``None`` (left as it is in ``texture``).
    """
    tex = np.asarray(texture, np.float32)
    if tex.ndim == 2:
        tex = tex[..., None]
    H, W, C = tex.shape
    mask = np.asarray(mask, bool)
    if mask.shape != (H, W):
        raise InputError(f"mask {mask.shape} does not match texture {tex.shape}")
    Wp = W + 2
    tp = np.zeros((H + 2, Wp, C), np.float32)
    tp[1:-1, 1:-1] = tex
    mp = np.zeros((H + 2, Wp), bool)
    mp[1:-1, 1:-1] = mask
    valid = np.zeros_like(mp)
    valid[1:-1, 1:-1] = True
    tf = tp.reshape(-1, C)
    mf = mp.reshape(-1)
    vf = valid.reshape(-1)
    offs = np.array([dy * Wp + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx], np.int64)
    if dilate > 0 and mask.any():
        from scipy.ndimage import binary_dilation

        ring = binary_dilation(mp, structure=np.ones((3, 3), bool)) & ~mp & valid
        front = np.flatnonzero(ring)
        for _ in range(int(dilate)):
            if front.size == 0:
                break
            nb = front[:, None] + offs[None, :]  # (N, 8)
            m = mf[nb]
            s = np.einsum("nk,nkc->nc", m.astype(np.float32), tf[nb])
            tf[front] = s / m.sum(1, keepdims=True).astype(np.float32)
            mf[front] = True
            cand = np.unique(nb.ravel())
            front = cand[~mf[cand] & vf[cand]]
    out = tp[1:-1, 1:-1].copy()
    filled = mp[1:-1, 1:-1]
    if background is not None and not filled.all():
        if isinstance(background, str):
            if background != "mean":
                raise ConfigError(f"background must be 'mean', a colour or None, got {background!r}")
            bg = tex[mask].mean(0) if mask.any() else np.full(C, 0.5, np.float32)
        else:
            bg = np.broadcast_to(np.asarray(background, np.float32), (C,))
        out[~filled] = bg
    return out


# --------------------------------------------------------------------------- vertex colours
def bake_vertex_colors(
    colors,
    faces,
    uv,
    faces_uv,
    size: int | Sequence[int] = 1024,
    *,
    dilate: int = 8,
    background: str | float | Sequence[float] | None = "mean",
    return_mask: bool = False,
):
    """Bake per-vertex ``colors (V, C)`` (floats in [0, 1], or uint8) into a ``(S, S, C)`` uint8
    texture for the UV layout ``uv (T, 2)`` / ``faces_uv (F, 3)`` of the mesh ``faces (F, 3)``.

    Covered texel ``x`` in UV triangle ``t`` with affine barycentrics ``b``:
    ``tex[x] = sum_k b_k colors[faces[t, k]]`` (colours are linear over each 3-D triangle, so the
    texture reproduces the vertex-coloured mesh); then :func:`fill_gutter` (``dilate`` rings,
    then ``background``). ``size``: an int (square) or ``(H, W)``. With ``return_mask`` also
    returns the coverage mask ``(H, W)`` bool.
    """
    col = _colors01(colors, "colors")
    if col.ndim != 2:
        raise InputError(f"colors must be (V, C), got {col.shape}")
    f, uvn, fuv = _uv_faces_pair(faces, uv, faces_uv, len(col))
    H, W = _size(size)
    frags = _uv_fragments(uvn, fuv, H, W)
    mask = frags.mask[0].numpy()
    tex = _interp(frags, col, f, fuv)
    if not mask.any() and background == "mean":
        background = col.mean(0) if len(col) else 0.5
    out = _to_uint8(fill_gutter(tex, mask, dilate, background))
    return (out, mask) if return_mask else out


# --------------------------------------------------------------------------- photo
def _image_hwc(image) -> np.ndarray:
    img = _colors01(image, "image")
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise InputError(f"image must be (3, H, W) or (H, W, 3), got {img.shape}")
    if img.shape[0] in (1, 3, 4) and img.shape[2] not in (1, 3, 4):
        img = np.moveaxis(img, 0, -1)
    return np.ascontiguousarray(img, np.float32)


def _sample_bilinear(img: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear lookup of ``img (H, W, C)`` at ``p (N, 2) = (x, y)`` with pixel centres at integer
    coordinates (:func:`facegcn.render.sample_image`'s convention), clamped to the border; also
    returns whether each point lies inside the image (``-1/2 <= x < W - 1/2``, same for ``y``)."""
    H, W, C = img.shape
    x, y = p[:, 0], p[:, 1]
    with np.errstate(invalid="ignore"):
        inside = (x >= -0.5) & (x < W - 0.5) & (y >= -0.5) & (y < H - 0.5)
    x = np.clip(np.nan_to_num(x), 0.0, W - 1.0)
    y = np.clip(np.nan_to_num(y), 0.0, H - 1.0)
    x0 = np.minimum(x.astype(np.int64), max(W - 2, 0))  # x >= 0: truncation == floor
    y0 = np.minimum(y.astype(np.int64), max(H - 2, 0))
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    dx = 1 if W > 1 else 0
    dy = W if H > 1 else 0
    flat = img.reshape(-1, C)
    i = y0 * W + x0
    top = flat[i] + fx * (flat[i + dx] - flat[i])
    bot = flat[i + dy] + fx * (flat[i + dy + dx] - flat[i + dy])
    return top + fy * (bot - top), inside


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
    background: str | float | Sequence[float] | None = "mean",
    visibility_per: str = "auto",
    return_float: bool = False,
):
    """Project a photo onto the UV layout → ``(texture (S, S, C) uint8, weight (S, S) float32)``.

    Inputs: ``image`` ``(3, H, W)`` or ``(H, W, 3)`` (float in [0, 1] or uint8); ``verts_px
    (V, 2)`` (or ``(V, 3)``, z ignored) the vertices projected into that image, pixel centres at
    integer coordinates (:meth:`PerspectiveCamera.project`); ``visibility`` weights in [0, 1]
    per vertex ``(V,)`` or per face ``(F,)`` (``visibility_per`` = ``"vertex"`` / ``"face"``
    decides when ``V == F``); ``normals_z`` optional ``(V,)`` camera-facing component of the unit
    vertex normals (or ``(V, 3)`` normals in camera-aligned axes, z is used); ``mirror`` optional
    ``(V,)`` index of each vertex's mirror vertex (``model.mirror_index()``); ``fallback``
    optional texture ``(Ht, Wt, C)`` (e.g. :func:`bake_vertex_colors` of the fitted albedo),
    bilinearly resampled if its size differs; ``image_mask`` optional ``(H, W)`` foreground mask
    of the photo in [0, 1] (e.g. the face/skin mask, or the rendered coverage of the fitted mesh),
    so that texels near a silhouette or a hole never pick up background pixels.

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
    then filled by :func:`fill_gutter` from the covered ones. ``weight`` is ``w_d`` (0 outside the
    charts): the confidence of the direct observation, e.g. for fusing several photos with
    ``Σ w c / Σ w`` (``return_float=True`` returns the float texture instead of uint8).
    """
    img = _image_hwc(image)
    P = _np(verts_px, np.float64)
    if P.ndim != 2 or P.shape[1] not in (2, 3):
        raise InputError(f"verts_px must be (V, 2) or (V, 3), got {P.shape}")
    P = P[:, :2]
    V = len(P)
    f, uvn, fuv = _uv_faces_pair(faces, uv, faces_uv, V)
    F = len(f)
    vis = _np(visibility, np.float64).reshape(-1)
    if visibility_per == "auto":
        if len(vis) == V:
            visibility_per = "vertex"
        elif len(vis) == F:
            visibility_per = "face"
        else:
            raise InputError(f"visibility must have V={V} or F={F} entries, got {len(vis)}")
    if visibility_per not in ("vertex", "face") or len(vis) != (V if visibility_per == "vertex" else F):
        raise InputError(f"visibility ({len(vis)}) does not match visibility_per={visibility_per!r}")
    nz = None
    if normals_z is not None:
        nz = _np(normals_z, np.float64)
        nz = nz[:, 2] if nz.ndim == 2 else nz.reshape(-1)
        if len(nz) != V:
            raise InputError(f"normals_z must have V={V} entries, got {len(nz)}")
    mir = None
    if mirror is not None:
        mir = _np(mirror).reshape(-1).astype(np.int64)
        if len(mir) != V or (V and (mir.min() < 0 or mir.max() >= V)):
            raise InputError(f"mirror must be a (V,) vertex map with V={V}")
    msk = None
    if image_mask is not None:
        from scipy.ndimage import minimum_filter

        msk = _np(image_mask, np.float32)
        if msk.ndim > 2:  # (1, H, W) / (H, W, 1)
            msk = np.squeeze(msk)
        if msk.shape != img.shape[:2]:
            raise InputError(f"image_mask must be (H, W) = {img.shape[:2]}, got {msk.shape}")
        msk = np.clip(minimum_filter(msk, size=3, mode="nearest"), 0.0, 1.0)[..., None]
    if not 0.0 < float(min_weight) <= 1.0:
        raise ConfigError(f"min_weight must be in (0, 1], got {min_weight}")
    H, W = _size(size)
    C = img.shape[2]
    if visibility_per == "face":  # per-vertex version for the mirror side: mean of its faces
        cnt = np.bincount(f.reshape(-1), minlength=V).astype(np.float64)
        vis_v = np.bincount(f.reshape(-1), np.repeat(vis, 3), minlength=V) / np.maximum(cnt, 1.0)
    else:
        vis_v = vis
    # one interpolation pass of every per-vertex quantity: P | vis | n_z (| the mirrored ones)
    cols = [P, vis_v[:, None], (nz if nz is not None else np.ones(V))[:, None]]
    if mir is not None:
        cols += [P[mir], vis_v[mir, None], (nz[mir] if nz is not None else np.ones(V))[:, None]]
    frags = _uv_fragments(uvn, fuv, H, W)
    mask = frags.mask[0].numpy()
    att = _interp(frags, np.concatenate(cols, 1).astype(np.float64), f, fuv)[mask]  # (N, 4 or 8)

    src = img if msk is None else np.concatenate([img, msk], -1)  # the mask as one more channel

    def observe(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, w = _sample_bilinear(src, a[:, :2])
        w = w.astype(np.float64)
        if msk is not None:
            w *= c[:, C]
            c = c[:, :C]
        if nz is not None:
            w *= np.abs(a[:, 3])
        return c, w

    c_d, w_d = observe(att[:, :4])
    if visibility_per == "face":
        w_d *= np.clip(vis[frags.tri_id[0].numpy()[mask]], 0.0, 1.0)
    else:
        w_d *= np.clip(att[:, 2], 0.0, 1.0)
    tau = float(min_weight)
    a_d = np.minimum(w_d / tau, 1.0)
    num = a_d[:, None] * c_d
    a_m = np.zeros_like(a_d)
    if mir is not None:
        c_m, w_m = observe(att[:, 4:])
        w_m *= np.clip(att[:, 6], 0.0, 1.0)
        a_m = (1.0 - a_d) * np.minimum(w_m / tau, 1.0)
        num = num + a_m[:, None] * c_m
    a_p = a_d + a_m
    tex = np.zeros((H, W, C), np.float32)
    if fallback is not None:
        fb = _colors01(fallback, "fallback")
        if fb.ndim != 3 or fb.shape[2] != C:
            raise InputError(f"fallback must be an (H, W, {C}) texture, got {fb.shape}")
        if fb.shape[:2] != (H, W):
            from facegcn.render import sample_texture

            rr, cc = np.mgrid[0:H, 0:W]
            uvg = np.stack([(cc + 0.5) / W, 1.0 - (rr + 0.5) / H], -1)
            fb = sample_texture(
                torch.from_numpy(np.moveaxis(fb, -1, 0).copy()), torch.from_numpy(uvg[None]).float()
            )[0].numpy()
        c_f = fb[mask].astype(np.float64)
    else:
        photo = np.zeros((H, W, C), np.float32)
        have = np.zeros((H, W), bool)
        ok = a_p > 0
        sel = np.flatnonzero(mask.reshape(-1))[ok]
        photo.reshape(-1, C)[sel] = num[ok] / a_p[ok, None]
        have.reshape(-1)[sel] = True
        bg = background
        if not have.any() and bg == "mean":
            bg = img.reshape(-1, C).mean(0)
        c_f = fill_gutter(photo, have, dilate, bg)[mask].astype(np.float64)
    tex[mask] = num + (1.0 - a_p)[:, None] * c_f
    weight = np.zeros((H, W), np.float32)
    weight[mask] = w_d
    if not mask.any() and background == "mean":
        background = img.reshape(-1, C).mean(0)
    out = fill_gutter(tex, mask, dilate, background)
    return (out if return_float else _to_uint8(out)), weight


# --------------------------------------------------------------------------- read back
def sample_texture_at_vertices(texture, uv, faces_uv, faces, n_vertices: int) -> np.ndarray:
    """Colours ``(V, C)`` float in [0, 1] at the mesh vertices: the texture is sampled bilinearly
    (:func:`facegcn.render.sample_texture`'s convention, border clamp) at each distinct UV corner
    ``(vertex, uv index)`` of ``faces`` / ``faces_uv``, and a vertex gets the mean over its
    corners (several across UV seams). Vertices used by no face get 0."""
    tex = _colors01(texture, "texture")
    if tex.ndim == 2:
        tex = tex[..., None]
    if tex.ndim != 3:
        raise InputError(f"texture must be (H, W, C), got {tex.shape}")
    f, uvn, fuv = _uv_faces_pair(faces, uv, faces_uv, int(n_vertices))
    Ht, Wt, C = tex.shape
    pairs = np.unique(np.stack([f.reshape(-1), fuv.reshape(-1)], 1), axis=0)
    px = uv_to_pixel(uvn[pairs[:, 1]], (Ht, Wt))
    c, _ = _sample_bilinear(tex, px)
    V = int(n_vertices)
    cnt = np.bincount(pairs[:, 0], minlength=V).astype(np.float64)
    out = np.stack([np.bincount(pairs[:, 0], c[:, k], minlength=V) for k in range(C)], 1)
    return (out / np.maximum(cnt, 1.0)[:, None]).astype(np.float32)


# --------------------------------------------------------------------------- atlas
def _atlas_key(vertices: np.ndarray, faces: np.ndarray, resolution: int, padding: int) -> str:
    from facegcn.cache import array_digest

    return array_digest(
        vertices, faces,
        extra=f"xatlas={XATLAS_VERSION};fmt={_ATLAS_FORMAT};res={resolution};pad={padding}",
    )  # fmt: skip


def uv_atlas_cache_path(vertices, faces, *, resolution: int = 1024, padding: int = 4) -> Path:
    """Where :func:`uv_atlas` caches the atlas of this mesh (the file may not exist yet)."""
    from facegcn.cache import cache_dir

    v = np.ascontiguousarray(_np(vertices, np.float32))
    f = _faces(faces, "faces", len(v))
    return cache_dir("uv_atlas") / f"{_atlas_key(v, f, int(resolution), int(padding))}.npz"


def _load_atlas(path: Path, n_faces: int) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            uv = np.asarray(z["uv"], np.float32)
            fuv = np.asarray(z["faces_uv"], np.int64)
    except Exception:  # missing, truncated or foreign file: rebuild
        return None
    if uv.ndim != 2 or uv.shape[1] != 2 or fuv.shape != (n_faces, 3):
        return None
    if fuv.size and (fuv.min() < 0 or fuv.max() >= len(uv)):
        return None
    return uv, fuv


def uv_atlas(
    vertices,
    faces,
    cache: bool = True,
    *,
    resolution: int = 1024,
    padding: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Automatic UV layout for a mesh without UVs (e.g. the BFM) with ``xatlas`` → ``(uv (T, 2)
    float32, faces_uv (F, 3) int64)`` in this module's convention (``faces_uv`` indexes ``uv``;
    the mesh keeps its own ``faces``; one UV vertex per (vertex, chart)).

    xatlas segments the surface into charts, flattens them and packs them into an atlas of about
    ``resolution`` texels with ``padding`` texels between charts (``bilinear`` packing on). Its
    output ``(vmapping, indices, uvs)`` satisfies ``vmapping[indices] == faces`` (checked), so
    ``faces_uv = indices`` and ``uv = uvs`` rescaled by ``(width, height) / max(width, height)``
    (one texel density in both directions of a square texture). Degenerate faces get a zero-area
    UV triangle at the origin. The result is cached in ``cache_dir("uv_atlas")`` as an npz keyed by
    the mesh digest and the options (:func:`uv_atlas_cache_path`); ``cache=False`` neither reads
    nor writes it. Needs ``xatlas`` (checked with ``xatlas==0.0.11``); a 70k-triangle face
    mesh takes tens of seconds, once.
    """
    v = np.ascontiguousarray(_np(vertices, np.float32))
    if v.ndim != 2 or v.shape[1] != 3 or not np.isfinite(v).all():
        raise InputError(f"vertices must be a finite (V, 3) array, got {v.shape}")
    f = _faces(faces, "faces", len(v))
    resolution, padding = int(resolution), int(padding)
    path = None
    if cache:
        from facegcn.cache import cache_dir

        path = cache_dir("uv_atlas") / f"{_atlas_key(v, f, resolution, padding)}.npz"
        hit = _load_atlas(path, len(f))
        if hit is not None:
            return hit
    try:
        import xatlas
    except ImportError:
        raise ConfigError(
            f"uv_atlas needs the xatlas package (pip install xatlas=={XATLAS_VERSION})"
        ) from None
    pack = xatlas.PackOptions()
    pack.resolution = resolution
    pack.padding = padding
    pack.bilinear = True
    try:
        atlas = xatlas.Atlas()
        atlas.add_mesh(v, np.ascontiguousarray(f, np.uint32))
        atlas.generate(xatlas.ChartOptions(), pack)
        vmap, indices, uvs = atlas[0]
    except (RuntimeError, ValueError, IndexError) as exc:
        raise InputError(f"xatlas could not build a UV atlas for this mesh: {exc}") from None
    vmap = np.asarray(vmap, np.int64)
    fuv = np.asarray(indices, np.int64).reshape(-1, 3)
    if fuv.shape != f.shape or not np.array_equal(vmap[fuv], f):
        raise InputError("xatlas changed the face list; cannot build faces_uv")
    if atlas.atlas_count != 1:
        raise InputError(f"xatlas produced {atlas.atlas_count} atlases; expected one")
    w, h = float(atlas.width), float(atlas.height)
    s = max(w, h)
    uv = (np.asarray(uvs, np.float64) * np.array([w / s, h / s])).astype(np.float32)
    uv = np.clip(uv, 0.0, 1.0)
    if path is not None:
        from facegcn.io.atomic import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(buf, uv=uv, faces_uv=fuv)
        atomic_write_bytes(path, buf.getvalue())
    return uv, fuv
