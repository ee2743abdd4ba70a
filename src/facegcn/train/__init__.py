"""facegcn.train: dataset preparation and training of the coarse regressor and the GCN texture generator.

* :mod:`~facegcn.train.prepare` — ``facegcn prepare``: photos → sharded safetensors cache;
* :mod:`~facegcn.train.data` — the cache format and :class:`FaceDataset`;
* :mod:`~facegcn.train.synthetic` — rendered synthetic caches (exact landmarks / masks);
* :mod:`~facegcn.train.trainer` — ``facegcn train``: :func:`train` over the stages;
* :mod:`~facegcn.train.stages` — stage 1 (regressor), stage 2 (generator + WGAN-GP critic);
* :mod:`~facegcn.train.loop` — one stage's epochs, exact resume, torchrun data parallelism;
* :mod:`~facegcn.train.checkpoint` — pickle-free training-state checkpoints.

Trained generators are loaded for inference with :mod:`facegcn.refine.generator`.
"""

import importlib

_EXPORTS = {
    "FaceDataset": "data",
    "TrainConfig": "config",
    "prepare_cache": "prepare",
    "train": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    # lazy: ``import facegcn.train.checkpoint`` (or .config) must not load the stages, the graph
    # networks and the renderer that the trainer pulls in
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)
