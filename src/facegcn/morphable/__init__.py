"""facegcn.morphable: model loading (ICT default, BFM), coefficient layout, shape/albedo/normals,
the parts that close the ICT face (``MorphableModel.parts``, ``closed_shape``)."""

from __future__ import annotations

from pathlib import Path

from facegcn.errors import ModelFileError
from facegcn.morphable.layout import PAPER_LAYOUT, CoeffLayout, Coefficients
from facegcn.morphable.model import FaceMesh, ModelData, MorphableModel
from facegcn.morphable.parts import PART_GROUPS, ModelParts

__all__ = [
    "PAPER_LAYOUT",
    "CoeffLayout",
    "Coefficients",
    "FaceMesh",
    "ModelData",
    "ModelParts",
    "MorphableModel",
    "PART_GROUPS",
    "load_model",
    "load_model_data",
]


def load_model_data(spec: str | Path = "ict") -> ModelData:
    """``"ict"`` (embedded default), a ``BFM_model_front.mat`` path, or an ICT-format ``.npz``."""
    from facegcn.morphable.bfm import load_bfm_front
    from facegcn.morphable.ict import load_ict

    if str(spec).lower() == "ict":
        return load_ict()
    path = Path(spec)
    if str(spec).lower() == "bfm":
        raise ModelFileError("the Basel Face Model is licence-gated: pass the path of your BFM_model_front.mat")
    if path.is_dir():
        cand = path / "BFM_model_front.mat"
        if cand.is_file():
            path = cand
        else:
            raise ModelFileError(f"{path} is a folder without BFM_model_front.mat (convert with `facegcn model convert-bfm`)")
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if path.suffix.lower() == ".mat":
        return load_bfm_front(path)
    if path.suffix.lower() == ".npz":
        return load_ict(path)
    raise ModelFileError(f"unknown model file type {path.suffix!r} for {path} (expected .mat or .npz)")


def load_model(spec: str | Path = "ict", device=None) -> MorphableModel:
    m = MorphableModel(load_model_data(spec))
    return m.to(device) if device is not None else m
