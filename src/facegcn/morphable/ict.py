"""ICT-FaceKit (MIT licence, USC Institute for Creative Technologies) — the embedded default.

The vendored file holds the face area of the ICT-FaceKit model (9,409 vertices of the 11,248;
head, neck and back of the head dropped), 100 identity deltas (weights ~ N(0, 1)), 53 ARKit
expression blendshapes (weights in [0, 1]), quads split into triangles, UVs and the 68 Multi-PIE
landmark vertices. Units: the source is in centimetres; loaded geometry is in decimetres like
Deep3DFaceRecon's BFM. ICT has no albedo model: see :mod:`facegcn.morphable.albedo`.
The embedded model also carries the parts that close the face (head, sockets, mouth interior,
eyeballs: ``data/ict_parts.npz``, :mod:`facegcn.morphable.parts`), same coefficients.
Licence: ``data/LICENSE-ICT-FaceKit``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from facegcn.errors import ModelFileError
from facegcn.morphable.albedo import albedo_factors, assemble_albedo_basis
from facegcn.morphable.model import ModelData
from facegcn.morphable.parts import load_parts, vendored_parts_path

CM_TO_DM = 0.1
REGION_PREFIX = "region_"


def vendored_path() -> Path:
    return Path(str(resources.files("facegcn.morphable") / "data" / "ict_face.npz"))


def quads_to_triangles(quads: np.ndarray) -> np.ndarray:
    """(Q, 4) → (2Q, 3): (a, b, c, d) → (a, b, c), (a, c, d); keeps the quads' winding."""
    quads = np.asarray(quads, np.int64)
    return np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]], axis=0)


def load_ict(path: str | Path | None = None, n_albedo: int = 80, parts: str | Path | bool | None = None) -> ModelData:
    """Read an ICT-format face model.

    Args:
        path: the ``.npz`` (default: the embedded model).
        n_albedo: albedo components kept.
        parts: the parts file (``ict_parts.npz``), True for the embedded one, False for none;
            None (default): the embedded parts with the embedded model, none with another file.

    Returns:
        the :class:`ModelData` (decimetres), ``parts`` set when loaded.
    """
    if parts is None:
        parts = path is None
    path = Path(path) if path is not None else vendored_path()
    try:
        d = np.load(path, allow_pickle=False)
        neutral = d["neutral_cm"].astype(np.float64)
        V = neutral.shape[0]
        idd = d["identity_deltas_cm"].astype(np.float32)
        exd = d["expression_deltas_cm"].astype(np.float32)
        quads = d["quads"]
        quads_uv = d["quads_uv"]
        uv = d["uv"].astype(np.float32)
        lm = d["landmarks68"].astype(np.int64)
        lam = d["albedo_eigenvalues"].astype(np.float64)
        phi = d["albedo_eigenvectors"].astype(np.float64)
        names = [str(x) for x in d["expression_names"]]
        regions = {k[len(REGION_PREFIX):]: d[k].astype(np.int64) for k in d.files if k.startswith(REGION_PREFIX)}
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise ModelFileError(f"cannot read ICT face model {path}: {type(exc).__name__}: {exc}") from None
    if idd.shape[1:] != (V, 3) or exd.shape[1:] != (V, 3) or phi.shape[0] != V:
        raise ModelFileError(f"ICT face model {path} has inconsistent shapes")
    if not (np.isfinite(neutral).all() and np.isfinite(idd).all() and np.isfinite(exd).all()):
        raise ModelFileError(f"ICT face model {path} contains NaN or infinite values")
    mean_albedo, albedo_basis = assemble_albedo_basis(lam, phi, n_albedo)
    model_parts = None
    if parts is not False:
        ppath = vendored_parts_path() if parts is True else Path(parts)
        model_parts = load_parts(ppath, V, len(idd), len(exd), CM_TO_DM)
    return ModelData(
        name="ict",
        mean_shape=neutral * CM_TO_DM,
        id_basis=(idd.reshape(len(idd), -1).T * CM_TO_DM),
        exp_basis=(exd.reshape(len(exd), -1).T * CM_TO_DM),
        mean_albedo=mean_albedo,
        albedo_basis=albedo_basis,
        albedo_factors=albedo_factors(lam, phi, n_albedo),
        faces=quads_to_triangles(quads),
        landmarks68=lm,
        regions=regions,
        uv=uv,
        faces_uv=quads_to_triangles(quads_uv),
        exp_names=names,
        info={"source": "ICT-FaceKit (MIT)", "albedo": "mean skin + Laplacian eigenbasis (synthetic)"},
        parts=model_parts,
    )
