"""AFLW2000-3D evaluation: 68-landmark NME per yaw bin (3DDFA's protocol).

A folder of ``NAME.jpg`` + ``NAME.mat`` (Zhu et al., "Face Alignment Across Large Poses: A 3D
Solution", CVPR 2016). Each ``.mat`` (``scipy.io.loadmat``) holds ``pt3d_68`` — float (3, 68):
x, y in image pixels (y down), z depth — and ``Pose_Para`` (1, 7) = [pitch, yaw, roll, tx, ty, tz,
scale], angles in radians. Only x, y of ``pt3d_68`` and the yaw (index 1) are used.

Protocol (3DDFA, Zhu et al. 2016; the 3DDFA / 3DDFA_V2 benchmarks): per image, NME = the mean over
the 68 points of the 2-D Euclidean error divided by ``sqrt(w · h)`` of the ground-truth points'
bounding box; images are binned by |yaw| in degrees into [0, 30), [30, 60) and [60, 90] (|yaw| > 90
goes to the last bin); the headline is the mean of the three bin means (a balanced NME). Images
where the predictor finds no face (``None`` or :class:`~facegcn.errors.NoFaceError`) are misses:
counted per bin and left out of the NME.

The predictor is the caller's: ``predict(photo) -> (68, 2) photo pixels | None`` (x, y, pixel
centres at integers as everywhere in this package — a constant offset against the annotation's
own convention, if any, is the predictor's to apply). :func:`frontend_predictor` gives the
front-end's own 68 points.
"""

from __future__ import annotations

import csv
import io

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facegcn.evaluate.machine import machine_info, machine_line
from facegcn.errors import InputError, NoFaceError
from facegcn.io.atomic import atomic_write_text
from facegcn.io.jsonfile import strict_json

YAW_BINS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0))
BIN_LABELS = ("[0, 30)", "[30, 60)", "[60, 90]")


@dataclass(frozen=True)
class AflwSample:
    name: str
    image: Path
    landmarks: np.ndarray  # (68, 2) float64 x, y photo pixels
    pose: np.ndarray  # (7,) float64 pitch, yaw, roll (radians), tx, ty, tz, scale

    @property
    def yaw_deg(self) -> float:
        return math.degrees(float(self.pose[1]))


def read_aflw_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(landmarks (68, 2), pose (7,))`` float64 of one AFLW2000-3D ``.mat``; InputError otherwise."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: annotation file missing")
    try:
        d = loadmat(str(path))
        pts = np.asarray(d["pt3d_68"], np.float64)
        pose = np.asarray(d["Pose_Para"], np.float64).reshape(-1)
    except KeyError as exc:
        raise InputError(f"{path}: not an AFLW2000-3D annotation (no {exc.args[0]!r})") from None
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError... on bad files
        raise InputError(f"{path}: unreadable .mat ({type(exc).__name__}: {exc})") from None
    if pts.shape == (68, 3) or pts.shape == (68, 2):
        pts = pts.T
    if pts.ndim != 2 or pts.shape[1] != 68 or pts.shape[0] < 2 or pose.shape != (7,):
        raise InputError(f"{path}: pt3d_68 must be (3, 68) and Pose_Para (1, 7), got {pts.shape}, {pose.shape}")
    if not (np.isfinite(pts[:2]).all() and np.isfinite(pose[1])):
        raise InputError(f"{path}: non-finite landmarks or yaw")
    return pts[:2].T.copy(), pose


def list_aflw(folder: str | Path) -> list[AflwSample]:
    """Every ``*.jpg`` of ``folder`` (sorted) with its annotation; InputError when a ``.mat`` is
    missing or bad, or when the folder holds no image."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg") and p.is_file())
    if not images:
        raise InputError(f"{folder}: no .jpg images")
    out = []
    for img in images:
        lm, pose = read_aflw_mat(img.with_suffix(".mat"))
        out.append(AflwSample(img.stem, img, lm, pose))
    return out


def yaw_bin(yaw_deg: float) -> int:
    """Index into :data:`YAW_BINS` of a yaw (sign ignored; ≥ 60° → the last bin). Rounded to 1e-6°
    first, so a yaw stored as radians(30) (29.999999999999996°) falls in [30, 60)."""
    a = round(abs(float(yaw_deg)), 6)
    return 0 if a < 30.0 else 1 if a < 60.0 else 2


def box_size(gt: np.ndarray) -> float:
    """``sqrt(w · h)`` of the ground-truth points' bounding box."""
    gt = np.asarray(gt, np.float64)
    w, h = gt.max(0) - gt.min(0)
    return float(math.sqrt(max(w, 0.0) * max(h, 0.0)))


