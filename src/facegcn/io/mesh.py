"""Mesh files: OBJ (+ MTL + texture PNGs), PLY with vertex colours, GLB (:mod:`facegcn.io.gltf`).

The OBJ and GLB writers take either arrays for one material or a
:class:`~facegcn.io.textured.TexturedMesh` with several materials (OBJ: one ``usemtl`` each, one
MTL with a ``newmtl`` + ``map_Kd`` each, ``NAME.png`` for the first material and
``NAME_<material>.png`` for the others; GLB: one primitive and material each) and vertex normals.

All writers are atomic (temporary file + rename). Colours are floats in [0, 1] in memory and
uint8 in files. UV coordinates follow the OBJ/glTF-from-OBJ convention: v = 0 at the bottom row of
the texture image.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegcn.errors import InputError
from facegcn.io.atomic import atomic_write_bytes, atomic_write_text
from facegcn.io.imageops import encode_png, to_uint8
from facegcn.io.textured import Material, TexturedMesh


@dataclass
class MeshData:
    vertices: np.ndarray  # (V, 3) float
    faces: np.ndarray  # (F, 3) int
    vertex_colors: np.ndarray | None = None  # (V, 3) float in [0, 1]
    uv: np.ndarray | None = None  # (T, 2)
    faces_uv: np.ndarray | None = None  # (F, 3) into uv
    texture: np.ndarray | None = None  # (H, W, 3) uint8, the first material's
    normals: np.ndarray | None = None  # (V, 3)
    material_names: list[str] | None = None  # OBJ: the ``usemtl`` names in order of appearance
    face_material: np.ndarray | None = None  # (F,) int64 index into material_names
    textures: dict[str, np.ndarray] | None = None  # material name → (H, W, 3) uint8 (its map_Kd)


def _np(a, dtype=None):
    if a is None:
        return None
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


def texture_pngs(mesh: TexturedMesh) -> dict[str, bytes]:
    """``{material name: PNG bytes}`` of a mesh's textured materials (encode once, write to OBJ
    and GLB)."""
    return {m.name: encode_png(_np(m.texture, np.uint8)) for m in mesh.materials if m.textured}


_FIELD = re.compile(r"%(?:\.(\d+))?([df])")


def _rows(fmt: str, a: np.ndarray) -> str:
    """The rows of ``a`` (N, k) formatted with ``fmt`` (a prefix, then k ``%d`` / ``%.Nf`` fields
    with literal separators), joined by newlines — what :func:`_rows_reference` writes, by the
    numba kernel :func:`facegcn.io._text_kernels.format_rows` (a ``%.Nf`` may differ from it by one
    unit in the last digit at float64 ties; values the kernel does not write fall back to it)."""
    if len(a) == 0:
        return ""
    fields = list(_FIELD.finditer(fmt))
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[1] != len(fields) or "%" in _FIELD.sub("", fmt):
        return _rows_reference(fmt, a)
    from facegcn.io._text_kernels import format_rows, row_bound

    prefix = np.frombuffer(fmt[:fields[0].start()].encode("ascii"), np.uint8)
    tails = [fmt[f.end():(fields[i + 1].start() if i + 1 < len(fields) else len(fmt))].encode("ascii")
             for i, f in enumerate(fields)]
    sep_len = np.array([len(t) for t in tails], np.int64)
    seps = np.zeros((len(tails), max(1, int(sep_len.max()))), np.uint8)
    for i, t in enumerate(tails):
        seps[i, :len(t)] = np.frombuffer(t, np.uint8)
    decimals = np.array([-1 if f.group(2) == "d" else int(f.group(1) or 6) for f in fields], np.int64)
    out = np.empty(len(a) * row_bound(len(prefix), decimals, sep_len), np.uint8)
    n = format_rows(np.ascontiguousarray(a, np.float64), prefix, seps, sep_len, decimals, out)
    if n < 0:
        return _rows_reference(fmt, a)
    return out[:n].tobytes().decode("ascii")


def _rows_reference(fmt: str, a: np.ndarray) -> str:
    """The rows of ``a`` (N, k) formatted with ``fmt`` (k ``%`` fields), joined by newlines: one
    ``%`` operation on the whole array (~10x faster than a Python loop of f-strings)."""
    if len(a) == 0:
        return ""
    values = a.tolist() if a.dtype.kind == "f" else a.astype(np.int64).tolist()
    return "\n".join([fmt] * len(a)) % tuple(x for row in values for x in row)


def _as_textured(vertices, faces, vertex_colors, uv, faces_uv, texture, normals) -> TexturedMesh:
    """The single-material call form as a :class:`TexturedMesh` (material ``face``; normals and
    colours may be None)."""
    if isinstance(vertices, TexturedMesh):
        if faces is not None or any(a is not None for a in (vertex_colors, uv, faces_uv, texture, normals)):
            raise TypeError("pass either a TexturedMesh or vertices, faces and keywords")
        return vertices
    ft = _np(faces_uv, np.int64) if uv is not None else None
    mat = Material("face", _np(faces, np.int64), ft, None if texture is None or ft is None else _np(texture, np.uint8))
    return TexturedMesh(_np(vertices, np.float64), _np(normals, np.float64), _np(vertex_colors, np.float64),
                        _np(uv, np.float64), (mat,))


def texture_file_names(mesh: TexturedMesh, stem: str) -> dict[str, str]:
    """``{material name: PNG file name}`` of the textured materials: ``STEM.png`` for the first
    material, ``STEM_<name>.png`` for the others."""
    return {m.name: (f"{stem}.png" if i == 0 else f"{stem}_{m.name}.png")
            for i, m in enumerate(mesh.materials) if m.textured}


def write_obj(
    path: str | os.PathLike,
    vertices,
    faces=None,
    *,
    vertex_colors=None,
    uv=None,
    faces_uv=None,
    texture=None,
    normals=None,
    textures_png: Mapping[str, bytes] | None = None,
) -> Path:
    """Write an OBJ (+ ``NAME.mtl`` and one PNG per textured material).

    Call it with a :class:`~facegcn.io.textured.TexturedMesh` (``write_obj(path, mesh)``: one
    ``usemtl`` per material, one ``newmtl`` + ``map_Kd`` each, textures ``NAME.png`` for the first
    material and ``NAME_<material>.png`` for the others, ``vn`` normals), or with arrays for one
    material (``vertices (V, 3)``, ``faces (F, 3)``; with ``uv (T, 2)`` + ``faces_uv (F, 3)`` +
    ``texture (H, W, 3)`` uint8 also the MTL and ``NAME.png``; ``normals (V, 3)`` → ``vn``).

    Vertex colours (floats in [0, 1]) are written as the common ``v x y z r g b`` extension (read by
    MeshLab, Blender, trimesh) when given, or for a mesh with an untextured material.
    ``textures_png`` (``{material: PNG bytes}``, from :func:`texture_pngs`) reuses encoded textures.

    Returns:
        ``path``.
    """
    path = Path(path)
    mesh = _as_textured(vertices, faces, vertex_colors, uv, faces_uv, texture, normals)
    v = _np(mesh.vertices, np.float64)
    vc = _np(mesh.vertex_colors, np.float64)
    if isinstance(vertices, TexturedMesh) and all(m.textured for m in mesh.materials):
        vc = None
    vt = _np(mesh.uv, np.float64)
    vn = _np(mesh.normals, np.float64)
    tex_names = texture_file_names(mesh, path.stem)
    lines = ["# facegcn OBJ"]
    if tex_names:
        lines.append(f"mtllib {path.stem}.mtl")
    if vc is not None:
        lines.append(_rows("v %.6f %.6f %.6f %.4f %.4f %.4f", np.concatenate([v, np.clip(vc, 0, 1)], 1)))
    else:
        lines.append(_rows("v %.6f %.6f %.6f", v))
    if vt is not None and any(m.faces_uv is not None for m in mesh.materials):
        lines.append(_rows("vt %.6f %.6f", vt))
    if vn is not None:
        lines.append(_rows("vn %.6f %.6f %.6f", vn))
    for mat in mesh.materials:
        if tex_names:
            lines.append(f"usemtl {mat.name}")
        f1 = _np(mat.faces, np.int64) + 1
        if mat.faces_uv is not None and vt is not None:
            t1 = _np(mat.faces_uv, np.int64) + 1
            if vn is not None:
                lines.append(_rows("f %d/%d/%d %d/%d/%d %d/%d/%d", np.stack([f1, t1, f1], 2).reshape(-1, 9)))
            else:
                lines.append(_rows("f %d/%d %d/%d %d/%d", np.stack([f1, t1], 2).reshape(-1, 6)))
        elif vn is not None:
            lines.append(_rows("f %d//%d %d//%d %d//%d", np.stack([f1, f1], 2).reshape(-1, 6)))
        else:
            lines.append(_rows("f %d %d %d", f1))
    lines = [ln for ln in lines if ln]
    if tex_names:
        for mat in mesh.materials:
            if mat.name in tex_names:
                png = textures_png.get(mat.name) if textures_png else None
                atomic_write_bytes(path.parent / tex_names[mat.name], png or encode_png(_np(mat.texture, np.uint8)))
        # untextured materials first, so that the file ends with a map_Kd line
        blocks = [f"newmtl {m.name}\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\n"
                  + (f"map_Kd {tex_names[m.name]}\n" if m.name in tex_names else "")
                  for m in sorted(mesh.materials, key=lambda m: m.name in tex_names)]
        atomic_write_text(path.with_suffix(".mtl"), "\n".join(blocks))
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


_FACE_TOKEN = re.compile(r"^(-?\d+)(?:/(-?\d*))?(?:/(-?\d*))?$")


def read_obj(path: str | os.PathLike) -> MeshData:
    """Read the OBJ subset this module writes (triangles/polygons, vt, vn, vertex colours,
    ``usemtl`` materials and their ``map_Kd`` textures).

    Returns:
        :class:`MeshData`; ``material_names`` / ``face_material (F,)`` / ``textures`` when the
        file has ``usemtl`` lines, ``texture`` = the first material's (or the only) texture.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    v, vc, vt, vn, f, ft, fm = [], [], [], [], [], [], []
    mtl = None
    names: list[str] = []
    current = -1
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
                    fm.append(current)
                    if len(tidx) == len(idx):
                        ft.append([tidx[0], tidx[k], tidx[k + 1]])
            elif parts[0] == "mtllib":
                mtl = path.parent / " ".join(parts[1:])
            elif parts[0] == "usemtl":
                name = " ".join(parts[1:])
                if name not in names:
                    names.append(name)
                current = names.index(name)
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
    if names:
        mesh.material_names = names
        mesh.face_material = np.asarray(fm, np.int64)
    if mtl is not None and mtl.is_file():
        textures = _read_mtl_textures(mtl)
        if textures:
            mesh.textures = textures
            first = next((n for n in names if n in textures), next(iter(textures)))
            mesh.texture = textures[first]
    return mesh


