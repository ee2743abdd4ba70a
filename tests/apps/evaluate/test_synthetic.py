"""The synthetic ground-truth scenes: determinism, internal consistency of the rendered image with
the true per-vertex texture (an independent bilinear read-out of the image at the projected
vertices), the detector-free observation, and a short end-to-end benchmark run."""

import csv

import numpy as np
import pytest
import torch

from facegcn.apps.evaluate.scenes import make_scene, procedural_texture, sample_coefficients, scene_observation
from facegcn.apps.evaluate.scenes import photo_skin_detail
from facegcn.apps.evaluate.synthetic import run_synthetic, uv_texture_truth
from tests.apps.evaluate.conftest import tiny_config


@pytest.fixture(scope="module")
def scene(ict, syn):
    return make_scene(ict, syn, 3)


def test_scenes_are_deterministic(ict, syn, scene):
    again = make_scene(ict, syn, 3)
    assert torch.equal(again.image, scene.image)
    assert torch.equal(again.albedo_true, scene.albedo_true)
    assert not torch.equal(make_scene(ict, syn, 4).image, scene.image)
    c1, c2 = sample_coefficients(ict, 9), sample_coefficients(ict, 9)
    assert torch.equal(ict.join(c1), ict.join(c2))
    assert torch.equal(procedural_texture(ict, 5), procedural_texture(ict, 5))


def test_scene_contents(ict, scene):
    img = scene.image
    assert img.shape == (3, 224, 224) and float(img.min()) >= 0 and float(img.max()) <= 1
    assert torch.allclose(img * 255, torch.round(img * 255), atol=1e-3)  # 8-bit quantised
    lm = scene.landmarks
    assert lm.shape == (68, 2) and (lm > 0).all() and (lm < 223).all()
    assert 0.2 < float(scene.mask.mean()) < 0.9
    assert set(scene.labels.unique().tolist()) <= {0, 1, 2, 3, 4, 5}
    assert torch.equal(scene.labels > 0, scene.mask > 0.5)
    assert scene.visible.sum() > 2000
    # high-frequency detail: the true texture deviates from the smooth 3DMM albedo
    ratio = (scene.albedo_true / scene.albedo_base.clamp_min(1e-3))[scene.visible]
    assert 0.02 < float(ratio.std()) < 0.3
    # background outside the face is not flat
    bg = img[:, scene.mask < 0.5]
    assert float(bg.std(dim=1).mean()) > 0.01


def test_image_agrees_with_the_true_vertex_texture(ict, syn, scene):
    """Read the image bilinearly at the projected visible vertices: it must match the true
    per-vertex texture × the SH irradiance (the renderer only interpolates between vertices)."""
    from facegcn.render import sample_image, sh_irradiance

    with torch.no_grad():
        st = syn.state(scene.coeffs)
        irr = sh_irradiance(st.normals, scene.coeffs.sh)[0]
        px = st.verts_px[0]
    # vertices well inside the silhouette (the 3x3 neighbourhood is covered by the mesh)
    m = torch.nn.functional.max_pool2d(-scene.mask[None, None], 5, 1, 2)[0, 0] < -0.5
    ij = px.round().long().clamp(0, 223)
    inside = m[ij[:, 1], ij[:, 0]] & scene.visible
    assert inside.sum() > 1000
    got = sample_image(scene.image[None], px[None])[0][inside]
    expect = (scene.albedo_true * irr)[inside].clamp(0, 1)
    err = (got - expect).abs()
    assert float(err.median()) < 0.03
    # ... and much better than the smooth albedo alone would explain the detail
    base_err = (got - (scene.albedo_base * irr)[inside].clamp(0, 1)).abs()
    assert float(err.mean()) < 0.75 * float(base_err.mean())


def test_observation_is_consistent(scene):
    from facegcn.frontend.identity import chip_from_aligned

    obs = scene_observation(scene)
    assert obs.image is scene.image and obs.detector == "synthetic"
    assert np.allclose(obs.landmarks, scene.landmarks)
    assert torch.equal(obs.face_mask, scene.labels > 0)
    assert obs.identity.shape == (128,) and torch.isfinite(obs.identity).all()
    chip = chip_from_aligned(scene.image[None], obs.chip_transform)
    assert chip.shape == (1, 3, 150, 150)
    assert float((chip.sum(1) > 0).float().mean()) > 0.95  # the chip lies inside the image


