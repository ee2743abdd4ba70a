#!/usr/bin/env python
"""Derive the 68 landmarks in the AFLW2000-3D convention (BFM keypoints) on a model's surface.

    .venv/bin/python tools/make_landmarks3d.py --prnet-data PRNet/Data/uv-data      # ICT → shipped file
    .venv/bin/python tools/make_landmarks3d.py --prnet-data DIR --model M.npz --out landmarks3d_x.npz

Input: PRNet's (github.com/YadiraF/PRNet, MIT licence) ``canonical_vertices.npy`` (the BFM mean
face, 43,867 vertices, the rows of ``face_ind.txt``: indices into the 256 × 256 UV position map),
``face_ind.txt`` and ``uv_kpt_ind.txt`` (2, 68: the u, v pixels of BFM's 68 keypoints, the points
AFLW2000-3D's ``pt3d_68`` and 300W-LP are annotated with). PRNet's frame has y down: y is flipped.
Method and file format: :mod:`facegcn.morphable.landmarks3d`. Prints each point's distance to the
surface and the inner-point alignment residual.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def bfm_keypoints(prnet_dir: Path) -> np.ndarray:
    """(68, 3) BFM's keypoints on its mean face, y up (PRNet's units)."""
    verts = np.load(prnet_dir / "canonical_vertices.npy", allow_pickle=False)
    face_ind = np.loadtxt(prnet_dir / "face_ind.txt").astype(np.int64)
    u, v = np.loadtxt(prnet_dir / "uv_kpt_ind.txt").astype(np.int64)
    row = {int(f): i for i, f in enumerate(face_ind)}
    flat = v * 256 + u
    missing = [j for j, f in enumerate(flat) if int(f) not in row]
    if missing:
        raise SystemExit(f"keypoints {missing} are not face pixels of the position map")
    pts = verts[[row[int(f)] for f in flat]]
    return pts * np.array([1.0, -1.0, 1.0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--prnet-data", type=Path, required=True, help="PRNet's Data/uv-data folder")
    ap.add_argument("--model", default=None, help="a model file (default: the embedded ICT model)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from facegcn.frontend.geometry import umeyama_similarity
    from facegcn.graph.geometry import closest_points_on_mesh
    from facegcn.morphable import load_model
    from facegcn.morphable.landmarks3d import INNER, SurfaceLandmarks, landmarks3d_path, write_landmarks3d

    model = load_model(a.model or "ict")
    ref = bfm_keypoints(a.prnet_data)
    mean = model.mean_shape.double().cpu().numpy()
    own = mean[model.landmark_idx.cpu().numpy()]
    M = umeyama_similarity(ref[INNER], own[INNER])  # on the 51 inner points
    aligned = ref @ M[:, :3].T + M[:, 3]
    res = np.linalg.norm(aligned[INNER] - own[INNER], axis=1)
    tri, bary, dist = closest_points_on_mesh(aligned, mean, model.faces.cpu().numpy())
    emb = SurfaceLandmarks(tri, bary, dist, "BFM keypoints via PRNet canonical_vertices.npy + uv_kpt_ind.txt, "
                           "aligned on the 51 inner points, closest surface points")
    out = a.out or landmarks3d_path(model.name)
    write_landmarks3d(out, emb, model)
    np.set_printoptions(precision=4, suppress=True)
    print(f"model {model.name}: inner alignment residual rms {np.sqrt((res ** 2).mean()):.4f} (model units)")
    print("distance to the surface per point:", emb.distance)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
