"""Basel Face Model from user files, on synthetic files written in the real formats
(scipy.io.savemat layouts of Deep3DFaceRecon's BFM folder, the binary layout of Exp_Pca.bin).
Reference: a per-vertex loop re-implementation of Deep3DFaceRecon's transferBFM09."""

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from facegcn.errors import ModelFileError
from facegcn.morphable import load_model
from facegcn.morphable.bfm import convert_bfm, read_exp_pca_bin, write_exp_pca_bin

N_FULL, N_EXPV, N_FRONT = 90, 70, 48


def _grid_tris(n_side: int) -> np.ndarray:
    tris = []
    for r in range(n_side - 1):
        for c in range(n_side - 1):
            a = r * n_side + c
            tris += [[a, a + 1, a + n_side], [a + 1, a + n_side + 1, a + n_side]]
    return np.asarray(tris)


def make_raw_bfm(folder: Path, seed: int = 0) -> dict:
    g = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    shapeMU = g.normal(0, 5e4, (3 * N_FULL, 1))
    shapePC = g.normal(0, 1, (3 * N_FULL, 199))
    shapeEV = np.abs(g.normal(1e4, 1e3, (199, 1)))
    texMU = g.uniform(50, 200, (3 * N_FULL, 1))
    texPC = g.normal(0, 1, (3 * N_FULL, 199))
    texEV = np.abs(g.normal(10, 1, (199, 1)))
    scipy.io.savemat(folder / "01_MorphableModel.mat", dict(
        shapeMU=shapeMU, shapePC=shapePC, shapeEV=shapeEV, texMU=texMU, texPC=texPC, texEV=texEV,
        tl=np.ones((3, 3))))
    expMU = g.normal(0, 1, 3 * N_EXPV)
    expPC = g.normal(0, 1, (3 * N_EXPV, 79))
    write_exp_pca_bin(folder / "Exp_Pca.bin", expMU, expPC)
    expEV = np.abs(g.normal(5e3, 5e2, 79))
    np.savetxt(folder / "std_exp.txt", expEV)
    trim = g.choice(N_FULL, N_EXPV, replace=False) + 1
    scipy.io.savemat(folder / "BFM_exp_idx.mat", {"trimIndex": trim.reshape(-1, 1).astype(np.float64)})
    idx = np.sort(g.choice(N_EXPV, N_FRONT, replace=False)) + 1
    scipy.io.savemat(folder / "BFM_front_idx.mat", {"idx": idx.reshape(-1, 1).astype(np.float64)})
    tri = _grid_tris(8)[: 2 * 7 * 5] + 1  # 6 rows × 8 = 48 vertices
    kp = g.choice(N_FRONT, 68) + 1
    scipy.io.savemat(folder / "facemodel_info.mat", dict(
        tri=tri.astype(np.float64), keypoints=kp.reshape(1, -1).astype(np.float64),
        skinmask=(g.uniform(size=(1, N_FRONT)) > 0.3).astype(np.float64),
        frontmask2_idx=np.arange(1, 41).reshape(-1, 1).astype(np.float64),
        point_buf=np.ones((N_FRONT, 8)), tri_mask2=tri[:20].astype(np.float64)))
    return dict(shapeMU=shapeMU, shapePC=shapePC, shapeEV=shapeEV, texMU=texMU, texPC=texPC, texEV=texEV,
                expPC=expPC, expEV=expEV, trim=trim, idx=idx, tri=tri, kp=kp)


def reference_front(r: dict) -> dict:
    """Independent per-vertex re-implementation (loops, 1-based bookkeeping as in the MATLAB files)."""
    out_shape, out_id, out_ex, out_tex, out_mt = [], [], [], [], []
    for e in r["idx"]:  # front vertex → expression-vertex index e (1-based)
        s = r["trim"][e - 1]  # → full-model vertex (1-based)
        rows_s = [3 * (s - 1) + k for k in range(3)]
        rows_e = [3 * (e - 1) + k for k in range(3)]
        out_shape.append(r["shapeMU"][rows_s, 0] / 1e5)
        out_mt.append(r["texMU"][rows_s, 0])
        out_id.append(r["shapePC"][rows_s, :80] * r["shapeEV"][:80, 0] / 1e5)
        out_tex.append(r["texPC"][rows_s, :80] * r["texEV"][:80, 0])
        out_ex.append(r["expPC"][rows_e, :64] * r["expEV"][:64] / 1e5)
    return dict(meanshape=np.concatenate(out_shape), meantex=np.concatenate(out_mt),
                idBase=np.concatenate(out_id), exBase=np.concatenate(out_ex), texBase=np.concatenate(out_tex))


