"""facegcn.train: dataset preparation and training of the coarse regressor and the GCN texture generator.

* :mod:`~facegcn.train.prepare` — ``facegcn prepare``: photos → sharded safetensors cache;
* :mod:`~facegcn.train.data` — the cache format and :class:`FaceDataset`;
* :mod:`~facegcn.train.synthetic` — rendered synthetic caches (exact landmarks / masks);
* :mod:`~facegcn.train.trainer` — ``facegcn train``: stage 1 (regressor), stage 2 (generator +
  WGAN-GP critic), exact resume, torchrun data parallelism;
* :mod:`~facegcn.train.texture` — ``load_texture_generator`` / ``feedforward_texture``;
* :mod:`~facegcn.train.checkpoint` — pickle-free safetensors checkpoints.

Submodules are imported on use (``import facegcn.train.checkpoint`` stays light).
"""

__all__ = ["FaceDataset", "TrainConfig", "load_texture_generator", "prepare_cache", "train"]


def __getattr__(name):  # lazy re-exports
    if name == "FaceDataset":
        from facegcn.train.data import FaceDataset

        return FaceDataset
    if name == "TrainConfig":
        from facegcn.train.config import TrainConfig

        return TrainConfig
    if name == "load_texture_generator":
        from facegcn.train.texture import load_texture_generator

        return load_texture_generator
    if name == "prepare_cache":
        from facegcn.train.prepare import prepare_cache

        return prepare_cache
    if name == "train":
        from facegcn.train.trainer import train

        return train
    raise AttributeError(name)
