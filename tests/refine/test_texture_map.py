"""The texel-resolution texture (refine.texture_map).

References: the blend's identities (alpha ≡ 1 / ≡ 0) and a step edge; a synthetic scene whose true
UV texture (base albedo × high-frequency detail) and light are known — composing from its image
with the true coefficients must recover that texture on the seen texels far better than the
per-vertex albedo can, which also checks that the photo is de-lit by the right SH irradiance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import minimum_filter

from facegcn.apps.evaluate.scenes import make_scene, scene_observation
from facegcn.coarse.fit import CoarseResult
from facegcn.coarse.synthesis import FaceSynthesis
from facegcn.io.imageops import to_uint8
from facegcn.render.bake import bake_vertex_colors, rasterize_uv
from facegcn.refine.texture_map import compose_texture, laplacian_blend


def test_blend_identities_and_a_seamless_step():
    g = torch.Generator().manual_seed(0)
    top, base = torch.rand(3, 64, 64, generator=g), torch.rand(3, 64, 64, generator=g)
    assert torch.allclose(laplacian_blend(top, base, torch.ones(1, 64, 64)), top, atol=1e-5)
    assert torch.allclose(laplacian_blend(top, base, torch.zeros(1, 64, 64)), base, atol=1e-5)
    # a constant 0.3 offset between two flat images, alpha a hard step: the multi-band result
    # ramps smoothly across the step (a hard composite jumps by 0.3 between two texels)
    a = torch.zeros(1, 64, 64)
    a[..., 32:] = 1
    out = laplacian_blend(torch.full((3, 64, 64), 0.8), torch.full((3, 64, 64), 0.5), a)
    jump = (out[0, 32, 1:] - out[0, 32, :-1]).abs().max()
    assert jump < 0.1
    assert out[0, 32, 0] == pytest.approx(0.5, abs=0.02) and out[0, 32, -1] == pytest.approx(0.8, abs=0.02)


def _blend_reference(top, base, alpha, levels=6, band_gain=None):
    """Burt & Adelson's collapse as written in the paper: each Laplacian band of both images
    mixed with the alpha's Gaussian level, three upsamplings a level."""
    import torch.nn.functional as F

    down = lambda x: F.avg_pool2d(x[None], 2, ceil_mode=True)[0]  # noqa: E731
    up = lambda x, like: F.interpolate(x[None], size=like.shape[-2:], mode="bilinear", align_corners=False)[0]  # noqa: E731
    g_t, g_b, g_a = [top], [base], [alpha]
    for _ in range(levels):
        if min(g_t[-1].shape[-2:]) < 4:
            break
        g_t.append(down(g_t[-1])), g_b.append(down(g_b[-1])), g_a.append(down(g_a[-1]))
    gain = (lambda i: 1.0) if band_gain is None else band_gain
    n = len(g_t) - 1
    out = g_a[n] * gain(n) * g_t[n] + (1 - g_a[n] * gain(n)) * g_b[n]
    for i in range(n - 1, -1, -1):
        a = g_a[i] * gain(i)
        out = up(out, g_t[i]) + a * (g_t[i] - up(g_t[i + 1], g_t[i])) + (1 - a) * (g_b[i] - up(g_b[i + 1], g_b[i]))
    return out


@pytest.mark.parametrize("size", [(64, 64), (45, 70)])
def test_blend_matches_the_three_upsampling_collapse(size):
    g = torch.Generator().manual_seed(2)
    top, base, a = torch.rand(3, *size, generator=g), torch.rand(3, *size, generator=g), torch.rand(1, *size, generator=g)
    for gain in (None, lambda i: 1.0 if i < 2 else 0.3):
        torch.testing.assert_close(laplacian_blend(top, base, a, band_gain=gain),
                                   _blend_reference(top, base, a, band_gain=gain), rtol=0, atol=2e-6)


def _psnr(a, b, m):
    mse = float(((a - b) ** 2)[m].mean())
    return 10 * np.log10(1.0 / mse)


