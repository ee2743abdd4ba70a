"""Mesh-file round trips. Reference reader: trimesh (an independent parser) where possible."""

import os

import numpy as np
import pytest
import trimesh
from PIL import Image

from facegcn.errors import OutputError
from facegcn.io.atomic import atomic_open, atomic_write_text
from facegcn.io.mesh import read_glb, read_obj, read_ply, write_glb, write_obj, write_ply
from facegcn.morphable import load_model


@pytest.fixture(scope="module")
def face():
    m = load_model("ict")
    g = np.random.default_rng(0)
    cols = g.uniform(0, 1, (m.n_vertices, 3))
    tex = (g.uniform(0, 255, (64, 96, 3))).astype(np.uint8)
    return m, cols, tex


def test_obj_textured_round_trip(tmp_path, face):
    m, cols, tex = face
    p = write_obj(tmp_path / "f.obj", m.mean_shape, m.faces, uv=m.uv, faces_uv=m.faces_uv, texture=tex)
    assert (tmp_path / "f.mtl").exists() and (tmp_path / "f.png").exists()
    r = read_obj(p)
    np.testing.assert_allclose(r.vertices, m.mean_shape.numpy(), atol=1e-6)
    np.testing.assert_array_equal(r.faces, m.faces.numpy())
    np.testing.assert_allclose(r.uv, m.uv.numpy(), atol=1e-6)
    np.testing.assert_array_equal(r.faces_uv, m.faces_uv.numpy())
    np.testing.assert_array_equal(r.texture, tex)
    # independent reader: trimesh sees the texture and UVs
    tm = trimesh.load(p, process=False, force="mesh")
    assert isinstance(tm.visual, trimesh.visual.TextureVisuals)
    assert tm.visual.material.image.size == (96, 64)


def test_obj_vertex_colour_round_trip(tmp_path, face):
    m, cols, _ = face
    p = write_obj(tmp_path / "c.obj", m.mean_shape, m.faces, vertex_colors=cols)
    r = read_obj(p)
    np.testing.assert_allclose(r.vertex_colors, cols, atol=1e-4)
    tm = trimesh.load(p, process=False)
    np.testing.assert_allclose(tm.visual.vertex_colors[:, :3] / 255.0, cols, atol=1 / 255 + 1e-6)


def test_ply_round_trip_with_trimesh(tmp_path, face):
    m, cols, _ = face
    p = write_ply(tmp_path / "f.ply", m.mean_shape, m.faces, vertex_colors=cols, normals=m.vertex_normals(m.mean_shape[None])[0])
    r = read_ply(p)
    np.testing.assert_allclose(r.vertices, m.mean_shape.numpy(), atol=1e-6)
    np.testing.assert_array_equal(r.faces, m.faces.numpy())
    np.testing.assert_allclose(r.vertex_colors, np.round(cols * 255) / 255, atol=1e-9)


def test_glb_textured_round_trip(tmp_path, face):
    m, _, tex = face
    p = write_glb(tmp_path / "f.glb", m.mean_shape, m.faces, uv=m.uv, faces_uv=m.faces_uv, texture=tex)
    g = read_glb(p)
    assert isinstance(g.visual, trimesh.visual.TextureVisuals)
    img = np.asarray(g.visual.material.baseColorTexture.convert("RGB"))
    np.testing.assert_array_equal(img, tex)
    # every (vertex, uv) corner of the source maps to a glTF vertex with the same position and uv
    f, ft = m.faces.numpy(), m.faces_uv.numpy()
    pos = g.vertices[g.faces]  # (F, 3, 3)
    np.testing.assert_allclose(pos, m.mean_shape.numpy()[f], atol=1e-6)
    np.testing.assert_allclose(g.visual.uv[g.faces], m.uv.numpy()[ft], atol=1e-6)


