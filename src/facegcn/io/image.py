"""Loading photos: any common file or array → :class:`Photo` (uint8 RGB, EXIF-upright).

Every failure is an :class:`~facegcn.errors.InputError` with a one-line message naming the file:
missing paths, broken or looping symbolic links, directories, FIFOs/devices, names that are too
long, empty/truncated/corrupt files, non-images (text, ...), images that are too small to hold a
face or above the pixel limit (checked from the header, before decoding, which also guards
against decompression bombs; the message states the limit). Paths may be ``str``, ``bytes`` (any
byte string the OS accepts, e.g. non-UTF-8 names) or ``os.PathLike``; ``bytes`` that cannot be a
path (they hold a NUL byte, as every encoded PNG/JPEG/... does, or start with an image
signature) are taken as the encoded image itself (``load_image(open(p, "rb").read())``), and
error messages never show such bytes. Decoding never prints: Python warnings from the
decoders are suppressed and libtiff's own stderr messages are switched off (its errors still
become :class:`InputError`). Limits live in :mod:`facegcn.limits`.

Conversions: EXIF orientation is applied (a corrupt EXIF block is ignored, not fatal); alpha
(RGBA, LA, PA, transparent palettes) is composited over white; grayscale, 1-bit, palette and
CMYK become RGB; 16-bit and 32-bit integer images are scaled (``v / 257``, i.e. 65535 → 255) and
float images are taken as [0, 1] when their maximum is ≤ 1, else as 0..255. Multi-frame files
(GIF, TIFF, APNG, WebP) use their first frame.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegcn.errors import InputError
from facegcn.limits import CONVERT_CHUNK_ROWS, MAX_FILE_BYTES, MAX_PIXELS, MIN_SIDE

__all__ = ["MAX_PIXELS", "MIN_SIDE", "Photo", "load_image", "photo_from_array"]


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


def _row_chunks(n: int):
    for i in range(0, n, CONVERT_CHUNK_ROWS):
        yield slice(i, min(n, i + CONVERT_CHUNK_ROWS))


def _scale_to_uint8(a: np.ndarray, name: str) -> np.ndarray:
    """uint8 from any numeric pixel type, converted a block of rows at a time (bounded memory)."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    rows = a.shape[0] if a.ndim else 0
    if np.issubdtype(a.dtype, np.floating):
        if not all(np.isfinite(a[s]).all() for s in _row_chunks(rows)):
            raise InputError(f"{name}: image contains NaN or infinite values")
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0

        def conv(x):
            return np.clip(np.rint(x.astype(np.float64) * scale), 0, 255)
    elif np.issubdtype(a.dtype, np.integer):
        if a.dtype.itemsize == 1:  # int8
            def conv(x):
                return np.clip(x, 0, 255)
        elif a.dtype.itemsize == 2 or (a.size and a.max() <= 65535):  # 16-bit data (also in int32 "I" mode)
            if a.dtype.itemsize <= 4:
                def conv(x):  # = rint(x / 257) exactly, in integers
                    return np.clip((x.astype(np.int64) + 128) // 257, 0, 255)
            else:
                def conv(x):
                    return np.clip(np.rint(x.astype(np.float64) / 257.0), 0, 255)
        else:  # 32-bit
            def conv(x):
                return np.clip(np.rint(x.astype(np.float64) / 16843009.0), 0, 255)
    else:
        raise InputError(f"{name}: unsupported pixel type {a.dtype}")
    out = np.empty(a.shape, np.uint8)
    for s in _row_chunks(rows):
        out[s] = conv(a[s])
    return out


def _composite_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``rint(rgb * a + 255 * (1 - a))`` with ``a = alpha / 255``, exactly, in integers."""
    out = np.empty(rgb.shape, np.uint8)
    for s in _row_chunks(rgb.shape[0]):
        a = alpha[s].astype(np.uint32)[..., None]
        out[s] = (rgb[s].astype(np.uint32) * a + 255 * (255 - a) + 127) // 255
    return out


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


# --------------------------------------------------------------------------- decoding, quietly
_LIBTIFF_LOCK = threading.Lock()
_LIBTIFF_SILENCED = False


def _silence_libtiff() -> None:
    """Switch off libtiff's error handler (it prints e.g. "ZIPDecode: Decoding error ..." straight
    to the process's stderr). Errors still fail the decode, which becomes an InputError. Best
    effort, once per process: Pillow does not expose this, so the libtiff that Pillow loaded is
    found in /proc/self/maps (Linux) and called through ctypes."""
    global _LIBTIFF_SILENCED
    if _LIBTIFF_SILENCED:
        return
    with _LIBTIFF_LOCK:
        if _LIBTIFF_SILENCED:
            return
        _LIBTIFF_SILENCED = True
        try:
            import ctypes

            import PIL._imaging  # noqa: F401  (loads libtiff)

            with open("/proc/self/maps") as fh:
                libs = {ln.split()[-1] for ln in fh if re.search(r"/libtiff[^/]*\.so[.0-9]*$", ln.rstrip())}
            for lib in sorted(libs):
                fn = ctypes.CDLL(lib).TIFFSetErrorHandler
                fn.restype, fn.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
                fn(None)
        except Exception:  # pragma: no cover - not Linux, or no libtiff: nothing to silence
            pass


def _open_error(exc: OSError, path: Path, name: str) -> InputError:
    e = exc.errno
    if e == errno.ENOENT:
        try:
            target = os.readlink(path)
        except (OSError, ValueError):
            return InputError(f"{name}: no such file")
        return InputError(f"{name}: no such file (broken symbolic link to {target})")
    if e == errno.ENOTDIR:
        return InputError(f"{name}: no such file (a parent of it is not a directory)")
    if e == errno.ELOOP:
        return InputError(f"{name}: no such file (symbolic link loop)")
    if e == errno.ENAMETOOLONG:
        return InputError(f"{name}: file name too long")
    if e in (errno.EACCES, errno.EPERM):
        return InputError(f"{name}: permission denied")
    if e == errno.EISDIR:
        return InputError(f"{name}: is a directory, not an image file")
    return InputError(f"{name}: cannot read ({exc.strerror or exc})")


def _open_regular_file(path: Path, name: str, max_bytes: int):
    """Open ``path`` for reading without blocking (a FIFO would block ``open``) and refuse
    anything but a non-empty regular file of at most ``max_bytes``."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _open_error(exc, path, name) from None
    except ValueError:  # e.g. an embedded NUL byte
        raise InputError(f"{name!r}: invalid file name") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{name}: is a directory, not an image file")
        if not stat.S_ISREG(st.st_mode):
            kind = "FIFO" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) else "device"
            raise InputError(f"{name}: not a regular file (a {kind})")
        if st.st_size == 0:
            raise InputError(f"{name}: empty file (0 bytes)")
        if st.st_size > max_bytes:
            raise InputError(f"{name}: file too large ({st.st_size:,} bytes; limit {max_bytes:,})")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _decode(img, name: str, max_pixels: int, min_side: int) -> np.ndarray:
    from PIL import ImageOps

    _check_dims(img.width, img.height, name, max_pixels, min_side)  # from the header
    img.load()
    _check_dims(img.width, img.height, name, max_pixels, min_side)  # some formats (ICO) resize on load
    try:
        ImageOps.exif_transpose(img, in_place=True)
    except Exception:  # a corrupt EXIF block: keep the pixels as stored
        pass
    return _pil_to_rgb(img, name)