def _true_scene(ict, seed: int):
    """A synthetic scene, its observation and the coarse result of its true coefficients."""
    syn = FaceSynthesis(ict)
    scene = make_scene(ict, syn, seed)
    obs = scene_observation(scene)
    with torch.no_grad():
        st = syn.state(scene.coeffs)
        coarse = CoarseResult(scene.coeffs, st, syn.render(st))
    return syn, scene, obs, coarse


@pytest.mark.slow
def test_recovers_a_known_texture_from_its_image(ict):
    syn, scene, obs, coarse = _true_scene(ict, 1)
    S = 512
    faces, uv, fuv = ict.faces.numpy(), ict.uv.numpy(), ict.faces_uv.numpy()
    base_uv = bake_vertex_colors(scene.albedo_base.numpy(), faces, uv, fuv, size=S).astype(np.float32) / 255
    truth = base_uv * scene.texture.permute(1, 2, 0).numpy()
    photo = to_uint8(scene.image.permute(1, 2, 0))
    # the truth's own scale (the exposure normalisation moves the light's mean into the albedo)
    gcn = compose_texture(ict, syn, obs, coarse, photo, scene.albedo_base, S, "gcn", exposure=False)
    new = compose_texture(ict, syn, obs, coarse, photo, scene.albedo_base, S, "albedo", exposure=False)
    seen = new.photo_alpha > 0.9
    assert seen.mean() > 0.05
    p_gcn, p_new = _psnr(gcn.image, truth, seen), _psnr(new.image, truth, seen)
    print(f"seen texels {seen.mean():.1%}: texture PSNR per-vertex {p_gcn:.2f} dB, composed {p_new:.2f} dB")
    assert p_new > p_gcn + 1.5
    assert new.photo_filter == "bicubic"  # the default
    bil = compose_texture(ict, syn, obs, coarse, photo, scene.albedo_base, S, "albedo", exposure=False,
                          photo_filter="bilinear")
    p_bil = _psnr(bil.image, truth, seen)
    print(f"photo read bilinearly {p_bil:.2f} dB, bicubic {p_new:.2f} dB")
    # this scene's image is a 224² render (already smooth at the texture's scale): both filters
    # recover it alike (measured 22.46 vs 22.52 dB); the gain of Catmull-Rom is on real photos'
    # finest detail (tests/render/test_render_sample_kernels.py, the evaluate command's detail ratio)
    assert abs(p_new - p_bil) < 0.3
    lit = compose_texture(ict, syn, obs, coarse, photo, scene.albedo_base, S, "lit", exposure=False)
    assert float(np.abs(lit.image - new.image)[seen].mean()) > 0.02  # the lit texture keeps the shading
    assert np.isfinite(new.image).all() and new.image.min() >= 0 and new.image.max() <= 1


@pytest.mark.slow
def test_exposure_removes_the_light_scale(ict):
    """The albedo × light ambiguity: under a constant light E (DC-only SH) a fit finds the albedo
    ``a / E``. The exposure-normalised texture is then the same whatever E (photo and base both
    come back to the photo's scale); without the normalisation it is divided by the light."""
    from facegcn.render import sh_irradiance
    from dataclasses import replace

    syn = FaceSynthesis(ict)
    scene = make_scene(ict, syn, 2)
    obs = scene_observation(scene)
    photo = to_uint8(scene.image.permute(1, 2, 0))
    out = {}
    for name, dc in (("dim", (0.6, 0.7, 0.9)), ("bright", (1.3, 1.1, 1.0))):
        sh = torch.zeros(1, 27)
        sh[0, [0, 9, 18]] = torch.tensor(dc)
        c = replace(scene.coeffs, sh=sh)
        with torch.no_grad():
            st = syn.state(c)
            coarse = CoarseResult(c, st, syn.render(st))
            e = sh_irradiance(st.normals, sh)[0]  # (V, 3), constant over V
        assert float((e - e[0]).abs().max()) < 1e-5
        alb = scene.albedo_base * 0.5 / e[0]  # what a fit under this light finds
        out[name] = (compose_texture(ict, syn, obs, coarse, photo, alb, 256, "albedo"),
                     compose_texture(ict, syn, obs, coarse, photo, alb, 256, "albedo", exposure=False), e[0].numpy())
    seen = (out["dim"][0].photo_alpha > 0.9) & (out["bright"][0].photo_alpha > 0.9)
    assert seen.mean() > 0.03
    a, b = out["dim"][0].image[seen], out["bright"][0].image[seen]
    assert np.abs(a - b).mean() < 0.01  # the same texture under either light
    ra, rb = out["dim"][1].image[seen].mean(0), out["bright"][1].image[seen].mean(0)
    expect = out["bright"][2] / out["dim"][2]
    assert np.abs(ra / rb / expect - 1).max() < 0.05  # unnormalised: ÷ the light


