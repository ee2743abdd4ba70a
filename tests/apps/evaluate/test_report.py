"""Tables (markdown / CSV read back with the csv module) and plots (PNG files that PIL can open)."""

import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image

from facegcn.apps.evaluate.report import (
    PHOTO_METRICS,
    EvalItem,
    columns_for,
    markdown_table,
    mean_row,
    means_table,
    plot_contact_sheet,
    plot_heatmap,
    plot_metric_bars,
    table_rows,
    text_table,
    write_csv,
)


def _rows(refined: bool):
    rows = []
    for i, (p, s) in enumerate([(20.0, 0.8), (24.0, 0.9), (float("nan"), 0.7)]):
        r = {"image": f"img{i}.png", "psnr_coarse": p, "ssim_coarse": s, "l1_coarse": 0.05, "identity_coarse": 0.9,
             "nme_coarse": 0.03}
        if refined:
            r.update(psnr_refined=p + 2, ssim_refined=s + 0.05, l1_refined=0.04, identity_refined=0.93, nme_refined=0.03)
        rows.append(r)
    return rows


def test_mean_row_skips_missing_and_nan():
    m = mean_row(_rows(False), ["psnr_coarse", "ssim_coarse", "psnr_refined"])
    assert m["psnr_coarse"] == pytest.approx(22.0)  # the NaN row is left out
    assert m["ssim_coarse"] == pytest.approx(0.8)
    assert m["psnr_refined"] is None


@pytest.mark.parametrize("refined", [True, False])
def test_csv_and_markdown(tmp_path, refined):
    rows = _rows(refined)
    cols = columns_for(PHOTO_METRICS)
    p = write_csv(tmp_path / "m.csv", rows, cols)
    back = list(csv.DictReader(p.open()))
    assert [r["image"] for r in back] == ["img0.png", "img1.png", "img2.png", "mean"]
    assert float(back[0]["psnr_coarse"]) == 20.0 and back[2]["psnr_coarse"] == ""
    assert float(back[-1]["psnr_coarse"]) == pytest.approx(22.0)
    if refined:
        assert float(back[-1]["psnr_refined"]) == pytest.approx(24.0)
    else:  # no refined result: the refined columns exist and are blank
        assert all(r["psnr_refined"] == "" for r in back)
    header, cells = table_rows(rows, cols)
    md = markdown_table(header, cells)
    lines = md.strip().splitlines()
    assert len(lines) == 2 + 4 and all(line.count("|") == len(header) + 1 for line in lines)
    assert "PSNR (dB) refined" in lines[0]
    mh, mc = means_table(rows, PHOTO_METRICS)
    assert [c[0] for c in mc] == [m.label for m in PHOTO_METRICS]
    assert (mc[0][3] == "+2.00") if refined else (mc[0][2] == "" and mc[0][3] == "")
    assert "mean" in text_table(header, cells)


def _item(name, refined=True):
    g = torch.Generator().manual_seed(len(name))
    photo = torch.rand(3, 224, 224, generator=g)
    mask = torch.zeros(224, 224)
    mask[40:180, 50:170] = 1
    ren = (photo + 0.1 * torch.randn(3, 224, 224, generator=g)).clamp(0, 1)
    err = np.where(mask.numpy() > 0, (ren - photo).abs().mean(0).numpy(), np.nan)
    return EvalItem(name, photo, mask, ren, ren if refined else None, err, err if refined else None,
                    caption={"coarse": "20.00 dB"})


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    rows = _rows(True)
    p = plot_metric_bars(rows, PHOTO_METRICS, tmp_path / "bars.png")
    assert Image.open(p).size[0] > 300
    h = plot_heatmap(_item("a"), tmp_path / "heat" / "a.png")
    h2 = plot_heatmap(_item("b", refined=False), tmp_path / "heat" / "b.png")
    assert Image.open(h).size[0] > Image.open(h2).size[0]  # one more panel
    sheets = plot_contact_sheet([_item("a"), _item("b", False), _item("c")], tmp_path / "sheet.png", max_rows=2)
    assert [s.name for s in sheets] == ["sheet.png", "sheet_2.png"]
    for s in sheets:
        im = np.asarray(Image.open(s).convert("RGB"))
        assert im.std() > 5  # not blank
    # bars with no refined values at all still work
    plot_metric_bars(_rows(False), PHOTO_METRICS, tmp_path / "bars2.png")
    assert not math.isnan(float(np.asarray(Image.open(tmp_path / "bars2.png")).mean()))


def test_fidelity_columns_and_tables(tmp_path):
    from facegcn.apps.evaluate.report import FIDELITY_METRICS, FIDELITY_RESULTS, fidelity_table

    rows = [{"image": "a.png", "detail_coarse": 0.01, "detail_final": 0.9, "seethrough_final": 0.02,
             "idsame_photo": 0.4},
            {"image": "b.png", "detail_coarse": 0.03, "detail_gcn": 0.1, "detail_final": 1.1}]
    cols = columns_for(FIDELITY_METRICS)
    keys = [k for k, _, _ in cols]
    assert {"detail_coarse", "detail_gcn", "detail_final", "idother_reject_final", "idsame_photo"} <= set(keys)
    back = list(csv.DictReader(write_csv(tmp_path / "f.csv", rows, cols).open()))
    assert float(back[-1]["detail_final"]) == pytest.approx(1.0) and back[0]["detail_gcn"] == ""
    mh, mc = means_table(rows, FIDELITY_METRICS, FIDELITY_RESULTS)
    assert mh == ["metric", "coarse", "gcn", "final", "final − coarse", "better"]
    assert mc[0][:5] == ["detail ratio", "0.020", "0.100", "1.000", "+0.980"]
    header, cells = fidelity_table(rows, FIDELITY_METRICS)
    assert header[:3] == ["image", "result", "detail ratio"]
    assert [c[:2] for c in cells] == [["a.png", "coarse"], ["a.png", "final"], ["b.png", "coarse"], ["b.png", "gcn"],
                                      ["b.png", "final"], ["**mean**", "coarse"], ["**mean**", "gcn"],
                                      ["**mean**", "final"]]
    # the default table keeps its two result columns
    assert means_table(_rows(True), PHOTO_METRICS)[0] == ["metric", "coarse", "refined", "refined − coarse", "better"]
