"""Tables (markdown + CSV, atomic writes) and plots (matplotlib, Agg canvas) of an evaluation.

Plots are drawn on :class:`matplotlib.figure.Figure` objects with an explicit Agg canvas (no
pyplot state, no display needed) and written atomically as PNG.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facegcn.io.atomic import atomic_write_bytes, atomic_write_text

RESULTS = ("coarse", "refined")
FIDELITY_RESULTS = ("coarse", "gcn", "final")  # the exported meshes (apps.evaluate.fidelity.variant_meshes)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_better: bool
    fmt: str = ".3f"
    paired: bool = True  # one column per result (coarse / refined)
    results: tuple[str, ...] = RESULTS  # the results of a paired metric


PHOTO_METRICS: tuple[Metric, ...] = (
    Metric("psnr", "PSNR (dB)", True, ".2f"),
    Metric("ssim", "SSIM", True, ".4f"),
    Metric("l1", "L1", False, ".4f"),
    Metric("identity", "identity cos", True, ".4f"),
    Metric("nme", "landmark NME", False, ".4f"),
)

# fidelity of the exported mesh where users look (apps.evaluate.fidelity); per result of FIDELITY_RESULTS
FIDELITY_METRICS: tuple[Metric, ...] = (
    Metric("detail", "detail ratio", True, ".3f", results=FIDELITY_RESULTS),
    Metric("seethrough", "see-through", False, ".4f", results=FIDELITY_RESULTS),
    Metric("iddist", "id dist photo", False, ".3f", results=FIDELITY_RESULTS),
    Metric("idaccept", "id accept photo", True, ".2f", results=FIDELITY_RESULTS),
    Metric("idmiss", "id misses", False, ".0f", results=FIDELITY_RESULTS),
    Metric("idsame", "id dist same person", False, ".3f", results=FIDELITY_RESULTS),
    Metric("idsame_accept", "id accept same person", True, ".2f", results=FIDELITY_RESULTS),
    Metric("idother_reject", "id reject other people", True, ".2f", results=FIDELITY_RESULTS),
    Metric("idsame_photo", "photo id dist same person", False, ".3f", paired=False),
    Metric("idsame_photo_accept", "photo id accept same person", True, ".2f", paired=False),
)


@dataclass
class EvalItem:
    """What the plots of one image need (aligned 224² images, (3,H,W) in [0,1])."""

    name: str
    photo: torch.Tensor
    mask: torch.Tensor  # (H, W) evaluation mask
    coarse: torch.Tensor  # render composited over the photo
    refined: torch.Tensor | None = None
    err_coarse: np.ndarray | None = None  # (H, W), NaN outside the mask
    err_refined: np.ndarray | None = None
    caption: dict[str, str] = field(default_factory=dict)  # result → short text under a panel


# ----------------------------------------------------------------------------- tables
def columns_for(metrics: tuple[Metric, ...] | list[Metric]) -> list[tuple[str, str, str]]:
    """(row key, header, format) for each metric column."""
    cols = []
    for m in metrics:
        if m.paired:
            for r in m.results:
                cols.append((f"{m.key}_{r}", f"{m.label} {r}", m.fmt))
        else:
            cols.append((m.key, m.label, m.fmt))
    return cols


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) and math.isfinite(float(v))


def mean_row(rows: list[dict], keys: list[str], label: str = "mean") -> dict:
    """Mean of each key over the rows holding a finite number (None when none does)."""
    out: dict = {}
    for k in keys:
        vals = [float(r[k]) for r in rows if _is_num(r.get(k))]
        out[k] = float(np.mean(vals)) if vals else None
    return out


def _fmt(v, fmt: str) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if not _is_num(v):
        return "nan" if isinstance(v, float) and math.isnan(v) else str(v)
    s = format(float(v), fmt)
    return s[1:] if s.startswith("-") and float(s) == 0 else s  # no "-0.00"


def table_rows(rows: list[dict], columns: list[tuple[str, str, str]], first: str = "image",
               mean_label: str = "**mean**") -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells (per-image rows, then the mean row)."""
    header = [first] + [h for _, h, _ in columns]
    cells = [[str(r.get(first, ""))] + [_fmt(r.get(k), f) for k, _, f in columns] for r in rows]
    if rows:
        m = mean_row(rows, [k for k, _, _ in columns])
        cells.append([mean_label] + [_fmt(m[k], f) for k, _, f in columns])
    return header, cells


