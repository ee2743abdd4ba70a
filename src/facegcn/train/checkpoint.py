"""Training-state checkpoints: models, optimisers, schedulers, RNG states and counters in one
safetensors file, without pickle.

The file format (tensors + JSON header, atomic writes) is :mod:`facegcn.io.weights`; this module
adds the packing of arbitrary nested training state into it and the global RNG snapshots.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from facegcn.errors import ModelFileError
from facegcn.io.weights import load_module_state, save_tensors

__all__ = ["load_state", "pack_state", "rng_state", "save_state", "set_rng_state", "unpack_state"]

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
    """Split nested training state into a JSON skeleton and flat tensors.

    Args:
        obj: dicts / lists / tuples / JSON scalars / tensors / numpy arrays, nested (what
            ``optimizer.state_dict()``, ``scheduler.state_dict()`` and the RNG getters return).
        tensors: filled in place: every tensor / array of ``obj`` under ``f"{prefix}/{n}"``.
        prefix: key prefix of this object's tensors (the section name).

    Returns:
        The JSON-able skeleton; :func:`unpack_state` turns it back into an object equal to ``obj``.

    Shapes:
        numpy arrays keep shape and dtype (unsigned wider than 8 bits travel as int64; the dtype
        is restored on unpacking); tensors are stored as they are (detached).
    """

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
    """Inverse of :func:`pack_state`.

    Args:
        skel: the skeleton :func:`pack_state` returned (after a JSON round trip).
        tensors: the tensors it filled (as loaded from the file).

    Returns:
        The original object (dict keys, tuples and numpy dtypes restored).

    Raises:
        ModelFileError: the skeleton holds an entry this version does not know.
    """

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
    """Atomically write named sections of training state and JSON ``meta`` to one safetensors file.

    Args:
        path: the checkpoint file.
        sections: name → state (model / optimiser / scheduler state dicts, RNG states, counters),
            anything :func:`pack_state` takes.
        meta: JSON metadata; the packed skeletons are added under ``"sections"``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`; :func:`load_state` gives the sections back.
    """
    tensors: dict[str, torch.Tensor] = {}
    skel = {name: pack_state(obj, tensors, name) for name, obj in sections.items()}
    return save_tensors(path, tensors, {**meta, "sections": skel})


def load_state(path: str | Path, map_location="cpu", expect_kind: str | None = None) -> tuple[dict, dict[str, object]]:
    """Read a file written by :func:`save_state`.

    Args:
        path: the checkpoint file.
        map_location: device its tensors are loaded onto.
        expect_kind: when given, ``meta["kind"]`` must equal it.

    Returns:
        ``(meta, sections)``: the metadata without ``"sections"``, and name → unpacked state.

    Raises:
        ModelFileError: unreadable file, another kind, or a file without training state.
    """
    meta, tensors = load_module_state(path, expect_kind=expect_kind, map_location=map_location)
    skel = meta.pop("sections", None)
    if not isinstance(skel, dict):
        raise ModelFileError(f"{path} holds no training state")
    return meta, {name: unpack_state(s, tensors) for name, s in skel.items()}


def rng_state(cuda: bool | None = None) -> dict:
    """Snapshot of the global RNG states.

    Args:
        cuda: include every CUDA device's state; default: when CUDA is available and initialised.

    Returns:
        ``{"torch": uint8 tensor, "numpy": np.random state tuple, "python": random state tuple}``
        plus ``"cuda"``: a list of uint8 tensors, one per device, when included.
    """
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if cuda if cuda is not None else torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    """Restore a snapshot of :func:`rng_state` (possibly after a checkpoint round trip).

    Args:
        st: the snapshot; its CUDA states are restored only when the device count matches.
    """
    torch.set_rng_state(st["torch"].cpu().to(torch.uint8))
    np_state = st["numpy"]
    np.random.set_state((np_state[0], np.asarray(np_state[1], np.uint32), *np_state[2:]))
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in st and torch.cuda.is_available():
        cur = st["cuda"]
        if len(cur) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([c.cpu().to(torch.uint8) for c in cur])
