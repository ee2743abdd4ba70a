"""A tiny end-to-end training run on synthetic faces: losses fall, outputs load, CLI and errors."""

from __future__ import annotations

import json

import pytest
import torch

from facegcn.errors import ConfigError
from facegcn.train.trainer import epoch_means, read_log, train
from tests.train.conftest import tiny_config


@pytest.mark.slow
def test_tiny_run_losses_fall_and_outputs_load(cache32, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(cache32, run, coarse_epochs=3, texture_epochs=2, lr=2e-3, critic_steps=5,
                      checkpoint_every=0, log_every=3)
    res = train(cfg)
    assert not res["stopped"] and set(res["files"]) == {"regressor", "texture"}

    coarse = epoch_means(run, "coarse")
    lm = epoch_means(run, "coarse", "landmark")
    photo = epoch_means(run, "coarse", "photo")
    refined = epoch_means(run, "texture", "pixel_mse_refined")
    base = epoch_means(run, "texture", "pixel_mse_coarse")
    print(f"coarse total per epoch {coarse}\nlandmark {lm}\nphoto {photo}\n"
          f"texture pixel MSE refined {refined} vs coarse {base}")
    assert len(coarse) == 3 and len(refined) == 2
    assert coarse[-1] < 0.6 * coarse[0] and lm[-1] < lm[0] and photo[-1] < photo[0]
    assert refined[-1] < refined[0] and refined[-1] < base[-1]  # the generator improves on the 3DMM albedo
    held = [r for r in read_log(run) if r.get("kind") == "held_out"]
    assert {r["stage"] for r in held} == {"coarse/held_out", "texture/held_out"}
    assert all("total" in r for r in held if r["stage"] == "coarse/held_out")

    # the regressor loads where `facegcn reconstruct --checkpoint` loads it
    from facegcn.coarse.regressor import CoefficientRegressor
    from facegcn.config import Config
    from facegcn.pipeline import Reconstructor

    reg = CoefficientRegressor.load(run / "regressor.safetensors")
    assert reg.depth == 14 and reg.config()["width"] == 8
    rc = Reconstructor(Config(checkpoint=str(run / "regressor.safetensors"), progress=False))
    assert rc.regressor is not None
    # the generator loads for feed-forward refinement
    from facegcn.morphable import load_model
    from facegcn.refine.generator import load_texture_generator

    gen = load_texture_generator(run / "texture.safetensors", load_model("ict"))
    assert gen.decoder.widths == (4, 4, 4, 3)
    meta = json.loads((run / "config.json").read_text())
    assert meta["critic_steps"] == 5 and meta["stage"] == "both"
    assert (run / "images" / "coarse-epoch003.png").is_file() and (run / "images" / "texture-epoch002.png").is_file()
    from facegcn.train.log import tensorboard_available

    if tensorboard_available():
        assert list((run / "tb").glob("events.out.tfevents.*"))


def test_feedforward_texture_on_a_fit(cache8, tmp_path):
    """The helper the pipeline can use: one generator pass on an observation + coarse fit."""
    from types import SimpleNamespace

    from facegcn.coarse.fit import CoarseResult
    from facegcn.coarse.synthesis import FaceSynthesis
    from facegcn.morphable import load_model
    from facegcn.train.data import FaceDataset
    from facegcn.refine.generator import build_texture_generator, feedforward_texture, generator_config

    m = load_model("ict")
    syn = FaceSynthesis(m)
    s = FaceDataset(cache8, "all")[0]
    c = m.split(s["coeffs"][None])
    with torch.no_grad():
        st = syn.state(c)
        r = syn.render(st)
    obs = SimpleNamespace(image=s["image"], identity=torch.randn(128))
    gen = build_texture_generator(m, generator_config(K=3, fc_channels=8, decoder_widths=(4, 4, 4, 3),
                                                      refiner_widths=(4, 4, 4, 4, 3)))
    alb, img = feedforward_texture(gen, m, syn, obs, CoarseResult(c, st, r))
    assert alb.shape == (m.n_vertices, 3) and img.shape == (3, 224, 224)
    assert 0 <= float(alb.min()) and float(alb.max()) <= 1
    # a fresh generator (shrunk merger) starts near the 3DMM albedo
    assert float((alb - st.albedo[0].clamp(0, 1)).abs().max()) < 0.05


def test_run_folder_guards(cache8, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(cache8, run, stage="coarse", max_steps=1, image_every=0)
    assert train(cfg)["stopped"]
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg)  # would overwrite the checkpoint
    with pytest.raises(ConfigError, match="lr"):
        train(tiny_config(cache8, run, stage="coarse", lr=5e-3), resume=True)  # changed computation
    with pytest.raises(ConfigError, match="regressor"):
        train(tiny_config(cache8, tmp_path / "other", stage="texture"))  # no stage-1 weights
    with pytest.raises(ConfigError, match="too few"):
        train(tiny_config(cache8, tmp_path / "big", stage="coarse", batch_size=16))
    with pytest.raises(ConfigError):
        train(tiny_config(cache8, tmp_path / "x", stage="middle"))


def test_cli_registers_prepare_and_train(cache8, tmp_path):
    import typer
    from typer.testing import CliRunner

    from facegcn.cli.train import register

    app = typer.Typer()
    register(app)
    r = CliRunner().invoke(app, ["train", "--help"])
    assert r.exit_code == 0
    for opt in ("--stage", "--resume", "--max-steps", "--critic-steps", "--batch-size", "--amp"):
        assert opt in r.output
    run = tmp_path / "run"
    args = ["train", str(cache8), "-o", str(run), "--stage", "coarse", "--epochs", "1", "--depth", "14",
            "--width", "8", "--threads", "1", "--device", "cpu", "-q", "--image-every", "0"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "coarse: done at epoch 1, step 2" in r.output and (run / "regressor.safetensors").is_file()
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["lr"], cfg["lr_decay"], cfg["grad_clip"], cfg["batch_size"]) == (1e-4, 0.98, 5.0, 4)
    assert (cfg["critic_steps"], cfg["gp_lambda"], cfg["adv_weight"]) == (5, 10.0, 1e-3)
    r = CliRunner().invoke(app, args + ["--resume"])  # a finished stage is skipped
    assert r.exit_code == 0 and "skipped" in r.output


@pytest.mark.gpu
def test_tiny_run_on_cuda_with_amp(cache8, tmp_path):
    run = tmp_path / "run"
    res = train(tiny_config(cache8, run, device="cuda", amp=True, critic_steps=1, image_every=0))
    assert not res["stopped"]
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(str(run / "texture.safetensors")).values())
