"""UV texture baking. References are independent of the code under test: a brute-force numpy
point-in-triangle coverage counter and barycentric solve, scipy's ``map_coordinates`` for
bilinear read-back, ``skimage.transform.warp`` for the photo → texture warp, and a monkeypatched
``xatlas`` to prove the atlas cache is used."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import binary_dilation, map_coordinates

from facegcn.errors import FaceGCNError, InputError
from facegcn.io.texture import uv_atlas, uv_atlas_cache_path
from facegcn.morphable import load_model
from facegcn.render.bake import bake_vertex_colors, fill_gutter, sample_texture_at_vertices
from facegcn.render.bake_photo import bake_from_photo


# ----------------------------------------------------------------------------- references
def texel_px(uv, H, W):
    """Documented mapping: texel (r, c) centre <-> (u, v) = ((c + .5) / W, 1 - (r + .5) / H)."""
    uv = np.asarray(uv, np.float64)
    return np.stack([uv[:, 0] * W - 0.5, (1.0 - uv[:, 1]) * H - 0.5], 1)


def coverage_count(pxy, faces, H, W, eps):
    """Texels whose centre is inside each triangle by more than ``eps`` texels (``eps < 0``:
    inclusive with a tolerance), counted per texel; a brute-force loop over triangles."""
    cnt = np.zeros((H, W), np.int32)
    for tri in np.asarray(faces):
        a, b, c = pxy[tri]
        lo = np.floor(np.minimum(np.minimum(a, b), c) - 1).astype(int)
        hi = np.ceil(np.maximum(np.maximum(a, b), c) + 1).astype(int)
        x0, y0 = max(lo[0], 0), max(lo[1], 0)
        x1, y1 = min(hi[0], W - 1), min(hi[1], H - 1)
        if x0 > x1 or y0 > y1:
            continue
        ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
        area2 = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        if area2 == 0:
            continue
        s = np.sign(area2)
        inside = np.ones(xs.shape, bool)
        for p, q in ((a, b), (b, c), (c, a)):
            d = q - p
            dist = s * (d[0] * (ys - p[1]) - d[1] * (xs - p[0])) / np.hypot(d[0], d[1])
            inside &= dist > eps
        cnt[ys[inside], xs[inside]] += 1
    return cnt


def locate(points, pxy, faces):
    """Brute force: for each point (x, y) the first triangle containing it and its barycentrics."""
    A = pxy[faces]  # (F, 3, 2)
    d1, d2 = A[:, 1] - A[:, 0], A[:, 2] - A[:, 0]
    det = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    tri = np.full(len(points), -1)
    bary = np.zeros((len(points), 3))
    for s in range(0, len(points), 256):
        p = points[s : s + 256, None, :] - A[None, :, 0]  # (n, F, 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            b1 = (p[..., 0] * d2[:, 1] - p[..., 1] * d2[:, 0]) / det
            b2 = (d1[:, 0] * p[..., 1] - d1[:, 1] * p[..., 0]) / det
        b0 = 1 - b1 - b2
        ins = (b0 >= -1e-9) & (b1 >= -1e-9) & (b2 >= -1e-9) & (det != 0)
        first = np.where(ins.any(1), ins.argmax(1), -1)
        tri[s : s + 256] = first
        k = np.arange(len(first))
        bary[s : s + 256] = np.stack([b0[k, first], b1[k, first], b2[k, first]], 1)
    return tri, bary


def linear_field(v):
    """Colours in [0.1, 0.9], linear in the 3-D position."""
    v = np.asarray(v, np.float64)
    lo, hi = v.min(0), v.max(0)
    M = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]])
    return 0.1 + 0.8 * ((v - lo) / (hi - lo)) @ M.T


def bilinear_readback(tex_u8, uv):
    """scipy bilinear sampling of a uint8 texture at UVs (documented mapping, edge clamp)."""
    H, W, C = tex_u8.shape
    p = texel_px(uv, H, W)
    t = tex_u8.astype(np.float64) / 255.0
    return np.stack(
        [map_coordinates(t[..., k], [p[:, 1], p[:, 0]], order=1, mode="nearest") for k in range(C)], 1
    )


@pytest.fixture(scope="module")
def ict():
    m = load_model("ict")
    return dict(
        model=m,
        v=m.mean_shape.numpy().astype(np.float64),
        f=m.faces.numpy(),
        uv=m.uv.numpy().astype(np.float64),
        fuv=m.faces_uv.numpy(),
    )


@pytest.fixture(scope="module")
def ict512(ict):
    """Linear colour field baked at 512² and the brute-force coverage (shared by several tests)."""
    S = 512
    col = linear_field(ict["v"])
    tex, mask = bake_vertex_colors(col, ict["f"], ict["uv"], ict["fuv"], S, return_mask=True)
    pxy = texel_px(ict["uv"], S, S)
    strict = coverage_count(pxy, ict["fuv"], S, S, eps=1e-4)
    loose = coverage_count(pxy, ict["fuv"], S, S, eps=-1e-4)
    return dict(S=S, col=col, tex=tex, mask=mask, pxy=pxy, strict=strict, loose=loose)


# ----------------------------------------------------------------------------- (a) vertex colours
def test_two_triangle_quad_brute_force():
    H, W = 16, 24  # non-square on purpose
    uv = np.array([[0.1, 0.2], [0.9, 0.15], [0.8, 0.85], [0.2, 0.9]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    col = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    tex, mask = bake_vertex_colors(col, faces, uv, faces, (H, W), return_mask=True)
    assert tex.shape == (H, W, 3) and tex.dtype == np.uint8
    rr, cc = np.mgrid[0:H, 0:W]
    centres = np.stack([(cc + 0.5) / W, 1 - (rr + 0.5) / H], -1).reshape(-1, 2)
    # analytic barycentric colour at every texel centre inside the quad
    expected = np.full((H * W, 3), np.nan)
    for tri in faces:
        a, b, c = uv[tri]
        T = np.column_stack([b - a, c - a])
        l12 = np.linalg.solve(T, (centres - a).T).T
        bc = np.column_stack([1 - l12.sum(1), l12])
        inside = (bc >= -1e-12).all(1)
        expected[inside] = bc[inside] @ col[tri]
    inside = ~np.isnan(expected[:, 0])
    np.testing.assert_array_equal(mask.reshape(-1), inside)
    got = tex.reshape(-1, 3).astype(np.float64)
    assert np.abs(got[inside] - expected[inside] * 255).max() <= 0.5 + 1e-6
    # texels by hand: (row 4, col 7) -> uv (7.5/24, 1 - 4.5/16) in triangle (0, 2, 3);
    # (row 10, col 15) -> uv (15.5/24, 1 - 10.5/16) in triangle (0, 1, 2)
    for (r, c_), tri in (((4, 7), [0, 2, 3]), ((10, 15), [0, 1, 2])):
        p = np.array([(c_ + 0.5) / W, 1 - (r + 0.5) / H])
        a, b, c = uv[tri]
        l = np.linalg.solve(np.column_stack([b - a, c - a]), p - a)
        bc = np.array([1 - l.sum(), l[0], l[1]])
        assert (bc > 0).all()
        np.testing.assert_allclose(tex[r, c_] / 255.0, bc @ col[tri], atol=0.5 / 255 + 1e-9)
    # outside the quad: gutter rings then the mean colour; never black
    assert tex.reshape(-1, 3)[~inside].sum(1).min() > 0


def test_ict_linear_field_texels_and_round_trip(ict, ict512, artifacts_dir):
    S, tex, mask, col = ict512["S"], ict512["tex"], ict512["mask"], ict512["col"]
    # coverage agrees with the brute-force reference (up to texel centres on edges)
    assert np.all(mask[ict512["strict"] > 0]) and not np.any(mask[ict512["loose"] == 0])
    # texel values: analytic field at the texel's surface point (brute-force point location)
    g = np.random.default_rng(0)
    rs, cs = np.nonzero(mask)
    pick = g.choice(len(rs), 3000, replace=False)
    pts = np.stack([cs[pick], rs[pick]], 1).astype(np.float64)
    tri, bary = locate(pts, ict512["pxy"], ict["fuv"])
    assert (tri >= 0).all()
    want = np.einsum("nk,nkc->nc", bary, col[ict["f"][tri]])
    err_texel = np.abs(tex[rs[pick], cs[pick]] / 255.0 - want).max()
    assert err_texel <= 0.5 / 255 + 1e-6, err_texel * 255

    # read back at the vertices' UVs (scipy bilinear) on well-sampled interior corners: the 2x2
    # bilinear footprint is covered and the field changes < 3/255 per texel on the corner's faces
    uv, fuv, f = ict["uv"], ict["fuv"], ict["f"]
    p = ict512["pxy"]
    x0, y0 = np.floor(p[:, 0]).astype(int), np.floor(p[:, 1]).astype(int)
    foot = np.ones(len(uv), bool)
    for dy in (0, 1):
        for dx in (0, 1):
            foot &= ict512["strict"][np.clip(y0 + dy, 0, S - 1), np.clip(x0 + dx, 0, S - 1)] > 0
    A, X = p[fuv], col[f]
    G = np.linalg.solve(
        np.stack([A[:, 1] - A[:, 0], A[:, 2] - A[:, 0]], 1), np.stack([X[:, 1] - X[:, 0], X[:, 2] - X[:, 0]], 1)
    )
    grad = np.linalg.norm(G, axis=1).max(1)  # per texel
    corner_grad = np.zeros(len(uv))
    np.maximum.at(corner_grad, fuv.reshape(-1), np.repeat(grad, 3))
    interior = foot & (corner_grad * 255 < 3.0)
    assert interior.mean() > 0.9
    uv2v = np.zeros(len(uv), np.int64)
    uv2v[fuv.reshape(-1)] = f.reshape(-1)
    back = bilinear_readback(tex, uv)
    err = np.abs(back - col[uv2v]).max(1)
    assert err[interior].max() <= 2 / 255, err[interior].max() * 255
    # sample_texture_at_vertices agrees with the scipy read-back averaged over corners
    sv = sample_texture_at_vertices(tex, uv, fuv, f, len(col))
    vert_interior = np.ones(len(col), bool)
    np.logical_and.at(vert_interior, uv2v, interior)
    e_v = np.abs(sv - col).max(1)
    assert e_v[vert_interior].max() <= 2 / 255
    assert np.median(e_v) < 0.75 / 255
    Image.fromarray(tex).save(artifacts_dir / "texture_ict_linear_field_512.png")


# ----------------------------------------------------------------------------- (b) seams
def test_seams_no_black_within_two_texels(ict, ict512):
    S = ict512["S"]
    g = np.random.default_rng(1)
    col = g.uniform(0.3, 1.0, (len(ict["v"]), 3))
    tex = bake_vertex_colors(col, ict["f"], ict["uv"], ict["fuv"], S, dilate=2, background=0.0)
    charts = ict512["loose"] > 0
    ring2 = binary_dilation(charts, np.ones((3, 3), bool), iterations=2)
    assert tex[ring2].min() >= np.floor(0.3 * 255) - 1  # nothing black (nor darker) near charts
    assert (tex[~ring2].max(-1) == 0).all() and (~ring2).any()  # background=0 beyond: test bites
    # gutter values are convex combinations of chart colours (mean of filled neighbours)
    assert tex[ring2].max() <= 255
    # bilinear reads along every UV edge (seams included) never see black
    e = ict512["pxy"][ict["fuv"]]
    mids = (e + np.roll(e, -1, axis=1)) / 2
    uv_mid = np.stack([(mids[..., 0] + 0.5) / S, 1 - (mids[..., 1] + 0.5) / S], -1).reshape(-1, 2)
    assert bilinear_readback(tex, uv_mid).min() >= 0.3 - 1 / 255
    # a constant field gives an exactly constant texture (gutter and background included)
    const = bake_vertex_colors(np.tile([0.2, 0.6, 0.8], (len(col), 1)), ict["f"], ict["uv"], ict["fuv"], 128)
    assert (const == np.array([51, 153, 204], np.uint8)).all()


def test_fill_gutter_rings():
    tex = np.zeros((7, 7, 1), np.float32)
    mask = np.zeros((7, 7), bool)
    tex[3, 3], mask[3, 3] = 1.0, True
    tex[3, 4], mask[3, 4] = 0.0, True
    out = fill_gutter(tex, mask, dilate=1, background=-1.0)[..., 0]
    assert out[3, 2] == 1.0 and out[3, 5] == 0.0 and out[2, 3] == 0.5  # mean of filled neighbours
    assert out[0, 0] == -1.0 and out[1, 3] == -1.0  # beyond one ring: background
    out2 = fill_gutter(tex, mask, dilate=2, background="mean")[..., 0]
    assert out2[1, 3] == pytest.approx((1.0 + 0.5 + 0.5) / 3) and out2[0, 0] == 0.5


# ----------------------------------------------------------------------------- (c) photo
def _quad_grid(n):
    s = np.linspace(0.0, 1.0, n)
    uu, vv = np.meshgrid(s, s)
    uv = np.stack([uu.ravel(), vv.ravel()], 1)
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j + 1, (i + 1) * n + j
            faces += [[a, b, c], [a, c, d]]
    return uv, np.array(faces)


def _warp_reference(photo, A, t, S, mirrored=False):
    from skimage.transform import AffineTransform, warp

    # output (col c, row r) -> uv ((c + .5)/S, 1 - (r + .5)/S) [-> (1 - u, v)] -> photo A uv + t
    to_uv = np.array([[1 / S, 0, 0.5 / S], [0, -1 / S, 1 - 0.5 / S], [0, 0, 1]])
    flip = np.array([[-1, 0, 1], [0, 1, 0], [0, 0, 1]]) if mirrored else np.eye(3)
    aff = np.eye(3)
    aff[:2, :2], aff[:2, 2] = A, t
    M = aff @ flip @ to_uv
    return warp(photo, AffineTransform(matrix=M), output_shape=(S, S), order=1, mode="edge")


@pytest.fixture(scope="module")
def affine_case():
    g = np.random.default_rng(2)
    photo = g.uniform(0, 1, (120, 160, 3))
    A = np.array([[100.0, 20.0], [-15.0, -80.0]])
    t = np.array([30.0, 100.0])
    uv, faces = _quad_grid(9)
    return photo, A, t, uv, faces, uv @ A.T + t


def test_bake_from_photo_is_the_affine_warp(affine_case):
    photo, A, t, uv, faces, P = affine_case
    S = 64
    ref = _warp_reference(photo, A, t, S)
    vis = np.ones(len(uv))
    tex, w = bake_from_photo(photo, P, vis, faces, uv, faces, S, return_float=True)
    assert np.abs(tex - ref).max() < 1e-5
    assert np.allclose(w, 1.0)
    # uint8, channels-first torch input, foreshortening weight
    chw = torch.from_numpy(np.moveaxis(photo, -1, 0).copy())
    tex8, w8 = bake_from_photo(chw, torch.from_numpy(P), vis, faces, uv, faces, S, normals_z=np.full(len(uv), -0.5))
    assert tex8.dtype == np.uint8 and np.abs(tex8 - ref * 255).max() <= 0.5 + 1e-4
    assert np.allclose(w8, 0.5)


def test_bake_from_photo_mirror_and_fallback(affine_case):
    photo, A, t, uv, faces, P = affine_case
    S, n = 64, 9
    vis = (uv[:, 0] >= 0.5).astype(float)  # left half (u < 0.5) unseen
    col = np.rint(uv[:, 0] * (n - 1)).astype(int)
    row = np.rint(uv[:, 1] * (n - 1)).astype(int)
    mirror = row * n + (n - 1 - col)
    tex, w = bake_from_photo(photo, P, vis, faces, uv, faces, S, mirror=mirror, return_float=True)
    uc = (np.arange(S) + 0.5) / S
    left = uc < 0.5 - 1 / (n - 1)  # every vertex of the texel's triangle is unseen
    right = uc >= 0.5
    np.testing.assert_allclose(tex[:, left], _warp_reference(photo, A, t, S, True)[:, left], atol=1e-5)
    np.testing.assert_allclose(tex[:, right], _warp_reference(photo, A, t, S)[:, right], atol=1e-5)
    assert (w[:, left] == 0).all() and np.allclose(w[:, right], 1.0)
    # per-face visibility behaves the same on fully seen / unseen triangles
    fvis = vis[faces].min(1)
    tex_f, _ = bake_from_photo(photo, P, fvis, faces, uv, faces, S, mirror=mirror, return_float=True)
    np.testing.assert_allclose(tex_f[:, left], tex[:, left], atol=1e-5)
    np.testing.assert_allclose(tex_f[:, right], tex[:, right], atol=1e-5)
    # nothing seen, no mirror: the fallback texture (any size, resampled) fills everything
    fb = np.zeros((32, 32, 3), np.uint8)
    fb[:] = (10, 200, 30)
    tex0, w0 = bake_from_photo(photo, P, np.zeros(len(uv)), faces, uv, faces, S, fallback=fb)
    assert (tex0 == np.array([10, 200, 30], np.uint8)).all() and (w0 == 0).all()
    # half seen, no mirror, no fallback: the unseen half is extended from the seen one (no black)
    tex1, _ = bake_from_photo(photo, P, vis, faces, uv, faces, S)
    assert tex1[:, left].min(axis=-1).max() > 0 and np.isfinite(tex1.astype(float)).all()


def test_bake_from_photo_rendered_ict(ict, artifacts_dir):
    """End to end on a rendering: the visible side reads back the rendered colours; the hidden
    side is filled from the mirror vertices."""
    from facegcn.render import PerspectiveCamera, interpolate, rasterize, rigid_transform, vertex_visibility
    from facegcn.render import vertex_normals as vnormals

    m = ict["model"]
    col = linear_field(ict["v"])
    cam = PerspectiveCamera(focal=1015.0 * 256 / 224, center=(128.0, 128.0), size=(256, 256))
    verts = rigid_transform(m.mean_shape[None], torch.tensor([[0.0, 0.6, 0.0]]))
    vpx = cam.to_screen(verts)
    frags = rasterize(vpx, m.faces, cam.size)
    img = interpolate(torch.from_numpy(col).float(), m.faces, frags)[0]  # (H, W, 3), 0 background
    vis = vertex_visibility(vpx, m.faces, frags)[0].numpy().astype(float)
    nz = vnormals(verts, m.faces)[0, :, 2].numpy()
    mirror = m.mirror_index().numpy()
    tex, w = bake_from_photo(
        img, vpx[0].numpy(), vis, ict["f"], ict["uv"], ict["fuv"], 512, normals_z=nz, mirror=mirror,
        image_mask=frags.mask[0],
    )
    # every texel is a blend of field colours (>= 0.1 per channel): no background leaks in at
    # silhouettes or through the eye holes
    assert tex.min() >= np.floor(0.1 * 255) - 1
    back = sample_texture_at_vertices(tex, ict["uv"], ict["fuv"], ict["f"], len(col))
    # interior of the visible side: vertex and its 1-ring visible and facing the camera
    seen = vis > 0
    ring_ok = np.ones(len(col), bool)
    np.logical_and.at(ring_ok, ict["f"].reshape(-1), np.repeat(seen[ict["f"]].all(1), 3))
    good = seen & ring_ok & (np.abs(nz) > 0.5)
    assert good.sum() > 2000
    e = np.abs(back - col).max(1)[good]
    assert np.median(e) < 1.5 / 255 and np.percentile(e, 95) < 6 / 255
    # hidden vertices whose mirror is well seen get the mirror's colour
    hid = (~seen) & good[mirror] & ring_ok[mirror]
    hid &= np.isin(np.arange(len(col)), ict["f"])
    assert hid.sum() > 500
    e_m = np.abs(back - col[mirror]).max(1)[hid]
    assert np.median(e_m) < 2 / 255
    Image.fromarray((np.clip(img.numpy(), 0, 1) * 255).round().astype(np.uint8)).save(
        artifacts_dir / "texture_ict_photo_input_256.png"
    )
    Image.fromarray(tex).save(artifacts_dir / "texture_ict_from_photo_512.png")
    Image.fromarray((w * 255).round().astype(np.uint8)).save(artifacts_dir / "texture_ict_from_photo_weight_512.png")


# ----------------------------------------------------------------------------- (d) atlas
def test_uv_atlas_icosphere(monkeypatch, tmp_path):
    import trimesh

    pytest.importorskip("xatlas")
    monkeypatch.setenv("FACEGCN_CACHE", str(tmp_path / "cache"))
    ico = trimesh.creation.icosphere(subdivisions=4)  # 2562 vertices, 5120 faces
    v, f = np.asarray(ico.vertices), np.asarray(ico.faces)
    path = uv_atlas_cache_path(v, f)
    assert not path.exists()
    uv, fuv = uv_atlas(v, f)
    assert path.exists()
    assert fuv.shape == f.shape and uv.ndim == 2 and uv.shape[1] == 2
    assert uv.min() >= 0 and uv.max() <= 1 and np.isfinite(uv).all()
    # each UV vertex belongs to one mesh vertex; every face gets a proper UV triangle
    uv2v = np.full(len(uv), -1)
    uv2v[fuv.reshape(-1)] = f.reshape(-1)
    assert np.array_equal(uv2v[fuv], f)
    S = 1024
    pxy = texel_px(uv, S, S)
    a = pxy[fuv]
    area = 0.5 * ((a[:, 1, 0] - a[:, 0, 0]) * (a[:, 2, 1] - a[:, 0, 1]) - (a[:, 1, 1] - a[:, 0, 1]) * (a[:, 2, 0] - a[:, 0, 0]))
    assert (np.abs(area) > 0).all()
    # charts do not overlap: no texel strictly inside two UV triangles
    cnt = coverage_count(pxy, fuv, S, S, eps=1e-3)
    assert cnt.max() == 1 and (cnt > 0).mean() > 0.3
    # low stretch: UV area / 3-D area within a factor 2 of the median for 95 % of the faces
    ratio = np.abs(area) / ico.area_faces
    r = ratio / np.median(ratio)
    assert np.mean((r > 0.5) & (r < 2)) > 0.95
    # cache hit: same result without calling xatlas
    import xatlas

    real_atlas = xatlas.Atlas

    def boom(*a, **k):
        raise AssertionError("xatlas called despite the cache")

    monkeypatch.setattr(xatlas, "Atlas", boom)
    t0 = time.perf_counter()
    uv2, fuv2 = uv_atlas(v, f)
    assert time.perf_counter() - t0 < 1.0
    np.testing.assert_array_equal(uv2, uv)
    np.testing.assert_array_equal(fuv2, fuv)
    with pytest.raises(AssertionError):
        uv_atlas(v, f, cache=False)
    # a corrupt cache file is rebuilt, not trusted
    monkeypatch.setattr(xatlas, "Atlas", real_atlas)
    path.write_bytes(b"not an npz")
    uv3, fuv3 = uv_atlas(v, f)
    np.testing.assert_array_equal(fuv3, fuv)
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == {"uv", "faces_uv"}
    # the atlas bakes: a linear field reads back at the vertices
    col = linear_field(v)
    tex = bake_vertex_colors(col, f, uv, fuv, 512)
    back = sample_texture_at_vertices(tex, uv, fuv, f, len(v))
    assert np.median(np.abs(back - col)) < 1 / 255 and np.abs(back - col).max() < 8 / 255


# ----------------------------------------------------------------------------- errors
def test_bad_inputs_raise_one_line_errors():
    uv, faces = _quad_grid(3)
    with pytest.raises(InputError):
        bake_vertex_colors(np.ones((9, 3)), faces, uv, faces[:-1], 8)
    with pytest.raises(InputError):
        bake_vertex_colors(np.ones((9, 3)), faces + 100, uv, faces, 8)
    with pytest.raises(FaceGCNError) as ei:
        bake_from_photo(np.zeros((8, 8, 3)), uv * 7, np.ones(5), faces, uv, faces, 8)
    assert "\n" not in str(ei.value)
