"""Colours (and settled geometry) of the parts that close the face.

References: analytic solutions of the skin fill (a constant stays constant; far from the seam
it reaches the median), a synthetic photo rendered with a known iris albedo, the vertex colours
read back from the baked atlas, and a brute-force ray–triangle test (Möller–Trumbore) for the
settled parts."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from facegcn.morphable import Coefficients
from facegcn.refine.parts_color import (
    DEFAULT_COLORS,
    IRIS_RADIUS,
    PUPIL_RADIUS,
    bake_parts_texture,
    eye_coordinates,
    part_colors,
    settle_parts,
    skin_fill,
)
from facegcn.render import bake_vertex_colors, rigid_transform, sample_texture, sh_shading


def _seam(ict):
    """Face vertices used by head-and-neck triangles."""
    p, V = ict.parts, ict.n_vertices
    f = p.faces[p.faces_of("head_and_neck")].ravel()
    return np.unique(f[f < V])


def test_skin_fill_keeps_a_constant(ict):
    c = np.array([0.7, 0.5, 0.4], np.float32)
    out = skin_fill(ict, np.tile(c, (ict.n_vertices, 1)))
    assert out.shape == (len(ict.parts.vertices_of("head_and_neck")), 3)
    np.testing.assert_allclose(out, np.tile(c, (len(out), 1)), atol=1e-5)


def test_skin_fill_fades_from_the_border_to_the_median(ict):
    base = np.array([0.7, 0.5, 0.4])
    face = np.tile(base, (ict.n_vertices, 1))
    seam = _seam(ict)
    face[seam] = base * 1.1  # a plausible, slightly brighter border
    out = skin_fill(ict, face)
    p, V = ict.parts, ict.n_vertices
    head = p.vertices_of("head_and_neck")
    v = np.concatenate([ict.mean_shape.numpy(), p.neutral])
    d = np.linalg.norm(v[head + V][:, None] - v[seam][None], axis=2).min(1)  # distance to the seam, dm
    offset = (out - base) @ np.ones(3) / (0.1 * base.sum())  # 1 at the border colour, 0 at the median
    bands = [offset[(d >= a) & (d < a + 0.1)].mean() for a in np.arange(0, 1.0, 0.1)]
    assert bands[0] > 0.7 and (np.diff(bands) < 0).all()  # fades with the distance to the face
    assert np.abs(offset[d > 0.9]).max() < 0.06  # 9 cm away: the median
    assert (offset > -1e-4).all() and (offset < 1 + 1e-4).all()  # maximum principle


def test_skin_fill_never_continues_hair_or_background(ict):
    base = np.array([0.7, 0.5, 0.4])
    face = np.tile(base, (ict.n_vertices, 1))
    seam = _seam(ict)
    face[seam[::2]] = [0.05, 0.04, 0.03]  # hair
    face[seam[1::2]] = [0.1, 0.8, 0.2]  # green background
    out = skin_fill(ict, face)
    np.testing.assert_allclose(out, np.tile(base, (len(out), 1)), atol=0.01)


def test_eye_coordinates(ict):
    p = ict.parts
    rho, front = eye_coordinates(p)
    assert np.isinf(rho[p.vertices_of("head_and_neck")]).all()
    for side in ("left", "right"):
        idx = p.vertices_of(f"eyeball_{side}")
        for shell in (1, 2):
            s = idx[p.eyeball_part[idx] == shell]
            assert ((rho[s] < PUPIL_RADIUS) & front[s]).sum() >= 10  # pupil on both shells
            assert ((rho[s] < IRIS_RADIUS) & front[s]).sum() >= 50
    left, right = (np.sort(rho[p.vertices_of(f"eyeball_{s}")]) for s in ("left", "right"))
    np.testing.assert_allclose(left, right, atol=2e-3)  # the eyes mirror each other


def test_parts_atlas_reads_back_every_triangle_colour(ict):
    """Per-group colours baked into the atlas, sampled (bilinearly, as a renderer does) at every
    triangle's UV centroid, give that group's colour back (also on ICT's sub-texel UV triangles:
    teeth, eyes, sockets); texels outside the charts hold a colour of the atlas, not a mix."""
    p, V = ict.parts, ict.n_vertices
    g = np.random.default_rng(0)
    group_col = g.uniform(0.1, 0.9, (len(p.group_names), 3)).astype(np.float32)
    col = np.concatenate([np.tile(group_col[0], (V, 1)), group_col[p.vertex_group]])
    near_rim = np.zeros(V + p.n_vertices, bool)  # 2 rings around the face's rim (a colour gradient)
    near_rim[:V] = True
    for _ in range(2):
        near_rim[p.faces[near_rim[p.faces].any(1)].ravel()] = True
    check = np.flatnonzero(~near_rim[p.faces].any(1))
    assert len(check) > 0.9 * len(p.faces)
    centroid = torch.as_tensor(p.uv[p.faces_uv[check]].mean(1))[None]
    want = col[p.faces[check, 0]]

    def error(tex):
        t = torch.as_tensor(tex).permute(2, 0, 1).float() / 255
        return np.abs(sample_texture(t, centroid)[0].numpy() - want).max(1)

    tex = bake_parts_texture(ict, col, 1024)
    assert error(tex).max() <= 2.5 / 255
    _, covered = bake_vertex_colors(col, p.faces, p.uv, p.faces_uv, size=1024, return_mask=True)
    mean = tex[covered].astype(np.float32).mean(0) / 255  # a plain bake's background colour
    outside = tex[~covered].astype(np.float32) / 255
    assert np.abs(outside - mean).max(1).min() > 0.02  # nearest-chart fill, not the mean


@pytest.fixture(scope="module")
def synthetic_rec(ict, syn):
    """A frontal neutral face rendered over green with a known blue-grey iris and a grey sclera."""
    c = Coefficients(id=torch.zeros(1, 100), exp=torch.zeros(1, 53), tex=torch.zeros(1, ict.layout.tex),
                     angles=torch.zeros(1, 3), sh=torch.zeros(1, 27), trans=torch.zeros(1, 3))
    p, V = ict.parts, ict.n_vertices
    shape = settle_parts(ict, ict.closed_shape(c.id, c.exp)[0])
    rho, front = eye_coordinates(p)
    iris = np.array([0.22, 0.32, 0.42], np.float32)
    col = np.tile(np.array([0.62, 0.6, 0.58], np.float32), (p.n_vertices, 1))
    col[(rho < IRIS_RADIUS * 1.05) & front] = iris
    albedo = torch.cat([ict.mean_albedo, torch.from_numpy(col)])[None]
    with torch.no_grad():
        verts = rigid_transform(torch.from_numpy(shape)[None], c.angles, c.trans)
        shaded = sh_shading(ict.closed_vertex_normals(verts), albedo, c.sh)
        img = syn.renderer(verts, shaded, faces=ict.closed_mesh_faces(),
                           background=torch.tensor([0.1, 0.8, 0.2])).image[0]
    rec = SimpleNamespace(model=ict, synthesis=syn, coarse=SimpleNamespace(coeffs=c),
                          observation=SimpleNamespace(image=img.clamp(0, 1)), albedo=ict.mean_albedo)
    return rec, iris


def test_iris_colour_comes_from_the_photo(synthetic_rec):
    rec, iris = synthetic_rec
    pc = part_colors(rec, exposure=np.ones(3))
    assert pc.observed_pixels["iris_left"] >= 12 and pc.observed_pixels["iris_right"] >= 12
    np.testing.assert_allclose(pc.iris, np.tile(iris, (2, 1)), atol=0.03)
    # the white of the eye around the iris is the photo's (greyer than the default)
    rho, front = eye_coordinates(rec.model.parts)
    t = rho / IRIS_RADIUS
    ring = front & (t > 1.4) & (t < 2.4)
    np.testing.assert_allclose(pc.colors[ring].mean(0), [0.62, 0.6, 0.58], atol=0.04)
    # photo colours move onto the face texture's scale: × its exposure
    brighter = part_colors(rec, exposure=np.full(3, 1.2))
    np.testing.assert_allclose(brighter.iris, 1.2 * pc.iris, atol=0.02)
    assert pc.colors.shape == (rec.model.parts.n_vertices, 3)
    assert 0 <= pc.colors.min() and pc.colors.max() <= 1


def test_default_and_plausible_colours(synthetic_rec):
    rec, _ = synthetic_rec
    p = rec.model.parts
    pc = part_colors(rec, exposure=np.ones(3), eye_photo=False)  # the procedural eye (pupil included)
    col = pc.colors
    head = col[p.vertices_of("head_and_neck")]
    skin = rec.model.mean_albedo.numpy()[rec.model.region("skin").numpy()]
    np.testing.assert_allclose(head.mean(0), np.median(skin, 0), atol=0.05)
    assert (head[:, 0] > head[:, 1]).all()  # skin, never the green background
    teeth = col[p.vertices_of("teeth")]
    assert (teeth.min(1) > 0.7).all() and (np.ptp(teeth, 1) < 0.12).all()  # off-white
    gums = col[p.vertices_of("gums_and_tongue")]
    assert (gums[:, 0] > gums[:, 1] + 0.2).all()  # pinkish red
    for g in ("mouth_socket", "eye_socket_left", "eye_socket_right"):
        assert (col[p.vertices_of(g)].max(1) < 0.3).all()  # dark
    rho, front = eye_coordinates(p)
    sclera = col[np.isfinite(rho) & ~front]
    # the photo's (grey) white of the eye, nearly neutral, never darker than the clamp
    assert (sclera.min(1) >= 0.45 - 1e-6).all() and (np.ptp(sclera, 1) <= 0.08 + 1e-6).all()
    pupil = col[(rho < 0.5 * 0.02) & front]
    assert (pupil.max(1) < 0.1).all()


def _first_hit(origins: np.ndarray, direction: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Möller–Trumbore: the smallest ``t > 0`` at which ``origin + t·direction`` hits a triangle
    (inf: none), per origin."""
    out = np.full(len(origins), np.inf)
    v0, e1, e2 = tris[:, 0], tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    pv = np.cross(direction, e2)
    det = (e1 * pv).sum(1)
    ok = np.abs(det) > 1e-12
    v0, e1, e2, pv, inv = v0[ok], e1[ok], e2[ok], pv[ok], 1.0 / det[ok]
    for i, o in enumerate(origins):
        tv = o - v0
        u = (tv * pv).sum(1) * inv
        q = np.cross(tv, e1)
        w = (q @ direction) * inv
        t = (e2 * q).sum(1) * inv
        t = t[(u >= 0) & (w >= 0) & (u + w <= 1) & (t > 1e-9)]
        out[i] = t.min() if t.size else np.inf
    return out


