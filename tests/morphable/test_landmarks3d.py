"""The 68 landmarks in the AFLW2000-3D convention as surface points of the model.

References: a random similarity transform (recovered exactly), the model's own landmark vertices
(an embedding of them must give them back), a per-point Python loop (the barycentric sum written
out), the convention's documented geometry (BFM's jaw points lie below the 2-D outline's on a
frontal face), and, when PRNet's data folder is at hand (``FACEGCN_PRNET_DATA``), the derivation
script run again."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from facegcn.errors import ModelFileError
from facegcn.frontend.geometry import umeyama_similarity
from facegcn.graph.geometry import closest_points_on_mesh
from facegcn.morphable.landmarks3d import (
    INNER,
    apply_landmarks,
    landmarks3d_path,
    surface_landmarks,
    vertex_landmarks,
    write_landmarks3d,
)


def _mean(model) -> np.ndarray:
    return model.mean_shape.double().cpu().numpy()


def test_similarity_fit_recovers_a_3d_transform():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(40, 3))
    R = Rotation.from_rotvec(rng.normal(size=3)).as_matrix()
    dst = 2.5 * src @ R.T + np.array([1.0, -2.0, 0.5])
    M = umeyama_similarity(src, dst)
    assert M.shape == (3, 4)
    s = np.cbrt(np.linalg.det(M[:, :3]))
    R2, t = M[:, :3] / s, M[:, 3]
    assert s == pytest.approx(2.5, rel=1e-12) and np.allclose(R2, R, atol=1e-12)
    assert np.allclose(t, [1.0, -2.0, 0.5], atol=1e-12) and np.linalg.det(R2) == pytest.approx(1.0)


def test_embedding_the_models_own_landmarks_gives_them_back(ict):
    mean, faces, idx = _mean(ict), ict.faces.cpu().numpy(), ict.landmark_idx.cpu().numpy()
    R = Rotation.from_euler("xyz", [20, -35, 10], degrees=True).as_matrix()
    ref = 30.0 * mean[idx] @ R.T + np.array([5.0, 200.0, -3.0])  # another model's frame and units
    M = umeyama_similarity(ref[INNER], mean[idx][INNER])
    tri, bary, dist = closest_points_on_mesh(ref @ M[:, :3].T + M[:, 3], mean, faces)
    pts = (mean[faces[tri]] * bary[..., None]).sum(1)
    assert np.abs(pts - mean[idx]).max() < 1e-9 and dist.max() < 1e-9


def test_apply_matches_a_loop_and_vertex_landmarks_match_the_model(ict):
    emb = surface_landmarks(ict)
    verts = ict.mean_shape[None].double() + 0.01 * torch.randn(2, ict.n_vertices, 3, dtype=torch.float64,
                                                               generator=torch.Generator().manual_seed(1))
    out = apply_landmarks(emb, ict.faces, verts)
    faces = ict.faces.numpy()
    for j in (0, 8, 30, 67):
        ref = sum(emb.bary[j, k] * verts[:, faces[emb.tri[j], k]] for k in range(3))
        assert torch.allclose(out[:, j], ref, atol=1e-12)
    own = apply_landmarks(vertex_landmarks(ict), ict.faces, verts)
    assert torch.equal(own, ict.landmarks(verts))


def test_shipped_file_follows_the_3d_convention(ict):
    path = landmarks3d_path("ict")
    assert path.is_file() and path.stat().st_size < 8 * 1024
    emb = surface_landmarks(ict)
    assert emb.tri.shape == (68,) and emb.bary.min() >= 0 and np.allclose(emb.bary.sum(1), 1.0, atol=1e-5)
    assert emb.distance.max() < 0.05  # every BFM point within 5 mm of ICT's surface (decimetres)
    mean = torch.as_tensor(_mean(ict))
    pts = apply_landmarks(emb, ict.faces, mean[None])[0].numpy()
    own = mean[ict.landmark_idx].numpy()
    gap = np.linalg.norm(pts - own, axis=1)
    assert np.median(gap[INNER]) < 0.05  # the inner anatomy is the same: median < 5 mm
    # BFM's jaw points sit lower on the cheek than the frontal outline's, by 0.5–1.5 cm
    drop = own[[1, 2, 3, 13, 14, 15], 1] - pts[[1, 2, 3, 13, 14, 15], 1]
    assert (drop > 0.05).all() and (drop < 0.15).all()
    jaw = np.arange(17)  # and the jaw stays left-right symmetric (both models are): within 3 mm
    assert np.abs(pts[jaw, 0] + pts[16 - jaw, 0]).max() < 0.03 and np.abs(pts[jaw, 1] - pts[16 - jaw, 1]).max() < 0.03


def test_files_for_another_mesh(ict, tmp_path):
    other = SimpleNamespace(name="ict", n_vertices=ict.n_vertices, n_faces=ict.n_faces, faces=ict.faces.flip(1),
                            landmark_idx=ict.landmark_idx)
    p = write_landmarks3d(tmp_path / "l.npz", surface_landmarks(ict), ict)
    with pytest.raises(ModelFileError, match="another mesh"):
        surface_landmarks(other, p)
    fallback = surface_landmarks(other)  # the shipped file does not fit: its own vertices
    assert fallback.distance.max() == 0 and "vertices" in fallback.source
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="cannot read"):
        surface_landmarks(ict, tmp_path / "bad.npz")


@pytest.mark.skipif(not os.environ.get("FACEGCN_PRNET_DATA"), reason="PRNet's Data/uv-data not given")
def test_the_shipped_file_is_what_the_script_derives(ict, tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "l.npz"
    subprocess.run([sys.executable, str(root / "tools/make_landmarks3d.py"), "--prnet-data",
                    os.environ["FACEGCN_PRNET_DATA"], "--out", str(out)], check=True, capture_output=True)
    a, b = surface_landmarks(ict, out), surface_landmarks(ict)
    assert np.array_equal(a.tri, b.tri) and np.allclose(a.bary, b.bary, atol=1e-6)


def test_the_derivation_script_on_a_prnet_format_folder(ict, tmp_path):
    """tools/make_landmarks3d.py end to end on a folder in PRNet's format whose 'BFM' keypoints are
    ICT's own landmark vertices in PRNet's frame (y down, other scale, offset, rotated): the
    embedding it writes must give those vertices back."""
    import subprocess
    import sys

    mean, idx = _mean(ict), ict.landmark_idx.cpu().numpy()
    R = Rotation.from_euler("xyz", [5, -10, 3], degrees=True).as_matrix()
    kp = (120.0 * mean[idx] @ R.T) * np.array([1.0, -1.0, 1.0]) + np.array([128.0, 250.0, 90.0])
    rng = np.random.default_rng(2)
    n = 300
    flat = rng.choice(256 * 256, n, replace=False)  # the position map's face pixels, in file order
    verts = rng.normal(size=(n, 3)) * 50
    rows = rng.choice(n, 68, replace=False)
    verts[rows] = kp
    u, v = flat[rows] % 256, flat[rows] // 256
    np.save(tmp_path / "canonical_vertices.npy", verts)
    np.savetxt(tmp_path / "face_ind.txt", flat.astype(np.float64))
    np.savetxt(tmp_path / "uv_kpt_ind.txt", np.stack([u, v]).astype(np.float64))
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "l.npz"
    r = subprocess.run([sys.executable, str(root / "tools/make_landmarks3d.py"), "--prnet-data", str(tmp_path),
                        "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    emb = surface_landmarks(ict, out)
    pts = apply_landmarks(emb, ict.faces, torch.as_tensor(mean)[None])[0].numpy()
    assert np.abs(pts - mean[idx]).max() < 1e-6
