"""The parts that close the ICT face (head, sockets, mouth interior, eyeballs).

References: the whole ICT-FaceKit model read directly from its npz (an independent numpy
evaluation of neutral + Σ id·Δ + Σ exp·Δ), the polygon counts of its groups, the mesh's own
edge topology, and the UV raster."""

import numpy as np
import pytest
import torch

from facegcn.morphable import PART_GROUPS, ModelData, MorphableModel
from facegcn.morphable.ict import load_ict, vendored_path
from facegcn.morphable.parts import ATLAS_CELLS, DELTA_STEP_CM, atlas_tile, vendored_parts_path
from facegcn.render import rasterize_uv

from tests.conftest import SHARED

FULL = SHARED / "assets" / "ict-facekit" / "ict_face_model_full.npz"


@pytest.fixture(scope="module")
def full():
    if not FULL.exists():
        pytest.skip("whole-head ICT-FaceKit asset not found beside the repository")
    with np.load(FULL, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def _kept(full):
    """Vertex range of the face + the kept groups in the whole model (they are its first groups)."""
    names = [str(n) for n in full["group_names"]]
    assert names[: len(PART_GROUPS) + 1] == ["face", *PART_GROUPS]
    return int(full["group_vertex_ranges"][len(PART_GROUPS), 1]) + 1


def test_file_is_small():
    assert vendored_parts_path().stat().st_size < 8e6


def test_face_is_the_full_models_first_vertices(ict, full):
    """The embedded face = the whole model's vertices 0–9408, in cm / 10, minus their centroid."""
    V = ict.n_vertices
    assert V == 9409 and tuple(full["group_vertex_ranges"][0]) == (0, V - 1)
    neutral = full["neutral_cm"][:V].astype(np.float64)
    ref = (neutral - neutral.mean(0)) / 10.0
    np.testing.assert_allclose(ict.mean_shape.numpy(), ref, atol=5e-6)  # float32 recentring
    np.testing.assert_array_equal(ict.landmark_idx.numpy(), full["landmarks68"])


def test_closed_shape_equals_the_full_model(ict, full):
    """closed_shape at random coefficients = the whole model evaluated in float64 from its npz,
    within the storage error: float16 face deltas (half an ulp: 2⁻¹¹ relative) and int16 part
    deltas (half a step), summed over the coefficients."""
    V, last = ict.n_vertices, _kept(full)
    assert ict.n_closed_vertices == last
    neutral = full["neutral_cm"][:last].astype(np.float64)
    idd = full["identity_deltas_cm"][:, :last].astype(np.float64)
    exd = full["expression_deltas_cm"][:, :last].astype(np.float64)
    centre = neutral[:V].mean(0)
    g = np.random.default_rng(7)
    for _ in range(3):
        a, b = g.standard_normal(100), g.uniform(0, 1, 53)
        ref_cm = neutral + np.einsum("k,kvc->vc", a, idd) + np.einsum("k,kvc->vc", b, exd)
        ta, tb = torch.tensor(a, dtype=torch.float32)[None], torch.tensor(b, dtype=torch.float32)[None]
        got = ict.closed_shape(ta, tb)[0].double().numpy()
        assert torch.equal(ict.closed_shape(ta, tb)[:, :V], ict.shape(ta, tb))
        err_cm = np.abs(got * 10.0 - (ref_cm - centre))
        tol_face = (np.einsum("k,kvc->vc", np.abs(a), np.abs(idd[:, :V]))
                    + np.einsum("k,kvc->vc", np.abs(b), np.abs(exd[:, :V]))) * 2.0**-11
        tol_parts = (np.abs(a).sum() + np.abs(b).sum()) * DELTA_STEP_CM / 2
        slack = 2e-4  # float32 arithmetic on values up to ~20 cm
        assert (err_cm[:V] <= tol_face + slack).all(), (err_cm[:V] - tol_face).max()
        assert (err_cm[V:] <= tol_parts + slack).all(), (err_cm[V:].max(), tol_parts)
        assert err_cm[V:].max() < 0.02  # 0.2 mm anywhere on the parts


def test_groups_and_triangles_match_the_full_model(ict, full):
    p, V = ict.parts, ict.n_vertices
    ranges, pr = full["group_vertex_ranges"], full["group_polygon_ranges"]
    assert p.group_names == PART_GROUPS and p.n_vertices == _kept(full) - V
    for k, name in enumerate(PART_GROUPS):
        a, b = ranges[k + 1]
        np.testing.assert_array_equal(p.vertices_of(name), np.arange(a, b + 1) - V)
        polys = full["faces"][pr[k + 1, 0]: pr[k + 1, 1] + 1]
        n_tri = len(polys) + int((polys[:, 3] >= 0).sum())  # quads → 2 triangles
        assert len(p.faces_of(name)) == n_tri, name
        # the triangles use exactly the polygons' vertices (closed indices = the whole model's)
        np.testing.assert_array_equal(np.unique(p.faces[p.faces_of(name)]), np.unique(polys[polys >= 0]))
    for side in ("left", "right"):
        idx = p.vertices_of(f"eyeball_{side}")
        for part, code in (("sclera", 1), ("iris", 2)):
            j = [str(n) for n in full["eyeball_part_names"]].index(f"{part}_{side}")
            a, b = full["eyeball_part_vertex_ranges"][j]
            np.testing.assert_array_equal(idx[p.eyeball_part[idx] == code] + V, np.arange(a, b + 1))
    assert (p.eyeball_part[p.vertices_of(*PART_GROUPS[:6])] == 0).all()


def test_skin_and_sockets_close_the_face_up_to_the_neck(ict):
    """Face + head and neck + mouth / eye sockets: a manifold surface whose only boundary is the
    neck's cut (the face alone has 4 boundary loops: outline, mouth, 2 eyes)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    p = ict.parts
    n = ict.n_closed_vertices

    def boundary_loops(f):
        e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1)
        u, c = np.unique(e, axis=0, return_counts=True)
        assert (c <= 2).all()  # manifold edges
        b = u[c == 1]
        _, lab = connected_components(sp.coo_matrix((np.ones(len(b)), (b[:, 0], b[:, 1])), shape=(n, n)),
                                      directed=False)
        return len(np.unique(lab[np.unique(b)]))

    face = ict.faces.numpy()
    assert boundary_loops(face) == 4
    skin = p.faces[p.faces_of("head_and_neck", "mouth_socket", "eye_socket_left", "eye_socket_right")]
    assert boundary_loops(np.concatenate([face, skin])) == 1
    closed = ict.closed_mesh_faces().numpy()
    np.testing.assert_array_equal(closed[: ict.n_faces], face)
    assert closed.max() == n - 1


def test_atlas_cells_do_not_overlap(ict):
    """Every group's UV triangles lie in its own atlas cell, and the covered texels of a group
    equal its UV area (no two triangles share texels; ICT's inner iris shell overlaps itself by
    ~1 %, hidden behind the sclera shell)."""
    p = ict.parts
    uv = p.uv.astype(np.float64)
    assert 0 <= uv.min() and uv.max() <= 1
    for name in PART_GROUPS:
        fi = p.faces_of(name)
        parts = p.eyeball_part[p.faces[fi, 0] - ict.n_vertices]
        for part in np.unique(parts):
            u0, v0, s = ATLAS_CELLS[atlas_tile(name, int(part))]
            t = uv[p.faces_uv[fi[parts == part]]].reshape(-1, 2)
            assert (t >= [u0, v0]).all() and (t <= [u0 + s, v0 + s]).all(), name
    S = 1024
    tri, _ = rasterize_uv(uv, p.faces_uv, S)
    f = p.faces_uv
    d1, d2 = uv[f[:, 1]] - uv[f[:, 0]], uv[f[:, 2]] - uv[f[:, 0]]
    area = 0.5 * np.abs(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0])
    for name in PART_GROUPS:
        fi = p.faces_of(name)
        covered = np.isin(tri, fi).sum() / S**2
        assert covered == pytest.approx(area[fi].sum(), rel=0.01 if name.startswith("eyeball") else 2e-3), name


def test_closed_normals_are_unit_and_outward(ict):
    v = ict.closed_shape(torch.zeros(1, 100), torch.zeros(1, 53))
    n = ict.closed_vertex_normals(v)[0]
    torch.testing.assert_close(n.norm(dim=-1), torch.ones(ict.n_closed_vertices), atol=1e-5, rtol=0)
    head = torch.as_tensor(ict.parts.vertices_of("head_and_neck") + ict.n_vertices)
    back = head[v[0, head, 2].argmin()]
    assert n[back, 2] < -0.8  # the back of the head faces away from the camera
    # the skin's normals do not see the sockets: face normals are the face+head surface's
    np.testing.assert_allclose(n[: ict.n_vertices, 2].mean(), ict.vertex_normals(v[:, : ict.n_vertices])[0, :, 2].mean(),
                               atol=0.02)


def test_models_without_parts():
    """BFM-like models (no parts) and other ICT-format files: parts None, closed == face."""
    V = 70
    g = np.random.default_rng(0)
    data = ModelData(name="toy", mean_shape=g.standard_normal((V, 3)), id_basis=g.standard_normal((3 * V, 2)),
                     exp_basis=g.standard_normal((3 * V, 1)), mean_albedo=np.full((V, 3), 0.5),
                     albedo_basis=np.zeros((3 * V, 1)), faces=np.array([[0, 1, 2], [2, 3, 4]]),
                     landmarks68=np.arange(68))
    m = MorphableModel(data)
    assert m.parts is None and m.n_closed_vertices == V
    a, b = torch.randn(1, 2), torch.randn(1, 1)
    assert torch.equal(m.closed_shape(a, b), m.shape(a, b))
    assert torch.equal(m.closed_mesh_faces(), m.faces)
    assert load_ict(vendored_path()).parts is None  # a file path: no embedded parts unless asked
    assert load_ict(vendored_path(), parts=True).parts is not None
