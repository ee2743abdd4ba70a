"""Mesh files: OBJ (+ MTL + texture PNG), PLY with vertex colours, GLB (via trimesh).

All writers are atomic (temporary file + rename). Colours are floats in [0, 1] in memory and
uint8 in files. UV coordinates follow the OBJ/glTF-from-OBJ convention: v = 0 at the bottom row of
the texture image.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegcn.errors import InputError
from facegcn.io.atomic import atomic_write_bytes, atomic_write_text


@dataclass
class MeshData:
    vertices: np.ndarray  # (V, 3) float
    faces: np.ndarray  # (F, 3) int
    vertex_colors: np.ndarray | None = None  # (V, 3) float in [0, 1]
    uv: np.ndarray | None = None  # (T, 2)
    faces_uv: np.ndarray | None = None  # (F, 3) into uv
    texture: np.ndarray | None = None  # (H, W, 3) uint8
    normals: np.ndarray | None = None  # (V, 3)


def _np(a, dtype=None):
    if a is None:
        return None
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


def to_uint8(colors) -> np.ndarray:
    return np.clip(np.round(_np(colors, np.float64) * 255.0), 0, 255).astype(np.uint8)


def _png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(img, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write_obj(
    path: str | os.PathLike,
    vertices,
    faces,
    *,
    vertex_colors=None,
    uv=None,
    faces_uv=None,
    texture=None,
    normals=None,
) -> Path:
    """Write an OBJ. With ``uv``+``faces_uv``+``texture`` also writes ``NAME.mtl`` and ``NAME.png``.

    Vertex colours are written as the common ``v x y z r g b`` extension (read by MeshLab, Blender,
    trimesh)."""
    path = Path(path)
    v = _np(vertices, np.float64)
    f = _np(faces, np.int64)
    vc = _np(vertex_colors, np.float64)
    vt = _np(uv, np.float64)
    ft = _np(faces_uv, np.int64)
    vn = _np(normals, np.float64)
    lines = ["# facegcn OBJ"]
    textured = vt is not None and ft is not None
    if textured and texture is not None:
        lines.append(f"mtllib {path.stem}.mtl")
        lines.append("usemtl face")
    if vc is not None:
        lines += [f"v {a:.6f} {b:.6f} {c:.6f} {r:.4f} {g:.4f} {bb:.4f}" for (a, b, c), (r, g, bb) in zip(v, np.clip(vc, 0, 1))]
    else:
        lines += [f"v {a:.6f} {b:.6f} {c:.6f}" for a, b, c in v]
    if textured:
        lines += [f"vt {a:.6f} {b:.6f}" for a, b in vt]
    if vn is not None:
        lines += [f"vn {a:.6f} {b:.6f} {c:.6f}" for a, b, c in vn]
    f1 = f + 1
    if textured:
        t1 = ft + 1
        if vn is not None:
            lines += [f"f {a}/{ta}/{a} {b}/{tb}/{b} {c}/{tc}/{c}" for (a, b, c), (ta, tb, tc) in zip(f1, t1)]
        else:
            lines += [f"f {a}/{ta} {b}/{tb} {c}/{tc}" for (a, b, c), (ta, tb, tc) in zip(f1, t1)]
    elif vn is not None:
        lines += [f"f {a}//{a} {b}//{b} {c}//{c}" for a, b, c in f1]
    else:
        lines += [f"f {a} {b} {c}" for a, b, c in f1]
    if textured and texture is not None:
        atomic_write_bytes(path.with_suffix(".png"), _png_bytes(_np(texture, np.uint8)))
        atomic_write_text(
            path.with_suffix(".mtl"),
            f"newmtl face\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\nmap_Kd {path.stem}.png\n",
        )
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


_FACE_TOKEN = re.compile(r"^(-?\d+)(?:/(-?\d*))?(?:/(-?\d*))?$")


def read_obj(path: str | os.PathLike) -> MeshData:
    """Read the OBJ subset this module writes (triangles/polygons, vt, vertex colours, map_Kd)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    v, vc, vt, vn, f, ft = [], [], [], [], [], []
    mtl = None
    for ln, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            if parts[0] == "v":
                v.append([float(x) for x in parts[1:4]])
                if len(parts) >= 7:
                    vc.append([float(x) for x in parts[4:7]])
            elif parts[0] == "vt":
                vt.append([float(x) for x in parts[1:3]])
            elif parts[0] == "vn":
                vn.append([float(x) for x in parts[1:4]])
            elif parts[0] == "f":
                idx, tidx = [], []
                for tok in parts[1:]:
                    m = _FACE_TOKEN.match(tok)
                    if not m:
                        raise ValueError(tok)
                    idx.append(int(m.group(1)))
                    if m.group(2):
                        tidx.append(int(m.group(2)))
                for k in range(1, len(idx) - 1):  # fan triangulation
                    f.append([idx[0], idx[k], idx[k + 1]])
                    if len(tidx) == len(idx):
                        ft.append([tidx[0], tidx[k], tidx[k + 1]])
            elif parts[0] == "mtllib":
                mtl = path.parent / " ".join(parts[1:])
        except (ValueError, IndexError):
            raise InputError(f"{path}:{ln}: malformed OBJ line") from None
    if not v:
        raise InputError(f"{path}: no vertices")
    V = np.asarray(v, np.float64)

    def fix(a, n):
        a = np.asarray(a, np.int64).reshape(-1, 3)
        a = np.where(a < 0, a + n, a - 1)
        if a.size and (a.min() < 0 or a.max() >= n):
            raise InputError(f"{path}: face index out of range")
        return a

    F = fix(f, len(V))
    mesh = MeshData(V, F)
    if vc and len(vc) == len(v):
        mesh.vertex_colors = np.asarray(vc, np.float64)
    if vt:
        mesh.uv = np.asarray(vt, np.float64)
        if ft and len(ft) == len(f):
            mesh.faces_uv = fix(ft, len(vt))
    if vn and len(vn) == len(v):
        mesh.normals = np.asarray(vn, np.float64)
    if mtl is not None and mtl.is_file():
        for line in mtl.read_text(errors="replace").splitlines():
            p = line.split()
            if p and p[0] == "map_Kd":
                tex = mtl.parent / " ".join(p[1:])
                if tex.is_file():
                    from PIL import Image

                    with Image.open(tex) as im:
                        mesh.texture = np.asarray(im.convert("RGB"))
    return mesh


