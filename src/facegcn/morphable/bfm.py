"""Basel Face Model 2009 from user-supplied files (licence-gated: never shipped).

Two inputs are supported:

* ``BFM_model_front.mat`` in the layout of Deep3DFaceRecon_pytorch / HRN: ``meanshape`` (1, 3V),
  ``idBase`` (3V, 80), ``exBase`` (3V, 64), ``meantex`` (1, 3V) and ``texBase`` (3V, 80) in 0..255,
  ``tri`` (F, 3) 1-based, ``keypoints`` (1, 68) 1-based, ``skinmask`` (1, V), ``frontmask2_idx``
  (N, 1) 1-based, ``point_buf`` (V, 8) 1-based; geometry in decimetres (BFM's µm / 1e5).
* the raw release — ``01_MorphableModel.mat`` + ``Exp_Pca.bin`` (+ ``std_exp.txt``,
  ``BFM_front_idx.mat``, ``BFM_exp_idx.mat``, ``facemodel_info.mat`` from Deep3DFaceRecon's
  ``BFM`` folder) — converted by :func:`convert_bfm` into the former (``facegcn model convert-bfm``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facegcn.errors import ModelFileError
from facegcn.morphable.model import ModelData

N_ID, N_EXP, N_TEX = 80, 64, 80
UM_TO_DM = 1e-5
REQUIRED_FRONT = ("meanshape", "meantex", "idBase", "exBase", "texBase", "tri", "keypoints")


def _loadmat(path: Path, what: str) -> dict:
    import scipy.io

    if not path.is_file():
        raise ModelFileError(f"{what} not found: {path}")
    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError:
        raise ModelFileError(f"{what} {path} is a MATLAB v7.3 (HDF5) file; re-save it with -v7") from None
    except Exception as exc:  # scipy raises many types on garbage (ValueError, TypeError, OSError…)
        raise ModelFileError(f"cannot read {what} {path}: {type(exc).__name__}: {exc}") from None


def _field(d: dict, key: str, path: Path) -> np.ndarray:
    if key not in d:
        raise ModelFileError(f"{path} has no variable {key!r}")
    a = np.asarray(d[key])
    if a.dtype == object or not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise ModelFileError(f"{path}: variable {key!r} is not real numeric data")
    return a


def _indices(a: np.ndarray, key: str, path: Path) -> np.ndarray:
    """Validate that an index array holds finite integers before casting it."""
    if a.size == 0 or not np.isfinite(a).all() or not (a == np.round(a)).all():
        raise ModelFileError(f"{path}: {key} must hold integer indices")
    return a.astype(np.int64)


def load_bfm_front(path: str | Path) -> ModelData:
    path = Path(path)
    d = _loadmat(path, "BFM model file")
    meanshape = _field(d, "meanshape", path).astype(np.float64).reshape(-1)
    if meanshape.size % 3:
        raise ModelFileError(f"{path}: meanshape length {meanshape.size} is not a multiple of 3")
    V = meanshape.size // 3
    arrays = {k: _field(d, k, path) for k in REQUIRED_FRONT}
    for k in ("idBase", "exBase", "texBase"):
        if arrays[k].ndim != 2 or arrays[k].shape[0] != 3 * V:
            raise ModelFileError(f"{path}: {k} has shape {arrays[k].shape}, expected ({3 * V}, K)")
    meantex = arrays["meantex"].astype(np.float64).reshape(-1)
    if meantex.size != 3 * V:
        raise ModelFileError(f"{path}: meantex has {meantex.size} values, expected {3 * V}")
    tri = _indices(arrays["tri"], "tri", path)
    if tri.ndim != 2 or tri.shape[1] != 3 or tri.min() < 1 or tri.max() > V:
        raise ModelFileError(f"{path}: tri must be (F, 3) 1-based indices into {V} vertices")
    kp = _indices(arrays["keypoints"], "keypoints", path).reshape(-1)
    if kp.size != 68 or kp.min() < 1 or kp.max() > V:
        raise ModelFileError(f"{path}: keypoints must be 68 1-based vertex indices")
    for k in ("meanshape", "idBase", "exBase", "texBase", "meantex"):
        if not np.isfinite(arrays[k]).all():
            raise ModelFileError(f"{path}: {k} contains NaN or infinite values")
    regions: dict[str, np.ndarray] = {"face": np.arange(V)}
    skin = None
    if "skinmask" in d:
        sm = _field(d, "skinmask", path).astype(np.float64).reshape(-1)
        if sm.size == V:
            skin = np.clip(sm, 0, 1).astype(np.float32)
            regions["skin"] = np.flatnonzero(sm > 0.5)
    if "frontmask2_idx" in d:
        fm = _indices(_field(d, "frontmask2_idx", path), "frontmask2_idx", path).reshape(-1) - 1
        if fm.size and fm.min() >= 0 and fm.max() < V:
            regions["front"] = fm
    return ModelData(
        name="bfm",
        mean_shape=meanshape.reshape(V, 3),
        id_basis=arrays["idBase"].astype(np.float32),
        exp_basis=arrays["exBase"].astype(np.float32),
        mean_albedo=(meantex / 255.0).reshape(V, 3),
        albedo_basis=arrays["texBase"].astype(np.float32) / 255.0,
        faces=tri - 1,
        landmarks68=kp - 1,
        regions=regions,
        skin_weight=skin,
        info={"source": f"BFM09 front face ({path.name})"},
    )


def read_exp_pca_bin(path: str | Path, n_vertex: int = 53215) -> tuple[np.ndarray, np.ndarray]:
    """Guo et al.'s expression PCA: int32 dim, float32 mean (3N), float32 PCs (dim × 3N) → (mean, PC (3N, dim))."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"expression basis not found: {path}")
    raw = path.read_bytes()
    if len(raw) < 4:
        raise ModelFileError(f"{path} is truncated (no header)")
    dim = int(np.frombuffer(raw[:4], "<i4")[0])
    expected = 4 + 4 * 3 * n_vertex * (1 + dim)
    if dim <= 0 or dim > 10_000 or len(raw) < expected:
        raise ModelFileError(
            f"{path} is truncated or not Exp_Pca.bin: {len(raw)} bytes, expected {expected} for dim {dim}"
        )
    body = np.frombuffer(raw[4:expected], "<f4")
    mu = body[: 3 * n_vertex].astype(np.float64)
    pc = body[3 * n_vertex :].reshape(dim, 3 * n_vertex).T.astype(np.float64)
    return mu, pc


