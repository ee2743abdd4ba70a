"""Build the vendored ICT-FaceKit face model (src/facegcn/morphable/data/ict_face.npz).

Run:  .venv/bin/python tools/vendor_ict.py [PATH/TO/ict_face_model.npz]

Keeps the face area (first 9,409 vertices), quads whose 4 corners are all in it and the UVs they
use; stores identity/expression deltas as float16 (max error ≈ 1e-3 cm), precomputes the albedo
basis (see facegcn.morphable.albedo) and region index sets. Deterministic.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from skimage.measure import points_in_poly

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from facegcn.morphable.albedo import albedo_eigenfunctions  # noqa: E402

DST = REPO / "src" / "facegcn" / "morphable" / "data"
DEFAULT_SRC = REPO.parent / "shared" / "assets" / "ict-facekit" / "ict_face_model.npz"

# 68-point (Multi-PIE) index groups
BROWS = [list(range(17, 22)), list(range(22, 27))]
EYES = [list(range(36, 42)), list(range(42, 48))]
NOSE = list(range(27, 36))
MOUTH = list(range(48, 60))


def _dilate_poly(pts: np.ndarray, margin: float) -> np.ndarray:
    c = pts.mean(0)
    d = pts - c
    n = np.linalg.norm(d, axis=1, keepdims=True)
    return c + d * (1 + margin / np.maximum(n, 1e-9))


def _brow_poly(pts: np.ndarray, half_width: float) -> np.ndarray:
    up = pts + [0, half_width]
    down = pts - [0, half_width]
    return np.concatenate([up, down[::-1]])


def regions(neutral: np.ndarray, lm_idx: np.ndarray, narrow: int) -> dict[str, np.ndarray]:
    """Vertex index sets per region from the landmark polygons in the frontal (x, y) plane (cm)."""
    xy = neutral[:, :2]
    lm = xy[lm_idx]
    front = np.zeros(len(neutral), bool)
    front[:narrow] = True
    # only the frontal surface (not the sides of the nose etc.) is tested against polygons
    def inside(poly):
        return points_in_poly(xy, poly) & front

    eyes = inside(_dilate_poly(lm[EYES[0]], 0.35)) | inside(_dilate_poly(lm[EYES[1]], 0.35))
    brows = inside(_brow_poly(lm[BROWS[0]], 0.45)) | inside(_brow_poly(lm[BROWS[1]], 0.45))
    mouth = inside(_dilate_poly(lm[MOUTH], 0.25))
    nose_poly = np.concatenate([lm[[27]] + [-0.9, 0], lm[31:36], lm[[27]] + [0.9, 0]])
    nose = inside(_dilate_poly(nose_poly, 0.2)) & ~eyes
    skin = front & ~eyes & ~brows & ~mouth
    out = {
        "face": np.arange(len(neutral)),
        "front": np.flatnonzero(front),
        "skin": np.flatnonzero(skin),
        "eyes": np.flatnonzero(eyes),
        "brows": np.flatnonzero(brows & ~eyes),
        "nose": np.flatnonzero(nose),
        "mouth": np.flatnonzero(mouth),
    }
    return {k: v.astype(np.int32) for k, v in out.items()}


def main(src: Path = DEFAULT_SRC) -> Path:
    d = np.load(src, allow_pickle=False)
    nf = int(d["face_vertex_count"])
    narrow = int(d["narrow_face_vertex_count"])
    faces_all = d["faces"]
    keep = (faces_all < nf).all(1)
    quads = faces_all[keep].astype(np.int32)
    quads_uv = d["faces_uv"][keep]
    used_uv, quads_uv = np.unique(quads_uv, return_inverse=True)
    quads_uv = quads_uv.reshape(-1, 4).astype(np.int32)
    uv = d["uv"][used_uv].astype(np.float32)
    neutral = d["neutral"][:nf].astype(np.float32)
    lm = d["landmarks68"].astype(np.int32)
    assert lm.max() < nf
    tris = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    lam, phi = albedo_eigenfunctions(neutral, tris, 80)
    regs = regions(neutral, lm, narrow)
    DST.mkdir(parents=True, exist_ok=True)
    out = DST / "ict_face.npz"
    np.savez_compressed(
        out,
        neutral_cm=neutral,
        identity_deltas_cm=d["identity_deltas"][:, :nf].astype(np.float16),
        expression_deltas_cm=d["expression_deltas"][:, :nf].astype(np.float16),
        expression_names=np.asarray(d["expression_names"]).astype("U16"),
        quads=quads,
        quads_uv=quads_uv,
        uv=uv,
        landmarks68=lm,
        albedo_eigenvalues=lam.astype(np.float32),
        albedo_eigenvectors=phi.astype(np.float32),
        narrow_face_vertex_count=np.int32(narrow),
        **{f"region_{k}": v for k, v in regs.items()},
    )
    shutil.copyfile(src.parent / "LICENSE", DST / "LICENSE-ICT-FaceKit")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); regions:",
          {k: len(v) for k, v in regs.items()})
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SRC)
