"""facegcn.io.image.load_image: formats, EXIF, odd modes, limits and every kind of bad input."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegcn.errors import InputError
from facegcn.io.image import Photo, load_image, photo_from_array


def _gradient(h=48, w=64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 90)], -1).astype(np.uint8)


def _assert_one_line_naming(exc: pytest.ExceptionInfo, path: Path):
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _png16_rgb(arr: np.ndarray) -> bytes:
    """A 16-bit RGB PNG written by hand (PIL cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[r].astype(">u2").tobytes() for r in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")


def test_rgb_png_roundtrip(tmp_path):
    a = _gradient()
    p = tmp_path / "a.png"
    Image.fromarray(a).save(p)
    photo = load_image(p)
    assert isinstance(photo, Photo)
    assert photo.pixels.dtype == np.uint8 and photo.pixels.shape == (48, 64, 3)
    assert photo.size == (64, 48) and photo.path == p
    np.testing.assert_array_equal(photo.pixels, a)
    assert not photo.pixels.flags.writeable
    assert load_image(str(p)).size == (64, 48)


def test_exif_orientation_is_applied(tmp_path):
    a = _gradient(40, 60)
    p = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(a).save(p, exif=exif, quality=95)
    photo = load_image(p)
    assert photo.pixels.shape == (60, 40, 3)  # upright: width and height swapped
    expected = np.rot90(a, k=-1)
    assert np.abs(photo.pixels.astype(int) - expected.astype(int)).mean() < 6


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_over_white(tmp_path, mode):
    a = np.zeros((40, 40, 4), np.uint8)
    a[..., 0] = 200
    a[..., 3] = 255
    a[:20, :, 3] = 0  # top half transparent
    img = Image.fromarray(a, "RGBA")
    if mode == "LA":
        img = img.convert("LA")
    p = tmp_path / f"x_{mode}.png"
    img.save(p)
    px = load_image(p).pixels
    assert (px[:20] == 255).all()  # transparent → white
    assert (px[20:] < 255).any()


def test_grayscale_and_bilevel(tmp_path):
    g = (np.arange(40 * 50).reshape(40, 50) % 256).astype(np.uint8)
    p = tmp_path / "g.png"
    Image.fromarray(g).save(p)
    px = load_image(p).pixels
    assert px.shape == (40, 50, 3)
    np.testing.assert_array_equal(px[..., 0], g)
    np.testing.assert_array_equal(px[..., 2], g)
    b = tmp_path / "b.png"
    Image.fromarray(g > 128).convert("1").save(b)
    assert set(np.unique(load_image(b).pixels)) <= {0, 255}


def test_16bit_gray_and_rgb(tmp_path):
    g16 = (np.linspace(0, 65535, 40 * 40).reshape(40, 40)).astype(np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(g16).save(p)
    px = load_image(p).pixels
    assert px[..., 0].max() == 255 and px[..., 0].min() == 0
    np.testing.assert_allclose(px[..., 0].astype(float), g16 / 257.0, atol=1.0)

    rgb16 = np.zeros((36, 40, 3), np.uint16)
    rgb16[..., 0] = 65535
    rgb16[..., 1] = 257 * 100
    q = tmp_path / "rgb16.png"
    q.write_bytes(_png16_rgb(rgb16))
    px = load_image(q).pixels
    assert px.shape == (36, 40, 3)
    assert abs(int(px[0, 0, 0]) - 255) <= 1 and abs(int(px[0, 0, 1]) - 100) <= 1 and px[0, 0, 2] == 0


def test_cmyk_and_palette(tmp_path):
    a = _gradient()
    c = tmp_path / "c.jpg"
    Image.fromarray(a).convert("CMYK").save(c, quality=95)
    px = load_image(c).pixels
    assert px.shape == a.shape
    assert np.abs(px.astype(int) - a.astype(int)).mean() < 8

    pal = tmp_path / "p.png"
    Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(pal)
    assert load_image(pal).pixels.shape == a.shape

    pt = tmp_path / "pt.png"
    im = Image.new("P", (40, 40), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.paste(1, (0, 0, 40, 20))
    im.save(pt, transparency=1)
    px = load_image(pt).pixels
    assert (px[:20] == 255).all()  # transparent palette entry → white
    assert tuple(px[30, 5]) == (255, 0, 0)


def test_gif_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((40, 40, 3), v, np.uint8)) for v in (10, 200)]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    px = load_image(p).pixels
    assert px.shape == (40, 40, 3) and px.mean() < 50


def test_too_small_and_too_large(tmp_path):
    p = tmp_path / "tiny.png"
    Image.fromarray(_gradient(10, 12)).save(p)
    with pytest.raises(InputError, match="too small") as e:
        load_image(p)
    _assert_one_line_naming(e, p)
    big = tmp_path / "big.png"
    Image.fromarray(_gradient(100, 100)).save(big)
    with pytest.raises(InputError, match="too large") as e:
        load_image(big, max_pixels=5000)
    _assert_one_line_naming(e, big)


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path):
    # a PNG whose header claims 100000 x 100000 pixels (10 gigapixels) but holds almost no data
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    p = tmp_path / "bomb.png"
    p.write_bytes(data + _png_chunk(b"IEND", b""))
    with pytest.raises(InputError, match="too large") as e:
        load_image(p)
    _assert_one_line_naming(e, p)
    # the message states the limit (and the image's size), whichever guard refuses it
    assert "10,000,000,000 pixels" in str(e.value) and "limit 80,000,000" in str(e.value), e.value


