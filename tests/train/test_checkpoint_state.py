"""Pickle-free training state, generator checkpoints, synced BatchNorm without a process group."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from facegcn.errors import ModelFileError
from facegcn.io.weights import load_tensors
from facegcn.train.checkpoint import load_state, rng_state, save_state, set_rng_state


def test_optimizer_scheduler_rng_round_trip_exactly(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, 0.98)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(8, 5)).pow(2).sum().backward()
        opt.step()
        sched.step()
    np.random.seed(3)
    random.seed(4)
    state = {"model": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "rng": rng_state(),
             "misc": {"t": (1, 2.5, None), 7: [True, "x"], "inf": float("inf")}}
    p = save_state(tmp_path / "s.safetensors", state, {"kind": "test", "step": 3})
    raw = p.read_bytes()
    assert b"pickle" not in raw and b"\x80\x04\x95" not in raw  # no pickle stream anywhere
    meta, back = load_state(p, expect_kind="test")
    assert meta["step"] == 3
    assert back["sched"] == sched.state_dict()
    assert back["misc"] == state["misc"] and isinstance(back["misc"]["t"], tuple)
    o = back["opt"]
    assert o["param_groups"] == opt.state_dict()["param_groups"]
    for k, v in opt.state_dict()["state"].items():
        for name, t in v.items():
            assert torch.equal(o["state"][k][name], t)
    # a fresh optimizer that loads the state continues exactly like the original
    net2 = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    net2.load_state_dict(back["model"])
    opt2 = torch.optim.Adam(net2.parameters(), lr=1.0)
    opt2.load_state_dict(back["opt"])
    sched2 = torch.optim.lr_scheduler.ExponentialLR(opt2, 0.5)
    sched2.load_state_dict(back["sched"])
    x = torch.randn(8, 5)
    for n, o_, s_ in ((net, opt, sched), (net2, opt2, sched2)):
        o_.zero_grad()
        n(x).pow(2).sum().backward()
        o_.step()
        s_.step()
    for a, b in zip(net.state_dict().values(), net2.state_dict().values()):
        assert torch.equal(a, b)
    # RNG states restore every generator
    set_rng_state(back["rng"])
    a = (torch.rand(3), np.random.rand(), random.random())
    set_rng_state(back["rng"])
    assert torch.equal(a[0], torch.rand(3)) and a[1] == np.random.rand() and a[2] == random.random()


def test_texture_generator_save_and_load(tmp_path):
    from facegcn.morphable import load_model
    from facegcn.refine.generator import (
        build_texture_generator,
        generator_config,
        load_texture_generator,
        save_texture_generator,
    )

    m = load_model("ict")
    cfg = generator_config(K=3, fc_channels=8, decoder_widths=(4, 4, 4, 3), refiner_widths=(4, 4, 4, 4, 3))
    torch.manual_seed(1)
    g = build_texture_generator(m, cfg)
    p = save_texture_generator(tmp_path / "texture.safetensors", g, m, cfg, extra={"note": "x"})
    meta, _ = load_tensors(p)
    assert meta["kind"] == "texture_generator" and meta["config"]["n_vertices"] == m.n_vertices
    assert meta["config"]["decoder"]["widths"] == [4, 4, 4, 3] and meta["config"]["parameterization"] == "residual"
    back = load_texture_generator(p, m)
    assert not back.training
    for (k, a), (k2, b) in zip(g.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    ident, x = torch.randn(2, 128), torch.rand(2, m.n_vertices, 7) * 2 - 1
    with torch.no_grad():
        assert torch.equal(g.eval()(ident, x), back(ident, x))
    # into an existing generator of the same shape
    other = build_texture_generator(m, cfg)
    assert load_texture_generator(p, other) is other
    # wrong shapes / kinds / garbage are ModelFileErrors
    with pytest.raises(ModelFileError):
        load_texture_generator(p, build_texture_generator(m))  # default widths ≠ saved
    reg_like = tmp_path / "reg.safetensors"
    from facegcn.io.weights import save_tensors

    save_tensors(reg_like, {"a": torch.zeros(1)}, {"kind": "regressor"})
    with pytest.raises(ModelFileError):
        load_texture_generator(reg_like, m)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(ModelFileError):
        load_texture_generator(tmp_path / "bad.safetensors", m)


def test_dist_batchnorm_is_batchnorm_without_process_group():
    from facegcn.coarse.regressor import CoefficientRegressor
    from facegcn.morphable.layout import CoeffLayout
    from facegcn.train.distributed import DistBatchNorm2d, convert_batchnorm

    torch.manual_seed(0)
    a = CoefficientRegressor(CoeffLayout(), depth=14, width=4)
    b = CoefficientRegressor(CoeffLayout(), depth=14, width=4)
    b.load_state_dict(a.state_dict())
    convert_batchnorm(b)
    assert any(isinstance(m, DistBatchNorm2d) for m in b.modules())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in b.modules())
    assert list(a.state_dict()) == list(b.state_dict())
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(a(x), b(x))
    for u, v in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(u, v)  # running stats updated identically


@pytest.mark.parametrize("tb", [False, True])
def test_run_logger_jsonl_png_and_optional_tensorboard(tmp_path, tb):
    from facegcn.train.log import RunLogger, image_grid, tensorboard_available

    if tb and not tensorboard_available():
        pytest.skip("tensorboard is not installed (the JSON-lines log is the fallback)")
    log = RunLogger(tmp_path, tensorboard=tb)
    log.scalars(3, {"total": 1.5, "photo": torch.tensor(0.25).item()}, stage="coarse", epoch=0, kind="step")
    grid = image_grid([torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8)])
    assert grid.shape == (3, 16, 16)
    p = log.images("coarse/samples", 3, grid, "coarse-epoch001")
    log.close()
    from facegcn.train.trainer import read_log

    rows = read_log(tmp_path)
    assert rows[0]["total"] == 1.5 and rows[0]["stage"] == "coarse" and rows[0]["step"] == 3
    from PIL import Image

    assert Image.open(p).size == (16, 16)
    assert bool(list((tmp_path / "tb").glob("events.*"))) == tb
    assert not RunLogger(tmp_path / "off", enabled=False).run_dir.exists()  # other ranks write nothing
