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


# ---------------------------------------------------------------------------------------------
# Training state (optimizers, schedulers, RNG, counters) without pickle.
#
# Any nested structure of dicts / lists / tuples / JSON scalars / tensors / numpy arrays (what
# ``optimizer.state_dict()``, ``scheduler.state_dict()`` and the RNG getters return) is split into
# a JSON skeleton and a flat dict of tensors. The skeleton keeps key and container types
# (integer optimizer-state keys, tuples such as Adam's ``betas``), so ``unpack_state`` returns an
# object equal to the original; floats survive JSON exactly (``repr`` round trip).

_T, _A, _D, _TUP = "__tensor__", "__ndarray__", "__dict__", "__tuple__"


def pack_state(obj, tensors: dict[str, torch.Tensor], prefix: str):
    """JSON-able skeleton of ``obj``; its tensors are added to ``tensors`` under ``prefix/…``."""
    import numpy as np

    def rec(o, path: str):
        if isinstance(o, torch.Tensor):
            key = f"{prefix}/{len(tensors)}"
            tensors[key] = o.detach()
            return {_T: key}
        if isinstance(o, np.ndarray):
            key = f"{prefix}/{len(tensors)}"
            arr = np.ascontiguousarray(o)
            if arr.dtype.kind == "u" and arr.dtype.itemsize > 1:  # torch lacks most unsigned types
                arr = arr.astype(np.int64)
            tensors[key] = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=False))
            return {_A: key, "dtype": str(o.dtype)}
        if isinstance(o, dict):
            return {_D: [[rec(k, path), rec(v, f"{path}.{k}")] for k, v in o.items()]}
        if isinstance(o, tuple):
            return {_TUP: [rec(v, path) for v in o]}
        if isinstance(o, list):
            return [rec(v, path) for v in o]
        if isinstance(o, np.generic):
            return o.item()
        if o is None or isinstance(o, (bool, int, float, str)):
            return o
        raise TypeError(f"cannot store {type(o).__name__} at {prefix}{path} in a checkpoint")

    return rec(obj, "")


def unpack_state(skel, tensors: dict[str, torch.Tensor]):
    """Inverse of :func:`pack_state`."""
    import numpy as np

    def rec(s):
        if isinstance(s, dict):
            if _T in s:
                return tensors[s[_T]]
            if _A in s:
                return tensors[s[_A]].numpy().astype(np.dtype(s["dtype"]))
            if _D in s:
                return {_key(rec(k)): rec(v) for k, v in s[_D]}
            if _TUP in s:
                return tuple(rec(v) for v in s[_TUP])
            raise ModelFileError(f"unknown checkpoint entry {sorted(s)}")
        if isinstance(s, list):
            return [rec(v) for v in s]
        return s

    return rec(skel)


def _key(k):
    return tuple(k) if isinstance(k, list) else k


def save_state(path: str | Path, sections: dict[str, object], meta: dict) -> Path:
    """Atomically write named sections (state dicts, optimizer/scheduler states, RNG states …) and
    JSON ``meta`` to one safetensors file; ``load_state`` gives them back."""
    tensors: dict[str, torch.Tensor] = {}
    skel = {name: pack_state(obj, tensors, name) for name, obj in sections.items()}
    return save_tensors(path, tensors, {**meta, "sections": skel})


def load_state(path: str | Path, map_location="cpu", expect_kind: str | None = None) -> tuple[dict, dict[str, object]]:
    meta, tensors = load_module_state(path, expect_kind=expect_kind, map_location=map_location)
    skel = meta.pop("sections", None)
    if not isinstance(skel, dict):
        raise ModelFileError(f"{path} holds no training state")
    return meta, {name: unpack_state(s, tensors) for name, s in skel.items()}


def rng_state(cuda: bool | None = None) -> dict:
    """The global RNG states (torch CPU, CUDA if in use, numpy, Python ``random``)."""
    import random

    import numpy as np

    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if cuda if cuda is not None else torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    import random

    import numpy as np

    torch.set_rng_state(st["torch"].cpu().to(torch.uint8))
    np_state = st["numpy"]
    np.random.set_state((np_state[0], np.asarray(np_state[1], np.uint32), *np_state[2:]))
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in st and torch.cuda.is_available():
        cur = st["cuda"]
        if len(cur) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([c.cpu().to(torch.uint8) for c in cur])
