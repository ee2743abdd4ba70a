"""`facegcn evaluate PHOTO_DIR`: reconstruct every photo of a folder and measure the coarse and the
refined result against the photo.

Per photo (best face), in the aligned 224² frame, inside the evaluation mask = render mask ∩ face
mask: PSNR, SSIM (map of the full images — the render composited over the photo vs the photo —
averaged in the mask), photometric L1, identity cosine (dlib ResNet port, chip through the
observation's ``chip_transform``) of the composite vs the photo, and the landmark NME of the
fitted landmarks vs the detected ones (the refinement changes colours only, so the refined result
shares the coarse geometry and NME). Outputs in REPORT_DIR: ``report.md``, ``metrics.csv``,
``metrics.json``, ``plots/metrics_bars.png``, ``plots/contact_sheet.png``,
``plots/heatmaps/<photo>.png``. Files that cannot be read or hold no face are skipped and listed.
"""

from __future__ import annotations

import importlib.util
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

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
    write_csv,
)
from facegcn.config import Config
from facegcn.errors import FaceGCNError, InputError
from facegcn.evaluate.metrics import (
    composite,
    error_map,
    identity_cosine,
    landmark_nme,
    masked_l1,
    masked_psnr,
    masked_ssim,
)
from facegcn.frontend.identity import IdentityEncoder
from facegcn.io.atomic import atomic_write_text
from facegcn.io.jsonfile import strict_json
from facegcn.pipeline import Reconstructor

REFINE_MODULE = "facegcn.refine.per_image"


def refine_available() -> bool:
    """Whether the GCN texture-refinement stage (``facegcn.refine.per_image``) is installed."""
    try:
        return importlib.util.find_spec(REFINE_MODULE) is not None
    except (ImportError, ValueError):
        return False


def prepare_config(cfg):
    """A copy of ``cfg`` with refinement switched off when its module does not exist yet, and the
    notes explaining what was changed."""
    cfg = Config.from_dict(cfg.to_dict()).validate()
    notes: list[str] = []
    if cfg.refine.enabled and cfg.refine.steps > 0 and not refine_available():
        cfg.refine.enabled = False
        notes.append(f"refinement requested but `{REFINE_MODULE}` is not available: refined columns are blank")
    elif not cfg.refine.enabled or cfg.refine.steps == 0:
        notes.append("refinement disabled: refined columns are blank")
    return cfg, notes


def evaluate_reconstruction(rec, encoder: IdentityEncoder | None = None, name: str | None = None) -> tuple[dict, EvalItem]:
    """Metrics row and plot data of one :class:`~facegcn.pipeline.Reconstruction`.

    Args:
        rec: the reconstruction (best face of a photo).
        encoder: the identity network (default: a new :class:`IdentityEncoder` on the render's device).
        name: the row's name (default: the photo's file name).

    Returns:
        the metrics row (``psnr_*``, ``ssim_*``, ``l1_*``, ``identity_*``, ``nme_*`` for ``coarse``
        and ``refined``) and the :class:`EvalItem` the plots use.
    """
    obs, co = rec.observation, rec.coarse
    r = co.rendering
    img = obs.image.detach().float().cpu()
    rmask = r.mask[0, 0].detach().float().cpu()
    mask = rmask * obs.face_mask.float().cpu()
    encoder = encoder if encoder is not None else IdentityEncoder(device=r.image.device)
    lm_pred = co.state.landmarks[0].detach().cpu().numpy()
    nme = landmark_nme(lm_pred, np.asarray(obs.landmarks))
    renders = {"coarse": r.image[0].detach().float().cpu()}
    if rec.refined_render is not None:
        renders["refined"] = rec.refined_render.detach().float().cpu()
    row: dict = {"image": name or _photo_name(rec.photo)}
    comps: dict[str, torch.Tensor] = {}
    errs: dict[str, np.ndarray] = {}
    for res, ren in renders.items():
        comp = composite(ren, rmask, img)
        comps[res] = comp
        errs[res] = error_map(comp, img, mask)
        row[f"psnr_{res}"] = masked_psnr(comp, img, mask)
        row[f"ssim_{res}"] = masked_ssim(comp, img, mask)
        row[f"l1_{res}"] = masked_l1(comp, img, mask)
        row[f"identity_{res}"] = identity_cosine(comp.to(r.image.device), img.to(r.image.device), obs.chip_transform, encoder)
        row[f"nme_{res}"] = nme  # same geometry for both results
    row["mask_pixels"] = float(mask.sum())
    item = EvalItem(
        name=row["image"], photo=img, mask=mask, coarse=comps["coarse"], refined=comps.get("refined"),
        err_coarse=errs["coarse"], err_refined=errs.get("refined"),
        caption={res: f"{row[f'psnr_{res}']:.2f} dB" for res in renders},
    )
    return row, item