def test_the_photo_is_divided_by_the_floored_irradiance():
    from facegcn.refine.texture_map import _observe

    # one triangle seen head-on (vis 1, cos 1) on a flat grey photo; per-vertex columns:
    # photo xy, crop xy, vis, cos, irradiance rgb
    photo = np.full((8, 8, 3), 0.5, np.float32)
    region = np.ones((8, 8, 1), np.float32)
    block = np.array([[2, 2, 2, 2, 1, 1, 0.9, 0.3, 0.1],
                      [5, 2, 5, 2, 1, 1, 0.9, 0.3, 0.1],
                      [2, 5, 2, 5, 1, 1, 0.9, 0.3, 0.1]], np.float32)
    corners, bary = np.array([[0, 1, 2]]), np.array([[0.2, 0.3, 0.5]], np.float32)
    floor = np.array([0.6, 0.6, 0.6])
    c, w, irr = _observe(block, corners, bary, photo, region, 0.25, 0.6, "bicubic", floor)
    np.testing.assert_allclose(irr[0], [0.9, 0.6, 0.6], rtol=1e-6)  # E below the floor is raised to it
    np.testing.assert_allclose(c[0], 0.5 / np.array([0.9, 0.6, 0.6]), rtol=1e-6)
    assert w[0] == pytest.approx(1.0)


@pytest.mark.parametrize("photo_filter", ["bicubic", "bilinear"])
@pytest.mark.parametrize("photo_shape", [(1, 1, 3), (23, 37, 3)])
@pytest.mark.parametrize("floor", [0.05, np.array([0.3, 0.1, 0.6])])
def test_the_fused_observation_matches_its_numpy_form(photo_filter, photo_shape, floor):
    from facegcn.refine.texture_map import _observe, _observe_reference

    rng = np.random.default_rng(5)
    H, W = photo_shape[:2]
    photo = rng.random(photo_shape).astype(np.float32)
    region = rng.random((16, 16, 1)).astype(np.float32)
    V, N = 40, 4000
    # photo and crop points partly outside their images; vis and cos across their clip limits;
    # irradiance partly below the floor, some of it negative
    block = np.concatenate([rng.uniform(-3, W + 3, (V, 1)), rng.uniform(-3, H + 3, (V, 1)),
                            rng.uniform(-3, 19, (V, 2)), rng.uniform(-0.3, 1.3, (V, 1)),
                            rng.uniform(-0.2, 1.0, (V, 1)), rng.uniform(-0.2, 1.5, (V, 3))], 1).astype(np.float32)
    corners = rng.integers(0, V, (N, 3))
    bary = rng.dirichlet(np.ones(3), N).astype(np.float32)
    got = _observe(block, corners, bary, photo, region, 0.25, 0.6, photo_filter, floor)
    want = _observe_reference(block, corners, bary, photo, region, 0.25, 0.6, photo_filter, floor)
    for g, r in zip(got, want):
        assert g.dtype == r.dtype == np.float64 and g.shape == r.shape
        assert np.isfinite(g).all()
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)
    w = got[1]
    assert (w == 0).any() and (w > 0).any() and (got[2] >= np.broadcast_to(floor, (3,))).all()
    # a subset of the points, at remapped (mirrored) vertices: those points as if evaluated on
    # the remapped corners, zeros elsewhere
    remap, rows = rng.permutation(V), np.flatnonzero(rng.random(N) < 0.3)
    sub = _observe(block, corners, bary, photo, region, 0.25, 0.6, photo_filter, floor, remap=remap, rows=rows)
    full = _observe_reference(block, remap[corners], bary, photo, region, 0.25, 0.6, photo_filter, floor)
    ref = _observe_reference(block, corners, bary, photo, region, 0.25, 0.6, photo_filter, floor, remap=remap,
                             rows=rows)
    rest = np.setdiff1d(np.arange(N), rows)
    for s, f, r in zip(sub, full, ref):
        np.testing.assert_allclose(s[rows], f[rows], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s, r, rtol=1e-5, atol=1e-6)
        assert not s[rest].any()


