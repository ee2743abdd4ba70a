"""Nothing a user does loses work or surprises them (issue 17): the commands run as subprocesses.

References: the exit-code table of the README (0 / 2 / 3 / 4 / 5 / 6 / 7 / 130), the one-line
error rule (no traceback, one ``error:`` line per problem), the documented output layout
(``OUT/<photo>/``, ``OUT/<photo>/face_<i>/`` with ``--all-faces``, ``<stem>-<8 hex>`` for a
shared stem), the ``config.json`` written beside the outputs (read back with json), trimesh's own
readers and its area-weighted vertex normals for the exported meshes.

The reconstructions are made cheap with ``--fast --no-refine --texture-size 256`` or, where the
test is about ``--config``, a config file with 3 optimisation steps per stage: a few seconds each
on a shared 2-core machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facegcn.cli.reconstruct import build_config

QUICK = ("--fast", "--no-refine", "--texture-size", "256")  # flags only: these tests do not rely on --config
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def _env(**extra) -> dict:
    env = {**os.environ, **ONE_THREAD, "PYTHONUNBUFFERED": "1", **extra}
    for k in ("FACEGCN_DEBUG", "PYTHONWARNINGS"):
        env.pop(k, None)
    return env


def facegcn(*args, timeout: float = 180, env: dict | None = None, module: str = "facegcn") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", module, *[str(a) for a in args]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env or _env())


def error_lines(p: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in p.stderr, p.stderr
    return [ln for ln in p.stderr.replace("\r", "\n").splitlines() if ln.startswith("error:")]


def tiny_config():
    cfg = build_config(fast=True, quiet=True, refine=False, texture_size=256)
    cfg.coarse.steps_rigid, cfg.coarse.steps_landmark, cfg.coarse.steps_photo, cfg.coarse.steps_identity = 3, 3, 3, 0
    return cfg


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two photos of the astronaut with the same stem in two folders, a photo without a face, an
    unreadable file, and the tiny config."""
    from PIL import Image
    from skimage import data

    d = tmp_path_factory.mktemp("safety-in")
    a = data.astronaut()
    (d / "a").mkdir()
    (d / "b").mkdir()
    Image.fromarray(a[0:256, 92:348]).save(d / "a" / "astro.png")
    Image.fromarray(np.ascontiguousarray(a[8:264, 100:356][:, ::-1])).save(d / "b" / "astro.jpg", quality=95)
    Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(d / "noface.png")
    (d / "broken.png").write_text("a text file, not a PNG\n")
    cfg = d / "tiny.json"
    cfg.write_text(tiny_config().to_json())
    return {"a": d / "a" / "astro.png", "b": d / "b" / "astro.jpg", "noface": d / "noface.png",
            "broken": d / "broken.png", "config": cfg, "dir": d}


def _config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


# ------------------------------------------------------------------ 2 + 4: one layout, every photo
@pytest.fixture(scope="module")
def pair(inputs, tmp_path_factory):
    """`reconstruct a/astro.png b/astro.jpg --all-faces`: two photos with the same stem."""
    out = tmp_path_factory.mktemp("pair") / "out"
    p = facegcn("reconstruct", inputs["a"], inputs["b"], "-o", out, *QUICK, "--all-faces", "--format", "ply,glb", "-q")
    return p, out


def test_same_stem_never_overwrites_and_layout_is_per_photo(pair, inputs):
    p, out = pair
    assert p.returncode == 0, p.stderr
    folders = sorted(d.name for d in out.iterdir() if d.is_dir())
    assert len(folders) == 2 and all(f.startswith("astro-") for f in folders), folders  # unique names
    photos = set()
    for f in folders:
        face = out / f / "face_0"  # --all-faces: face_<i>/ even when one face is found
        assert (face / "mesh.ply").is_file() and (face / "mesh.glb").is_file(), sorted(os.listdir(out / f))
        photos.add(json.loads((face / "report.json").read_text())["photo"])
    assert photos == {str(inputs["a"]), str(inputs["b"])}  # each photo's own result, none overwritten


