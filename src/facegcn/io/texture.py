"""Automatic UV atlases (xatlas) for meshes without UVs, cached on disk, and the array checks the
UV code shares.

Pure functions: numpy arrays or torch tensors in, numpy out. The UV convention (``u`` left →
right, ``v`` bottom → top, as OBJ / OpenGL and :mod:`facegcn.io.mesh`) and the baking of textures
onto a UV layout are :mod:`facegcn.render.bake`'s.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from facegcn.cache import array_digest, cache_dir
from facegcn.errors import ConfigError, InputError
from facegcn.io.atomic import atomic_write_bytes

__all__ = ["XATLAS_VERSION", "as_numpy", "check_faces", "uv_atlas", "uv_atlas_cache_path"]

XATLAS_VERSION = "0.0.11"  # the version the atlas code and its cache keys were checked with

_ATLAS_FORMAT = 1  # bump when the conversion of xatlas output changes (invalidates the cache)


# --------------------------------------------------------------------------- array checks
def as_numpy(a, dtype=None) -> np.ndarray:
    """A numpy view / copy of an array-like or tensor.

    Args:
        a: array-like or :class:`torch.Tensor` (any device; detached and copied to the CPU).
        dtype: optional numpy dtype to convert to.

    Returns:
        ``np.ndarray`` with ``a``'s shape (and ``dtype`` when given).
    """
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


def check_faces(f, name: str, n: int | None = None) -> np.ndarray:
    """Validate a triangle index array.

    Args:
        f: ``(F, 3)`` integer array-like or tensor.
        name: how the error messages call it (``"faces"``, ``"faces_uv"``).
        n: when given, every index must lie in ``[0, n)``.

    Returns:
        ``(F, 3)`` int64 numpy array.

    Raises:
        InputError: wrong shape / dtype or an index out of range.
    """
    f = as_numpy(f)
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise InputError(f"{name} must be an (F, 3) integer array, got {f.dtype} {f.shape}")
    f = f.astype(np.int64, copy=False)
    if f.size and (f.min() < 0 or (n is not None and f.max() >= n)):
        raise InputError(f"{name} has indices outside [0, {n})")
    return f


# --------------------------------------------------------------------------- atlas
def _atlas_key(vertices: np.ndarray, faces: np.ndarray, resolution: int, padding: int) -> str:
    return array_digest(
        vertices, faces,
        extra=f"xatlas={XATLAS_VERSION};fmt={_ATLAS_FORMAT};res={resolution};pad={padding}",
    )  # fmt: skip


def uv_atlas_cache_path(vertices, faces, *, resolution: int = 1024, padding: int = 4) -> Path:
    """Where :func:`uv_atlas` caches the atlas of this mesh (the file may not exist yet).

    Args:
        vertices: ``(V, 3)`` float mesh vertices (any dtype; hashed as float32).
        faces: ``(F, 3)`` integer triangles.
        resolution, padding: the :func:`uv_atlas` options (part of the key).

    Returns:
        ``cache_dir("uv_atlas") / "<digest>.npz"``.
    """
    v = np.ascontiguousarray(as_numpy(vertices, np.float32))
    f = check_faces(faces, "faces", len(v))
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


def _save_atlas(path: Path, uv: np.ndarray, fuv: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, uv=uv, faces_uv=fuv)
    atomic_write_bytes(path, buf.getvalue())


def _run_xatlas(v: np.ndarray, f: np.ndarray, resolution: int, padding: int) -> tuple[np.ndarray, np.ndarray]:
    """xatlas on ``v (V, 3) float32`` / ``f (F, 3) int64`` → ``(uv (T, 2) float32, faces_uv (F, 3))``."""
    try:
        import xatlas  # optional at run time: a missing package is a ConfigError with the install line
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
    return uv, fuv


def uv_atlas(
    vertices,
    faces,
    cache: bool = True,
    *,
    resolution: int = 1024,
    padding: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Automatic UV layout for a mesh without UVs (e.g. the BFM) with ``xatlas``.

    xatlas segments the surface into charts, flattens them and packs them into an atlas of about
    ``resolution`` texels with ``padding`` texels between charts (``bilinear`` packing on). Its
    output ``(vmapping, indices, uvs)`` satisfies ``vmapping[indices] == faces`` (checked), so
    ``faces_uv = indices`` and ``uv = uvs`` rescaled by ``(width, height) / max(width, height)``
    (one texel density in both directions of a square texture). Degenerate faces get a zero-area
    UV triangle at the origin. A 70k-triangle face mesh takes tens of seconds, once.

    Args:
        vertices: ``(V, 3)`` finite mesh vertices (numpy or torch, any float dtype).
        faces: ``(F, 3)`` integer triangles; the mesh keeps them (``faces_uv`` is parallel).
        cache: read / write the npz in ``cache_dir("uv_atlas")`` keyed by the mesh digest and the
            options (:func:`uv_atlas_cache_path`); ``False`` neither reads nor writes it.
        resolution: target atlas size in texels.
        padding: texels between charts.

    Returns:
        ``(uv, faces_uv)`` in :mod:`facegcn.render.bake`'s UV convention, one UV vertex per
        (vertex, chart).

    Shapes:
        uv: ``(T, 2)`` float32 in ``[0, 1]``; faces_uv: ``(F, 3)`` int64 indexing ``uv``.

    Raises:
        InputError: bad mesh arrays, or xatlas could not build one atlas for the mesh.
        ConfigError: ``xatlas`` is not installed (checked with ``xatlas==0.0.11``).
    """
    v = np.ascontiguousarray(as_numpy(vertices, np.float32))
    if v.ndim != 2 or v.shape[1] != 3 or not np.isfinite(v).all():
        raise InputError(f"vertices must be a finite (V, 3) array, got {v.shape}")
    f = check_faces(faces, "faces", len(v))
    resolution, padding = int(resolution), int(padding)
    path = None
    if cache:
        path = cache_dir("uv_atlas") / f"{_atlas_key(v, f, resolution, padding)}.npz"
        hit = _load_atlas(path, len(f))
        if hit is not None:
            return hit
    uv, fuv = _run_xatlas(v, f, resolution, padding)
    if path is not None:
        _save_atlas(path, uv, fuv)
    return uv, fuv
