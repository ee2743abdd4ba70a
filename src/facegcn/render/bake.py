"""UV texture baking: vertex colours → texture, texture → vertex colours (photo → texture is
:mod:`facegcn.render.bake_photo`).

Pure functions: numpy arrays or torch tensors in, numpy out (``uint8 (S, S, C)`` textures,
``float32`` weights). Nothing here knows about morphable models; pass ``model.faces``,
``model.uv``, ``model.faces_uv`` (or the result of :func:`facegcn.io.texture.uv_atlas` for models
without UVs, e.g. the BFM).

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

from collections.abc import Sequence

import numpy as np
import torch

from facegcn.errors import ConfigError, InputError
from facegcn.io.imageops import to_uint8
from facegcn.io.texture import as_numpy, check_faces
from facegcn.render.interpolate import interpolate
from facegcn.render.rasterize import Fragments, rasterize

__all__ = [
    "bake_vertex_colors",
    "fill_gutter",
    "rasterize_uv",
    "sample_texture_at_vertices",
    "uv_to_pixel",
]

Background = str | float | Sequence[float] | None


# --------------------------------------------------------------------------- helpers
def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        H = W = int(size)
    else:
        H, W = (int(s) for s in size)
    if H < 1 or W < 1:
        raise InputError(f"texture size must be positive, got {size!r}")
    return H, W


def _colors01(c) -> np.ndarray:
    """Float colours in [0, 1] (uint8 is divided by 255)."""
    arr = as_numpy(c)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return arr.astype(np.float32, copy=False)


def _uv_faces_pair(faces, uv, faces_uv, n_vertices: int | None = None):
    uv = as_numpy(uv, np.float64)
    if uv.ndim != 2 or uv.shape[1] != 2:
        raise InputError(f"uv must be (T, 2), got {uv.shape}")
    if not np.isfinite(uv).all():
        raise InputError("uv contains non-finite values")
    fuv = check_faces(faces_uv, "faces_uv", len(uv))
    f = check_faces(faces, "faces", n_vertices)
    if f.shape != fuv.shape:
        raise InputError(f"faces {f.shape} and faces_uv {fuv.shape} must have the same shape")
    return f, uv, fuv


def uv_to_pixel(uv, size: int | Sequence[int]) -> np.ndarray:
    """UV coordinates → texel-grid positions (texel centres at integer coordinates).

    Args:
        uv: UV coordinates (array-like or tensor), ``u`` left → right, ``v`` bottom → top.
        size: texture size, an int (square) or ``(H, W)``.

    Returns:
        ``(x, y) = (u W - 1/2, (1 - v) H - 1/2)`` (column, row).

    Shapes:
        uv: ``(..., 2)`` → ``(..., 2)`` float64.
    """
    H, W = _size(size)
    uv = as_numpy(uv, np.float64)
    return np.stack([uv[..., 0] * W - 0.5, (1.0 - uv[..., 1]) * H - 0.5], -1)


UV_CACHE_TEXELS = 512 * 512  # UV rasters of at least this many texels are kept in the cache


def _uv_fragments(uv: np.ndarray, fuv: np.ndarray, H: int, W: int) -> Fragments:
    """The UV layout rasterized at ``H × W`` (depth 1 where covered). Rasters of at least
    :data:`UV_CACHE_TEXELS` texels are kept in ``cache_dir("uv-raster")`` (keyed by the layout's
    bytes and the size: :func:`facegcn.io.cached.cached_arrays`): a model's layout is the same for
    every photo, and reading it back (~20 ms) saves its rasterization (~50 ms at 1024²)."""
    def raster() -> dict[str, np.ndarray]:
        px = uv_to_pixel(uv, (H, W))
        vs = np.concatenate([px, np.ones((len(px), 1))], 1)[None]
        frags = rasterize(torch.from_numpy(vs), torch.from_numpy(fuv), (H, W), backend="numba")
        return {"tri": frags.tri_id[0].numpy().astype(np.int32), "bary": frags.bary[0].numpy()}

    if H * W < UV_CACHE_TEXELS:
        z = raster()
    else:
        from facegcn.cache import array_digest
        from facegcn.io.cached import cached_arrays

        z = cached_arrays("uv-raster", array_digest(uv, fuv, extra=f"{H}x{W}"), raster)
    tri = torch.from_numpy(z["tri"].astype(np.int64))
    return Fragments(tri[None], torch.from_numpy(z["bary"])[None], (tri >= 0).to(torch.float32)[None], (tri >= 0)[None])


def rasterize_uv(uv, faces_uv, size: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Rasterize a UV layout (see the module docstring for the convention).

    Args:
        uv: ``(T, 2)`` UV coordinates.
        faces_uv: ``(F, 3)`` integer UV triangles indexing ``uv``.
        size: texture size, an int (square) or ``(H, W)``.

    Returns:
        ``(tri, bary)``: the face id covering each texel (-1 = not covered) and the affine
        barycentrics w.r.t. ``faces_uv[tri]``.

    Shapes:
        tri: ``(H, W)`` int64; bary: ``(H, W, 3)`` float32.
    """
    H, W = _size(size)
    uv = as_numpy(uv, np.float64)
    fuv = check_faces(faces_uv, "faces_uv", len(uv))
    frags = _uv_fragments(uv, fuv, H, W)
    return frags.tri_id[0].numpy(), frags.bary[0].numpy()


def _interp(frags: Fragments, attr: np.ndarray, faces: np.ndarray, fuv: np.ndarray) -> np.ndarray:
    """Per-vertex ``attr (V, C)`` over the UV raster → ``(H, W, C)`` (0 where not covered), with
    the project's :func:`facegcn.render.interpolate` (UV triangles rasterized, ``faces`` index
    ``attr``)."""
    out = interpolate(
        torch.from_numpy(np.ascontiguousarray(attr)), torch.from_numpy(fuv), frags,
        attr_faces=torch.from_numpy(faces), backend="numba",
    )  # fmt: skip
    return out[0].numpy()


