"""A seeded corpus of malformed image files (no fuzzing library needed).

Seeds: the astronaut (skimage, public domain) at 64x64 — small enough that no face is found, so
an input that does decode costs the CLI a fast "no face" instead of a reconstruction — written as
PNG (RGB, palette, RGBA, 16-bit), JPEG (baseline with an EXIF orientation, progressive,
grayscale, CMYK), GIF, BMP, TIFF (raw, LZW, deflate, JPEG-in-TIFF), WebP (lossy, lossless), ICO and
TGA. Mutations: bit flips, truncations, overwritten headers, header fields set to extreme values
with valid checksums (PNG IHDR dimensions/bit depth/colour type, BMP/GIF/TIFF sizes), inserted,
deleted and duplicated byte runs, spliced seeds; plus format magic followed by random bytes,
pure random bytes and text, under a matching or a misleading extension.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SEED_SIZE = 64
MAGICS = {
    "png": b"\x89PNG\r\n\x1a\n",
    "jpg": b"\xff\xd8\xff\xe0",
    "gif": b"GIF89a",
    "bmp": b"BM",
    "tif": b"II*\x00",
    "webp": b"RIFF\x00\x01\x00\x00WEBPVP8 ",
    "ico": b"\x00\x00\x01\x00",
}


@dataclass(frozen=True)
class Case:
    path: Path
    kind: str  # which mutation produced it, e.g. "png-rgb/bitflip"


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _png16(arr: np.ndarray) -> bytes:
    h, w, _ = arr.shape
    a16 = arr.astype(">u2") * 257
    raw = b"".join(b"\x00" + a16[r].tobytes() for r in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return MAGICS["png"] + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")


def astronaut(size: int = SEED_SIZE) -> np.ndarray:
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((size, size), Image.BILINEAR))


def seed_files(size: int = SEED_SIZE) -> dict[str, tuple[str, bytes]]:
    """name → (extension, bytes) of valid encodings of the astronaut."""
    a = astronaut(size)
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6
    specs = [
        ("png-rgb", "png", im, "PNG", {}),
        ("png-palette", "png", im.convert("P", palette=Image.Palette.ADAPTIVE, colors=64), "PNG", {}),
        ("png-rgba", "png", im.convert("RGBA"), "PNG", {}),
        ("jpg-exif", "jpg", im, "JPEG", {"quality": 85, "exif": exif}),
        ("jpg-progressive", "jpg", im, "JPEG", {"quality": 80, "progressive": True}),
        ("jpg-gray", "jpg", im.convert("L"), "JPEG", {"quality": 80}),
        ("jpg-cmyk", "jpg", im.convert("CMYK"), "JPEG", {"quality": 80}),
        ("gif", "gif", im, "GIF", {}),
        ("bmp", "bmp", im, "BMP", {}),
        ("tif-raw", "tif", im, "TIFF", {}),
        ("tif-lzw", "tif", im, "TIFF", {"compression": "tiff_lzw"}),
        ("tif-deflate", "tif", im, "TIFF", {"compression": "tiff_deflate"}),
        ("tif-jpeg", "tif", im, "TIFF", {"compression": "jpeg"}),
        ("webp-lossy", "webp", im, "WEBP", {"quality": 70}),
        ("webp-lossless", "webp", im.convert("RGBA"), "WEBP", {"lossless": True}),
        ("ico", "ico", im, "ICO", {}),
        ("tga", "tga", im, "TGA", {}),
    ]
    out: dict[str, tuple[str, bytes]] = {"png-16bit": ("png", _png16(a))}
    for name, ext, img, fmt, kw in specs:
        buf = io.BytesIO()
        try:
            img.save(buf, format=fmt, **kw)
        except (OSError, KeyError, ValueError):  # codec not built into this Pillow: skip the seed
            continue
        out[name] = (ext, buf.getvalue())
    return out


def _fix_png_crcs(d: bytearray) -> bytearray:
    """Recompute every chunk CRC so that a mutated PNG passes the checksum test and reaches the decoder."""
    i = 8
    while i + 12 <= len(d):
        n = struct.unpack(">I", d[i:i + 4])[0]
        if i + 12 + n > len(d):
            break
        d[i + 8 + n:i + 12 + n] = struct.pack(">I", zlib.crc32(bytes(d[i + 4:i + 8 + n])) & 0xFFFFFFFF)
        i += 12 + n
    return d


def _extreme(rng: random.Random, nbytes: int) -> int:
    return rng.choice([0, 1, 2, 31, 32, 33, 255, 256, 65535, 2**31 - 1, 2**32 - 1, rng.randrange(2 ** (8 * nbytes))]) % (2 ** (8 * nbytes))


def _header_fields(rng: random.Random, name: str, d: bytearray) -> bytearray:
    """Set a size / depth / type field of the format's header to an extreme value."""
    if name.startswith("png") and len(d) >= 33:
        off, n = rng.choice([(16, 4), (20, 4), (24, 1), (25, 1), (26, 1), (27, 1), (28, 1)])
        d[off:off + n] = _extreme(rng, n).to_bytes(n, "big")
        return _fix_png_crcs(d)
    if name == "bmp" and len(d) >= 54:
        off, n = rng.choice([(2, 4), (10, 4), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2), (30, 4), (34, 4), (46, 4)])
        d[off:off + n] = _extreme(rng, n).to_bytes(n, "little")
        return d
    if name == "gif" and len(d) >= 13:
        off, n = rng.choice([(6, 2), (8, 2), (10, 1)])
        d[off:off + n] = _extreme(rng, n).to_bytes(n, "little")
        return d
    if name.startswith("tif") and len(d) >= 8:
        # an IFD entry's value (the IFD offset is at 4; entries are 12 bytes after a 2-byte count)
        ifd = struct.unpack("<I", d[4:8])[0]
        if ifd + 2 < len(d):
            count = struct.unpack("<H", d[ifd:ifd + 2])[0]
            if count:
                e = ifd + 2 + 12 * rng.randrange(min(count, 64))
                if e + 12 <= len(d):
                    off, n = rng.choice([(e + 4, 4), (e + 8, 4), (e + 2, 2)])
                    d[off:off + n] = _extreme(rng, n).to_bytes(n, "little")
                    return d
    i = rng.randrange(min(len(d), 32))
    d[i:i + 4] = _extreme(rng, 4).to_bytes(4, "little")
    return d


