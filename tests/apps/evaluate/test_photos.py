"""`facegcn evaluate PHOTO_DIR`: the photo-folder evaluation through the CLI command (registered on
a local typer app), bad files skipped and listed, refined columns blank without refinement, and
the per-photo metrics checked against scikit-image on the same images."""

import csv
import json

import numpy as np
import pytest
import typer
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from facegcn.errors import ConfigError, InputError, PartialFailure
from tests.apps.evaluate.conftest import tiny_config


def _app():
    from facegcn.cli.evaluate import register

    app = typer.Typer()

    @app.callback()
    def main():  # a group, so that "evaluate" is a sub-command as in facegcn's app
        pass

    register(app)
    return app


def _invoke(args):
    _app()(args, prog_name="facegcn", standalone_mode=False)


def test_usage_errors(tmp_path):
    with pytest.raises(ConfigError):
        _invoke(["evaluate", "-o", str(tmp_path)])  # neither a folder nor --synthetic
    with pytest.raises(ConfigError):
        _invoke(["evaluate", str(tmp_path), "--synthetic", "2", "-o", str(tmp_path)])
    with pytest.raises(InputError):
        _invoke(["evaluate", str(tmp_path / "missing"), "-o", str(tmp_path / "r")])
    with pytest.raises(InputError):
        _invoke(["evaluate", str(tmp_path), "-o", str(tmp_path / "r")])  # empty folder
    with pytest.raises(ConfigError, match="--labels"):
        _invoke(["evaluate", "--synthetic", "1", "--labels", str(tmp_path / "l.csv"), "-o", str(tmp_path)])


def test_register_adds_the_command():
    from typer.main import get_command

    assert "evaluate" in get_command(_app()).commands


def test_prepare_config_without_refine_module(monkeypatch):
    from facegcn.apps.evaluate import photos

    monkeypatch.setattr(photos, "refine_available", lambda: False)
    cfg, notes = photos.prepare_config(tiny_config(refine=True))
    assert cfg.refine.enabled is False and "not available" in notes[0]
    cfg2, _ = photos.prepare_config(tiny_config(refine=False))
    assert cfg2.refine.enabled is False


@pytest.fixture(scope="module")
def astronaut_reconstruction():
    from skimage import data

    from facegcn.io.image import photo_from_array
    from facegcn.pipeline import Reconstructor

    cfg = tiny_config(refine=True, photo_steps=15)
    from facegcn.apps.evaluate.photos import prepare_config

    cfg, _ = prepare_config(cfg)
    rec = Reconstructor(cfg)
    return rec(photo_from_array(np.ascontiguousarray(data.astronaut())))[0]


@pytest.mark.slow
def test_metrics_of_a_reconstruction_match_skimage(astronaut_reconstruction):
    from facegcn.evaluate.metrics import composite
    from facegcn.apps.evaluate.photos import evaluate_reconstruction

    rec = astronaut_reconstruction
    row, item = evaluate_reconstruction(rec, name="astro")
    obs, r = rec.observation, rec.coarse.rendering
    photo = obs.image.permute(1, 2, 0).double().numpy()
    mask = (r.mask[0, 0] * obs.face_mask.float()).numpy() > 0.5
    for res, ren in (("coarse", r.image[0]), ("refined", rec.refined_render)):
        if ren is None:
            assert row.get(f"psnr_{res}") is None and item.refined is None
            continue
        comp = composite(ren, r.mask[0, 0], obs.image).permute(1, 2, 0).double().numpy()
        assert row[f"psnr_{res}"] == pytest.approx(peak_signal_noise_ratio(photo[mask], comp[mask], data_range=1.0), abs=1e-3)
        assert row[f"l1_{res}"] == pytest.approx(np.abs(photo[mask] - comp[mask]).mean(), abs=1e-5)
        _, S = structural_similarity(photo, comp, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, full=True)
        inner = mask.copy()
        inner[:5], inner[-5:], inner[:, :5], inner[:, -5:] = False, False, False, False
        assert inner.sum() == mask.sum()  # the face is far from the border: same map there
        assert row[f"ssim_{res}"] == pytest.approx(S.mean(-1)[mask].mean(), abs=1e-4)
        assert 0.5 < row[f"identity_{res}"] <= 1.0 + 1e-6
    # the pipeline's own PSNR (render vs photo in the same mask) agrees
    assert row["psnr_coarse"] == pytest.approx(rec.metrics["psnr_coarse"], abs=1e-3)
    assert row["nme_coarse"] == pytest.approx(rec.metrics["landmark_nme"], abs=1e-9)