def write_exp_pca_bin(path: str | Path, mu: np.ndarray, pc: np.ndarray) -> None:
    """Inverse of :func:`read_exp_pca_bin` (for tests and tools)."""
    pc = np.asarray(pc, np.float32)
    with open(path, "wb") as fh:
        fh.write(np.int32(pc.shape[1]).tobytes())
        fh.write(np.asarray(mu, "<f4").tobytes())
        fh.write(np.ascontiguousarray(pc.T, "<f4").tobytes())


def convert_bfm(bfm_dir: str | Path, out: str | Path | None = None) -> Path:
    """Deep3DFaceRecon's transferBFM09: raw BFM09 + expression basis → ``BFM_model_front.mat``."""
    import scipy.io

    from facegcn.io.atomic import atomic_open

    bfm_dir = Path(bfm_dir)
    if not bfm_dir.is_dir():
        raise ModelFileError(f"BFM folder not found: {bfm_dir}")
    out = Path(out) if out else bfm_dir / "BFM_model_front.mat"
    raw_path = bfm_dir / "01_MorphableModel.mat"
    raw = _loadmat(raw_path, "BFM09 model")
    shapeMU = _field(raw, "shapeMU", raw_path).astype(np.float64)
    shapePC = _field(raw, "shapePC", raw_path).astype(np.float64)
    shapeEV = _field(raw, "shapeEV", raw_path).astype(np.float64).reshape(-1)
    texMU = _field(raw, "texMU", raw_path).astype(np.float64)
    texPC = _field(raw, "texPC", raw_path).astype(np.float64)
    texEV = _field(raw, "texEV", raw_path).astype(np.float64).reshape(-1)
    n_full = shapeMU.size // 3
    if shapePC.shape[0] != 3 * n_full or texPC.shape[0] != 3 * n_full or shapePC.shape[1] < N_ID:
        raise ModelFileError(f"{raw_path}: shapePC/texPC shapes {shapePC.shape}/{texPC.shape} do not match shapeMU")
    std_path = bfm_dir / "std_exp.txt"
    if not std_path.is_file():
        raise ModelFileError(f"expression standard deviations not found: {std_path}")
    try:
        expEV = np.loadtxt(std_path).reshape(-1)
    except ValueError as exc:
        raise ModelFileError(f"cannot read {std_path}: {exc}") from None
    exp_idx_path = bfm_dir / "BFM_exp_idx.mat"
    trim = _field(_loadmat(exp_idx_path, "expression index file"), "trimIndex", exp_idx_path).astype(np.int64).reshape(-1) - 1
    n_exp_vertex = trim.size
    _, expPC = read_exp_pca_bin(bfm_dir / "Exp_Pca.bin", n_exp_vertex)
    if expPC.shape[1] < N_EXP or expEV.size < N_EXP:
        raise ModelFileError(f"expression basis has {expPC.shape[1]} components, need {N_EXP}")
    front_path = bfm_dir / "BFM_front_idx.mat"
    index_exp = _field(_loadmat(front_path, "front-face index file"), "idx", front_path).astype(np.int64).reshape(-1) - 1
    if index_exp.min() < 0 or index_exp.max() >= n_exp_vertex or trim.min() < 0 or trim.max() >= n_full:
        raise ModelFileError("front/expression index files do not match the model sizes")
    index_shape = trim[index_exp]

    idBase = (shapePC * shapeEV[None, : shapePC.shape[1]])[:, :N_ID] * UM_TO_DM
    exBase = (expPC * expEV[None, : expPC.shape[1]])[:, :N_EXP] * UM_TO_DM
    texBase = (texPC * texEV[None, : texPC.shape[1]])[:, :N_TEX]
    idBase = idBase.reshape(-1, 3, N_ID)[index_shape].reshape(-1, N_ID)
    exBase = exBase.reshape(-1, 3, N_EXP)[index_exp].reshape(-1, N_EXP)
    texBase = texBase.reshape(-1, 3, N_TEX)[index_shape].reshape(-1, N_TEX)
    meanshape = (shapeMU.reshape(-1, 3) * UM_TO_DM)[index_shape].reshape(1, -1)
    meantex = texMU.reshape(-1, 3)[index_shape].reshape(1, -1)

    info_path = bfm_dir / "facemodel_info.mat"
    info = _loadmat(info_path, "face model info file")
    keys = ("frontmask2_idx", "skinmask", "keypoints", "point_buf", "tri", "tri_mask2")
    extra = {k: _field(info, k, info_path) for k in keys if k in info}
    for k in ("tri", "keypoints"):
        if k not in extra:
            raise ModelFileError(f"{info_path} has no variable {k!r}")
    payload = {"meanshape": meanshape, "meantex": meantex, "idBase": idBase, "exBase": exBase, "texBase": texBase, **extra}
    with atomic_open(out, "wb") as fh:
        scipy.io.savemat(fh, payload)
    return out