def markdown_table(header: list[str], cells: list[list[str]]) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def text_table(header: list[str], cells: list[list[str]]) -> str:
    """Fixed-width plain-text table (for the terminal)."""
    rows = [header] + cells
    w = [max(len(r[i]) for r in rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r))  # noqa: E731
    out = [fmt(header), "  ".join("-" * x for x in w)] + [fmt([c.replace("**", "") for c in r]) for r in cells]
    return "\n".join(out) + "\n"


def write_csv(path: str | Path, rows: list[dict], columns: list[tuple[str, str, str]], first: str = "image",
              extra: list[str] = ()) -> Path:
    """CSV with raw (unformatted, full precision) numbers: a header of row keys, one line per
    image, then a ``mean`` line; missing values are empty cells."""
    keys = [first] + [k for k, _, _ in columns] + list(extra)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(keys)

    def cell(v):
        if v is None:
            return ""
        if isinstance(v, (float, np.floating)):
            return "" if math.isnan(float(v)) else repr(float(v))
        return str(v)

    for r in rows:
        w.writerow([cell(r.get(k)) for k in keys])
    if rows:
        m = mean_row(rows, keys[1:])
        w.writerow(["mean"] + [cell(m[k]) for k in keys[1:]])
    return atomic_write_text(path, buf.getvalue())


def means_table(rows: list[dict], metrics: tuple[Metric, ...] | list[Metric],
                results: tuple[str, ...] = RESULTS) -> tuple[list[str], list[list[str]]]:
    """metric | one column per result | last − first | better (paired metrics only).

    ``results`` default ``("coarse", "refined")``; :data:`FIDELITY_RESULTS` for the fidelity table."""
    first, last = results[0], results[-1]
    header = ["metric", *results, f"{last} − {first}", "better"]
    cells = []
    for m in metrics:
        if not m.paired:
            continue
        mc = mean_row(rows, [f"{m.key}_{r}" for r in results])
        vals = [mc[f"{m.key}_{r}"] for r in results]
        c, r = vals[0], vals[-1]
        d = None if c is None or r is None else r - c
        cells.append([m.label, *[_fmt(v, m.fmt) for v in vals], "" if d is None else format(d, "+" + m.fmt),
                      "higher" if m.higher_better else "lower"])
    return header, cells


def fidelity_table(rows: list[dict], metrics, results: tuple[str, ...] = FIDELITY_RESULTS,
                   first: str = "image") -> tuple[list[str], list[list[str]]]:
    """Long form of the paired metrics: one line per (image, result) that has any value, then one
    ``mean`` line per result."""
    ms = [m for m in metrics if m.paired]
    header = [first, "result"] + [m.label for m in ms]
    cells = []
    for r in rows:
        for res in results:
            vals = [r.get(f"{m.key}_{res}") for m in ms]
            if any(_is_num(v) for v in vals):
                cells.append([str(r.get(first, "")), res] + [_fmt(v, m.fmt) for v, m in zip(vals, ms)])
    for res in results:
        mr = mean_row(rows, [f"{m.key}_{res}" for m in ms])
        if any(v is not None for v in mr.values()):
            cells.append(["**mean**", res] + [_fmt(mr[f"{m.key}_{res}"], m.fmt) for m in ms])
    return header, cells


