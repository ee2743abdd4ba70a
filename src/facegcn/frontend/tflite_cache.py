"""On-disk cache of parsed :class:`~facegcn.frontend.tflite_graph.TFLiteGraph`\\ s (no pickle).

Parsing a ``.tflite`` flatbuffer with the pure-Python ``tflite`` accessors costs ~1 s per process
for the four MediaPipe graphs; reading the parsed graph back costs a few milliseconds. Each entry
is two files in ``cache_dir("tflite")``, named by the SHA-256 of the ``.tflite`` bytes and
:data:`_CACHE_FORMAT`:

* ``<sha>-v<format>.json``: name, tensor shapes, input/output ids, the compiled operators (kind,
  inputs, output, options in a tagged encoding that keeps tuples, numpy arrays and numpy scalars),
  the per-operator lists of freed activations, the parameter keys in order with their shapes and
  strides, and the SHA-256 of the safetensors file (which pairs the two files).
* ``<sha>-v<format>.safetensors``: the parameter tensors (``safetensors.torch``). A tensor not in
  torch's default contiguous layout (the channels-last conv weights) is stored as its flat memory
  and rebuilt with its recorded strides, so the reloaded memory format is the parser's exactly.

Both are written atomically, safetensors first; a write failure (read-only cache) is ignored. A
missing, truncated, garbled or mismatching entry is ignored (the caller parses and rewrites it).
Bump :data:`_CACHE_FORMAT` whenever the parsed representation changes.
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import torch
import torch.nn as nn

log = logging.getLogger(__name__)

_CACHE_FORMAT = 1


# ----------------------------------------------------------------------------- option values --
def _encode(v):
    """A JSON-able form of an ``opts`` value; tuples, numpy arrays and numpy scalars are tagged."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, tuple):
        return {"__tuple__": [_encode(x) for x in v]}
    if isinstance(v, list):
        return [_encode(x) for x in v]
    if isinstance(v, np.ndarray):
        return {"__ndarray__": v.reshape(-1).tolist(), "dtype": v.dtype.str, "shape": list(v.shape)}
    if isinstance(v, np.generic):
        return {"__npscalar__": v.item(), "dtype": v.dtype.str}
    if isinstance(v, dict) and all(isinstance(k, str) and not k.startswith("__") for k in v):
        return {k: _encode(x) for k, x in v.items()}
    raise TypeError(f"cannot cache an operator option of type {type(v).__name__}")


def _decode(v):
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if not isinstance(v, dict):
        return v
    if "__tuple__" in v:
        return tuple(_decode(x) for x in v["__tuple__"])
    if "__ndarray__" in v:
        return np.array(v["__ndarray__"], dtype=np.dtype(v["dtype"])).reshape(v["shape"])
    if "__npscalar__" in v:
        return np.dtype(v["dtype"]).type(v["__npscalar__"])
    return {k: _decode(x) for k, x in v.items()}


# ------------------------------------------------------------------------------------ tensors --
def _default_strides(shape) -> list[int]:
    out, step = [], 1
    for n in reversed(shape):
        out.append(step)
        step *= max(int(n), 1)
    return out[::-1]