def _read_mtl_textures(mtl: Path) -> dict[str, np.ndarray]:
    """``{newmtl name: map_Kd image (H, W, 3) uint8}`` of an MTL file (missing images skipped)."""
    from PIL import Image

    out: dict[str, np.ndarray] = {}
    name = ""
    for line in mtl.read_text(errors="replace").splitlines():
        p = line.split()
        if p and p[0] == "newmtl":
            name = " ".join(p[1:])
        elif p and p[0] == "map_Kd":
            tex = mtl.parent / " ".join(p[1:])
            if tex.is_file():
                with Image.open(tex) as im:
                    out[name] = np.asarray(im.convert("RGB"))
    return out


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
    path: str | os.PathLike, vertices, faces=None, *, vertex_colors=None, uv=None, faces_uv=None, texture=None,
    normals=None, textures_png: Mapping[str, bytes] | None = None,
) -> Path:
    """GLB (binary glTF 2.0), one node, mesh and primitive (named after its material) per
    material.

    Call it with a :class:`~facegcn.io.textured.TexturedMesh` (``write_glb(path, mesh)``: each
    material's own vertices, its texture or the vertex colours, NORMAL from ``mesh.normals``), or
    with arrays for one material (``vertices (V, 3)``, ``faces (F, 3)``, ``vertex_colors (V, 3)``
    in [0, 1], or ``uv (T, 2)`` + ``faces_uv (F, 3)`` + ``texture (H, W, 3)`` uint8; ``normals``
    optional). Textured primitives split vertices at UV seams so each glTF vertex has one UV.
    Written by :func:`facegcn.io.gltf.glb_bytes`; ``textures_png`` as in :func:`write_obj`.

    Returns:
        ``path``.
    """
    from facegcn.io.gltf import glb_bytes

    mesh = _as_textured(vertices, faces, vertex_colors, uv, faces_uv, texture, normals)
    pngs = dict(textures_png or {})
    for m in mesh.materials:
        if m.textured and m.name not in pngs:
            pngs[m.name] = encode_png(_np(m.texture, np.uint8))
    data = glb_bytes(mesh, pngs)
    return atomic_write_bytes(path, data)