def test_settle_parts_moves_parts_behind_the_skin(ict):
    p, V = ict.parts, ict.n_vertices
    e = torch.zeros(1, 53)
    for k, w in {"mouthRollUpper": 0.7, "mouthSmile_L": 0.6, "mouthSmile_R": 0.6, "cheekSquint_L": 0.6,
                 "cheekSquint_R": 0.6}.items():
        e[0, ict.exp_names.index(k)] = w
    v = ict.closed_shape(torch.zeros(1, 100), e)[0].numpy().astype(np.float64)
    v[p.vertices_of("teeth", "gums_and_tongue") + V, 2] += 0.02  # and 2 mm more: a protruding jaw
    v = v.astype(np.float32).astype(np.float64)
    s = settle_parts(ict, v).astype(np.float64)
    moved = np.flatnonzero(np.abs(s - v).max(1) > 0)
    assert len(moved) > 0 and (moved >= V).all()
    np.testing.assert_array_equal(s[:, :2], v[:, :2])  # only z changes
    assert (s[moved, 2] < v[moved, 2]).all()
    skin = np.concatenate([ict.faces.numpy(), p.faces[p.faces_of("head_and_neck")]])
    idx = p.vertices_of("teeth", "gums_and_tongue", "eyeball_left", "eyeball_right") + V
    others = np.random.default_rng(0).choice(np.setdiff1d(idx, moved), 300, replace=False)
    down, up = np.array([0.0, 0.0, -1.0]), np.array([0.0, 0.0, 1.0])

    def poking(x, vertices):
        """How far each vertex is in front of the skin behind it (along +z; 0: behind the skin,
        or the nearest skin behind is more than 3 cm away: seen through an opening)."""
        tris = vertices[skin]
        behind = _first_hit(vertices[x], down, tris)
        in_front = np.isfinite(_first_hit(vertices[x], up, tris))
        return np.where((behind < 0.3) & ~in_front, behind, 0.0)

    before = poking(moved, v)
    assert (before > 0).sum() >= 20 and before.max() > 0.015  # millimetres through the lips / lids
    after = poking(moved, s)
    assert after.max() < 0.003  # at most 0.3 mm (a steep lip fold within a depth-map texel)
    assert (after > 0).sum() <= 0.2 * (before > 0).sum()
    assert not poking(others, v).any()  # what was left alone was not poking through