def test_glb_vertex_colours(tmp_path, face):
    m, cols, _ = face
    p = write_glb(tmp_path / "v.glb", m.mean_shape, m.faces, vertex_colors=cols)
    g = read_glb(p)
    np.testing.assert_allclose(g.visual.vertex_colors[:, :3] / 255.0, np.round(cols * 255) / 255, atol=1e-9)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "x.txt"
    atomic_write_text(p, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(p, "wb") as fh:
            fh.write(b"partial new content")
            raise RuntimeError("killed mid-write")
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["x.txt"]  # no temp files left


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_dir(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    with pytest.raises(OutputError):
        atomic_write_text(d / "y.txt", "x")


def test_unwritable_target_gives_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("I am a file, not a folder")
    with pytest.raises(OutputError) as ei:
        atomic_write_text(blocker / "sub" / "y.txt", "x")
    assert "\n" not in str(ei.value)


# ----------------------------------------------------------------------------- several materials
@pytest.fixture(scope="module")
def two_materials(face):
    """The ICT face split in two materials (upper / lower half of the triangles), each textured."""
    from facegcn.io.textured import Material, TexturedMesh

    m, cols, tex = face
    f, ft = m.faces.numpy(), m.faces_uv.numpy()
    h = len(f) // 2
    g = np.random.default_rng(1)
    tex2 = g.uniform(0, 255, (32, 48, 3)).astype(np.uint8)
    normals = m.vertex_normals(m.mean_shape[None])[0].numpy()
    mats = (Material("face", f[:h], ft[:h], tex), Material("parts", f[h:], ft[h:], tex2))
    return TexturedMesh(m.mean_shape.numpy(), normals, cols.astype(np.float32), m.uv.numpy(), mats)


def test_obj_several_materials_round_trip(tmp_path, two_materials):
    mesh = two_materials
    p = write_obj(tmp_path / "mesh.obj", mesh)
    mtl = (tmp_path / "mesh.mtl").read_text()
    assert mtl.count("newmtl") == 2 and "map_Kd mesh.png" in mtl and "map_Kd mesh_parts.png" in mtl
    assert mtl.rstrip().splitlines()[-1].startswith("map_Kd")
    r = read_obj(p)
    assert r.material_names == ["face", "parts"]
    np.testing.assert_array_equal(r.faces, mesh.faces)
    h = len(mesh.materials[0].faces)
    np.testing.assert_array_equal(r.face_material, np.r_[np.zeros(h), np.ones(len(mesh.faces) - h)])
    np.testing.assert_array_equal(r.faces_uv, np.concatenate([m.faces_uv for m in mesh.materials]))
    np.testing.assert_array_equal(r.textures["face"], mesh.materials[0].texture)
    np.testing.assert_array_equal(r.textures["parts"], mesh.materials[1].texture)
    np.testing.assert_array_equal(r.texture, mesh.materials[0].texture)
    np.testing.assert_allclose(r.normals, mesh.normals, atol=1e-6)
    # independent reader: trimesh finds both materials with their images
    sc = trimesh.load(p, process=False, force="scene", group_material=True)
    images = sorted(g.visual.material.image.size for g in sc.geometry.values())
    assert images == [(48, 32), (96, 64)]


def test_glb_several_materials_round_trip(tmp_path, two_materials):
    import json
    import struct

    from facegcn.io.mesh import read_glb_parts

    mesh = two_materials
    p = write_glb(tmp_path / "mesh.glb", mesh)
    raw = p.read_bytes()
    n = struct.unpack("<I", raw[12:16])[0]
    doc = json.loads(raw[20:20 + n])
    prims = [pr for me in doc["meshes"] for pr in me["primitives"]]
    assert len(prims) == 2 and all("NORMAL" in pr["attributes"] and "TEXCOORD_0" in pr["attributes"] for pr in prims)
    assert len(doc["materials"]) == 2 and len(doc["images"]) == 2
    parts = read_glb_parts(p)
    assert list(parts) == ["face", "parts"]
    v, vn, vt = mesh.vertices, mesh.normals, mesh.uv
    for mat in mesh.materials:
        g = parts[mat.name]
        img = np.asarray(g.visual.material.baseColorTexture.convert("RGB"))
        np.testing.assert_array_equal(img, mat.texture)
        np.testing.assert_allclose(g.vertices[g.faces], v[mat.faces], atol=1e-6)
        np.testing.assert_allclose(g.visual.uv[g.faces], vt[mat.faces_uv], atol=1e-6)
        np.testing.assert_allclose(g.vertex_normals[g.faces], vn[mat.faces], atol=1e-4)
    whole = read_glb(p)
    assert len(whole.faces) == len(mesh.faces)
    assert len(whole.vertices) == sum(len(g.vertices) for g in parts.values())


def test_textured_mesh_and_keywords_are_exclusive(tmp_path, two_materials):
    with pytest.raises(TypeError):
        write_obj(tmp_path / "x.obj", two_materials, two_materials.faces)


def test_obj_rows_kernel_matches_the_percent_reference():
    """The numba row formatter writes what ``%`` writes: integers to the byte, ``%.Nf`` fields to
    within one unit of the last digit (float64 ties), signs of negative zero and tiny negatives
    kept; values it does not write (NaN, huge) fall back to the reference."""
    from facegcn.io.mesh import _rows, _rows_reference

    rng = np.random.default_rng(3)
    v = rng.normal(size=(5000, 3)) * 0.1
    v[:4] = [[-0.0, 0.0, -1e-9], [5e-7, 1.5e-6, -2.5e-7], [123456.7, -0.9999996, 0.9999994], [1.0, -1.0, 10.0]]
    for fmt, a in (("v %.6f %.6f %.6f", v), ("v %.6f %.6f %.6f %.4f %.4f %.4f", np.concatenate([v, rng.random(v.shape)], 1)),
                   ("vt %.6f %.6f", v[:, :2])):
        got, ref = _rows(fmt, a).split("\n"), _rows_reference(fmt, a).split("\n")
        assert len(got) == len(ref)
        for g, r in zip(got, ref):
            gs, rs = g.split(), r.split()
            assert gs[0] == rs[0] and [len(x) for x in gs] == [len(x) for x in rs]
            assert [x.startswith("-") for x in gs] == [x.startswith("-") for x in rs]
            np.testing.assert_allclose(np.array(gs[1:], float), np.array(rs[1:], float), rtol=0, atol=1.01e-4 if "%.4f" in fmt else 1.01e-6)
        assert sum(g != r for g, r in zip(got, ref)) <= 2  # ties only
    f = rng.integers(1, 30000, size=(3000, 9))
    assert _rows("f %d/%d/%d %d/%d/%d %d/%d/%d", f) == _rows_reference("f %d/%d/%d %d/%d/%d %d/%d/%d", f)
    assert _rows("f %d//%d %d//%d %d//%d", f[:, :6]) == _rows_reference("f %d//%d %d//%d %d//%d", f[:, :6])
    odd = np.array([[np.nan, 1.0], [1e13, -2.0]])
    assert _rows("x %.3f %.3f", odd) == _rows_reference("x %.3f %.3f", odd)
    assert _rows("v %.6f", np.zeros((0, 1))) == ""
