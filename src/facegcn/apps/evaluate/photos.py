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

Fidelity of the exported mesh where users look (:mod:`facegcn.apps.evaluate.fidelity`): detail
ratio, see-through share and novel-view identity of unlit renders at yaw 0° / ±30° for the
``coarse``, ``gcn`` and ``final`` exports, plus ``plots/views/<photo>.png`` (the final export's
three views). Photos are grouped by person for the pair statistics: files in sub-folders belong to
the sub-folder's person; ``labels`` (a CSV ``file,person``) overrides that; files at the top level
without a label have no person (no pairs).
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facegcn.apps.evaluate.fidelity import (
    FIDELITY_YAWS,
    add_pair_columns,
    fidelity_row,
    person_of,
    read_labels,
    view_name,
)
from facegcn.apps.evaluate.report import (
    FIDELITY_METRICS,
    FIDELITY_RESULTS,
    PHOTO_METRICS,
    EvalItem,
    columns_for,
    fidelity_table,
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
from facegcn.io.imageops import image_to_uint8, write_png
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
    """Every regular, non-hidden file of the folder and of its non-hidden sub-folders (one level:
    a sub-folder is a person), sorted by relative path. Non-images are kept: they are reported as
    skipped by the loader."""

    d = Path(photo_dir)
    if not d.is_dir():
        raise InputError(f"{d}: not a folder of photos")
    top = [p for p in d.iterdir() if not p.name.startswith(".")]
    files = [p for p in top if p.is_file()]
    files += [q for sub in top if sub.is_dir() for q in sub.iterdir() if q.is_file() and not q.name.startswith(".")]
    files.sort(key=lambda p: p.relative_to(d).as_posix())
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
    fidelity: bool = False


def _fidelity(rec, name: str, plots_dir: Path | None) -> tuple[dict, dict]:
    """Fidelity columns of one reconstruction; writes the final export's views when asked."""
    t0 = time.perf_counter()
    row, res = fidelity_row(rec, keep_renders=plots_dir is not None)
    row["fidelity_s"] = time.perf_counter() - t0
    if plots_dir is not None:
        final = res["final"].renders
        write_png(plots_dir / "views" / f"{_slug(Path(name).with_suffix('').as_posix())}.png",
                  np.concatenate([image_to_uint8(final[y]) for y in sorted(final)], axis=1))
        for f in res.values():
            f.renders.clear()
    return row, res


def evaluate_folder(photo_dir: str | Path, out_dir: str | Path, cfg, *, plots: bool = True, echo=print,
                    labels: str | Path | dict | None = None, fidelity: bool = True) -> FolderReport:
    """Reconstruct and evaluate every photo in ``photo_dir``; write the report into ``out_dir``.

    ``labels``: a CSV ``file,person`` (or its ``{file: person}``) for the person-level identity
    statistics (default: sub-folders are people). ``fidelity``: also measure the exported meshes."""
    t_start = time.perf_counter()
    photos = list_photos(photo_dir)
    labels = read_labels(labels) if isinstance(labels, (str, Path)) else (labels or {})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg, notes = prepare_config(cfg)
    recon = Reconstructor(cfg)
    rows: list[dict] = []
    items: list[EvalItem] = []
    skipped: list[tuple[str, str]] = []
    persons, descs, fres = [], [], []
    for p in photos:
        t0 = time.perf_counter()
        name = p.relative_to(Path(photo_dir)).as_posix()
        try:
            results = recon(p)
            row, item = evaluate_reconstruction(results[0], recon.identity, name=name)
        except FaceGCNError as exc:
            why = str(exc)
            for prefix in (f"{p}: ", f"{p.name}: "):
                why = why[len(prefix):] if why.startswith(prefix) else why
            skipped.append((name, why))
            echo(f"skipped {name}: {why}")
            continue
        except Exception as exc:  # noqa: BLE001 - one bad photo must not stop the batch
            skipped.append((name, f"unexpected error {type(exc).__name__}: {exc}"))
            echo(f"skipped {name}: unexpected error {type(exc).__name__}: {exc}")
            if os.environ.get("FACEGCN_DEBUG"):  # the CLI's switch for tracebacks
                traceback.print_exc()
            continue
        fid = ""
        if fidelity:
            try:
                frow, res = _fidelity(results[0], name, out / "plots" if plots else None)
            except Exception as exc:  # noqa: BLE001 - the fidelity columns stay blank for this photo
                frow, res = {}, {}
                notes.append(f"{name}: fidelity not measured ({type(exc).__name__}: {exc})")
            row.update(frow)
            persons.append(person_of(name, labels))
            descs.append(results[0].observation.identity.detach().cpu().double().numpy())
            fres.append(res)
            if "detail_final" in row:
                fid = (f", detail {row['detail_final']:.3f}, see-through {row['seethrough_final']:.4f}, "
                       f"id dist {row['iddist_final']:.3f} ({row['idmiss_final']} miss)")
        row["time_s"] = time.perf_counter() - t0
        rows.append(row)
        items.append(item)
        extra = f", refined {row['psnr_refined']:.2f} dB" if "psnr_refined" in row else ""
        echo(f"{name}: PSNR coarse {row['psnr_coarse']:.2f} dB{extra}, SSIM {row['ssim_coarse']:.4f}, "
             f"identity {row['identity_coarse']:.4f}, NME {row['nme_coarse']:.4f}{fid}, {row['time_s']:.1f} s")
    if fidelity and rows:
        add_pair_columns(rows, persons, descs, fres)
    rep = FolderReport(rows, skipped, notes=notes, refined=any(i.refined is not None for i in items),
                       fidelity=any("detail_final" in r for r in rows))
    if not rows:
        write_folder_report(rep, out, cfg, photo_dir, [], plots=False)
        raise InputError(f"{photo_dir}: none of the {len(photos)} file(s) could be evaluated "
                         f"(see {out / 'report.md'})")
    rep.wall_s = time.perf_counter() - t_start
    write_folder_report(rep, out, cfg, photo_dir, items, plots=plots)
    return rep


def _fidelity_extra(rows: list[dict]) -> list[str]:
    """The per-view fidelity columns of the CSV (after the main ones)."""
    keys = [f"{k}_{view_name(y)}_{r}" for r in FIDELITY_RESULTS for k in ("seethrough", "iddist") for y in FIDELITY_YAWS]
    return [k for k in keys if any(k in r for r in rows)] + ["fidelity_s"]


def _fidelity_markdown(rows: list[dict]) -> list[str]:
    fh, fc = means_table(rows, FIDELITY_METRICS, FIDELITY_RESULTS)
    base = mean_row(rows, ["idsame_photo", "idsame_photo_accept"])
    ref = ("" if base["idsame_photo"] is None else
           f"Reference, the photos themselves vs the same person's other photos: mean distance "
           f"{base['idsame_photo']:.3f}, accepted {base['idsame_photo_accept']:.2f}.")
    th, tc = fidelity_table(rows, FIDELITY_METRICS, FIDELITY_RESULTS)
    return [
        "## Fidelity of the exported mesh (where users look)", "",
        "Unlit renders of the exported mesh + texture (`coarse`: the 3DMM albedo alone; `gcn`: the GCN albedo "
        "alone; `final`: the export as written) at yaw 0° and ±30°. Detail ratio: mean squared Laplacian "
        "(after a σ = 0.7 px Gaussian) of two 28² cheek patches of the frontal render vs the photo, both at an "
        "inter-ocular distance of 80 px (render landmarks: the model's projected landmark vertices). "
        "See-through: background inside the filled outline, as a share of it (mean of the 3 views). "
        "Identity: dlib descriptor distance (front-end run on each render; threshold 0.6) to this photo, to "
        "the same person's other photos (accept = distance < 0.6) and to other people's photos (reject = "
        "distance ≥ 0.6); renders without a detected face are misses, left out.", "",
        markdown_table(fh, fc), ref, "" if ref else None,
        "### Per photo", "", markdown_table(th, tc),
    ]


def write_folder_report(rep: FolderReport, out: Path, cfg, photo_dir, items: list[EvalItem], plots: bool = True) -> None:
    cols = columns_for(PHOTO_METRICS)
    fcols = columns_for(FIDELITY_METRICS) if rep.fidelity else []
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
            views = sorted((pd / "views").glob("*.png")) if rep.fidelity else []
            if views:
                plot_lines += ["Unlit views of the final export (yaw −30°, 0°, +30°): "
                               + ", ".join(f"[{v.stem}](plots/views/{v.name})" for v in views), ""]
        except ImportError as exc:
            rep.notes.append(f"plots skipped: {exc}")
    extra = ["mask_pixels", "time_s"] + (_fidelity_extra(rep.rows) if rep.fidelity else [])
    files["csv"] = str(write_csv(out / "metrics.csv", rep.rows, cols + fcols, extra=extra))
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
        *(_fidelity_markdown(rep.rows) if rep.fidelity else []),
        "## Skipped files", "",
        *([f"- `{n}`: {why}" for n, why in rep.skipped] or ["(none)"]), "",
        *plot_lines,
    ]
    files["markdown"] = str(atomic_write_text(out / "report.md", "\n".join(x for x in md if x is not None)))
    doc = {"photo_dir": str(photo_dir), "rows": rep.rows, "means": mean_row(rep.rows, [k for k, _, _ in cols + fcols]),
           "skipped": [{"file": n, "reason": w} for n, w in rep.skipped], "notes": rep.notes,
           "refined": rep.refined, "fidelity": rep.fidelity, "wall_s": rep.wall_s, "config": cfg.to_dict()}
    files["json"] = str(atomic_write_text(out / "metrics.json", strict_json(doc, indent=1)))
