"""Fixtures of the training tests: synthetic caches and tiny, single-threaded configurations.

Everything here runs with ONE torch / render thread: on a small shared machine two OpenMP threads
per process were measured 10–40x slower per step than one, and exact-resume comparisons need
the same thread count in every run anyway.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from facegcn.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]

TINY_GEN = dict(gen_K=3, gen_fc_channels=8, gen_decoder_widths=(4, 4, 4, 3), gen_refiner_widths=(4, 4, 4, 4, 3))
TINY_CRITIC = dict(critic_widths=(4, 8, 8, 8, 8, 8))


@contextlib.contextmanager
def one_thread():
    from facegcn.render import _parallel

    old = (torch.get_num_threads(), _parallel._num_threads)
    torch.set_num_threads(1)
    _parallel.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old[0])
        _parallel.set_num_threads(old[1])


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def tiny_config(cache, run_dir, **kw) -> TrainConfig:
    """ResNet-14 (width 8), a narrow generator and critic, 1 thread, log/checkpoint every step."""
    base = dict(cache=str(cache), run_dir=str(run_dir), stage="both", epochs=2, batch_size=4, depth=14, width=8,
                lr=1e-3, critic_steps=2, threads=1, log_every=1, checkpoint_every=1, image_every=1,
                progress=False, device="cpu", **TINY_GEN, **TINY_CRITIC)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def cache8(tmp_path_factory):
    from facegcn.train.synthetic import make_synthetic_cache

    root = tmp_path_factory.mktemp("cache8")
    with one_thread():
        make_synthetic_cache(root, 8, seed=5, shard_size=3)
    return root


@pytest.fixture(scope="session")
def cache32(tmp_path_factory):
    from facegcn.train.synthetic import make_synthetic_cache

    root = tmp_path_factory.mktemp("cache32")
    with one_thread():
        make_synthetic_cache(root, 32, seed=7, shard_size=16, held_out=0.15)
    return root


@pytest.fixture(scope="session")
def straight_run(cache8, tmp_path_factory):
    """The uninterrupted reference run (both stages, 4 + 4 steps) of the resume tests."""
    from facegcn.train.trainer import train

    run = tmp_path_factory.mktemp("straight")
    res = train(tiny_config(cache8, run))
    assert not res["stopped"]
    return run


def all_tensors(run_dir) -> dict[str, dict[str, torch.Tensor]]:
    """Every tensor a run leaves: both training checkpoints and both final weight files."""
    from facegcn.io.weights import load_tensors

    out = {}
    for rel in ("checkpoints/coarse-last.safetensors", "checkpoints/texture-last.safetensors",
                "regressor.safetensors", "texture.safetensors"):
        out[rel] = load_tensors(run_dir / rel)[1]
    return out


def assert_runs_equal(a, b) -> int:
    ta, tb = all_tensors(a), all_tensors(b)
    n = 0
    for rel in ta:
        assert ta[rel].keys() == tb[rel].keys(), rel
        for k in ta[rel]:
            x, y = ta[rel][k], tb[rel][k]
            assert x.dtype == y.dtype and x.shape == y.shape, (rel, k)
            assert torch.equal(x, y), f"{rel}:{k} differs (max |Δ| {float((x.double() - y.double()).abs().max())})"
            n += 1
    return n