def _stored(t: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(tensor to save, flat?): ``t`` itself in the default layout, else its memory as 1-D."""
    if list(t.stride()) == _default_strides(t.shape):
        return t, False
    flat = torch.as_strided(t, (t.numel(),), (1,), t.storage_offset()).clone()
    if not torch.equal(flat.as_strided(t.shape, t.stride()), t):  # not dense: keep values only
        return t.contiguous(), False
    return flat, True


# ------------------------------------------------------------------------------------- entries --
def _paths(digest: str):
    from facegcn.cache import cache_dir

    stem = cache_dir("tflite") / f"{digest}-v{_CACHE_FORMAT}"
    return stem.with_suffix(".json"), stem.with_suffix(".safetensors")


def source_digest(buf: bytes) -> str:
    return hashlib.sha256(buf).hexdigest()


def save(graph, buf: bytes) -> bool:
    """Write ``graph``'s cache entry (best effort: ``False`` when it could not be written)."""
    try:
        from safetensors.torch import save as st_save

        from facegcn.io.atomic import atomic_write_bytes, atomic_write_text

        digest = source_digest(buf)
        tensors, params = {}, []
        for key, p in graph.weights.items():
            t = p.detach()
            stored, flat = _stored(t)
            tensors[key] = stored
            stride = list(t.stride()) if flat else list(stored.stride())
            params.append({"key": key, "shape": list(t.shape), "stride": stride, "flat": flat})
        # one metadata key: safetensors orders several at random, and the bytes must be reproducible
        # (two processes writing the same entry at once then still leave a matching pair)
        blob = st_save(tensors, metadata={"facegcn_tflite": f"format {_CACHE_FORMAT}, source sha256 {digest}"})
        meta = {
            "format": _CACHE_FORMAT, "source_sha256": digest, "weights_sha256": hashlib.sha256(blob).hexdigest(),
            "name": graph.name, "shapes": [[int(i), [int(d) for d in s]] for i, s in graph.shapes.items()],
            "input_ids": graph.input_ids, "output_ids": graph.output_ids,
            "ops": [{"kind": o.kind, "inputs": o.inputs, "output": o.output, "opts": _encode(o.opts)} for o in graph.ops],
            "free": graph._free, "params": params,
        }
        text = json.dumps(meta, separators=(",", ":"), allow_nan=True)
        js, st = _paths(digest)
        atomic_write_bytes(st, blob)
        atomic_write_text(js, text)
        return True
    except Exception as exc:  # noqa: BLE001 - a cache that cannot be written only costs a parse
        log.info("TFLite graph cache not written for %s (%s: %s)", graph.name, type(exc).__name__, exc)
        return False


def load(graph, buf: bytes) -> bool:
    """Fill ``graph`` (a bare ``nn.Module`` already named) from the cache; ``False`` on a miss."""
    from facegcn.frontend.tflite_graph import _Op

    digest = source_digest(buf)
    try:
        js, st = _paths(digest)
        if not js.is_file():
            return False
    except OSError:  # no usable cache folder: a plain miss
        return False
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
        blob = st.read_bytes()
        if meta["format"] != _CACHE_FORMAT or meta["source_sha256"] != digest \
                or meta["weights_sha256"] != hashlib.sha256(blob).hexdigest():
            raise ValueError("entry does not match the model file")
        from safetensors.torch import load as st_load

        tensors = st_load(blob)
        weights = nn.ParameterDict()
        for p in meta["params"]:
            t = tensors[p["key"]]
            if p["flat"]:
                t = t.as_strided(p["shape"], p["stride"])
            if list(t.shape) != p["shape"] or list(t.stride()) != p["stride"] or t.dtype != torch.float32:
                raise ValueError(f"parameter {p['key']} has the wrong layout")
            weights[p["key"]] = nn.Parameter(t, requires_grad=False)
        if set(tensors) != set(weights):
            raise ValueError("parameter keys do not match")
        shapes = {int(i): [int(d) for d in s] for i, s in meta["shapes"]}
        ops = [_Op(str(o["kind"]), list(o["inputs"]), int(o["output"]), _decode(o["opts"])) for o in meta["ops"]]
        free = [[int(i) for i in f] for f in meta["free"]]
        input_ids, output_ids = [int(i) for i in meta["input_ids"]], [int(i) for i in meta["output_ids"]]
        known = set(shapes)
        for o in ops:
            if not isinstance(o.opts, dict) or o.output not in known or not hasattr(graph, "_run_" + o.kind) \
                    or any(not (a is None or a in known or (isinstance(a, str) and a in weights)) for a in o.inputs):
                raise ValueError("inconsistent operator list")
        if len(free) != len(ops) or not set(input_ids + output_ids) <= known:
            raise ValueError("inconsistent graph")
    except Exception as exc:  # noqa: BLE001 - truncated / garbled / stale entry: parse again
        log.warning("ignoring TFLite graph cache for %s (%s: %s); parsing the model", graph.name, type(exc).__name__, exc)
        return False
    graph.weights, graph.shapes, graph.ops, graph._free = weights, shapes, ops, free
    graph.input_ids, graph.output_ids = input_ids, output_ids
    graph.input_shapes = [shapes[i] for i in input_ids]
    graph.output_shapes = [shapes[i] for i in output_ids]
    return True
