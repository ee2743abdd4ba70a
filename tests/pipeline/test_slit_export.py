"""A model without parts (BFM) is exported with its lip slit backed; the files read back in trimesh."""

from types import SimpleNamespace

import numpy as np
import torch
import trimesh

from facegcn.io.mesh import write_glb, write_obj
from facegcn.io.textured import Material, TexturedMesh
from facegcn.morphable.closure import MOUTH_COLOUR
from facegcn.pipeline.export import _backed_slit
from tests.morphable.test_closure import _full_grid, _slit_grid


def _mesh(v, f):
    n = np.tile(np.array([[0.0, 0.0, 1.0]], np.float32), (len(v), 1))
    return TexturedMesh(v.astype(np.float32), n, np.full((len(v), 3), 0.7, np.float32), None, (Material("face", f),))


def test_slit_is_backed_in_the_export_and_files(tmp_path):
    v, f, lm = _slit_grid()
    model = SimpleNamespace(landmark_idx=torch.as_tensor(lm))
    out = _backed_slit(model, _mesh(v, f))
    assert [m.name for m in out.materials] == ["face", "mouth"]
    assert len(out.vertices) == len(v) + 11  # 10 ring vertices + the centre
    np.testing.assert_allclose(out.vertex_colors[len(v):], np.tile(MOUTH_COLOUR, (11, 1)), atol=1e-6)
    np.testing.assert_array_equal(out.vertices[: len(v)], v.astype(np.float32))  # the face is untouched
    obj = trimesh.load(write_obj(tmp_path / "m.obj", out), process=False, force="mesh")
    assert len(obj.faces) == len(f) + 30
    glb = trimesh.load(write_glb(tmp_path / "m.glb", out), process=False)
    assert sum(len(g.faces) for g in glb.geometry.values()) == len(f) + 30
    unchanged = _backed_slit(model, _mesh(v, _full_grid()))
    assert len(unchanged.materials) == 1 and len(unchanged.vertices) == len(v)