def test_uv_truth_is_the_baked_base_times_the_detail(ict, scene):
    """With a flat detail texture the UV truth is the base albedo baked by the package's own
    vertex-colour baker (a second implementation); with the real one its ratio to that is the
    detail texture itself, sampled at the texel centres."""
    from dataclasses import replace

    from facegcn.render.bake import bake_vertex_colors

    S = 256
    flat = replace(scene, texture=torch.ones_like(scene.texture))
    truth, seen, covered = uv_texture_truth(ict, flat, S)
    baked = bake_vertex_colors(scene.albedo_base.numpy(), ict.faces.numpy(), ict.uv.numpy(), ict.faces_uv.numpy(), S)
    baked = np.asarray(baked, np.float32)
    baked = baked / 255.0 if baked.max() > 1.5 else baked
    assert np.abs(truth - baked[covered]).max() < 1.5 / 255
    assert 0.1 < seen.mean() < 0.9  # a turned face: part of the layout is hidden
    real, _, _ = uv_texture_truth(ict, scene, S)
    ratio = real / np.maximum(truth, 1e-3)
    keep = truth.min(1) > 0.05
    from skimage.transform import resize

    want = resize(scene.texture.permute(1, 2, 0).numpy(), (S, S), order=1, anti_aliasing=False)[covered]
    assert np.median(np.abs(ratio[keep] - want[keep])) < 0.02


def test_photo_skin_detail_keeps_the_photo_statistics():
    """The quilted detail has about the high-pass spread of the real cheek patches and no DC."""
    from scipy.ndimage import gaussian_filter
    from skimage import data

    from facegcn.apps.evaluate.scenes import SKIN_HALF, SKIN_PATCHES

    d = np.log(photo_skin_detail(np.random.default_rng(0), 256))
    lum = data.astronaut().astype(np.float64).mean(-1) + 1.0
    hp = np.log(lum / gaussian_filter(lum, 3.0))
    ref = np.mean([hp[y - SKIN_HALF:y + SKIN_HALF, x - SKIN_HALF:x + SKIN_HALF].std() for x, y in SKIN_PATCHES])
    assert abs(d.mean()) < 0.01
    assert 0.6 * ref < d.std() < 1.1 * ref  # resampling ×2 smooths a little


def test_models_without_uvs_or_regions(ict):
    """BFM-like models (no UV layout, no named regions): planar UVs, all vertices count as front."""
    from facegcn.coarse.synthesis import FaceSynthesis
    from facegcn.morphable import MorphableModel, load_model_data

    d = load_model_data("ict")
    d.name, d.uv, d.faces_uv, d.regions = "no-uv", None, None, {}
    m = MorphableModel(d)
    assert not m.has_uv and "front" not in m.region_names
    s = make_scene(m, FaceSynthesis(m), 1)
    assert s.image.shape == (3, 224, 224) and torch.isfinite(s.albedo_true).all()
    assert set(s.labels.unique().tolist()) == {0, 1}
    ratio = (s.albedo_true / s.albedo_base.clamp_min(1e-3))[s.visible]
    assert float(ratio.std()) > 0.02


@pytest.mark.slow
def test_run_synthetic_two_images(tmp_path):
    lines = []
    rep = run_synthetic(2, tmp_path, tiny_config(photo_steps=30), seed=0, echo=lines.append)
    assert len(rep.rows) == 2 and len(lines) == 2
    for r in rep.rows:
        assert 0 < r["geom_mm"] < 20 and r["geom_mean_face_mm"] > 0
        assert 10 < r["tex_psnr_coarse"] < 40
        assert 10 < r["psnr_coarse"] < 50 and 0 < r["ssim_coarse"] <= 1
        assert r["nme_coarse"] < 0.15
        for k in ("tex_uv_psnr_seen_gcn", "tex_uv_psnr_seen_final", "tex_uv_psnr_unseen_gcn", "tex_uv_psnr_unseen_final"):
            assert 5 < r[k] < 40, (k, r[k])  # a short fit (tiny config): a loose range
    for f in ("synthetic.md", "synthetic.csv", "synthetic.json", "images/synth_000.png", "images/synth_001.png",
              "plots/metrics_bars.png", "plots/contact_sheet.png", "plots/heatmaps/synth_000.png"):
        assert (tmp_path / f).is_file(), f
    back = list(csv.DictReader((tmp_path / "synthetic.csv").open()))
    assert [r["image"] for r in back] == ["synth_000", "synth_001", "mean"]
    assert "geom mm" in rep.table and "mean" in rep.table
    md = (tmp_path / "synthetic.md").read_text()
    assert "| synth_001 |" in md
