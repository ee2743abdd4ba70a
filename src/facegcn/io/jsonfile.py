"""Strict JSON for every document the package writes (reports, coefficients, metrics)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch

__all__ = ["strict_json", "json_safe"]


def json_safe(o: Any) -> Any:
    """A copy of ``o`` that :func:`json.dumps` accepts with ``allow_nan=False``: NaN/±inf → None,
    numpy scalars/arrays and tensors → numbers/lists, tuples → lists, dict keys → str, anything
    else unknown → ``str(o)``."""
    if isinstance(o, dict):
        return {str(k): json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    if isinstance(o, torch.Tensor):
        o = o.detach().cpu().numpy()
    if isinstance(o, np.ndarray):
        return json_safe(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if o is None or isinstance(o, (bool, int, str)):
        return o
    return str(o)


def strict_json(obj: Any, **kw) -> str:
    """``json.dumps(json_safe(obj), allow_nan=False, **kw)``: always valid JSON (RFC 8259)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kw)