def _photo_name(photo) -> str:
    return Path(photo.path).name if getattr(photo, "path", None) is not None else "<array>"


def list_photos(photo_dir: str | Path) -> list[Path]:
    """Every regular, non-hidden file of the folder (not recursive), sorted by name. Non-images are
    kept: they are reported as skipped by the loader."""

    d = Path(photo_dir)
    if not d.is_dir():
        raise InputError(f"{d}: not a folder of photos")
    files = sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InputError(f"{d}: the folder holds no files")
    return files


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] or "photo"


@dataclass
class FolderReport:
    rows: list[dict]
    skipped: list[tuple[str, str]]
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    refined: bool = False
    wall_s: float = 0.0


def evaluate_folder(photo_dir: str | Path, out_dir: str | Path, cfg, *, plots: bool = True, echo=print) -> FolderReport:
    """Reconstruct and evaluate every photo in ``photo_dir``; write the report into ``out_dir``."""
    t_start = time.perf_counter()
    photos = list_photos(photo_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg, notes = prepare_config(cfg)
    recon = Reconstructor(cfg)
    rows: list[dict] = []
    items: list[EvalItem] = []
    skipped: list[tuple[str, str]] = []
    for p in photos:
        t0 = time.perf_counter()
        try:
            results = recon(p)
            row, item = evaluate_reconstruction(results[0], recon.identity, name=p.name)
        except FaceGCNError as exc:
            why = str(exc)
            for prefix in (f"{p}: ", f"{p.name}: "):
                why = why[len(prefix):] if why.startswith(prefix) else why
            skipped.append((p.name, why))
            echo(f"skipped {p.name}: {why}")
            continue
        except Exception as exc:  # noqa: BLE001 - one bad photo must not stop the batch
            skipped.append((p.name, f"unexpected error {type(exc).__name__}: {exc}"))
            echo(f"skipped {p.name}: unexpected error {type(exc).__name__}: {exc}")
            if cfg.progress:
                traceback.print_exc()
            continue
        row["time_s"] = time.perf_counter() - t0
        rows.append(row)
        items.append(item)
        extra = f", refined {row['psnr_refined']:.2f} dB" if "psnr_refined" in row else ""
        echo(f"{p.name}: PSNR coarse {row['psnr_coarse']:.2f} dB{extra}, SSIM {row['ssim_coarse']:.4f}, "
             f"identity {row['identity_coarse']:.4f}, NME {row['nme_coarse']:.4f}, {row['time_s']:.1f} s")
    rep = FolderReport(rows, skipped, notes=notes, refined=any(i.refined is not None for i in items))
    if not rows:
        write_folder_report(rep, out, cfg, photo_dir, [], plots=False)
        raise InputError(f"{photo_dir}: none of the {len(photos)} file(s) could be evaluated "
                         f"(see {out / 'report.md'})")
    rep.wall_s = time.perf_counter() - t_start
    write_folder_report(rep, out, cfg, photo_dir, items, plots=plots)
    return rep


def write_folder_report(rep: FolderReport, out: Path, cfg, photo_dir, items: list[EvalItem], plots: bool = True) -> None:
    cols = columns_for(PHOTO_METRICS)
    files = rep.files
    plot_lines: list[str] = []
    if plots and items:
        try:
            pd = out / "plots"
            files["bars"] = str(plot_metric_bars(rep.rows, PHOTO_METRICS, pd / "metrics_bars.png"))
            sheets = plot_contact_sheet(items, pd / "contact_sheet.png")
            files["contact_sheet"] = str(sheets[0])
            links = []
            for k, it in enumerate(items):
                fn = f"{k:03d}_{_slug(Path(it.name).stem)}.png"
                files[f"heatmap_{k}"] = str(plot_heatmap(it, pd / "heatmaps" / fn))
                links.append(f"[{it.name}](plots/heatmaps/{fn})")
            plot_lines = ["## Plots", "", "![metrics: coarse vs refined](plots/metrics_bars.png)", "",
                          *[f"![photo | coarse | refined]({Path(s).relative_to(out).as_posix()})" for s in sheets],
                          "", "Error heat-maps (|render − photo| in the evaluation mask): " + ", ".join(links), ""]
        except ImportError as exc:
            rep.notes.append(f"plots skipped: {exc}")
    files["csv"] = str(write_csv(out / "metrics.csv", rep.rows, cols, extra=["mask_pixels", "time_s"]))
    mh, mc = means_table(rep.rows, PHOTO_METRICS)
    header, cells = table_rows(rep.rows, cols)
    n_ok, n_skip = len(rep.rows), len(rep.skipped)
    md = [
        f"# facegcn evaluation of `{photo_dir}`", "",
        f"{n_ok} photo(s) evaluated, {n_skip} skipped. Model `{cfg.model}`; checkpoint: "
        f"{cfg.checkpoint or 'none (per-image fitting)'}; refinement: "
        f"{'on (' + str(cfg.refine.steps) + ' steps)' if cfg.refine.enabled else 'off'}; coarse steps "
        f"{cfg.coarse.steps_rigid}/{cfg.coarse.steps_landmark}/{cfg.coarse.steps_photo}/{cfg.coarse.steps_identity} "
        f"(rigid/landmark/photo/identity); detector {cfg.frontend.detector}; device {cfg.device}"
        + (f"; wall time {rep.wall_s:.1f} s." if rep.wall_s else "."), "",
        "Metrics in the aligned 224² crop inside render mask ∩ face mask: PSNR (dB, peak 1), SSIM (map of "
        "the full composite vs the photo, averaged in the mask), L1 (mean |difference|), identity cosine "
        "(dlib ResNet, composite vs photo), landmark NME (inter-ocular; the refined result shares the coarse "
        "geometry). LPIPS is not computed (its backbone needs torchvision).", "",
        *[f"- {x}" for x in rep.notes], "" if rep.notes else None,
        "## Means", "", markdown_table(mh, mc) if rep.rows else "(no photo evaluated)\n",
        "## Per photo", "", markdown_table(header, cells) if rep.rows else "(none)\n",
        "## Skipped files", "",
        *([f"- `{n}`: {why}" for n, why in rep.skipped] or ["(none)"]), "",
        *plot_lines,
    ]
    files["markdown"] = str(atomic_write_text(out / "report.md", "\n".join(x for x in md if x is not None)))
    doc = {"photo_dir": str(photo_dir), "rows": rep.rows, "means": mean_row(rep.rows, [k for k, _, _ in cols]),
           "skipped": [{"file": n, "reason": w} for n, w in rep.skipped], "notes": rep.notes,
           "refined": rep.refined, "wall_s": rep.wall_s, "config": cfg.to_dict()}
    files["json"] = str(atomic_write_text(out / "metrics.json", strict_json(doc, indent=1)))