def write_ply(path: str | os.PathLike, vertices, faces, vertex_colors=None, normals=None) -> Path:
    """Binary little-endian PLY with float32 xyz (+ normals) + uchar rgb and int32 triangle lists."""
    v = _np(vertices, np.float32)
    f = _np(faces, np.int32)
    vc = to_uint8(vertex_colors) if vertex_colors is not None else None
    vn = _np(normals, np.float32)
    props = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if vn is not None:
        props += [("nx", "f4"), ("ny", "f4"), ("nz", "f4")]
    if vc is not None:
        props += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rec = np.empty(len(v), dtype=[(n, "<" + t) for n, t in props])
    rec["x"], rec["y"], rec["z"] = v[:, 0], v[:, 1], v[:, 2]
    if vn is not None:
        rec["nx"], rec["ny"], rec["nz"] = vn[:, 0], vn[:, 1], vn[:, 2]
    if vc is not None:
        rec["red"], rec["green"], rec["blue"] = vc[:, 0], vc[:, 1], vc[:, 2]
    tname = {"f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", "comment facegcn", f"element vertex {len(v)}"]
    header += [f"property {tname[t]} {n}" for n, t in props]
    header += [f"element face {len(f)}", "property list uchar int vertex_indices", "end_header"]
    frec = np.empty(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    frec["n"] = 3
    frec["i"] = f
    data = ("\n".join(header) + "\n").encode("ascii") + rec.tobytes() + frec.tobytes()
    return atomic_write_bytes(path, data)


def read_ply(path: str | os.PathLike) -> MeshData:
    """Read PLY via trimesh (an independent parser) → MeshData with colours in [0, 1]."""
    import trimesh

    try:
        m = trimesh.load(str(path), process=False, force="mesh")
    except Exception as exc:
        raise InputError(f"cannot read PLY {path}: {exc}") from None
    colors = None
    vis = getattr(m, "visual", None)
    if vis is not None and getattr(vis, "kind", None) == "vertex":
        colors = np.asarray(vis.vertex_colors)[:, :3] / 255.0
    return MeshData(np.asarray(m.vertices), np.asarray(m.faces), vertex_colors=colors)


def write_glb(
    path: str | os.PathLike, vertices, faces, *, vertex_colors=None, uv=None, faces_uv=None, texture=None
) -> Path:
    """GLB (binary glTF 2.0). With a texture: seams are split so each glTF vertex has one UV."""
    import trimesh
    from PIL import Image

    v = _np(vertices, np.float64)
    f = _np(faces, np.int64)
    if texture is not None and uv is not None and faces_uv is not None:
        vt, ft = _np(uv, np.float64), _np(faces_uv, np.int64)
        pairs = np.stack([f.reshape(-1), ft.reshape(-1)], 1)
        uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        mesh = trimesh.Trimesh(v[uniq[:, 0]], inv.reshape(-1, 3), process=False)
        material = trimesh.visual.material.PBRMaterial(
            baseColorTexture=Image.fromarray(_np(texture, np.uint8)), metallicFactor=0.0, roughnessFactor=0.9
        )
        mesh.visual = trimesh.visual.TextureVisuals(uv=vt[uniq[:, 1]], material=material)
    else:
        mesh = trimesh.Trimesh(v, f, process=False)
        if vertex_colors is not None:
            rgba = np.concatenate([to_uint8(vertex_colors), np.full((len(v), 1), 255, np.uint8)], 1)
            mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=rgba)
    data = trimesh.exchange.gltf.export_glb(trimesh.Scene(mesh))
    return atomic_write_bytes(path, data)


def read_glb(path: str | os.PathLike):
    """Load a GLB with trimesh; returns the single ``trimesh.Trimesh`` it holds."""
    import trimesh

    try:
        scene = trimesh.load(str(path), force="scene")
    except Exception as exc:
        raise InputError(f"cannot read GLB {path}: {exc}") from None
    geoms = list(scene.geometry.values())
    if len(geoms) != 1:
        raise InputError(f"{path}: expected one mesh, found {len(geoms)}")
    return geoms[0]