@pytest.mark.slow
def test_partial_delighting_is_the_geometric_mean_of_none_and_all(ict):
    """``delight = s`` multiplies the blended albedo by ``(E / ḡ)^(1-s)``: s = 0 is the lit texture
    exactly, s = 1 the default composition exactly, and (no floor, away from clipping) s = 0.5 is
    the geometric mean of the two on every covered texel: photo layer and model base alike."""
    syn, scene, obs, coarse = _true_scene(ict, 1)
    photo = to_uint8(scene.image.permute(1, 2, 0))
    kw = dict(shade_floor=0.0)
    full = compose_texture(ict, syn, obs, coarse, photo, scene.albedo_base, 256, "albedo", **kw)
    assert np.array_equal(full.image, compose_texture(ict, syn, obs, coarse, photo, scene.albedo_base, 256,
                                                      "albedo", delight=1.0, **kw).image)
    none = compose_texture(ict, syn, obs, coarse, photo, scene.albedo_base, 256, "albedo", delight=0.0, **kw)
    half = compose_texture(ict, syn, obs, coarse, photo, scene.albedo_base, 256, "albedo", delight=0.5, **kw)
    assert half.delight == 0.5 and full.delight == 1.0
    lit = compose_texture(ict, syn, obs, coarse, photo, scene.albedo_base, 256, "lit", **kw)
    np.testing.assert_allclose(none.image, lit.image, atol=1e-6)
    assert (full.photo_alpha < 0.5).sum() > 200  # model-filled texels are part of the check
    covered = rasterize_uv(ict.uv.cpu().numpy(), ict.faces_uv.cpu().numpy(), 256)[0] >= 0
    inner = minimum_filter(covered, size=5)  # away from the layout's gutter
    ok = inner & (full.image.max(-1) < 0.98) & (none.image.max(-1) < 0.98) & (full.image.min(-1) > 0.02)
    assert ok.sum() > 200
    gm = np.sqrt(full.image[ok] * none.image[ok])
    shading = np.abs(np.log(full.image[ok] / none.image[ok]))  # log(ḡ / E) per texel
    err = np.abs(np.log(half.image[ok] / gm))
    print(f"|log ḡ/E| median {np.median(shading):.4f}; |log half/geometric mean| median {np.median(err):.4f}")
    assert np.median(shading) > 0.05  # the three differ: there is shading to remove
    assert np.quantile(err, 0.99) < 0.01 * np.median(shading)
    with pytest.raises(Exception, match="delight"):
        compose_texture(ict, syn, obs, coarse, photo, scene.albedo_base, 64, "albedo", delight=1.5)


def test_photo_islands_are_dropped_with_their_fringe():
    """A small blob of photo alpha away from the face (a skin-coloured highlight in a fringe) goes,
    soft edge included; the face's own region and a second large region stay bitwise."""
    from scipy.ndimage import gaussian_filter

    from facegcn.refine.texture_map import drop_photo_islands

    a = np.zeros((128, 128), np.float32)
    a[60:120, 10:118] = 1.0  # the face
    a[5:40, 70:110] = 1.0  # a second large region (> 5 % of the face): kept
    a[10:14, 20:24] = 1.0  # 16 texels: an island
    a = np.clip(gaussian_filter(a, 1.5), 0, 1).astype(np.float32)
    out = drop_photo_islands(a)
    near_island = np.zeros_like(a, bool)
    near_island[4:20, 14:30] = True
    assert a[near_island].max() > 0.5 and out[near_island].max() == 0.0
    assert np.array_equal(out[~near_island], a[~near_island])
    one = np.clip(gaussian_filter((np.arange(128)[:, None] > 60) * np.ones((1, 128)), 2.0), 0, 1).astype(np.float32)
    assert np.array_equal(drop_photo_islands(one), one)  # a single region: unchanged