# --------------------------------------------------------------------------- gutter fill
def _dilate_rings(tf: np.ndarray, mf: np.ndarray, vf: np.ndarray, mp: np.ndarray, valid: np.ndarray,
                  offs: np.ndarray, dilate: int) -> None:
    """``dilate`` Jacobi rings of neighbour means on the padded, flattened texture (in place)."""
    # lazy: scipy.ndimage costs ~0.5 s at import and only the gutter fill / photo mask use it
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


def fill_gutter(texture: np.ndarray, mask: np.ndarray, dilate: int = 8, background: Background = "mean") -> np.ndarray:
    """Fill the texels outside ``mask`` of a float texture (returns a new array).

    ``dilate`` iterations of: every empty texel with at least one filled 8-neighbour becomes the
    mean of its filled 8-neighbours (Jacobi-style: values of the previous ring only). Then every
    texel still empty gets ``background``.

    Args:
        texture: float texture (values outside ``mask`` are ignored, except with
            ``background=None``).
        mask: which texels hold valid values.
        dilate: number of gutter rings.
        background: ``"mean"`` (mean of the ``mask`` texels; 0.5 when there are none), a float or
            a per-channel sequence, or ``None`` (remaining texels are left as in ``texture``).

    Returns:
        The filled texture.

    Shapes:
        texture: ``(H, W, C)`` or ``(H, W)``; mask: ``(H, W)`` bool → ``(H, W, C)`` float32
        (``C = 1`` for a 2-D input).
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
    offs = np.array([dy * Wp + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx], np.int64)
    if dilate > 0 and mask.any():
        _dilate_rings(tp.reshape(-1, C), mp.reshape(-1), valid.reshape(-1), mp, valid, offs, dilate)
    out = tp[1:-1, 1:-1].copy()
    filled = mp[1:-1, 1:-1]
    if background is not None and not filled.all():
        if isinstance(background, str):
            if background != "mean":
                raise ConfigError(f"background must be 'mean', a colour or None, got {background!r}")
            n = int(np.count_nonzero(mask))  # the mean as one product (a boolean gather of the
            # texture costs ~20 ms at 1024²)
            bg = (mask.reshape(-1).astype(np.float32) @ tex.reshape(-1, C)) / n if n else np.full(C, 0.5, np.float32)
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
    background: Background = "mean",
    return_mask: bool = False,
):
    """Bake per-vertex colours into a texture of a UV layout.

    Covered texel ``x`` in UV triangle ``t`` with affine barycentrics ``b``:
    ``tex[x] = sum_k b_k colors[faces[t, k]]`` (colours are linear over each 3-D triangle, so the
    texture reproduces the vertex-coloured mesh); then :func:`fill_gutter` (``dilate`` rings,
    then ``background``).

    Args:
        colors: per-vertex colours, floats in ``[0, 1]`` or uint8.
        faces: the mesh triangles (index ``colors``).
        uv: UV coordinates.
        faces_uv: UV triangles, parallel to ``faces`` (index ``uv``).
        size: texture size, an int (square) or ``(H, W)``.
        dilate, background: the gutter fill (:func:`fill_gutter`).
        return_mask: also return the coverage mask.

    Returns:
        The texture, or ``(texture, mask)`` with ``return_mask``.

    Shapes:
        colors: ``(V, C)``; faces, faces_uv: ``(F, 3)`` int; uv: ``(T, 2)`` →
        texture ``(H, W, C)`` uint8 (rounded to nearest), mask ``(H, W)`` bool.
    """
    col = _colors01(colors)
    if col.ndim != 2:
        raise InputError(f"colors must be (V, C), got {col.shape}")
    f, uvn, fuv = _uv_faces_pair(faces, uv, faces_uv, len(col))
    H, W = _size(size)
    frags = _uv_fragments(uvn, fuv, H, W)
    mask = frags.mask[0].numpy()
    tex = _interp(frags, col, f, fuv)
    if not mask.any() and background == "mean":
        background = col.mean(0) if len(col) else 0.5
    out = to_uint8(fill_gutter(tex, mask, dilate, background))
    return (out, mask) if return_mask else out


def _sample_bilinear(img: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sample_bilinear_reference` by a numba kernel (:mod:`facegcn.render._sample_kernels`;
    ~10x faster on the ~10^6 texels of a 1024² texture); values as float64."""
    from facegcn.render._sample_kernels import bilinear

    return bilinear(img, p)


def sample_bilinear_reference(img: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


# --------------------------------------------------------------------------- read back
def sample_texture_at_vertices(texture, uv, faces_uv, faces, n_vertices: int) -> np.ndarray:
    """Colours of a texture at the mesh vertices.

    The texture is sampled bilinearly (:func:`facegcn.render.sample_texture`'s convention, border
    clamp) at each distinct UV corner ``(vertex, uv index)`` of ``faces`` / ``faces_uv``, and a
    vertex gets the mean over its corners (several across UV seams). Vertices used by no face
    get 0.

    Args:
        texture: float in ``[0, 1]`` or uint8.
        uv, faces_uv: the UV layout.
        faces: the mesh triangles (parallel to ``faces_uv``).
        n_vertices: V.

    Returns:
        Per-vertex colours.

    Shapes:
        texture: ``(H, W, C)`` or ``(H, W)`` → ``(V, C)`` float32 in ``[0, 1]``.
    """
    tex = _colors01(texture)
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