def nme(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean 2-D point error / :func:`box_size` (a fraction; ×100 for percent)."""
    pred, gt = np.asarray(pred, np.float64)[:, :2], np.asarray(gt, np.float64)[:, :2]
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} vs ground truth {gt.shape}")
    return float(np.linalg.norm(pred - gt, axis=1).mean() / max(box_size(gt), 1e-12))


@dataclass
class AflwResult:
    """Per-image rows and per-bin summaries of one evaluation."""

    rows: list[dict] = field(default_factory=list)
    bins: list[dict] = field(default_factory=list)
    mean_nme: float = float("nan")  # mean of the bin means (bins without a prediction skipped)
    misses: int = 0

    def table(self) -> str:
        """Plain-text table: one line per yaw bin, then the balanced mean (NME in %)."""
        from facegcn.apps.evaluate.report import text_table

        f = lambda v: "-" if not np.isfinite(v) else f"{100 * v:.2f}"  # noqa: E731
        cells = [[b["bin"], str(b["images"]), str(b["misses"]), f(b["nme"])] for b in self.bins]
        cells.append(["mean of bins", str(sum(b["images"] for b in self.bins)), str(self.misses), f(self.mean_nme)])
        return text_table(["|yaw| (deg)", "images", "misses", "NME (%)"], cells)

    def as_dict(self) -> dict:
        return {"protocol": "AFLW2000-3D, NME / sqrt(w*h) of the GT 68-point box, |yaw| bins",
                "mean_nme": self.mean_nme, "misses": self.misses, "bins": self.bins, "rows": self.rows}


def summarise(rows: list[dict]) -> AflwResult:
    """Bin the rows (each with ``yaw_deg``, ``nme`` (NaN on a miss) and ``missed``)."""
    res = AflwResult(rows=list(rows))
    means = []
    for k, label in enumerate(BIN_LABELS):
        rs = [r for r in rows if yaw_bin(r["yaw_deg"]) == k]
        vals = [r["nme"] for r in rs if not r["missed"]]
        m = float(np.mean(vals)) if vals else float("nan")
        res.bins.append({"bin": label, "images": len(rs), "misses": sum(r["missed"] for r in rs), "nme": m,
                         "nme_std": float(np.std(vals)) if vals else float("nan")})
        if vals:
            means.append(m)
    res.mean_nme = float(np.mean(means)) if means else float("nan")
    res.misses = sum(r["missed"] for r in rows)
    return res


def evaluate_aflw(folder: str | Path, predict: Callable, *, limit: int | None = None,
                  progress: Callable[[int, int, dict], None] | None = None) -> AflwResult:
    """Run ``predict`` on every annotated image of ``folder`` and bin the NMEs (module docstring).

    Args:
        folder: the AFLW2000-3D folder (or any folder of ``.jpg`` + ``.mat`` in its format).
        predict: ``photo (facegcn.io.image.Photo) -> (68, 2) array | None``.
        limit: evaluate only the first ``limit`` images (sorted by name).
        progress: called after each image with (index, total, row).

    Returns:
        :class:`AflwResult` (rows: name, yaw_deg, bin, nme, missed, seconds).
    """
    from facegcn.io.image import load_image

    samples = list_aflw(folder)[: limit if limit is not None else None]
    rows = []
    for i, s in enumerate(samples):
        photo = load_image(s.image)
        t0 = time.perf_counter()
        try:
            pred = predict(photo)
        except NoFaceError:
            pred = None
        dt = time.perf_counter() - t0
        if pred is not None:
            pred = np.asarray(pred, np.float64)
            if pred.shape[0] != 68 or pred.ndim != 2 or pred.shape[1] < 2:
                raise InputError(f"{s.name}: the predictor returned shape {pred.shape}, expected (68, 2)")
        row = {"image": s.name, "yaw_deg": s.yaw_deg, "bin": BIN_LABELS[yaw_bin(s.yaw_deg)],
               "nme": float("nan") if pred is None else nme(pred, s.landmarks), "missed": pred is None,
               "seconds": dt}
        rows.append(row)
        if progress is not None:
            progress(i, len(samples), row)
    return summarise(rows)


def frontend_predictor(detector: str = "cascade", config=None) -> Callable:
    """``photo -> (68, 2)``: the front-end's 68 landmarks of the best face (None when none)."""
    from facegcn.frontend import observe

    def predict(photo):
        obs = observe(photo, detector=detector, config=config)
        return obs[0].landmarks_photo if obs else None

    return predict


def fit_predictor(reconstructor) -> Callable:
    """``photo -> (68, 2)``: the coarse fit's 68 landmarks projected into the photo, in the
    AFLW2000-3D convention (BFM's keypoints as surface points of the fitted mesh, not the 2-D
    outline: :mod:`facegcn.morphable.landmarks3d`), for the best face (None when none).

    Args:
        reconstructor: a :class:`~facegcn.pipeline.Reconstructor` (its front-end and coarse fit run;
            no texture).
    """
    from facegcn.errors import NoFaceError
    from facegcn.morphable.landmarks3d import apply_landmarks, surface_landmarks

    model = reconstructor.model
    emb, faces = surface_landmarks(model), model.faces.cpu()

    def predict(photo):
        try:
            _, observations = reconstructor.observe(photo)
        except NoFaceError:
            return None
        if not observations:
            return None
        obs = observations[0]
        coarse = reconstructor.fit_coarse(obs)
        px = coarse.state.verts_px.detach().cpu().double()  # (1, V, 2) aligned frame
        lm = apply_landmarks(emb, faces, px)[0].numpy()
        A = np.asarray(obs.transform_inv, np.float64)
        return lm @ A[:, :2].T + A[:, 2]

    return predict


def write_aflw_report(result: AflwResult, out_dir: str | Path) -> dict[str, Path]:
    """``aflw2000.txt`` (the table and the machine line), ``aflw2000.csv`` (rows) and
    ``aflw2000.json`` (summary, rows, :func:`~facegcn.evaluate.machine.machine_info`) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = ("image", "yaw_deg", "bin", "nme", "missed", "seconds")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")  # bins such as "[0, 30)" hold commas: quoted
    w.writerow(cols)
    w.writerows([[r[c] for c in cols] for r in result.rows])
    machine = machine_info()
    doc = {**result.as_dict(), "machine": machine}
    return {"table": atomic_write_text(out / "aflw2000.txt", result.table() + machine_line(machine) + "\n"),
            "csv": atomic_write_text(out / "aflw2000.csv", buf.getvalue()),
            "json": atomic_write_text(out / "aflw2000.json", strict_json(doc))}