@pytest.mark.slow
def test_fidelity_of_a_reconstruction(astronaut_reconstruction):
    """The fidelity columns of one reconstruction: the frontal render's projected landmarks agree
    with dlib's landmarks on that render; the final export keeps more detail than the coarse one."""
    from facegcn.apps.evaluate.fidelity import detail_render, fidelity_row, render_views, variant_meshes
    from facegcn.evaluate.fidelity import EYE_CORNERS
    from facegcn.frontend import observe
    from facegcn.io.image import photo_from_array
    from facegcn.io.imageops import image_to_uint8

    rec = astronaut_reconstruction
    row, res = fidelity_row(rec)
    for v in ("coarse", "final"):
        assert np.isfinite(row[f"detail_{v}"]) and row[f"detail_{v}"] >= 0
        assert 0 <= row[f"seethrough_{v}"] < 0.5 and 0 <= row[f"idmiss_{v}"] <= 3
    assert row["detail_final"] > row["detail_coarse"]
    mesh = variant_meshes(rec)["final"]
    front = render_views(mesh, (0.0,))[0.0]
    lm_idx = rec.model.landmark_idx.cpu().numpy()
    zoomed, lm = detail_render(mesh, mesh.vertices[lm_idx])
    iod = np.linalg.norm(lm[EYE_CORNERS[1]] - lm[EYE_CORNERS[0]])
    assert iod == pytest.approx(160.0, rel=1e-3)
    for r, pts in ((front, front.project(lm_idx)), (zoomed, lm)):  # dlib on the render finds the same face
        found = observe(photo_from_array(image_to_uint8(r.image)))[0].landmarks_photo
        d = np.linalg.norm(pts[EYE_CORNERS[1]] - pts[EYE_CORNERS[0]])
        assert np.linalg.norm(found - pts, axis=-1).mean() < 0.15 * d


@pytest.mark.slow
def test_missing_refined_result_leaves_blank_columns(astronaut_reconstruction):
    from dataclasses import replace

    from facegcn.apps.evaluate.photos import evaluate_reconstruction

    rec = replace(astronaut_reconstruction, refined_albedo=None, refined_render=None)
    row, item = evaluate_reconstruction(rec, name="astro")
    assert "psnr_refined" not in row and item.refined is None and item.err_refined is None
    assert np.isfinite(row["psnr_coarse"])


@pytest.mark.slow
def test_evaluate_folder_cli(photo_folder, tmp_path, capsys):
    out = tmp_path / "report"
    with pytest.raises(PartialFailure, match="2 of 5 photo"):  # skipped photos: exit 7, as batch
        _invoke(["evaluate", str(photo_folder), "-o", str(out), "--fast", "-q"])
    text = capsys.readouterr().out
    assert "evaluated 3 photo(s), skipped 2" in text
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["image"] for r in rows] == ["a_crop.png", "b_flip.png", "c_bright.jpg", "mean"]
    for r in rows:
        assert 15 < float(r["psnr_coarse"]) < 45
        assert 0 < float(r["ssim_coarse"]) <= 1
        assert 0 < float(r["identity_coarse"]) <= 1.0 + 1e-6
        assert float(r["nme_coarse"]) < 0.1
    doc = json.loads((out / "metrics.json").read_text())
    assert sorted(s["file"] for s in doc["skipped"]) == ["broken.png", "notes.txt"]
    if doc["refined"]:
        assert all(r["psnr_refined"] != "" for r in rows)
    else:
        assert all(r["psnr_refined"] == "" for r in rows)
    md = (out / "report.md").read_text()
    assert "## Means" in md and "| c_bright.jpg |" in md and "`notes.txt`" in md and "`broken.png`" in md
    plots = out / "plots"
    assert (plots / "metrics_bars.png").is_file() and (plots / "contact_sheet.png").is_file()
    assert len(list((plots / "heatmaps").glob("*.png"))) == 3
    # fidelity of the exported meshes: every photo and the mean have the final export's columns
    assert "## Fidelity of the exported mesh" in md and len(list((plots / "views").glob("*.png"))) == 3
    for r in rows:
        assert float(r["detail_final"]) > 0 and 0 <= float(r["seethrough_final"]) < 0.5
        assert float(r["idmiss_final"]) <= 3 and r["idsame_final"] == ""  # a flat folder: no people


@pytest.mark.slow
def test_evaluate_folder_without_refinement_and_all_bad(tmp_path, photo_folder):
    from facegcn.apps.evaluate.photos import evaluate_folder

    one = tmp_path / "one"
    (one / "astro").mkdir(parents=True)
    (one / "astro" / "a.png").write_bytes((photo_folder / "a_crop.png").read_bytes())
    (one / "astro" / "b.png").write_bytes((photo_folder / "b_flip.png").read_bytes())
    rep = evaluate_folder(one, tmp_path / "r1", tiny_config(refine=False, photo_steps=5), plots=False, echo=lambda s: None)
    assert len(rep.rows) == 2 and not rep.refined and rep.fidelity
    rows = list(csv.DictReader((tmp_path / "r1" / "metrics.csv").open()))
    assert [r["image"] for r in rows] == ["astro/a.png", "astro/b.png", "mean"]
    assert rows[0]["psnr_refined"] == "" and rows[0]["psnr_coarse"] != ""
    # one person in a sub-folder: same-person pairs, no other people; no refinement: no gcn export
    assert float(rows[0]["idsame_photo"]) < 0.6 and rows[0]["idother_reject_final"] == ""
    assert rows[0]["detail_gcn"] == "" and rows[0]["detail_coarse"] != ""
    assert rows[0]["idsame_final"] != "" or float(rows[0]["idmiss_final"]) == 3
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.txt").write_text("hello")
    noise = (np.random.default_rng(0).random((200, 200, 3)) * 255).astype(np.uint8)
    from PIL import Image

    Image.fromarray(noise).save(bad / "noise.png")
    with pytest.raises(InputError, match="none of the 2"):
        evaluate_folder(bad, tmp_path / "r2", tiny_config(refine=False), plots=False, echo=lambda s: None)
    md = (tmp_path / "r2" / "report.md").read_text()
    assert "`x.txt`" in md and "`noise.png`" in md
