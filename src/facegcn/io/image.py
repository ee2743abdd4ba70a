"""Loading photos: any common file or array → :class:`Photo` (uint8 RGB, EXIF-upright).

Every failure is an :class:`~facegcn.errors.InputError` with a one-line message naming the file:
missing paths, directories, empty/truncated/corrupt files, non-images (text, ...), images that are
too small to hold a face or above the pixel limit (checked from the header, before decoding, which
also guards against decompression bombs).

Conversions: EXIF orientation is applied; alpha (RGBA, LA, PA, transparent palettes) is
composited over white; grayscale, 1-bit, palette and CMYK become RGB; 16-bit and 32-bit integer
images are scaled (``v / 257``, i.e. 65535 → 255) and float images are taken as [0, 1] when their
maximum is ≤ 1, else as 0..255. Multi-frame files (GIF, TIFF) use their first frame.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegcn.errors import InputError

MAX_PIXELS = 80_000_000  # ~ a 10000x8000 photo; larger is refused before decoding
MIN_SIDE = 32  # no face fits in less


@dataclass(frozen=True, eq=False)
class Photo:
    """A photo: ``pixels`` uint8 (H, W, 3) RGB, EXIF-rotated, at its original resolution."""

    pixels: np.ndarray
    path: Path | None = None

    def __post_init__(self):
        p = self.pixels
        if not (isinstance(p, np.ndarray) and p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3):
            raise InputError("Photo.pixels must be a uint8 (H, W, 3) array")
        if not p.flags.c_contiguous:
            object.__setattr__(self, "pixels", np.ascontiguousarray(p))
        self.pixels.setflags(write=False)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, as PIL reports it."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "<array>"


def _check_dims(w: int, h: int, name: str, max_pixels: int, min_side: int) -> None:
    if w * h > max_pixels:
        raise InputError(f"{name}: image too large ({w}x{h} = {w * h:,} pixels; limit {max_pixels:,})")
    if min(w, h) < min_side:
        raise InputError(f"{name}: image too small ({w}x{h}; need at least {min_side} pixels per side)")


def _scale_to_uint8(a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise InputError(f"{name}: image contains NaN or infinite values")
        a = a.astype(np.float64)
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        if a.dtype.itemsize == 1:  # int8
            return np.clip(a, 0, 255).astype(np.uint8)
        if a.dtype.itemsize == 2 or (a.size and a.max() <= 65535):  # 16-bit data (also in int32 "I" mode)
            return np.clip(np.rint(a.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
        return np.clip(np.rint(a.astype(np.float64) / 16843009.0), 0, 255).astype(np.uint8)  # 32-bit
    raise InputError(f"{name}: unsupported pixel type {a.dtype}")


def _composite_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float32)[..., None] / 255.0
    return np.clip(np.rint(rgb.astype(np.float32) * a + 255.0 * (1.0 - a)), 0, 255).astype(np.uint8)


def _array_to_rgb(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        g = _scale_to_uint8(a, name)
        return np.repeat(g[..., None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] in (2, 3, 4):
        u = _scale_to_uint8(a, name)
        if u.shape[2] == 2:  # gray + alpha
            return _composite_white(np.repeat(u[..., :1], 3, axis=2), u[..., 1])
        if u.shape[2] == 4:
            return _composite_white(u[..., :3], u[..., 3])
        return u
    raise InputError(f"{name}: expected an (H, W), (H, W, 3) or (H, W, 4) image array, got shape {a.shape}")


def photo_from_array(
    array, *, path: str | os.PathLike | None = None, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE
) -> Photo:
    """A :class:`Photo` from a numpy array (H,W), (H,W,1|2|3|4); uint8, uint16, bool or float
    ([0,1] if max ≤ 1, else 0..255). Channels are taken as RGB(A)."""
    name = str(path) if path is not None else "<array>"
    a = np.asarray(array)
    if a.ndim not in (2, 3):
        raise InputError(f"{name}: expected an (H, W) or (H, W, C) image array, got shape {a.shape}")
    _check_dims(int(a.shape[1]), int(a.shape[0]), name, max_pixels, min_side)
    return Photo(np.ascontiguousarray(_array_to_rgb(a, name)), Path(path) if path is not None else None)


def _pil_to_rgb(img, name: str) -> np.ndarray:
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        return _array_to_rgb(np.asarray(img), name)
    if mode in ("RGB", "L"):
        return _array_to_rgb(np.asarray(img), name)
    if mode == "1":
        return _array_to_rgb(np.asarray(img.convert("L")), name)
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _array_to_rgb(np.asarray(img), name)
    # CMYK, YCbCr, LAB, HSV, ...: PIL knows how to get RGB
    try:
        return _array_to_rgb(np.asarray(img.convert("RGB")), name)
    except (ValueError, OSError) as exc:
        raise InputError(f"{name}: cannot convert {mode} image to RGB ({exc})") from None


def load_image(
    source, *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE
) -> Photo:
    """Load a photo from a path (str/Path), a numpy array, a PIL image or a :class:`Photo`."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(source, Photo):
        return source
    if isinstance(source, np.ndarray):
        return photo_from_array(source, max_pixels=max_pixels, min_side=min_side)
    if isinstance(source, Image.Image):
        _check_dims(source.width, source.height, "<PIL image>", max_pixels, min_side)
        return Photo(np.ascontiguousarray(_pil_to_rgb(ImageOps.exif_transpose(source), "<PIL image>")))
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"cannot load an image from a {type(source).__name__}")

    path = Path(source)
    name = str(path)
    if not path.exists():
        raise InputError(f"{name}: no such file")
    if path.is_dir():
        raise InputError(f"{name}: is a directory, not an image file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if size == 0:
        raise InputError(f"{name}: empty file (0 bytes)")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_dims(img.width, img.height, name, max_pixels, min_side)
                if getattr(img, "n_frames", 1) > 1:
                    img.seek(0)
                img.load()
                img = ImageOps.exif_transpose(img)
                rgb = _pil_to_rgb(img, name)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{name}: not a recognised image file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{name}: image too large (decompression-bomb guard)") from None
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"{name}: corrupt or truncated image ({detail})") from None
    if rgb.shape[0] * rgb.shape[1] > max_pixels or min(rgb.shape[:2]) < min_side:  # pragma: no cover - paranoia
        _check_dims(rgb.shape[1], rgb.shape[0], name, max_pixels, min_side)
    return Photo(np.ascontiguousarray(rgb), path)
