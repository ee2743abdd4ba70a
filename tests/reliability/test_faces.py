"""Photos that do decode but are hard: no face, several faces, a face cut by the frame, odd pixel
modes and EXIF rotations; and outputs that cannot be written (a path under a regular file, a
read-only location, a full disk). Reconstructions use a few optimisation steps only: these tests
are about control flow and error mapping, not quality."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegcn.cli import main
from facegcn.errors import NoFaceError, OutputError
from facegcn.frontend import observe as _observe
from facegcn.frontend.observe import FrontendConfig
from facegcn.io.atomic import is_temp_name
from facegcn.io.image import load_image, photo_from_array

QUICK = ["--fast", "--no-refine", "-q"]


def observe(photo, **kw):
    """Detection + landmarks, without the (slow, irrelevant here) identity embedding."""
    return _observe(photo, config=FrontendConfig(identity=None), **kw)


def tiny_config(**kw):
    from facegcn.cli.reconstruct import build_config

    cfg = build_config(fast=True, quiet=True, refine=False, **kw)
    c = cfg.coarse
    c.steps_rigid, c.steps_landmark, c.steps_photo, c.steps_identity = 3, 3, 3, 0
    return cfg


@pytest.fixture
def tiny_cli(monkeypatch):
    """`facegcn reconstruct` in-process, with 3 optimisation steps per stage."""
    import facegcn.cli.reconstruct as rc_mod

    real = rc_mod.build_config

    def build(*args, **kwargs):
        cfg = real(*args, **kwargs)
        c = cfg.coarse
        c.steps_rigid, c.steps_landmark, c.steps_photo, c.steps_identity = 3, 3, 3, 0
        return cfg

    monkeypatch.setattr(rc_mod, "build_config", build)


@pytest.fixture(scope="module")
def astro() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="module")
def reconstructor():
    from facegcn.pipeline import Reconstructor

    return Reconstructor(tiny_config(formats="ply"))


@pytest.fixture(scope="module")
def astro_result(reconstructor, astro):
    """One real (quick) reconstruction of the astronaut, reused by the output-error tests."""
    return reconstructor(photo_from_array(astro, path="astronaut.png"))


def _run(capsys, args) -> tuple[int, list[str], str]:
    rc = main([str(a) if isinstance(a, Path) else a for a in args])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    return rc, cap.err.strip().splitlines(), cap.out


def _named(path, line: str) -> bool:
    return str(path) in line or str(path).encode("utf-8", "backslashreplace").decode() in line


def _temp_files(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.name.endswith(".tmp") and p.name.startswith(".")]


# ----------------------------------------------------------------------------- faces
def test_no_face(astro):
    from skimage import data

    for name, arr in {"blank": np.full((200, 300, 3), 255, np.uint8), "landscape": data.rocket(),
                      "noise": np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)}.items():
        with pytest.raises(NoFaceError, match="no face") as e:
            observe(photo_from_array(arr, path=f"{name}.png"))
        assert f"{name}.png" in str(e.value) and "\n" not in str(e.value)


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory, astro) -> Path:
    """The astronaut (face ~90 px) beside a half-size copy (face ~45 px)."""
    small = np.asarray(Image.fromarray(astro).resize((256, 256), Image.BILINEAR))
    canvas = np.concatenate([astro, np.pad(small, ((128, 128), (0, 0), (0, 0)), constant_values=200)], 1)
    p = tmp_path_factory.mktemp("two") / "two_faces.png"
    Image.fromarray(canvas).save(p)
    return p


def test_several_faces_best_first(two_faces):
    best = observe(load_image(two_faces))
    both = observe(load_image(two_faces), all_faces=True)
    assert len(best) == 1 and len(both) == 2
    assert best[0].box[2] <= 512  # the big face, on the left half
    np.testing.assert_allclose(both[0].box, best[0].box)
    assert both[1].box[0] >= 512  # the small one, on the right


@pytest.mark.slow
def test_several_faces_cli(two_faces, tmp_path, capsys, tiny_cli, reconstructor):
    rc, err, _ = _run(capsys, ["reconstruct", two_faces, "-o", tmp_path / "best", "--format", "ply", *QUICK])
    assert rc == 0, err
    best = tmp_path / "best" / "two_faces"  # OUT/<photo>/ (the README's layout)
    assert (best / "mesh.ply").is_file() and not (best / "face_1").exists()
    assert json.loads((best / "report.json").read_text())["face_index"] == 0
    rc, err, _ = _run(capsys, ["reconstruct", two_faces, "-o", tmp_path / "all", "--all-faces", "--format", "ply", *QUICK])
    assert rc == 0, err
    for i in (0, 1):
        d = tmp_path / "all" / "two_faces" / f"face_{i}"  # --all-faces: OUT/<photo>/face_<i>/
        assert (d / "mesh.ply").is_file(), sorted(p.name for p in (tmp_path / "all" / "two_faces").iterdir())
        assert json.loads((d / "report.json").read_text())["face_index"] == i
    assert not _temp_files(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("cut", ["half-left", "half-top", "quarter-left"])
def test_face_partly_outside_the_frame(astro, tmp_path, capsys, tiny_cli, reconstructor, cut):
    # the astronaut's face box is about x 175..265, y 76..166
    arr = {"half-left": astro[:, 220:], "half-top": astro[121:, :], "quarter-left": astro[:, 198:]}[cut]
    p = tmp_path / f"{cut}.png"
    Image.fromarray(np.ascontiguousarray(arr)).save(p)
    rc, err, _ = _run(capsys, ["reconstruct", p, "-o", tmp_path / "out", "--format", "ply", *QUICK])
    assert rc in (0, 4), (rc, err)  # reconstructs, or says clearly that it found no face
    if rc == 4:
        assert len(err) == 1 and err[0].startswith("error: ") and _named(p, err[0]) and "no face" in err[0]
    else:
        coeffs = json.loads((tmp_path / "out" / cut / "coeffs.json").read_text())["coefficients"]
        assert all(np.isfinite(np.asarray(v, float)).all() for v in coeffs.values())
        assert (tmp_path / "out" / cut / "mesh.ply").stat().st_size > 0


@pytest.mark.parametrize("variant", ["RGBA", "LA", "P", "CMYK", "I;16", "L", "exif-rotated"])
def test_odd_modes_still_find_the_face(astro, tmp_path, variant):
    im = Image.fromarray(astro)
    p = tmp_path / "x.png"
    if variant == "CMYK":
        p = tmp_path / "x.jpg"
        im.convert("CMYK").save(p, quality=92)
    elif variant == "I;16":
        Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257).save(p)
    elif variant == "exif-rotated":  # stored sideways, tagged "rotate 90° clockwise to display"
        p = tmp_path / "x.jpg"
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(np.ascontiguousarray(np.rot90(astro, 1))).save(p, exif=exif, quality=92)
    elif variant == "P":
        im.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(p)
    else:
        im.convert(variant).save(p)
    obs = observe(load_image(p))
    assert len(obs) == 1
    x1, y1, x2, y2 = obs[0].box  # the upright astronaut's face
    assert 140 < (x1 + x2) / 2 < 300 and 40 < (y1 + y2) / 2 < 200, obs[0].box


# ----------------------------------------------------------------------------- names
@pytest.mark.slow
def test_non_utf8_long_name_reconstructs(astro, tmp_path, capsys, tiny_cli, reconstructor):
    head = b"caf\xe9-\xff-"  # not UTF-8
    raw = head + b"a" * (255 - len(head) - 4) + b".jpg"  # 255 bytes, the most ext4 allows
    assert len(raw) == 255
    p = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), raw)))
    Image.fromarray(astro).save(p, format="JPEG", quality=92)
    rc, err, out = _run(capsys, ["reconstruct", p, "-o", tmp_path / "out", "--format", "ply", *QUICK])
    assert rc == 0, err
    report = json.loads((tmp_path / "out" / p.stem / "report.json").read_text())
    assert report["photo"] == str(p)
    assert (tmp_path / "out" / p.stem / "mesh.ply").is_file()


# ----------------------------------------------------------------------------- outputs
@pytest.fixture
def cached(monkeypatch, astro_result):
    """`reconstruct` skips the optimisation and returns the module's reconstruction: these tests
    are about writing."""
    from facegcn.pipeline import Reconstructor

    monkeypatch.setattr(Reconstructor, "__call__", lambda self, source: astro_result)


def test_output_under_a_regular_file(tmp_path, capsys, cached):
    photo = tmp_path / "astro.png"
    Image.new("RGB", (64, 64)).save(photo)  # never decoded: __call__ is patched
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a regular file")
    for out in (blocker, blocker / "out", blocker / "a" / "b"):
        rc, err, _ = _run(capsys, ["reconstruct", photo, "-o", out, *QUICK])
        assert rc == OutputError.exit_code, (out, rc, err)
        assert len(err) == 1 and err[0].startswith("error: ") and str(blocker) in err[0], err
    assert blocker.read_text() == "a regular file"


def test_library_write_raises_output_error(tmp_path, reconstructor, astro_result):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        reconstructor.write(astro_result[0], blocker / "out")


@pytest.mark.parametrize("errno_, words", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied"),
                                           (errno.ENOSPC, "no space left")])
@pytest.mark.parametrize("where", ["replace", "fsync"])
def test_output_errors_from_the_os(tmp_path, capsys, monkeypatch, cached, errno_, words, where):
    photo = tmp_path / "astro.png"
    Image.new("RGB", (64, 64)).save(photo)
    out = tmp_path / "out"

    def fail(*a, **k):
        raise OSError(errno_, os.strerror(errno_))

    monkeypatch.setattr(os, where, fail)
    rc, err, _ = _run(capsys, ["reconstruct", photo, "-o", out, *QUICK])
    monkeypatch.undo()
    assert rc == OutputError.exit_code, (rc, err)
    assert len(err) == 1 and err[0].startswith("error: cannot write ") and words in err[0] and str(out) in err[0], err
    assert not _temp_files(tmp_path)
    assert not [p for p in out.rglob("*") if p.is_file()]  # nothing half-written: no file at all


def test_successful_write_leaves_no_temp_files(tmp_path, capsys, cached):
    photo = tmp_path / "astro.png"
    Image.new("RGB", (64, 64)).save(photo)
    rc, err, _ = _run(capsys, ["reconstruct", photo, "-o", tmp_path / "out", *QUICK])
    assert rc == 0, err
    names = sorted(p.name for p in (tmp_path / "out" / "astro").iterdir())  # OUT/<photo>/
    assert {"coeffs.json", "report.json", "config.json", "mesh.ply", "mesh.obj", "mesh.glb"} <= set(names), names
    assert not [n for n in names if n.endswith(".tmp") or any(is_temp_name(n, m) for m in names)]
