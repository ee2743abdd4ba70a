"""Build the vendored ICT-FaceKit face model (src/facegcn/morphable/data/ict_face.npz) and its
closing parts (data/ict_parts.npz).

Run:  .venv/bin/python tools/vendor_ict.py [PATH/TO/ict_face_model.npz [PATH/TO/ict_face_model_full.npz]]
      .venv/bin/python tools/vendor_ict.py --parts-only [PATH/TO/ict_face_model_full.npz]

Keeps the face area (first 9,409 vertices), quads whose 4 corners are all in it and the UVs they
use; stores identity/expression deltas as float16 (max error ≈ 1e-3 cm), precomputes the albedo
basis (see facegcn.morphable.albedo) and region index sets. Deterministic.

Parts (from the whole-head model): the groups of facegcn.morphable.parts.PART_GROUPS (head and
neck, mouth / eye sockets, gums and tongue, teeth, eyeballs; the transparent overlays — lacrimal
fluid, eye blend / occlusion, eyelashes — are left out). Quads → (0, 1, 2) + (0, 2, 3), triangles
kept (an eyeball's sclera triangles before its iris triangles); UVs remapped to the parts atlas;
deltas as int16 fixed point (DELTA_STEP_CM).
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
from facegcn.morphable.parts import DELTA_STEP_CM, EYEBALL_PARTS, PART_GROUPS, atlas_tile, atlas_uv  # noqa: E402

DST = REPO / "src" / "facegcn" / "morphable" / "data"
DEFAULT_SRC = REPO.parent / "shared" / "assets" / "ict-facekit" / "ict_face_model.npz"
DEFAULT_FULL = REPO.parent / "shared" / "assets" / "ict-facekit" / "ict_face_model_full.npz"

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


def _triangulate(polys: np.ndarray) -> np.ndarray:
    """(Q, 4) quads (4th index -1 for a triangle) → (T, 3): (0, 1, 2) of every polygon, then
    (0, 2, 3) of the quads (the face model's order)."""
    quad = polys[:, 3] >= 0
    return np.concatenate([polys[:, [0, 1, 2]], polys[quad][:, [0, 2, 3]]])


def _quantize(deltas_cm: np.ndarray) -> np.ndarray:
    q = np.round(deltas_cm.astype(np.float64) / DELTA_STEP_CM)
    assert np.abs(q).max() < 2**15, "delta too large for int16 fixed point"
    return q.astype(np.int16)


def vendor_parts(src: Path = DEFAULT_FULL) -> Path:
    """Write data/ict_parts.npz from the whole-head model (see the module docstring)."""
    d = np.load(src, allow_pickle=False)
    names = [str(x) for x in d["group_names"]]
    vr, pr = d["group_vertex_ranges"], d["group_polygon_ranges"]  # inclusive
    assert names[0] == "face" and tuple(vr[0]) == (0, 9408)
    nf = int(vr[0, 1]) + 1
    gi = [names.index(g) for g in PART_GROUPS]
    assert gi == list(range(1, len(PART_GROUPS) + 1)), "groups must follow the face, in order"
    last = int(vr[gi[-1], 1]) + 1  # the kept part vertices are contiguous: nf .. last - 1
    P = last - nf
    vertex_group = np.empty(P, np.int8)
    for k, g in enumerate(gi):
        vertex_group[vr[g, 0] - nf: vr[g, 1] + 1 - nf] = k
    eyeball_part = np.zeros(P, np.int8)
    for pname, (a, b) in zip(d["eyeball_part_names"], d["eyeball_part_vertex_ranges"]):
        eyeball_part[a - nf: b + 1 - nf] = EYEBALL_PARTS.index(str(pname).split("_")[0])
    faces, faces_uv, face_group, uvs = [], [], [], []
    n_uv = 0
    for k, g in enumerate(gi):
        polys = d["faces"][pr[g, 0]: pr[g, 1] + 1]
        polys_uv = d["faces_uv"][pr[g, 0]: pr[g, 1] + 1]
        assert polys[polys >= 0].max() < last and ((polys < 0) == (polys_uv < 0)).all()
        tris, tris_uv = _triangulate(polys), _triangulate(polys_uv)
        tile_part = eyeball_part[tris[:, 0] - nf] if PART_GROUPS[k].startswith("eyeball_") else np.zeros(len(tris))
        for part in np.unique(tile_part):  # an eyeball's sclera and iris shells overlap in ICT's UVs
            sel = tile_part == part
            used, inv = np.unique(tris_uv[sel], return_inverse=True)
            uvs.append(atlas_uv(d["uv"][used], atlas_tile(PART_GROUPS[k], int(part))))
            faces.append(tris[sel])
            faces_uv.append(inv.reshape(-1, 3) + n_uv)
            face_group.append(np.full(sel.sum(), k, np.int8))
            n_uv += len(used)
    out = DST / "ict_parts.npz"
    np.savez_compressed(
        out,
        n_face_vertices=np.int32(nf),
        group_names=np.asarray(PART_GROUPS).astype("U16"),
        vertex_group=vertex_group,
        eyeball_part=eyeball_part,
        faces=np.concatenate(faces).astype(np.int32),
        face_group=np.concatenate(face_group),
        uv=np.concatenate(uvs).astype(np.float32),
        faces_uv=np.concatenate(faces_uv).astype(np.int32),
        neutral_cm=d["neutral_cm"][nf:last].astype(np.float32),
        delta_step_cm=np.float64(DELTA_STEP_CM),
        identity_deltas_q=_quantize(d["identity_deltas_cm"][:, nf:last]),
        expression_deltas_q=_quantize(d["expression_deltas_cm"][:, nf:last]),
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {P} part vertices, "
          f"{sum(len(f) for f in faces)} triangles")
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--parts-only"]:
        vendor_parts(Path(args[1]) if len(args) > 1 else DEFAULT_FULL)
    else:
        main(Path(args[0]) if args else DEFAULT_SRC)
        vendor_parts(Path(args[1]) if len(args) > 1 else DEFAULT_FULL)
