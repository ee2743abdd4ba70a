"""The GLB container written by facegcn.io.gltf: layout checked against the glTF 2.0 rules here,
content read back by trimesh (an independent parser) in test_mesh.py."""

import json
import struct

import numpy as np

from facegcn.io.gltf import glb_bytes
from facegcn.io.textured import Material, TexturedMesh


def _square(textured: bool) -> TexturedMesh:
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]], np.int64)
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    tex = np.zeros((2, 2, 3), np.uint8)
    mat = Material("face", f, f if textured else None, tex if textured else None)
    return TexturedMesh(v, np.tile([[0, 0, 1]], (4, 1)).astype(np.float32), np.full((4, 3), 0.5, np.float32), uv,
                        (mat,))


def _parse(data: bytes):
    magic, version, length = struct.unpack("<4sII", data[:12])
    n_json, kind = struct.unpack("<I4s", data[12:20])
    doc = json.loads(data[20:20 + n_json])
    n_bin, kind2 = struct.unpack("<I4s", data[20 + n_json:28 + n_json])
    return magic, version, length, kind, kind2, n_json, n_bin, doc, data[28 + n_json:28 + n_json + n_bin]


def test_container_layout_and_accessors():
    png = b"\x89PNG fake bytes"  # stored verbatim: the writer does not decode it
    data = glb_bytes(_square(True), {"face": png})
    magic, version, length, kind, kind2, n_json, n_bin, doc, binary = _parse(data)
    assert (magic, version, kind, kind2) == (b"glTF", 2, b"JSON", b"BIN\0")
    assert length == len(data) and n_json % 4 == 0 and n_bin % 4 == 0 and len(data) % 4 == 0
    assert doc["buffers"] == [{"byteLength": n_bin}]
    for view in doc["bufferViews"]:
        assert view["byteOffset"] % 4 == 0 and view["byteOffset"] + view["byteLength"] <= n_bin
    prim = doc["meshes"][0]["primitives"][0]
    pos = doc["accessors"][prim["attributes"]["POSITION"]]
    assert pos["min"] == [0.0, 0.0, 0.0] and pos["max"] == [1.0, 1.0, 0.0] and pos["count"] == 4
    # the UVs are flipped to glTF's top-left origin: (u, 1 - v)
    acc = doc["accessors"][prim["attributes"]["TEXCOORD_0"]]
    view = doc["bufferViews"][acc["bufferView"]]
    uv = np.frombuffer(binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]], np.float32).reshape(-1, 2)
    got = {tuple(r) for r in uv.tolist()}
    assert got == {(0.0, 1.0), (1.0, 1.0), (1.0, 0.0), (0.0, 0.0)}
    img_view = doc["bufferViews"][doc["images"][0]["bufferView"]]
    assert binary[img_view["byteOffset"]:img_view["byteOffset"] + img_view["byteLength"]] == png
    idx = doc["accessors"][prim["indices"]]
    assert idx["componentType"] == 5125 and idx["count"] == 6
    mat = doc["materials"][prim["material"]]
    assert mat["pbrMetallicRoughness"]["metallicFactor"] == 0.0


def test_vertex_colours_are_normalised_bytes():
    doc, binary = _parse(glb_bytes(_square(False), {}))[7:]
    prim = doc["meshes"][0]["primitives"][0]
    acc = doc["accessors"][prim["attributes"]["COLOR_0"]]
    assert acc["componentType"] == 5121 and acc["normalized"] and acc["type"] == "VEC4"
    view = doc["bufferViews"][acc["bufferView"]]
    rgba = np.frombuffer(binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]], np.uint8).reshape(-1, 4)
    np.testing.assert_array_equal(rgba, np.tile([128, 128, 128, 255], (4, 1)))
    assert "images" not in doc
