"""Hostile inputs at every entry point: ``load_image``, ``facegcn reconstruct`` (in-process
``main()`` and real subprocesses) and ``--model`` / ``--checkpoint`` files.

Contract (issue 10): a one-line error naming the file and a distinct exit code (2 usage, 3 bad
input, 4 no face, 5 bad model/checkpoint, 6 output), never a traceback.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegcn.cli import main
from facegcn.errors import InputError
from facegcn.io.image import MAX_PIXELS, load_image
from facegcn.limits import MAX_FILE_BYTES

REPO = Path(__file__).resolve().parents[2]
QUICK = ["--fast", "--no-refine", "-q"]


# ----------------------------------------------------------------------------- helpers
def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _png_header_only(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b"")


def _valid_gray_png(w: int, h: int) -> bytes:
    """A complete, valid grayscale PNG of w x h zeros, compressed row by row (little memory)."""
    z = zlib.compressobj(9)
    row = b"\x00" * (w + 1)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _bmp_header_only(w: int, h: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 16, 0, 0, 54) + info + b"\x00" * 16


def _gif_header_only(w: int, h: int) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", w, h, 0, 0, 0) + b",\x00\x00\x00\x00" + struct.pack("<HH", w, h) + b"\x00\x02\x02D\x01\x00;"


@pytest.fixture(scope="module")
def astro() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="module")
def files(tmp_path_factory, astro) -> dict[str, Path]:
    """One file per kind of hostile input (plus good ones), made once for the module."""
    d = tmp_path_factory.mktemp("hostile")
    f: dict[str, Path] = {}

    def put(name: str, data: bytes) -> Path:
        p = d / name
        p.write_bytes(data)
        return p

    small = Image.fromarray(astro).resize((128, 128))
    Image.fromarray(np.full((256, 256, 3), 255, np.uint8)).save(d / "blank.png")
    f["blank"] = d / "blank.png"
    from skimage import data as skd

    Image.fromarray(skd.rocket()).save(d / "landscape.jpg", quality=90)
    f["landscape"] = d / "landscape.jpg"
    jpg = d / "astro.jpg"
    Image.fromarray(astro).save(jpg, quality=90)
    png = d / "astro.png"
    small.save(png)
    f["truncated_jpeg"] = put("truncated.jpg", jpg.read_bytes()[: jpg.stat().st_size // 3])
    f["truncated_png"] = put("truncated.png", png.read_bytes()[: png.stat().st_size // 2])
    bad_crc = bytearray(png.read_bytes())
    bad_crc[len(bad_crc) // 2] ^= 0xFF  # inside the image data: the CRC no longer matches
    f["corrupt_png"] = put("corrupt.png", bytes(bad_crc))
    f["empty"] = put("empty.jpg", b"")
    f["random"] = put("random.jpg", np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    f["text"] = put("notes.png", b"this is a text file, not an image\n" * 40)
    (d / "folder.jpg").mkdir()
    f["directory"] = d / "folder.jpg"
    os.symlink(d / "does-not-exist.jpg", d / "broken.jpg")
    f["broken_symlink"] = d / "broken.jpg"
    os.symlink(d / "loop_b.jpg", d / "loop_a.jpg")
    os.symlink(d / "loop_a.jpg", d / "loop_b.jpg")
    f["symlink_loop"] = d / "loop_a.jpg"
    os.mkfifo(d / "fifo.jpg")
    f["fifo"] = d / "fifo.jpg"
    f["bomb_png"] = put("bomb.png", _png_header_only(100_000, 100_000))
    f["bomb_bmp"] = put("bomb.bmp", _bmp_header_only(60_000, 60_000))
    f["bomb_gif"] = put("bomb.gif", _gif_header_only(65_535, 65_535))
    side = int(MAX_PIXELS ** 0.5) + 100  # a real, complete image just over the pixel limit
    f["over_limit"] = put("over_limit.png", _valid_gray_png(side, side))
    Image.new("RGB", (1, 1), (200, 150, 120)).save(d / "one.png")
    f["1x1"] = d / "one.png"
    f["not_utf8"] = Path(os.fsdecode(os.path.join(os.fsencode(d), b"caf\xe9-\xff.jpg")))
    f["not_utf8"].write_bytes(f["random"].read_bytes())
    f["long_name"] = d / ("x" * 251 + ".png")  # 255 bytes, the most ext4 allows
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(f["long_name"])
    f["too_long_name"] = d / ("y" * 300 + ".png")
    f["parent_is_file"] = png / "child.png"
    f["missing"] = d / "missing.jpg"
    f["huge_file"] = d / "huge.png"  # sparse: 1 GiB + 1 byte of nothing, over the file-size limit
    f["huge_file"].write_bytes(png.read_bytes())
    os.truncate(f["huge_file"], MAX_FILE_BYTES + 1)
    f["device"] = Path("/dev/zero")
    f["good_small"] = png
    return f


# what load_image must say about each hostile file
LOAD_ERRORS = {
    "truncated_jpeg": "corrupt or truncated",
    "truncated_png": "corrupt or truncated",
    "corrupt_png": "corrupt or truncated",
    "empty": "empty file",
    "random": "not a recognised image",
    "text": "not a recognised image",
    "directory": "is a directory",
    "broken_symlink": "broken symbolic link",
    "symlink_loop": "symbolic link loop",
    "fifo": "not a regular file",
    "bomb_png": "too large",
    "bomb_bmp": "too large",
    "bomb_gif": "too large",
    "over_limit": "too large",
    "1x1": "too small",
    "not_utf8": "not a recognised image",
    "too_long_name": "file name too long",
    "parent_is_file": "no such file",
    "missing": "no such file",
    "huge_file": "file too large",
    "device": "not a regular file",
}


def _load_with_deadline(path, timeout: float = 20.0):
    """load_image in a thread, so that a hang (e.g. on a FIFO) fails the test instead of blocking it."""
    box: dict = {}

    def run():
        try:
            box["photo"] = load_image(path)
        except BaseException as exc:  # noqa: BLE001
            box["exc"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        if os.path.exists(path) and Path(path).is_fifo():  # release the blocked reader
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        pytest.fail(f"load_image({path}) hung for {timeout} s")
    if "exc" in box:
        raise box["exc"]
    return box["photo"]


# ----------------------------------------------------------------------------- load_image
@pytest.mark.parametrize("kind", sorted(LOAD_ERRORS))
def test_load_image_rejects(files, kind):
    path = files[kind]
    with pytest.raises(InputError, match=LOAD_ERRORS[kind]) as e:
        _load_with_deadline(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg


def test_load_image_bytes_and_long_names(files):
    name = os.fsencode(files["not_utf8"])
    assert not name.decode("utf-8", "replace").isascii() and b"\xff" in name
    with pytest.raises(InputError, match="not a recognised image") as e:
        load_image(name)  # a bytes path, as os.fsencode gives it
    assert str(files["not_utf8"]) in str(e.value)
    photo = load_image(files["long_name"])
    assert photo.pixels.shape == (64, 64, 3) and len(os.fsencode(files["long_name"].name)) == 255
    assert load_image(os.fsencode(files["good_small"])).pixels.shape == (128, 128, 3)
    with pytest.raises(InputError, match="empty file name"):
        load_image("")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_load_image_unreadable(tmp_path, files):
    p = tmp_path / "secret.png"
    p.write_bytes(files["good_small"].read_bytes())
    p.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        load_image(p)


def _astro_small(astro) -> np.ndarray:
    return np.asarray(Image.fromarray(astro).resize((96, 80), Image.BILINEAR))


def _png16(arr: np.ndarray) -> bytes:
    h, w, c = arr.shape
    a16 = arr.astype(">u2") * 257
    raw = b"".join(b"\x00" + a16[r].tobytes() for r in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2 if c == 3 else 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


@pytest.mark.parametrize("variant", ["RGBA", "LA", "P", "P-transparent", "CMYK", "L", "1", "I;16", "RGB16",
                                     "I", "F", "webp-RGBA", "gif", "bmp", "tiff-lzw"])
def test_pixel_modes_become_rgb(tmp_path, astro, variant):
    a = _astro_small(astro)
    im = Image.fromarray(a)
    gray = np.asarray(im.convert("L")).astype(float)
    p = tmp_path / "x.png"
    expect, tol = a.astype(float), 6.0
    if variant == "RGBA":
        im.convert("RGBA").save(p)
    elif variant == "LA":
        im.convert("LA").save(p)
        expect = np.repeat(gray[..., None], 3, 2)
    elif variant == "P":
        im.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(p)
        tol = 12
    elif variant == "P-transparent":
        im.convert("P", palette=Image.Palette.ADAPTIVE, colors=255).save(p, transparency=255)
        tol = 12
    elif variant == "CMYK":
        p = tmp_path / "x.jpg"
        im.convert("CMYK").save(p, quality=95)
        tol = 10
    elif variant in ("L", "1"):
        im.convert(variant).save(p)
        expect = np.repeat(gray[..., None], 3, 2)
        tol = 6 if variant == "L" else 130
    elif variant == "I;16":
        Image.fromarray((gray * 257).astype(np.uint16)).save(p)
        expect = np.repeat(gray[..., None], 3, 2)
    elif variant == "RGB16":
        p.write_bytes(_png16(a))
    elif variant == "I":
        p = tmp_path / "x.tif"
        Image.fromarray((gray * 257).astype(np.int32), "I").save(p)
        expect = np.repeat(gray[..., None], 3, 2)
    elif variant == "F":
        p = tmp_path / "x.tif"
        Image.fromarray((gray / 255).astype(np.float32), "F").save(p)
        expect = np.repeat(gray[..., None], 3, 2)
    elif variant == "webp-RGBA":
        p = tmp_path / "x.webp"
        im.convert("RGBA").save(p, lossless=True)
    elif variant == "gif":
        p = tmp_path / "x.gif"
        im.save(p)
        tol = 14
    elif variant == "bmp":
        p = tmp_path / "x.bmp"
        im.save(p)
    else:
        p = tmp_path / "x.tif"
        im.save(p, compression="tiff_lzw")
    px = load_image(p).pixels
    assert px.dtype == np.uint8 and px.shape == a.shape
    err = np.abs(px.astype(float) - expect).mean()
    assert err < tol, f"{variant}: mean abs error {err:.1f}"


# EXIF orientation tag -> the stored pixels of an upright image (the inverse of what a viewer applies)
_ORIENT = {
    1: lambda x: x,
    2: lambda x: x[:, ::-1],  # mirrored
    3: lambda x: x[::-1, ::-1],  # upside down
    4: lambda x: x[::-1],  # flipped
    5: lambda x: x.transpose(1, 0, 2),  # transposed
    6: lambda x: np.rot90(x, 1),  # the camera was turned: viewer rotates 90° clockwise
    7: lambda x: x[::-1, ::-1].transpose(1, 0, 2),  # transversed
    8: lambda x: np.rot90(x, -1),  # viewer rotates 90° counter-clockwise
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientations_come_out_upright(tmp_path, astro, orientation):
    upright = _astro_small(astro)
    stored = np.ascontiguousarray(_ORIENT[orientation](upright))
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(stored).save(p, exif=exif, quality=95)
    px = load_image(p).pixels
    assert px.shape == upright.shape, (orientation, px.shape)
    assert np.abs(px.astype(float) - upright).mean() < 6


def test_corrupt_exif_is_ignored(tmp_path, astro):
    p = tmp_path / "bad_exif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_astro_small(astro)).save(p, exif=exif, quality=95)
    data = bytearray(p.read_bytes())
    i = data.find(b"Exif\x00\x00")
    data[i + 10:i + 30] = b"\xff" * 20  # garble the TIFF header / IFD of the EXIF block
    p.write_bytes(bytes(data))
    photo = load_image(p)  # the pixels are fine: load them (unrotated if the tag is unreadable)
    assert photo.pixels.dtype == np.uint8 and photo.pixels.ndim == 3


# ----------------------------------------------------------------------------- CLI, in-process
def _named(path, line: str) -> bool:
    """Whether an error line names ``path`` (undecodable bytes may be shown as backslash escapes)."""
    return str(path) in line or str(path).encode("utf-8", "backslashreplace").decode() in line


def _main(capsys, args) -> tuple[int, list[str]]:
    rc = main([str(a) if isinstance(a, Path) else a for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err.strip().splitlines()


CLI_CASES = {  # kind -> exit code
    "blank": 4, "landscape": 4, "truncated_jpeg": 3, "corrupt_png": 3, "empty": 3, "random": 3, "text": 3,
    "directory": 3, "broken_symlink": 3, "fifo": 3, "bomb_png": 3, "over_limit": 3, "1x1": 3, "not_utf8": 3,
    "too_long_name": 3, "missing": 3, "huge_file": 3, "device": 3,
}


def test_cli_reconstruct_hostile_photos(files, tmp_path, capsys):
    failures = []
    for kind, code in CLI_CASES.items():
        rc, err = _main(capsys, ["reconstruct", files[kind], "-o", tmp_path / kind, *QUICK])
        ok = rc == code and len(err) == 1 and err[0].startswith("error: ") and _named(files[kind], err[0])
        if not ok:
            failures.append(f"{kind}: rc={rc} (want {code}) stderr={err}")
        assert not (tmp_path / kind).exists() or not any((tmp_path / kind).iterdir())
    assert not failures, "\n".join(failures)


def test_cli_usage_errors(files, tmp_path, capsys):
    for args in (["reconstruct", files["good_small"], "--format", "stl", *QUICK],
                 ["reconstruct", files["good_small"], "--detector", "nope", *QUICK],
                 ["reconstruct", files["good_small"], "--texture-size", "many", *QUICK],
                 ["reconstruct"], ["no-such-command"]):
        rc, err = _main(capsys, args)
        assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), (args, rc, err)


# ----------------------------------------------------------------------------- model files
def _grid_tris(n: int) -> np.ndarray:
    t = []
    for r in range(n - 1):
        for c in range(n - 1):
            a = r * n + c
            t += [[a, a + 1, a + n], [a + 1, a + n + 1, a + n]]
    return np.asarray(t)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, Path]:
    import scipy.io

    d = tmp_path_factory.mktemp("models")
    g = np.random.default_rng(0)
    V = 64
    good = dict(meanshape=g.normal(size=(1, 3 * V)), idBase=g.normal(size=(3 * V, 80)),
                exBase=g.normal(size=(3 * V, 64)), meantex=g.uniform(50, 200, (1, 3 * V)),
                texBase=g.normal(size=(3 * V, 80)), tri=(_grid_tris(8) + 1).astype(float),
                keypoints=(g.choice(V, 68) + 1).reshape(1, -1).astype(float))
    out: dict[str, Path] = {}

    def mat(name, **changes):
        dd = {k: v for k, v in {**good, **changes}.items() if v is not None}
        p = d / f"{name}.mat"
        scipy.io.savemat(p, dd)
        out[name] = p

    mat("good")
    raw = out["good"].read_bytes()
    for name, data in {"truncated": raw[: len(raw) // 2], "truncated_header": raw[:100], "empty": b"",
                       "text": b"not a matlab file\n", "random": g.integers(0, 256, 4000, dtype=np.uint8).tobytes()}.items():
        (d / f"{name}.mat").write_bytes(data)
        out[name] = d / f"{name}.mat"
    mat("wrong_shape_idBase", idBase=g.normal(size=(3 * V + 3, 80)))
    mat("wrong_shape_meanshape", meanshape=g.normal(size=(1, 3 * V + 1)))
    mat("wrong_shape_tri", tri=np.ones((10, 4)))
    mat("tri_out_of_range", tri=np.full((3, 3), V + 5.0))
    nan_id = good["idBase"].copy()
    nan_id[5, 5] = np.nan
    mat("nan_idBase", idBase=nan_id)
    inf_tex = good["meantex"].copy()
    inf_tex[0, 3] = np.inf
    mat("inf_meantex", meantex=inf_tex)
    mat("nan_tri", tri=np.full((4, 3), np.nan))
    mat("missing_texBase", texBase=None)
    mat("string_meanshape", meanshape=np.array(["abc"]))
    mat("struct_idBase", idBase={"a": 1.0})
    mat("few_keypoints", keypoints=np.arange(1, 10, dtype=float).reshape(1, -1))
    mat("empty_tri", tri=np.zeros((0, 3)))
    (d / "garbage.npz").write_bytes(g.integers(0, 256, 300, dtype=np.uint8).tobytes())
    out["garbage_npz"] = d / "garbage.npz"
    np.savez(d / "object.npz", a=np.array([{"x": 1}], dtype=object))  # would need pickle to load
    out["object_npz"] = d / "object.npz"
    (d / "model.obj").write_text("v 0 0 0\n")
    out["unknown_extension"] = d / "model.obj"
    (d / "empty_folder").mkdir()
    out["folder_without_bfm"] = d / "empty_folder"
    out["missing"] = d / "missing.mat"
    return out


MODEL_CASES = ["truncated", "truncated_header", "empty", "text", "random", "wrong_shape_idBase",
               "wrong_shape_meanshape", "wrong_shape_tri", "tri_out_of_range", "nan_idBase", "inf_meantex",
               "nan_tri", "missing_texBase", "string_meanshape", "struct_idBase", "few_keypoints", "garbage_npz",
               "object_npz", "unknown_extension", "folder_without_bfm", "missing",
               "empty_tri"]


@pytest.mark.parametrize("kind", MODEL_CASES)
def test_invalid_model_files(model_files, files, tmp_path, capsys, kind):
    path = model_files[kind]
    for args in (["model", "info", "--model", path],
                 ["reconstruct", files["good_small"], "-o", tmp_path / "out", "--model", path, *QUICK]):
        rc, err = _main(capsys, args)
        assert rc == 5, (kind, args[0], rc, err)
        assert len(err) == 1 and err[0].startswith("error: ") and _named(path, err[0]), (kind, err)
    assert not (tmp_path / "out").exists()


def test_the_synthetic_model_is_otherwise_valid(model_files, capsys):
    rc, _ = _main(capsys, ["model", "info", "--model", model_files["good"]])
    assert rc == 0


# ----------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    import torch

    from facegcn.coarse.regressor import CoefficientRegressor
    from facegcn.morphable import load_model
    from facegcn.io.weights import save_tensors

    d = tmp_path_factory.mktemp("ckpt")
    out = {}
    (d / "garbage.safetensors").write_bytes(np.random.default_rng(1).integers(0, 256, 999, dtype=np.uint8).tobytes())
    (d / "empty.safetensors").write_bytes(b"")
    (d / "pickle.pt").write_bytes(b"\x80\x04\x95" + b"\x00" * 50)  # a pickle stream: must not be unpickled
    save_tensors(d / "wrong_kind.safetensors", {"a": torch.zeros(3)}, {"kind": "refiner"})
    reg = CoefficientRegressor(load_model("ict").layout, depth=14, width=8)
    reg.save(d / "good.safetensors")
    raw = (d / "good.safetensors").read_bytes()
    (d / "truncated.safetensors").write_bytes(raw[: len(raw) // 2])
    save_tensors(d / "no_config.safetensors", {"a": torch.zeros(3)}, {"kind": "regressor"})
    sd = dict(reg.state_dict())
    first = next(iter(sd))
    sd[first] = torch.zeros(1)
    save_tensors(d / "wrong_shapes.safetensors", sd, {"kind": "regressor", "config": reg.config()})
    for name in ("garbage", "empty", "wrong_kind", "truncated", "no_config", "wrong_shapes"):
        out[name] = d / f"{name}.safetensors"
    out["pickle"] = d / "pickle.pt"
    out["missing"] = d / "missing.safetensors"
    return out




@pytest.mark.parametrize("kind", ["garbage", "empty", "wrong_kind", "truncated", "pickle", "missing",
                                  "no_config",
                                  "wrong_shapes"])
def test_invalid_checkpoints(checkpoints, files, tmp_path, capsys, kind):
    path = checkpoints[kind]
    rc, err = _main(capsys, ["reconstruct", files["good_small"], "-o", tmp_path / "out", "--checkpoint", path, *QUICK])
    assert rc == 5, (kind, rc, err)
    assert len(err) == 1 and err[0].startswith("error: ") and _named(path, err[0]), err


# ----------------------------------------------------------------------------- real processes
def _run_cli(args: list, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("FACEGCN_DEBUG", None)
    env.pop("PYTHONWARNINGS", None)
    argv = [sys.executable, "-m", "facegcn", *[os.fsencode(a) if isinstance(a, Path) else a for a in args]]
    return subprocess.run(argv, capture_output=True, timeout=timeout, env=env, cwd=REPO)


@pytest.mark.slow
def test_cli_subprocesses(files, model_files, tmp_path):
    """The same contract end to end in fresh processes (console entry, real argv bytes, real stderr)."""
    cases = [
        (["reconstruct", files["directory"], "-o", tmp_path / "o1", *QUICK], 3, files["directory"]),
        (["reconstruct", files["fifo"], "-o", tmp_path / "o2", *QUICK], 3, files["fifo"]),
        (["reconstruct", files["not_utf8"], "-o", tmp_path / "o3", *QUICK], 3, files["not_utf8"]),
        (["model", "info", "--model", model_files["truncated"]], 5, model_files["truncated"]),
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: _run_cli(c[0]), cases))
    for (args, code, named), p in zip(cases, results):
        err = p.stderr.decode("utf-8", "replace")
        where = f"{args[:2]} rc={p.returncode} stderr={p.stderr!r}"
        assert p.returncode == code and "Traceback" not in err, where
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(b"error: "), where
        raw = os.fsencode(named)
        shown = str(named).encode("utf-8", "backslashreplace")  # how Python's stderr spells undecodable bytes
        assert raw in lines[0] or shown in lines[0], where


# ----------------------------------------------------------------------------- main()'s last resort
@pytest.mark.parametrize("exc, code, words", [
    (RuntimeError("boom\nsecond line"), 70, "internal error: RuntimeError: boom second line"),
    (OSError(28, "No space left on device"), 6, "no space left"),
    (FileExistsError(17, "File exists", "{out}"), 6, "cannot write {out}"),
    (NotADirectoryError(20, "Not a directory", "{out}/sub"), 6, "cannot write {out}/sub"),
    (PermissionError(13, "Permission denied", "/etc/somewhere-else"), 70, "/etc/somewhere-else: Permission denied"),
    (MemoryError(), 70, "out of memory"),
])
def test_main_maps_unexpected_errors(files, tmp_path, capsys, monkeypatch, exc, code, words):
    import facegcn.cli.reconstruct as rc_mod

    out = str(tmp_path / "out")
    if isinstance(exc, OSError) and exc.filename:
        exc.filename = exc.filename.format(out=out)

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(rc_mod, "run", boom)
    monkeypatch.delenv("FACEGCN_DEBUG", raising=False)
    rc, err = _main(capsys, ["reconstruct", files["good_small"], "-o", out, *QUICK])
    assert rc == code and len(err) == 1 and err[0].startswith("error: ") and words.format(out=out) in err[0], (rc, err)
    monkeypatch.setenv("FACEGCN_DEBUG", "1")  # developers get the traceback
    with pytest.raises(type(exc)):
        main(["reconstruct", str(files["good_small"]), "-o", out, *QUICK])


def test_main_exit_codes_from_typer_exit_and_broken_pipe(files, tmp_path, capsys, monkeypatch):
    import typer

    import facegcn.cli.reconstruct as rc_mod

    def exit7(*a, **k):
        raise typer.Exit(code=7)

    monkeypatch.setattr(rc_mod, "run", exit7)
    assert main(["reconstruct", str(files["good_small"]), "-o", str(tmp_path), *QUICK]) == 7

    def pipe(*a, **k):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(rc_mod, "run", pipe)  # `facegcn ... | head`: click exits 1 quietly, we 141
    assert main(["reconstruct", str(files["good_small"]), "-o", str(tmp_path), *QUICK]) in (1, 141)
    assert "Traceback" not in capsys.readouterr().err
