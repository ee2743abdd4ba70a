"""MediaPipe's 468 face-mesh points embedded on a morphable model's surface.

Each MediaPipe point ``i`` is a surface point of the model: triangle ``tri[i]`` and barycentric
weights ``bary[i]`` (three, summing to 1) of that triangle's corners, so for any mesh of the model
(any identity, expression, pose) the point is ``Σ_k bary[i, k] · verts[faces[tri[i], k]]``.
``weight[i]`` in [0, 1] is the point's reliability: how consistently MediaPipe's network put that
point on the same surface point across many renders of the model (high for the eyes, lips and nose,
low for the silhouette / forehead contour, whose network points slide along the outline with the
pose).

The embedding is derived, not hand-made: ``tools/make_dense_correspondence.py`` renders the model
with known geometry and reads back, through the rasterizer, where each network point lands (see
that script and :mod:`facegcn.frontend.dense_synth`). Files: ``data/dense468_<model>.npz``
(``allow_pickle=False``), arrays ``tri`` int32 (468,), ``bary`` float32 (468, 3), ``weight``
float32 (468,), ``mean_points`` float32 (468, 3) (the points on the model's mean shape, model
units), ``spread_px`` / ``hit_rate`` float32 (468,) (the derivation's statistics), ``n_vertices``,
``n_faces``, ``faces_checksum`` (to refuse a model whose triangles differ) and ``model``.
Only ICT's file ships; other models need the script run for them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from facegcn.errors import ModelFileError

N_DENSE = 468


def faces_checksum(faces) -> str:
    """A short hex digest of a model's (F, 3) triangle list (int64, C order)."""
    arr = np.ascontiguousarray(np.asarray(faces.cpu() if isinstance(faces, torch.Tensor) else faces, np.int64))
    return hashlib.sha256(arr.tobytes()).hexdigest()[:16]


def correspondence_path(name: str) -> Path:
    """Where the shipped embedding of model ``name`` lives (it may not exist)."""
    return Path(str(resources.files("facegcn.morphable") / "data" / f"dense468_{name}.npz"))


@dataclass(frozen=True)
class DenseCorrespondence:
    """The embedding as numpy arrays (see the module docstring for the meaning of each)."""

    tri: np.ndarray  # (468,) int64
    bary: np.ndarray  # (468, 3) float32
    weight: np.ndarray  # (468,) float32 in [0, 1]
    mean_points: np.ndarray  # (468, 3) float32
    spread_px: np.ndarray  # (468,) float32
    hit_rate: np.ndarray  # (468,) float32
    model: str = ""
    n_renders: int = 0


def read_correspondence(path: str | Path) -> DenseCorrespondence:
    """Read and validate a ``dense468_*.npz`` file (ModelFileError when unreadable or malformed)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as d:
            out = DenseCorrespondence(
                tri=d["tri"].astype(np.int64), bary=d["bary"].astype(np.float32),
                weight=d["weight"].astype(np.float32), mean_points=d["mean_points"].astype(np.float32),
                spread_px=d["spread_px"].astype(np.float32), hit_rate=d["hit_rate"].astype(np.float32),
                model=str(d["model"]), n_renders=int(d["n_renders"]))
            meta = (int(d["n_vertices"]), int(d["n_faces"]), str(d["faces_checksum"]))
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise ModelFileError(f"cannot read dense correspondence {path}: {type(exc).__name__}: {exc}") from None
    ok = (out.tri.shape == (N_DENSE,) and out.bary.shape == (N_DENSE, 3) and out.weight.shape == (N_DENSE,)
          and out.mean_points.shape == (N_DENSE, 3) and np.isfinite(out.bary).all()
          and np.isfinite(out.weight).all() and out.tri.min() >= 0 and out.tri.max() < meta[1]
          and np.allclose(out.bary.sum(1), 1.0, atol=1e-4) and out.bary.min() >= -1e-6)
    if not ok:
        raise ModelFileError(f"dense correspondence {path} is malformed (expected {N_DENSE} points)")
    object.__setattr__(out, "_meta", meta)
    return out


def load_dense_correspondence(model, path: str | Path | None = None, device=None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The embedding of MediaPipe's 468 points on ``model``'s surface.

    Args:
        model: a :class:`~facegcn.morphable.MorphableModel` (its ``name`` picks the shipped file).
        path: an explicit ``dense468_*.npz`` (e.g. made for a BFM by the derivation script).
        device: where the tensors go (default: the model's device).

    Returns:
        ``tri`` (468,) int64, ``bary`` (468, 3) float32, ``weight`` (468,) float32 in [0, 1].

    Raises:
        ModelFileError: no file for this model, or one made for a different mesh.
    """
    c = dense_correspondence(model, path)
    dev = model.mean_shape.device if device is None else device
    return (torch.as_tensor(c.tri, device=dev), torch.as_tensor(c.bary, device=dev),
            torch.as_tensor(c.weight, device=dev))