# ------------------------------------------------------------------------------ plots
def _figure(w_in: float, h_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w_in, h_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


def _np_img(t: torch.Tensor) -> np.ndarray:
    return t.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def plot_metric_bars(rows: list[dict], metrics, path: str | Path, first: str = "image") -> Path:
    """One panel per paired metric: bars per image (and the mean), coarse vs refined."""
    metrics = [m for m in metrics if m.paired]
    names = [str(r.get(first, "")) for r in rows] + ["mean"]
    short = [n if len(n) <= 14 else n[:12] + "…" for n in names]
    n = len(metrics)
    fig = _figure(max(6.0, 0.5 * len(names) + 2.0) * min(n, 3) / 1.5, 3.2 * math.ceil(n / 3))
    x = np.arange(len(names))
    for i, m in enumerate(metrics):
        ax = fig.add_subplot(math.ceil(n / 3), min(n, 3), i + 1)
        means = mean_row(rows, [f"{m.key}_coarse", f"{m.key}_refined"])
        for j, (res, colour) in enumerate((("coarse", "#6c8ebf"), ("refined", "#d79b00"))):
            vals = [r.get(f"{m.key}_{res}") for r in rows] + [means[f"{m.key}_{res}"]]
            y = np.array([float(v) if _is_num(v) else np.nan for v in vals])
            if np.all(np.isnan(y)):
                continue
            ax.bar(x + (j - 0.5) * 0.38, np.nan_to_num(y, nan=0.0), 0.38, label=res, color=colour)
        ax.set_title(f"{m.label} ({'higher' if m.higher_better else 'lower'} is better)", fontsize=9)
        ax.set_xticks(x)
        ax.set_xticklabels(short, rotation=45, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_heatmap(item: EvalItem, path: str | Path, vmax: float = 0.15) -> Path:
    """Photo | coarse error | refined error: |render − photo| (mean over RGB) inside the
    evaluation mask, over a dimmed grey photo; same colour scale for both results."""
    panels = [("photo", None), ("coarse |error|", item.err_coarse)]
    if item.err_refined is not None:
        panels.append(("refined |error|", item.err_refined))
    fig = _figure(2.6 * len(panels) + 0.7, 3.0)
    fig.subplots_adjust(left=0.02, right=0.88, bottom=0.02, top=0.8, wspace=0.05)
    grey = _np_img(item.photo).mean(-1)
    im = None
    for i, (title, err) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        if err is None:
            ax.imshow(_np_img(item.photo))
        else:
            ax.imshow(grey * 0.6, cmap="gray", vmin=0, vmax=1)
            im = ax.imshow(np.ma.masked_invalid(err), cmap="inferno", vmin=0.0, vmax=vmax)
            valid = err[np.isfinite(err)]
            if valid.size:
                title += f"\nmean {valid.mean():.3f}"
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    if im is not None:
        cb = fig.colorbar(im, cax=fig.add_axes((0.9, 0.08, 0.02, 0.66)))
        cb.ax.tick_params(labelsize=7)
    fig.suptitle(item.name, fontsize=9)
    return _save(fig, path)


def plot_contact_sheet(items: list[EvalItem], path: str | Path, max_rows: int = 24) -> list[Path]:
    """Rows of photo | coarse | refined (the renders composited over the photo). More than
    ``max_rows`` images continue on ``<stem>_2.png`` etc. Returns the written paths."""
    path = Path(path)
    out = []
    for page, start in enumerate(range(0, max(len(items), 1), max_rows)):
        chunk = items[start:start + max_rows]
        if not chunk:
            break
        fig = _figure(7.5, 2.6 * len(chunk) + 0.3)
        for r, it in enumerate(chunk):
            for c, (label, img) in enumerate((("photo", it.photo), ("coarse", it.coarse), ("refined", it.refined))):
                ax = fig.add_subplot(len(chunk), 3, 3 * r + c + 1)
                if img is not None:
                    ax.imshow(_np_img(img))
                else:
                    ax.imshow(np.full((8, 8, 3), 0.92))
                    ax.text(0.5, 0.5, "no refined result", ha="center", va="center", fontsize=8,
                            transform=ax.transAxes, color="0.4")
                cap = it.name if c == 0 else f"{label} {it.caption.get(label, '')}".strip()
                ax.set_title(cap if len(cap) <= 40 else cap[:38] + "…", fontsize=8)
                ax.axis("off")
        fig.tight_layout()
        p = path if page == 0 else path.with_name(f"{path.stem}_{page + 1}{path.suffix}")
        out.append(_save(fig, p))
    return out