def test_the_visible_eyeball_takes_the_photo(synthetic_rec):
    # the synthetic photo's eyes are the known albedo (iris disc without a pupil, grey around it)
    # under a constant light: each eyeball vertex seen through the lids gets its own albedo back
    rec, iris = synthetic_rec
    p = rec.model.parts
    rho, front = eye_coordinates(p)
    want = np.tile(np.array([0.62, 0.6, 0.58], np.float32), (p.n_vertices, 1))
    want[(rho < IRIS_RADIUS * 1.05) & front] = iris
    photo = part_colors(rec, exposure=np.ones(3))
    pattern = part_colors(rec, exposure=np.ones(3), eye_photo=False)
    for side in ("left", "right"):
        idx = p.vertices_of(f"eyeball_{side}")
        assert photo.observed_pixels[f"eyeball_photo_{side}"] >= 40
        changed = np.abs(photo.colors[idx] - pattern.colors[idx]).max(1) > 1e-6
        assert (p.eyeball_part[idx[changed]] == 1).all() and front[idx[changed]].all()  # the outer shell's front
        seen = idx[changed]
        t = rho[seen] / IRIS_RADIUS
        inner = seen[(t < 0.85) | (t > 1.3)]  # away from the iris edge, which a 224² photo blurs
        err = np.abs(photo.colors[inner] - want[inner]).max(1)
        assert len(inner) >= 40 and np.quantile(err, 0.95) < 0.03
        pupil = idx[(rho[idx] < 0.5 * 0.02) & front[idx]]
        assert np.isin(pupil, seen).any()  # the photo has no pupil there: its iris colour is taken
        assert np.abs(photo.colors[pupil[np.isin(pupil, seen)]] - iris).max() < 0.05
        hidden = idx[~front[idx]]  # behind the eye centre: never seen, the pattern stays
        assert len(hidden) > 100
        np.testing.assert_array_equal(photo.colors[hidden], pattern.colors[hidden])