def mutate(rng: random.Random, name: str, data: bytes, seeds: dict[str, tuple[str, bytes]]) -> tuple[str, bytes]:
    d = bytearray(data)
    k = rng.choice(["bitflip", "bitflip", "truncate", "truncate-tail", "header", "header-field", "header-field",
                    "insert", "delete", "duplicate", "extreme-bytes", "splice"])
    if k == "bitflip":
        for _ in range(rng.choice([1, 1, 2, 4, 16])):
            i = rng.randrange(len(d))
            d[i] ^= 1 << rng.randrange(8)
    elif k == "truncate":
        d = d[:rng.randrange(1, len(d))]
    elif k == "truncate-tail":
        d = d[:max(1, len(d) - rng.randint(1, 64))]
    elif k == "header":
        end = min(len(d), rng.choice([16, 64, 256]))
        for _ in range(rng.randint(1, 8)):
            d[rng.randrange(end)] = rng.randrange(256)
    elif k == "header-field":
        d = _header_fields(rng, name, d)
    elif k == "insert":
        i = rng.randrange(len(d))
        d[i:i] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 64, 1024])))
    elif k == "delete":
        i = rng.randrange(len(d))
        del d[i:i + rng.choice([1, 4, 64, 1024])]
    elif k == "duplicate":
        i = rng.randrange(len(d))
        j = rng.randrange(len(d))
        d[j:j] = d[i:i + rng.choice([4, 16, 256])]
    elif k == "extreme-bytes":
        for _ in range(rng.randint(1, 8)):
            d[rng.randrange(len(d))] = rng.choice([0x00, 0x7F, 0x80, 0xFF])
    else:  # splice: the head of this file + the tail of another seed
        other = seeds[rng.choice(sorted(seeds))][1]
        d = d[:rng.randrange(1, len(d))] + other[rng.randrange(len(other)):]
    return k, bytes(d or b"\x00")


def make_corpus(folder: Path, n: int, seed: int = 0) -> list[Case]:
    """``n`` malformed (or accidentally valid) image files in ``folder``; deterministic for ``seed``."""
    rng = random.Random(seed)
    seeds = seed_files()
    names = sorted(seeds)
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for i in range(n):
        r = rng.random()
        if r < 0.84:
            name = rng.choice(names)
            ext, data = seeds[name]
            kind, blob = mutate(rng, name, data, seeds)
            kind = f"{name}/{kind}"
        elif r < 0.92:  # a format's magic, then random bytes
            ext = rng.choice(sorted(MAGICS))
            blob = MAGICS[ext] + rng.randbytes(rng.choice([0, 8, 64, 512, 4096]))
            kind = f"random-header/{ext}"
        elif r < 0.98:
            ext = rng.choice(["jpg", "png", "gif", "bmp", "tif", "webp", "jpeg"])
            blob = rng.randbytes(rng.choice([1, 2, 16, 100, 1000, 20000]))
            kind = "random-bytes"
        else:
            ext = rng.choice(["jpg", "png"])
            blob = ("Lorem ipsum dolor sit amet\n" * rng.randint(1, 200)).encode()
            kind = "text"
        if rng.random() < 0.1:  # a misleading extension
            ext = rng.choice(["jpg", "png", "gif", "bmp", "tif", "webp"])
        p = folder / f"f{i:05d}.{ext}"
        p.write_bytes(blob)
        cases.append(Case(p, kind))
    return cases
