"""AFLW2000-3D evaluator: .mat reading, yaw binning and the NME arithmetic.

References: hand computations on .mat files written with scipy (the format's own writer) next to
small JPEGs, and the 3DDFA definition (mean point error / sqrt(w·h) of the ground-truth box)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from facegcn.apps.evaluate.aflw import (
    BIN_LABELS,
    box_size,
    evaluate_aflw,
    list_aflw,
    nme,
    read_aflw_mat,
    write_aflw_report,
    yaw_bin,
)
from facegcn.errors import InputError


def _gt(k: int) -> np.ndarray:
    """(68, 2) points spanning a 60 × 80 box at offset (20 + k, 30)."""
    t = np.linspace(0, 1, 68)
    return np.stack([20 + k + 60 * t, 30 + 80 * (0.5 + 0.5 * np.sin(7 * t))], 1)


def _write(folder, name: str, yaw_deg: float, gt: np.ndarray, z: float = 5.0) -> None:
    Image.fromarray(np.full((120, 110, 3), 128, np.uint8)).save(folder / f"{name}.jpg")
    pt3d = np.concatenate([gt.T, np.full((1, 68), z)], 0)  # (3, 68)
    pose = np.array([[0.1, math.radians(yaw_deg), -0.05, 1.0, 2.0, 3.0, 0.001]])  # [pitch, yaw, roll, t, s]
    savemat(folder / f"{name}.mat", {"pt3d_68": pt3d, "Pose_Para": pose})


@pytest.fixture
def folder(tmp_path):
    # |yaw| 10, 29.9 → bin 0; -45, 30 → bin 1; 75 → bin 2; 95 (beyond 90) → bin 2
    for k, (name, yaw) in enumerate([("a", 10.0), ("b", -29.9), ("c", -45.0), ("d", 30.0), ("e", 75.0), ("f", 95.0)]):
        _write(tmp_path, name, yaw, _gt(k))
    return tmp_path


def test_reading_and_binning(folder):
    s = list_aflw(folder)
    assert [x.name for x in s] == list("abcdef")
    assert np.allclose(s[0].landmarks, _gt(0)) and s[0].landmarks.shape == (68, 2)
    assert s[2].yaw_deg == pytest.approx(-45.0)
    assert [yaw_bin(x.yaw_deg) for x in s] == [0, 0, 1, 1, 2, 2]
    assert yaw_bin(30.0) == 1 and yaw_bin(-60.0) == 2 and yaw_bin(29.999) == 0


def test_nme_by_hand():
    gt = _gt(0)
    w, h = gt.max(0) - gt.min(0)
    assert box_size(gt) == pytest.approx(math.sqrt(w * h))
    pred = gt + [3.0, 4.0]  # every point 5 px off
    assert nme(pred, gt) == pytest.approx(5.0 / math.sqrt(w * h))
    pred2 = gt.copy()
    pred2[:34] += [6.0, 8.0]  # half the points 10 px off → mean 5
    assert nme(pred2, gt) == pytest.approx(5.0 / math.sqrt(w * h))


def test_evaluation_arithmetic(folder):
    offsets = {"a": 1.0, "b": 3.0, "c": 5.0, "d": None, "e": 2.0, "f": 4.0}  # None: a miss
    gts = {x.name: x.landmarks for x in list_aflw(folder)}
    calls = []

    def predict(photo):
        name = [n for n in gts if n not in calls][0]
        calls.append(name)
        assert photo.pixels.shape == (120, 110, 3)
        off = offsets[name]
        return None if off is None else gts[name] + [off, 0.0]

    res = evaluate_aflw(folder, predict)
    assert calls == list("abcdef")
    size = {n: box_size(g) for n, g in gts.items()}
    by_hand = [np.mean([1 / size["a"], 3 / size["b"]]), 5 / size["c"], np.mean([2 / size["e"], 4 / size["f"]])]
    assert [b["bin"] for b in res.bins] == list(BIN_LABELS)
    assert [b["images"] for b in res.bins] == [2, 2, 2]
    assert [b["misses"] for b in res.bins] == [0, 1, 0] and res.misses == 1
    assert np.allclose([b["nme"] for b in res.bins], by_hand)
    assert res.mean_nme == pytest.approx(np.mean(by_hand))
    row_d = [r for r in res.rows if r["image"] == "d"][0]
    assert row_d["missed"] and math.isnan(row_d["nme"])
    table = res.table()
    assert "[30, 60)" in table and f"{100 * np.mean(by_hand):.2f}" in table and "mean of bins" in table
    files = write_aflw_report(res, folder / "out")
    assert files["table"].read_text().startswith(table) and "CPU: " in files["table"].read_text()  # + the machine line
    assert files["csv"].read_text().count("\n") == 7
    assert '"misses": 1' in files["json"].read_text()


def test_no_face_error_is_a_miss(folder):
    from facegcn.errors import NoFaceError

    def predict(photo):
        raise NoFaceError("none")

    res = evaluate_aflw(folder, predict, limit=2)
    assert res.misses == 2 and len(res.rows) == 2 and math.isnan(res.mean_nme)


def test_bad_annotations(tmp_path):
    _write(tmp_path, "ok", 0.0, _gt(0))
    assert read_aflw_mat(tmp_path / "ok.mat")[1].shape == (7,)
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(tmp_path / "lonely.jpg")  # no .mat
    with pytest.raises(InputError, match="annotation file missing"):
        list_aflw(tmp_path)
    (tmp_path / "lonely.mat").write_bytes(b"garbage, not a MATLAB file")
    with pytest.raises(InputError) as e:
        list_aflw(tmp_path)
    assert "lonely.mat" in str(e.value) and "\n" not in str(e.value)
    savemat(tmp_path / "lonely.mat", {"something": np.zeros(3)})
    with pytest.raises(InputError, match="pt3d_68"):
        read_aflw_mat(tmp_path / "lonely.mat")
    savemat(tmp_path / "lonely.mat", {"pt3d_68": np.zeros((3, 21)), "Pose_Para": np.zeros((1, 7))})
    with pytest.raises(InputError, match=r"\(3, 68\)"):
        read_aflw_mat(tmp_path / "lonely.mat")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .jpg"):
        list_aflw(tmp_path / "empty")
    with pytest.raises(InputError, match="not a folder"):
        list_aflw(tmp_path / "missing")


@pytest.mark.slow
def test_cli_aflw2000_on_a_real_face(tmp_path):
    """`facegcn evaluate --aflw2000`: the astronaut annotated with the front-end's own 68 points
    scores NME 0 with --aflw-source frontend, and a small NME with the fit's projected points."""
    import os
    import subprocess
    import sys

    from skimage import data

    from facegcn.frontend import observe

    photo = data.astronaut()
    d = tmp_path / "aflw"
    d.mkdir()
    Image.fromarray(photo).save(d / "image00001.jpg", quality=98)
    from facegcn.io.image import load_image

    gt = observe(load_image(d / "image00001.jpg"))[0].landmarks_photo
    savemat(d / "image00001.mat", {"pt3d_68": np.concatenate([gt.T, np.zeros((1, 68))], 0),
                                   "Pose_Para": np.array([[0.0, 0.05, 0.0, 0, 0, 0, 1.0]])})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for source, bound in (("frontend", 1e-6), ("fit", 0.05)):
        r = subprocess.run([sys.executable, "-m", "facegcn", "evaluate", "--aflw2000", str(d), "--aflw-source", source,
                            "--fast", "-q", "-o", str(tmp_path / source)], capture_output=True, text=True, env=env,
                           timeout=600)
        assert r.returncode == 0, r.stderr
        import csv

        rows = list(csv.DictReader((tmp_path / source / "aflw2000.csv").open()))
        assert len(rows) == 1 and rows[0]["missed"] == "False"
        assert float(rows[0]["nme"]) <= bound, (source, rows[0])
    r = subprocess.run([sys.executable, "-m", "facegcn", "evaluate", "--aflw2000", str(tmp_path / "nope")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 3 and r.stderr.strip().count("\n") == 0


def test_fit_predictor_reads_the_3d_convention_points(ict):
    """The fit's prediction is the model's AFLW2000-3D surface points (not its outline vertices) of
    the fitted projection, mapped to photo pixels: checked against the barycentric sum by hand."""
    from types import SimpleNamespace

    import torch

    from facegcn.apps.evaluate.aflw import fit_predictor
    from facegcn.morphable.landmarks3d import surface_landmarks

    px = torch.rand(1, ict.n_vertices, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 200
    A = np.array([[0.5, 0.1, 10.0], [-0.1, 0.5, 20.0]])
    obs = SimpleNamespace(transform_inv=A)
    rec = SimpleNamespace(model=ict, observe=lambda photo: (None, [obs]),
                          fit_coarse=lambda o: SimpleNamespace(state=SimpleNamespace(verts_px=px)))
    got = fit_predictor(rec)(None)
    emb, faces = surface_landmarks(ict), ict.faces.numpy()
    p = px[0].numpy()
    ref = np.stack([sum(emb.bary[j, k] * p[faces[emb.tri[j], k]] for k in range(3)) for j in range(68)])
    assert np.allclose(got, ref @ A[:, :2].T + A[:, 2], atol=1e-9)
    assert not np.allclose(got[:17], p[ict.landmark_idx.numpy()][:17] @ A[:, :2].T + A[:, 2], atol=1.0)
