"""Checkpoints as safetensors (no pickle): tensors in the file, JSON metadata in its header.

Writes are atomic (temporary file + rename), so a run killed at any moment leaves the old
checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from facegcn.errors import ModelFileError
from facegcn.io.atomic import atomic_write_bytes

META_KEY = "facegcn"


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    from safetensors.torch import save

    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    data = save(flat, metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    return atomic_write_bytes(path, data)


def load_tensors(path: str | Path, map_location="cpu") -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            meta = json.loads((f.metadata() or {}).get(META_KEY, "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises SafetensorError / OSError / ValueError on garbage
        raise ModelFileError(f"cannot read checkpoint {path}: not a valid safetensors file ({type(exc).__name__})") from None
    return meta, tensors


def save_module(path: str | Path, module: torch.nn.Module, meta: dict) -> Path:
    return save_tensors(path, dict(module.state_dict()), meta)


def load_module_state(path: str | Path, expect_kind: str | None = None, map_location="cpu"):
    meta, state = load_tensors(path, map_location)
    if expect_kind is not None and meta.get("kind") != expect_kind:
        raise ModelFileError(f"{path} is not a {expect_kind} checkpoint (kind={meta.get('kind')!r})")
    return meta, state
