"""Weight files as safetensors (no pickle): tensors in the file, JSON metadata in its header.

Every ``.safetensors`` file the package writes (the regressor, the texture generator, training
checkpoints) goes through :func:`save_tensors` / :func:`load_tensors`: the metadata is one JSON
object under the header key ``"facegcn"`` (:data:`META_KEY`), conventionally with a ``"kind"``
that :func:`load_module_state` checks. Writes are atomic (temporary file + rename), so a process
killed at any moment leaves the old file or the new one, never a torn file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from facegcn.errors import ModelFileError
from facegcn.io.atomic import atomic_write_bytes

__all__ = ["META_KEY", "load_module_state", "load_tensors", "save_module", "save_tensors"]

META_KEY = "facegcn"


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Atomically write named tensors and JSON metadata to one safetensors file.

    Args:
        path: the file to write (its folder is created if needed).
        tensors: name → tensor; each is detached, made contiguous and copied to the CPU.
        meta: JSON-serialisable metadata (stored with sorted keys under :data:`META_KEY`).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Shapes:
        tensors: any shapes and dtypes safetensors supports; stored as they are.
    """
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    data = save(flat, metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    return atomic_write_bytes(path, data)


def load_tensors(path: str | Path, map_location="cpu") -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a file written by :func:`save_tensors`.

    Args:
        path: the safetensors file.
        map_location: device the tensors are loaded onto (``"cpu"``, ``"cuda:0"``, a
            :class:`torch.device`).

    Returns:
        ``(meta, tensors)``: the JSON metadata (``{}`` when the file has none) and name → tensor.

    Raises:
        ModelFileError: the file is missing or not a readable safetensors file.
    """
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
    """Atomically write ``module.state_dict()`` (parameters and persistent buffers) with ``meta``.

    Args:
        path: the file to write.
        module: any :class:`torch.nn.Module` (on any device; saved from the CPU).
        meta: JSON metadata, e.g. ``{"kind": "regressor", "config": {...}}``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    return save_tensors(path, dict(module.state_dict()), meta)


def load_module_state(path: str | Path, expect_kind: str | None = None,
                      map_location="cpu") -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a state dict written by :func:`save_module`, optionally checking its ``kind``.

    Args:
        path: the safetensors file.
        expect_kind: when given, ``meta["kind"]`` must equal it.
        map_location: device the tensors are loaded onto.

    Returns:
        ``(meta, state_dict)``, ready for ``module.load_state_dict``.

    Raises:
        ModelFileError: unreadable file, or a file of another kind.
    """
    meta, state = load_tensors(path, map_location)
    if expect_kind is not None and meta.get("kind") != expect_kind:
        raise ModelFileError(f"{path} is not a {expect_kind} checkpoint (kind={meta.get('kind')!r})")
    return meta, state