def dense_correspondence(model, path: str | Path | None = None) -> DenseCorrespondence:
    """:func:`load_dense_correspondence` as the full :class:`DenseCorrespondence` (numpy), checked
    against the model's vertex / triangle counts and triangle list."""
    p = Path(path) if path is not None else correspondence_path(model.name)
    if not p.is_file():
        raise ModelFileError(f"no dense correspondence for model {model.name!r} ({p}); make one with "
                             f"tools/make_dense_correspondence.py --model ...")
    c = read_correspondence(p)
    nv, nf, chk = c._meta  # type: ignore[attr-defined]
    if (nv, nf) != (model.n_vertices, model.n_faces) or chk != faces_checksum(model.faces):
        raise ModelFileError(f"dense correspondence {p} was made for another mesh ({nv} vertices, {nf} triangles; "
                             f"model {model.name!r} has {model.n_vertices}, {model.n_faces})")
    return c


def dense_points(verts: torch.Tensor, faces: torch.Tensor, tri: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """The embedded points of a batch of meshes (differentiable in ``verts``).

    Args:
        verts: (B, V, D) vertices (3-D, or projected 2-D / screen (u, v, z) — the barycentric
            combination of projected vertices is the projection of the point up to the
            perspective error within one triangle, far below a pixel for these small triangles).
        faces: (F, 3) int64; tri: (N,) int64; bary: (N, 3).

    Returns:
        (B, N, D), same dtype as ``verts``.
    """
    corners = faces.to(verts.device)[tri.to(verts.device)]  # (N, 3)
    v = verts[:, corners.reshape(-1)].view(verts.shape[0], -1, 3, verts.shape[-1])
    return (v * bary.to(verts.device, verts.dtype)[None, :, :, None]).sum(2)


def model_dense_points(model, verts: torch.Tensor, path: str | Path | None = None) -> torch.Tensor:
    """The 468 MediaPipe points of ``model`` meshes: (B, V, 3) → (B, 468, 3)."""
    tri, bary, _ = load_dense_correspondence(model, path, device=verts.device)
    return dense_points(verts, model.faces, tri, bary)


def write_correspondence(path: str | Path, model, tri, bary, weight, *, spread_px, hit_rate, n_renders: int) -> Path:
    """Write a ``dense468_*.npz`` for ``model`` (the derivation script's output); returns the path."""
    tri = np.asarray(tri, np.int64)
    bary = np.asarray(bary, np.float64)
    bary = np.clip(bary, 0.0, None)
    bary = bary / bary.sum(1, keepdims=True)
    faces = model.faces.cpu().numpy()
    mean = model.mean_shape.detach().cpu().numpy().astype(np.float64)
    mean_points = (mean[faces[tri]] * bary[..., None]).sum(1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez_compressed(
            fh, tri=tri.astype(np.int32), bary=bary.astype(np.float32), weight=np.asarray(weight, np.float32),
            mean_points=mean_points.astype(np.float32), spread_px=np.asarray(spread_px, np.float32),
            hit_rate=np.asarray(hit_rate, np.float32), n_vertices=np.int32(model.n_vertices),
            n_faces=np.int32(model.n_faces), faces_checksum=np.array(faces_checksum(faces)),
            model=np.array(str(model.name)), n_renders=np.int32(n_renders))
    return path