@pytest.fixture(scope="module")
def several(inputs, tmp_path_factory):
    """`reconstruct a/astro.png noface.png b/astro.jpg broken.png`: two of four photos fail."""
    out = tmp_path_factory.mktemp("several") / "out"
    p = facegcn("reconstruct", inputs["a"], inputs["noface"], inputs["b"], inputs["broken"], "-o", out, *QUICK,
                "--format", "ply", "-q")
    return p, out


def test_every_photo_is_tried_and_each_failure_is_one_line(several, inputs):
    p, out = several
    assert p.returncode == 7, p.stderr  # some failed: PartialFailure, as `facegcn batch`
    lines = error_lines(p)
    assert len(lines) == 3, lines  # the two failures, then the summary
    assert any(str(inputs["noface"]) in ln and "no face" in ln for ln in lines[:2])
    assert any(str(inputs["broken"]) in ln and "not a recognised image" in ln for ln in lines[:2])
    assert lines[2].startswith("error: 2 of 4 photo(s) failed")
    assert p.stdout.count("→") == 2  # both good photos, the one after the failures too
    assert sorted(d.name for d in out.iterdir()) == sorted(
        f"astro-{d}" for d in [n.split("-")[1] for n in os.listdir(out)])  # nothing for the failed ones
    assert all((out / d / "mesh.ply").is_file() for d in os.listdir(out))