def test_parts_texture_fill_plan_cached_is_the_direct_fill(ict, tmp_path, monkeypatch):
    """The parts atlas with its layout-only fill plan computed, then read back from the cache,
    equals the fill written out directly (UV corners on uncovered texels, then every texel from
    its nearest filled one by scipy's distance transform)."""
    from scipy.ndimage import distance_transform_edt

    from facegcn.render import bake_vertex_colors, uv_to_pixel

    monkeypatch.setenv("FACEGCN_CACHE", str(tmp_path))
    p = ict.parts
    col = np.random.default_rng(4).random((ict.n_vertices + p.n_vertices, 3)).astype(np.float32)
    tex, mask = bake_vertex_colors(col, p.faces, p.uv, p.faces_uv, size=256, dilate=0, background=None, return_mask=True)
    tex, mask = tex.copy(), mask.copy()
    corners = np.unique(np.stack([p.faces.reshape(-1), p.faces_uv.reshape(-1)], 1), axis=0)
    xy = np.clip(np.round(uv_to_pixel(p.uv[corners[:, 1]], 256)).astype(np.int64), 0, 255)
    free = ~mask[xy[:, 1], xy[:, 0]]
    tex[xy[free, 1], xy[free, 0]] = np.round(col[corners[free, 0]] * 255).astype(np.uint8)
    mask[xy[free, 1], xy[free, 0]] = True
    iy, ix = distance_transform_edt(~mask, return_distances=False, return_indices=True)
    ref = tex[iy, ix]
    first = bake_parts_texture(ict, col, 256)
    assert len(list((tmp_path / "parts-fill").glob("*.npz"))) == 1
    assert np.array_equal(first, ref) and np.array_equal(bake_parts_texture(ict, col, 256), ref)