def read_glb_parts(path: str | os.PathLike) -> dict:
    """Load a GLB with trimesh: ``{geometry name: trimesh.Trimesh}`` (one per material, in file order)."""
    import trimesh

    try:
        scene = trimesh.load(str(path), force="scene")
    except Exception as exc:
        raise InputError(f"cannot read GLB {path}: {exc}") from None
    if not scene.geometry:
        raise InputError(f"{path}: no mesh")
    geoms = dict(scene.geometry)
    for g in geoms.values():  # COLOR_0 beside an untextured material: trimesh keeps it as an attribute
        vis = getattr(g, "visual", None)
        colors = getattr(vis, "vertex_attributes", {}).get("color") if vis is not None else None
        if colors is not None and getattr(getattr(vis, "material", None), "baseColorTexture", None) is None:
            g.visual = trimesh.visual.ColorVisuals(g, vertex_colors=np.asarray(colors))
    return geoms


def read_glb(path: str | os.PathLike):
    """Load a GLB with trimesh: the ``trimesh.Trimesh`` it holds, or with several primitives (one
    per material) their concatenation (vertices and faces in file order; visuals merged by
    trimesh). Per-material meshes: :func:`read_glb_parts`."""
    import trimesh

    geoms = list(read_glb_parts(path).values())
    if len(geoms) == 1:
        return geoms[0]
    return trimesh.util.concatenate(geoms)