@pytest.fixture(scope="module")
def single(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "out"
    p = facegcn("reconstruct", inputs["a"], "-o", out, "--config", inputs["config"], "--format", "obj,glb",
                "--texture-size", "128", "-q")
    return p, out


def test_one_photo_has_the_same_layout_and_typed_flags_win_over_the_config_file(single):
    p, out = single
    assert p.returncode == 0, p.stderr
    d = out / "astro"  # OUT/<stem>/ for one photo too
    assert sorted(x.name for x in out.iterdir()) == ["astro"]
    cfg = _config(d)
    assert cfg["output"]["formats"] == ["obj", "glb"] and cfg["output"]["texture_size"] == 128  # typed: win
    assert (cfg["coarse"]["steps_rigid"], cfg["coarse"]["steps_photo"], cfg["refine"]["enabled"]) == (3, 3, False)
    assert not (d / "mesh.ply").exists()


def _obj_normals(path: Path):
    """Positions, triangles and the per-vertex normal each position gets in the OBJ (``f v/vt/vn``)."""
    v, vn, faces, normal_of = [], [], [], {}
    for ln in path.read_text().splitlines():
        if ln.startswith("v "):
            v.append([float(x) for x in ln.split()[1:4]])
        elif ln.startswith("vn "):
            vn.append([float(x) for x in ln.split()[1:4]])
        elif ln.startswith("f "):
            idx = [tok.split("/") for tok in ln.split()[1:]]
            faces.append([int(t[0]) - 1 for t in idx])
            for t in idx:
                normal_of[int(t[0]) - 1] = int(t[2]) - 1
    v, vn = np.asarray(v), np.asarray(vn)
    n = np.zeros_like(v)
    for i, j in normal_of.items():
        n[i] = vn[j]
    return v, np.asarray(faces), n


def _glb_normals(path: Path):
    """Positions, triangles and NORMAL of every primitive of a GLB, read from its chunks."""
    import struct

    b = path.read_bytes()
    jlen = struct.unpack("<I", b[12:16])[0]
    doc = json.loads(b[20:20 + jlen])
    bin_ = b[20 + jlen + 8:]

    def acc(i):
        a = doc["accessors"][i]
        view = doc["bufferViews"][a["bufferView"]]
        dt = {5126: np.float32, 5125: np.uint32, 5123: np.uint16}[a["componentType"]]
        k = {"SCALAR": 1, "VEC2": 2, "VEC3": 3}[a["type"]]
        start = view.get("byteOffset", 0) + a.get("byteOffset", 0)
        return np.frombuffer(bin_, dt, a["count"] * k, start).reshape(a["count"], k) if k > 1 else \
            np.frombuffer(bin_, dt, a["count"], start)

    vs, fs, ns, off = [], [], [], 0
    for prim in (p for m in doc["meshes"] for p in m["primitives"]):
        pos, nor = acc(prim["attributes"]["POSITION"]), acc(prim["attributes"]["NORMAL"])
        vs.append(pos), ns.append(nor), fs.append(acc(prim["indices"]).reshape(-1, 3).astype(np.int64) + off)
        off += len(pos)
    return np.concatenate(vs).astype(np.float64), np.concatenate(fs), np.concatenate(ns).astype(np.float64)


def _smooth_reference(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """trimesh's area-weighted vertex normals of the mesh welded by position (UV seams split
    vertices in the files), back on the file's vertices."""
    import trimesh

    _, first, inverse = np.unique(np.round(v, 6), axis=0, return_index=True, return_inverse=True)
    welded = trimesh.Trimesh(v[first], inverse.reshape(-1)[f], process=False)
    return welded.vertex_normals[inverse.reshape(-1)]


def test_exported_meshes_carry_smooth_normals_in_metres(single):
    p, out = single
    d = out / "astro"
    for name, (v, f, n) in (("obj", _obj_normals(d / "mesh.obj")), ("glb", _glb_normals(d / "mesh.glb"))):
        ref = _smooth_reference(v, f)
        used = np.unique(f)
        cos = np.sum(n * ref, axis=1)[used] / (np.linalg.norm(n, axis=1)[used] * np.linalg.norm(ref, axis=1)[used] + 1e-12)
        # smooth: ~ the welded mesh's own normals (one flat normal per face gives a median of ~0.993 here)
        assert np.median(cos) > 0.999 and np.mean(cos > 0.9) > 0.97, (name, np.median(cos), np.mean(cos > 0.9))
        ext = v.max(0) - v.min(0)
        assert 0.1 < ext.max() < 0.5, (name, ext)  # a head, in metres


def test_model_sample_writes_metres_like_reconstruct(tmp_path):
    import trimesh

    p = facegcn("model", "sample", "-o", tmp_path, "-n", "1", "--format", "ply")
    assert p.returncode == 0, p.stderr
    m = trimesh.load(tmp_path / "sample_000.ply", process=False)
    ext = m.bounds[1] - m.bounds[0]
    assert 0.1 < ext.max() < 0.5, ext  # metres (decimetres would be ~1.9)


# --------------------------------------------------------------- 3: the destination, before work
def test_output_problems_are_found_before_any_work(inputs, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    missing_model = tmp_path / "no-such-model.mat"  # loading it would fail with exit 5: proves the order
    for args in (["reconstruct", inputs["a"], "-o", blocker], ["reconstruct", inputs["a"], "-o", blocker / "sub"],
                 ["batch", inputs["a"], "-o", blocker], ["evaluate", inputs["dir"], "-o", blocker]):
        p = facegcn(*args, "--model", missing_model, "-q", timeout=60)
        lines = error_lines(p)
        assert p.returncode == 6 and len(lines) == 1 and str(blocker) in lines[0], (args, p.returncode, p.stderr)
    assert blocker.read_text() == "keep me"
    out = tmp_path / "out"
    (out).mkdir()
    (out / "astro").write_text("a file where the photo's folder goes")
    p = facegcn("reconstruct", inputs["a"], "-o", out, "--model", missing_model, timeout=60)
    assert p.returncode == 6 and str(out / "astro") in error_lines(p)[0], p.stderr


def test_a_face_set_is_written_whole_or_not_at_all(inputs, tmp_path):
    out = tmp_path / "out"
    d = out / "astro"
    for folder in (out, d):  # something the new set cannot replace, in OUT and in OUT/<photo>/
        (folder / "report.json").mkdir(parents=True)
        (folder / "report.json" / "keep").write_text("x")
    (d / "mesh.ply").write_text("the earlier run's mesh")
    p = facegcn("reconstruct", inputs["a"], "-o", out, *QUICK, "--format", "ply", "-q")
    lines = error_lines(p)
    assert p.returncode == 6 and len(lines) == 1 and "report.json" in lines[0], p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["astro", "report.json"]  # no partial set, no temporary folder
    assert sorted(x.name for x in d.iterdir()) == ["mesh.ply", "report.json"]  # nothing of the new set
    assert (d / "mesh.ply").read_text() == "the earlier run's mesh"
    assert str(d / "report.json") in lines[0]


# ------------------------------------------------------- 1: --config gives defaults, flags override
def test_batch_config_file_and_typed_flags_merge_and_are_saved(inputs, tmp_path):
    out = tmp_path / "out"
    p = facegcn("batch", inputs["a"], "-o", out, "--config", inputs["config"], "--format", "glb", "-q")
    assert p.returncode == 0, p.stderr
    run_cfg = _config(out)  # the merged settings, beside summary.csv
    assert run_cfg["output"]["formats"] == ["glb"]  # typed
    assert run_cfg["coarse"]["steps_rigid"] == 3 and run_cfg["output"]["texture_size"] == 256  # from the file
    assert sorted(x.name for x in (out / "astro").iterdir() if x.name.startswith("mesh")) == ["mesh.glb"]


def test_video_and_serve_typed_flags_override_the_file(inputs, tmp_path):
    bad = tiny_config().to_dict()
    bad["output"]["texture_size"] = 5  # invalid in the file, fixed on the command line
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(bad))
    p = facegcn("video", tmp_path / "missing.mp4", "-o", tmp_path / "v", "--config", f, "--texture-size", "256",
                timeout=60)
    assert p.returncode == 3 and "no such file" in error_lines(p)[0], p.stderr  # got past the config
    p = facegcn("video", tmp_path / "missing.mp4", "-o", tmp_path / "v", "--config", f, timeout=60)
    assert p.returncode == 2 and "texture size" in error_lines(p)[0], p.stderr  # the file's value is the default
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        p = facegcn("serve", "--port", port, "--config", f, "--texture-size", "256", timeout=60)
    lines = error_lines(p)
    assert p.returncode == 2 and len(lines) == 1 and f"port {port}" in lines[0] and "in use" in lines[0], p.stderr


# ------------------------------------------------------------------ 7: user mistakes are not bugs
def test_user_mistakes_exit_with_documented_codes_in_one_line(inputs, tmp_path):
    cases = [
        (["reconstruct", inputs["a"], "-o", tmp_path / "o", "--device", "gpu"], {}, 2, "unknown device 'gpu'"),
        (["reconstruct", inputs["a"], "-o", tmp_path / "o", "--threads", "-3"], {}, 2, "threads"),
        (["reconstruct", inputs["a"], "-o", tmp_path / "o", "--format", ""], {}, 2, "no output format"),
        (["reconstruct", inputs["a"], "-o", tmp_path / "o", "-q"], {"FACEGCN_CACHE": "/proc/nope"}, 2,
         "FACEGCN_CACHE=/proc/nope"),
        (["train", tmp_path / "no-cache", "-o", tmp_path / "run"], {}, 3, "no such folder"),
        (["train", inputs["dir"], "-o", tmp_path / "run"], {}, 3, "not a training cache"),
        (["train", inputs["dir"], "-o", tmp_path / "run", "--epochs", "0"], {}, 2, "--epochs"),
        (["train", inputs["dir"], "-o", tmp_path / "run", "--device", "gpu"], {}, 2, "unknown device 'gpu'"),
    ]
    for args, env, code, words in cases:
        p = facegcn(*args, env=_env(**env), timeout=60)
        lines = error_lines(p)
        assert p.returncode == code and len(lines) == 1 and words in lines[0], (args, p.returncode, p.stderr)
        assert not (tmp_path / "o").exists()
    # the documented torchrun entry: same contract
    p = facegcn("train", inputs["dir"], "-o", tmp_path / "run", "--threads", "-3", module="facegcn.train")
    lines = error_lines(p)
    assert p.returncode == 2 and len(lines) == 1 and "--threads" in lines[0] and p.stderr.count("\n") == 1, p.stderr
    p = facegcn("train", inputs["dir"], "-o", tmp_path / "run", module="facegcn.train")
    assert p.returncode == 3 and len(error_lines(p)) == 1, p.stderr


def test_serve_busy_port_fails_before_loading(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        t0 = time.perf_counter()
        # a model file that does not exist: loading it would be a different error, later
        p = facegcn("serve", "--port", port, "--model", tmp_path / "none.mat", timeout=60)
        took = time.perf_counter() - t0
    lines = error_lines(p)
    assert p.returncode == 2 and len(lines) == 1 and "already in use" in lines[0], p.stderr
    assert "share=True" not in p.stderr and took < 30


# ---------------------------------------------------------------------------------- 9: small ones
def test_small_ones(inputs, tmp_path):
    for args in ([], ["model"]):  # help, and no empty `error:` line
        p = facegcn(*args, timeout=60)
        assert p.returncode == 2 and "Usage" in p.stdout + p.stderr and error_lines(p) == [], p.stderr
    p = facegcn("--version", timeout=60)
    assert p.returncode == 0 and p.stdout.strip() and error_lines(p) == []
    p = facegcn("reconstruct", "--help", timeout=60)
    assert "<bool>" not in p.stdout and "--all-faces" in p.stdout
    bad = tmp_path / "clip.mp4"
    bad.write_text("not a video\n")
    p = facegcn("video", bad, "-o", tmp_path / "v", timeout=60)
    lines = error_lines(p)
    assert p.returncode == 3 and len(lines) == 1 and "cannot decode as a video" in lines[0], p.stderr
    assert "@ 0x" not in lines[0] and "[in#0" not in lines[0] and "Error opening input" not in lines[0]


def test_evaluate_with_skipped_photos_exits_7(inputs, tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    (d / "astro.png").write_bytes(inputs["a"].read_bytes())
    (d / "broken.png").write_bytes(inputs["broken"].read_bytes())
    p = facegcn("evaluate", d, "-o", tmp_path / "ev", "--config", inputs["config"], "--no-plots", "--no-fidelity", "-q")
    lines = error_lines(p)
    assert p.returncode == 7 and len(lines) == 1 and "1 of 2 photo(s) skipped" in lines[0], p.stderr
    assert (tmp_path / "ev" / "report.md").is_file()


TINY_TRAIN = ("--depth", "14", "--width", "8", "--epochs", "1", "--batch-size", "2", "--critic-widths", "4,8,8,8,8,8",
              "--gen-k", "3", "--gen-fc-channels", "8", "--gen-decoder-widths", "4,4,4,3",
              "--gen-refiner-widths", "4,4,4,4,3", "-q")


@pytest.mark.slow
def test_train_under_torchrun_prints_no_library_warnings(tmp_path):
    from facegcn.train.synthetic import make_synthetic_cache

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    make_synthetic_cache(tmp_path / "cache", 4, seed=5, shard_size=4)
    p = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "facegcn.train", "train", str(tmp_path / "cache"),
                        "-o", str(tmp_path / "run"), *TINY_TRAIN], capture_output=True, text=True, timeout=600,
                       env=_env())
    assert p.returncode == 0, p.stderr
    assert "Warning" not in p.stderr and "Traceback" not in p.stderr, p.stderr  # torch's FutureWarnings, per rank
    assert (tmp_path / "run" / "texture.safetensors").is_file()


@pytest.mark.slow
def test_ray_batch_prints_no_ray_log_lines(inputs, tmp_path):
    pytest.importorskip("ray")
    env = _env()
    env.pop("RAY_USAGE_STATS_ENABLED", None)
    p = facegcn("batch", inputs["a"], "-o", tmp_path / "out", "--ray", "local", "--config", inputs["config"], "-q",
                timeout=600, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stderr.strip() == "", p.stderr  # no "INFO ... Started a local Ray instance", no token notices