def _translate(exc: BaseException, name: str, max_pixels: int = MAX_PIXELS) -> InputError:
    from PIL import Image, UnidentifiedImageError

    if isinstance(exc, InputError):
        return exc
    if isinstance(exc, UnidentifiedImageError):
        return InputError(f"{name}: not a recognised image file")
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        m = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(m.group(1)):,} pixels; " if m else ""
        return InputError(f"{name}: image too large ({size}limit {max_pixels:,} pixels)")
    if isinstance(exc, MemoryError):
        return InputError(f"{name}: image too large to decode (out of memory)")
    if isinstance(exc, PermissionError):
        return InputError(f"{name}: permission denied")
    detail = " ".join(str(exc).split())[:200] or type(exc).__name__
    return InputError(f"{name}: corrupt or truncated image ({detail})")


def load_image(
    source, *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE, max_bytes: int = MAX_FILE_BYTES
) -> Photo:
    """Load a photo from a path (str/bytes/Path), a numpy array, a PIL image or a :class:`Photo`."""
    from PIL import Image

    if isinstance(source, Photo):
        return source
    if isinstance(source, np.ndarray):
        return photo_from_array(source, max_pixels=max_pixels, min_side=min_side)
    if isinstance(source, Image.Image):
        name = "<PIL image>"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                _check_dims(source.width, source.height, name, max_pixels, min_side)
                rgb = _decode(source.copy(), name, max_pixels, min_side)  # copy: EXIF rotation is in place
        except Exception as exc:
            raise _translate(exc, name, max_pixels) from None
        return Photo(np.ascontiguousarray(rgb))
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if _encoded_image(data):
            return _load_encoded(data, max_pixels=max_pixels, min_side=min_side, max_bytes=max_bytes)
        source = os.fsdecode(data)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"cannot load an image from a {type(source).__name__}")
    if isinstance(source, str) and not source:
        raise InputError("'': empty file name")

    path = Path(source)
    name = str(path)
    _silence_libtiff()
    try:
        fh = _open_regular_file(path, name, max_bytes)
        with fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # decoder chatter ("Corrupt EXIF data", ...) is not for users
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fh) as img:
                rgb = _decode(img, name, max_pixels, min_side)
    except Exception as exc:  # every decoder failure (OSError, SyntaxError, struct.error, ...) is bad input
        raise _translate(exc, name, max_pixels) from None
    return Photo(np.ascontiguousarray(rgb), path)


#: how PNG and JPEG files start (not a plausible file name); other formats hold a NUL byte early,
#: which no path can, and no path is longer than PATH_MAX (4096 bytes on Linux)
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


def _encoded_image(data: bytes) -> bool:
    """Whether ``bytes`` given to :func:`load_image` are an encoded image rather than a path."""
    return b"\x00" in data or len(data) > 4096 or data.startswith(_SIGNATURES)


def _load_encoded(data: bytes, *, max_pixels: int, min_side: int, max_bytes: int) -> Photo:
    """A :class:`Photo` from the bytes of an image file (the same checks as for a file)."""
    import io

    from PIL import Image

    name = f"<{len(data):,} bytes>"
    if not data:
        raise InputError(f"{name}: empty image data")
    if len(data) > max_bytes:
        raise InputError(f"{name}: image data too large (limit {max_bytes:,} bytes)")
    _silence_libtiff()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                rgb = _decode(img, name, max_pixels, min_side)
    except Exception as exc:  # noqa: BLE001 - as for files: every decoder failure is bad input
        raise _translate(exc, name, max_pixels) from None
    return Photo(np.ascontiguousarray(rgb))