def test_exp_pca_bin_round_trip(tmp_path):
    g = np.random.default_rng(1)
    mu, pc = g.normal(size=30).astype(np.float32), g.normal(size=(30, 7)).astype(np.float32)
    write_exp_pca_bin(tmp_path / "e.bin", mu, pc)
    raw = (tmp_path / "e.bin").read_bytes()
    assert len(raw) == 4 + 4 * 30 * 8 and int.from_bytes(raw[:4], "little") == 7
    mu2, pc2 = read_exp_pca_bin(tmp_path / "e.bin", 10)
    np.testing.assert_array_equal(mu2, mu)
    np.testing.assert_array_equal(pc2, pc)


def test_convert_and_load_round_trip(tmp_path):
    r = make_raw_bfm(tmp_path / "BFM")
    out = convert_bfm(tmp_path / "BFM")
    assert out.name == "BFM_model_front.mat"
    got = scipy.io.loadmat(out)
    ref = reference_front(r)
    for k in ("idBase", "exBase", "texBase"):
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-9, err_msg=k)
    np.testing.assert_allclose(got["meanshape"].ravel(), ref["meanshape"], rtol=1e-6)
    np.testing.assert_allclose(got["meantex"].ravel(), ref["meantex"], rtol=1e-6)

    m = load_model(out)
    assert m.n_vertices == N_FRONT and m.layout.total == 257
    assert m.n_faces == len(r["tri"])
    np.testing.assert_array_equal(m.landmark_idx.numpy(), r["kp"] - 1)
    # the model evaluates like Deep3DFaceRecon's: recentred mean + bases, texture / 255
    g = torch.Generator().manual_seed(0)
    a, b, t = torch.randn(1, 80, generator=g), torch.randn(1, 64, generator=g), torch.randn(1, 80, generator=g)
    mean = ref["meanshape"].reshape(-1, 3)
    mean = mean - mean.mean(0)
    exp_v = mean.reshape(-1) + ref["idBase"] @ a[0].double().numpy() + ref["exBase"] @ b[0].double().numpy()
    np.testing.assert_allclose(m.shape(a, b)[0].double().numpy().reshape(-1), exp_v, rtol=1e-4, atol=1e-5)
    exp_t = (ref["meantex"] + ref["texBase"] @ t[0].double().numpy()) / 255
    np.testing.assert_allclose(m.albedo(t)[0].double().numpy().reshape(-1), exp_t, rtol=1e-4, atol=1e-5)
    assert set(m.region_names) >= {"face", "skin", "front"}


def test_cli_convert(tmp_path):
    from facegcn.cli import main

    make_raw_bfm(tmp_path / "B")
    assert main(["model", "convert-bfm", str(tmp_path / "B"), "-o", str(tmp_path / "front.mat")]) == 0
    assert main(["model", "info", "--model", str(tmp_path / "front.mat")]) == 0


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage", "hdf5", "no_var", "wrong_shape", "nan",
                                    "bad_tri"])
def test_bad_front_files(tmp_path, damage):
    r = make_raw_bfm(tmp_path / "B")
    good = convert_bfm(tmp_path / "B")
    bad = tmp_path / "bad.mat"
    d = scipy.io.loadmat(good)
    d = {k: v for k, v in d.items() if not k.startswith("__")}
    if damage == "missing":
        bad = tmp_path / "nope.mat"
    elif damage == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif damage == "garbage":
        bad.write_bytes(np.random.default_rng(0).bytes(5000))
    elif damage == "hdf5":
        bad.write_bytes(b"MATLAB 7.3 MAT-file" + b" " * 97 + b"\x00\x02IM" + b"\x89HDF\r\n\x1a\n" + bytes(600))
    else:
        if damage == "no_var":
            del d["idBase"]
        elif damage == "wrong_shape":
            d["idBase"] = d["idBase"][:-3]
        elif damage == "nan":
            d["meanshape"][0, 5] = np.nan
        elif damage == "bad_tri":
            d["tri"][0, 0] = 10_000
        scipy.io.savemat(bad, d)
    with pytest.raises(ModelFileError) as ei:
        load_model(bad)
    msg = str(ei.value)
    assert "\n" not in msg and (bad.name in msg or "bad" in msg)


@pytest.mark.parametrize("victim", ["Exp_Pca.bin", "std_exp.txt", "BFM_front_idx.mat", "01_MorphableModel.mat"])
def test_convert_names_the_broken_file(tmp_path, victim):
    make_raw_bfm(tmp_path / "B")
    p = tmp_path / "B" / victim
    p.write_bytes(p.read_bytes()[:100] if victim != "std_exp.txt" else b"not numbers\n")
    with pytest.raises(ModelFileError) as ei:
        convert_bfm(tmp_path / "B")
    assert victim in str(ei.value)
    assert not (tmp_path / "B" / "BFM_model_front.mat").exists()