def test_encoded_image_bytes_are_decoded_not_taken_as_a_path(tmp_path):
    # reference: the same file loaded from disk
    p = tmp_path / "g.png"
    Image.fromarray(_gradient(40, 48)).save(p)
    from_bytes = load_image(p.read_bytes())
    np.testing.assert_array_equal(from_bytes.pixels, load_image(p).pixels)
    jpg = tmp_path / "g.jpg"
    Image.fromarray(_gradient(40, 48)).save(jpg, quality=95)
    np.testing.assert_array_equal(load_image(bytearray(jpg.read_bytes())).pixels, load_image(jpg).pixels)
    # bad image bytes: one line, no binary in the message
    junk = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    with pytest.raises(InputError, match="not a recognised image") as e:
        load_image(junk)
    msg = str(e.value)
    assert "\n" not in msg and "\\x" not in msg and len(msg) < 100 and "bytes" in msg, msg
    # a byte string that can be a path still is one (non-UTF-8 names)
    with pytest.raises(InputError, match="no such file"):
        load_image(os.fsencode(str(tmp_path / "missing.png")))


def test_bad_files(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n" * 20)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(good, quality=90)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    png_good = tmp_path / "g.png"
    Image.fromarray(_gradient(200, 200)).save(png_good)
    png_cut = tmp_path / "cut.png"
    png_cut.write_bytes(png_good.read_bytes()[:300])
    cases = {
        tmp_path / "missing.png": "no such file",
        tmp_path: "directory",
        empty: "empty",
        text: "not a recognised image",
        garbage: "not a recognised image",
        truncated: "corrupt or truncated",
        png_cut: "corrupt or truncated",
    }
    for path, pattern in cases.items():
        with pytest.raises(InputError, match=pattern) as e:
            load_image(path)
        _assert_one_line_naming(e, path)


def test_numpy_arrays():
    a = _gradient()
    np.testing.assert_array_equal(load_image(a).pixels, a)
    np.testing.assert_array_equal(photo_from_array(a[..., 0]).pixels[..., 1], a[..., 0])
    f = load_image(a.astype(np.float32) / 255.0).pixels
    assert np.abs(f.astype(int) - a.astype(int)).max() <= 1
    u16 = load_image(a.astype(np.uint16) * 257).pixels
    np.testing.assert_array_equal(u16, a)
    rgba = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(load_image(rgba).pixels, a)
    photo = load_image(a)
    assert photo.path is None and load_image(photo) is photo
    for bad in (np.zeros((4, 40, 40, 3), np.uint8), np.zeros((40, 40, 5), np.uint8), np.zeros(40, np.uint8)):
        with pytest.raises(InputError):
            load_image(bad)
    nan = a.astype(np.float32)
    nan[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        load_image(nan)
    with pytest.raises(InputError, match="too small"):
        load_image(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError):
        load_image(12345)


def test_pil_image_input():
    a = _gradient()
    np.testing.assert_array_equal(load_image(Image.fromarray(a)).pixels, a)


def test_encode_png_is_lossless_at_any_level_and_the_level_trades_size():
    import io as _io

    from PIL import Image as _Image

    from facegcn.io.imageops import PNG_COMPRESS_LEVEL, encode_png

    rng = np.random.default_rng(3)
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), 16, 0), 16, 1)
    arr = np.clip(smooth.astype(int) + rng.integers(-3, 4, smooth.shape), 0, 255).astype(np.uint8)
    sizes = {}
    for level in (PNG_COMPRESS_LEVEL, 9):
        png = encode_png(arr, compress_level=level)
        np.testing.assert_array_equal(np.asarray(_Image.open(_io.BytesIO(png))), arr)
        sizes[level] = len(png)
    assert sizes[9] < sizes[PNG_COMPRESS_LEVEL]
    np.testing.assert_array_equal(np.asarray(_Image.open(_io.BytesIO(encode_png(arr[..., 0])))), arr[..., 0])
