"""The 68 Multi-PIE landmarks as 3-D surface points in the AFLW2000-3D / 300W-LP convention.

Two conventions of "the 68 landmarks" meet in this package:

* **2-D (dlib, Multi-PIE)**: what a 2-D detector marks in the photo. The jaw line (0–16) is the
  *visible outline* of the cheek and chin; the model's ``landmark_idx`` vertices (ICT-FaceKit's
  own landmark list) follow it for a frontal face, and the coarse fit matches them to dlib's points.
* **3-D (AFLW2000-3D, 300W-LP, 3DDFA)**: fixed vertices of the Basel Face Model ("3D landmarks",
  ``pt3d_68``), projected with the fitted pose; a point hidden behind the nose at large yaw is still
  drawn where the surface point is. Its jaw points sit lower and further back on the cheek than the
  2-D outline (≈ 1 cm on a frontal face), and its brows / eye corners differ by a few millimetres.

Benchmarks in the 3-D convention (``facegcn evaluate --aflw2000``, ``coeffs.json``'s
``landmarks68_photo``) read the fitted mesh at the surface points of this module:
``Σ_k bary[j, k] · verts[faces[tri[j], k]]``, j = 0…67.

Derivation (``tools/make_landmarks3d.py``: :func:`facegcn.frontend.geometry.umeyama_similarity`,
then :func:`facegcn.graph.geometry.closest_points_on_mesh`): BFM's 68 keypoints
on its mean face (read from PRNet's MIT-licensed ``canonical_vertices.npy`` at the UV pixels of
``uv_kpt_ind.txt``; not shipped) are aligned to this model's mean shape by the similarity transform
that best maps their 51 inner points (brows, nose, eyes, mouth: the same anatomy in both
conventions) onto the model's landmark vertices, and every point is then moved to the closest point
of the model's surface. Nothing is tuned on a benchmark's images.

File ``data/landmarks3d_<model>.npz`` (``allow_pickle=False``): ``tri`` int32 (68,), ``bary``
float32 (68, 3), ``distance`` float32 (68,) (reference point → surface, model units),
``n_vertices``, ``n_faces``, ``faces_checksum``, ``source``. A model without a file (e.g. a BFM,
whose ``keypoints`` *are* these vertices) uses its own landmark vertices.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from facegcn.errors import ModelFileError
from facegcn.morphable.dense import faces_checksum

INNER = np.arange(17, 68)  # brows, nose, eyes, mouth: shared by both conventions


def landmarks3d_path(name: str) -> Path:
    """Where the shipped embedding of model ``name`` lives (it may not exist)."""
    return Path(str(resources.files("facegcn.morphable") / "data" / f"landmarks3d_{name}.npz"))


@dataclass(frozen=True)
class SurfaceLandmarks:
    """68 surface points of a model: ``tri`` (68,) int64 triangle ids, ``bary`` (68, 3) float64
    barycentric weights (rows sum to 1); ``distance`` (68,) how far the reference point lay from
    the surface (model units; zeros for vertex landmarks)."""

    tri: np.ndarray
    bary: np.ndarray
    distance: np.ndarray
    source: str = ""


def vertex_landmarks(model) -> SurfaceLandmarks:
    """The model's own landmark vertices as surface points (one corner of a triangle each)."""
    faces = model.faces.cpu().numpy() if isinstance(model.faces, torch.Tensor) else np.asarray(model.faces)
    idx = model.landmark_idx.cpu().numpy()
    hit = faces[:, :, None] == idx[None, None, :]  # (F, 3, 68)
    if not hit.any((0, 1)).all():
        raise ModelFileError("a landmark vertex belongs to no triangle")
    tri = hit.any(1).argmax(0)  # the first triangle holding each landmark vertex
    bary = hit[tri, :, np.arange(len(idx))].astype(np.float64)
    return SurfaceLandmarks(tri.astype(np.int64), bary, np.zeros(len(idx)), "the model's landmark vertices")


def write_landmarks3d(path: str | Path, emb: SurfaceLandmarks, model) -> Path:
    """Write ``emb`` for ``model`` in the module's file format (with the mesh's counts and
    triangle checksum, so a file is never applied to another mesh); returns ``path``."""
    path = Path(path)
    np.savez_compressed(path, tri=emb.tri.astype(np.int32), bary=emb.bary.astype(np.float32),
                        distance=emb.distance.astype(np.float32), n_vertices=np.int64(model.n_vertices),
                        n_faces=np.int64(model.n_faces), faces_checksum=np.str_(faces_checksum(model.faces)),
                        source=np.str_(emb.source))
    return path


def surface_landmarks(model, path: str | Path | None = None) -> SurfaceLandmarks:
    """The 3-D-convention landmarks of ``model``: its shipped (or given) file, else its vertices
    (also when the shipped file was made for another mesh of the same name).

    Raises:
        ModelFileError: the file is unreadable or malformed, or a given file is for another mesh.
    """
    p = Path(path) if path is not None else landmarks3d_path(model.name)
    if path is None and not p.is_file():
        return vertex_landmarks(model)
    try:
        with np.load(p, allow_pickle=False) as d:
            emb = SurfaceLandmarks(d["tri"].astype(np.int64), d["bary"].astype(np.float64),
                                   d["distance"].astype(np.float64), str(d["source"]))
            meta = (int(d["n_vertices"]), int(d["n_faces"]), str(d["faces_checksum"]))
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise ModelFileError(f"cannot read 3-D landmarks {p}: {type(exc).__name__}: {exc}") from None
    if meta != (model.n_vertices, model.n_faces, faces_checksum(model.faces)):
        if path is None:  # the shipped file is for the embedded mesh; another file of that format
            return vertex_landmarks(model)
        raise ModelFileError(f"3-D landmarks {p} were made for another mesh than model {model.name!r}")
    ok = (emb.tri.shape == (68,) and emb.bary.shape == (68, 3) and emb.tri.min() >= 0
          and emb.tri.max() < model.n_faces and np.allclose(emb.bary.sum(1), 1.0, atol=1e-4)
          and emb.bary.min() >= -1e-6)
    if not ok:
        raise ModelFileError(f"3-D landmarks {p} are malformed (expected 68 surface points)")
    return emb


def apply_landmarks(emb: SurfaceLandmarks, faces: torch.Tensor, verts: torch.Tensor) -> torch.Tensor:
    """Surface points of a batch of meshes.

    Args:
        emb: the embedding; faces: (F, 3) int64 the model's triangles.
        verts: (B, V, D) float vertices (3-D, or projected 2-D pixels), any device.

    Returns:
        (B, 68, D) same dtype and device as ``verts``: ``Σ_k bary[j, k] · verts[:, faces[tri[j], k]]``.
    """
    corners = faces.to(verts.device)[torch.as_tensor(emb.tri, device=verts.device)]  # (68, 3)
    w = torch.as_tensor(emb.bary, dtype=verts.dtype, device=verts.device)
    return (verts[:, corners] * w[None, :, :, None]).sum(2)
