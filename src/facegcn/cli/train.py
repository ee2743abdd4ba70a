"""`facegcn prepare` and `facegcn train`: build the training cache and train the networks.

``register(app)`` adds both commands to a typer app (the main CLI, or the stand-alone
``python -m facegcn.train`` used by ``torchrun``). The cache builder and the trainer are imported
inside the commands: they import torch, which ``facegcn --help`` must not wait for.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import typer

from facegcn.cli.options import register_command
from facegcn.errors import ConfigError, InputError, ModelFileError
from facegcn.train.config import TrainConfig

_TRAIN_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise ConfigError(f"{what}: expected positive integers, got {text!r}")
    return vals


def prepare_cmd(
    photo_dir: Path = typer.Argument(..., help="Folder of photos (searched recursively)."),
    out: Path = typer.Argument(..., help="Cache folder to create or complete."),
    shard_size: int = typer.Option(256, help="Photos per shard file (a re-run skips finished shards)."),
    held_out: float = typer.Option(0.05, help="Fraction of faces kept out of training (seeded hash split)."),
    seed: int = typer.Option(0, help="Seed of the train / held-out split (recorded in index.json)."),
    detector: str = typer.Option("dlib", help="Face detector: dlib or mtcnn."),
    no_identity: bool = typer.Option(False, "--no-identity", help="Skip the identity features (stored as NaN)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Detect, align, landmark, segment and embed every photo into a sharded training cache."""
    from facegcn.cli.configure import check_cache
    from facegcn.io.atomic import check_writable_folder

    if not photo_dir.is_dir():
        raise InputError(f"{photo_dir}: " + ("not a folder" if photo_dir.exists() else "no such folder"))
    if detector not in ("dlib", "mtcnn"):
        raise ConfigError(f"unknown detector {detector!r} (choose dlib or mtcnn)")
    check_writable_folder(out)
    check_cache()
    from facegcn.train.prepare import prepare_cache  # torch

    s = prepare_cache(photo_dir, out, shard_size=shard_size, held_out=held_out, seed=seed, detector=detector,
                      identity=None if no_identity else "port", progress=not quiet)
    sp = s.index["split"]
    typer.echo(f"{s.ok} face(s) cached in {out} ({sp['train']} train, {sp['held_out']} held out), "
               f"{s.failed} skipped (see {Path(out) / 'failed.csv'}); "
               f"{s.shards_written} shard(s) written, {s.shards_skipped} already done")


def train_cmd(
    cache: Path = typer.Argument(..., help="Cache folder made by `facegcn prepare`."),
    out: Path = typer.Option(..., "-o", "--out", help="Run folder (checkpoints, logs, final weights)."),
    stage: str = typer.Option("both", help="coarse (regressor), texture (GCN generator + critic) or both."),
    epochs: int = typer.Option(20, min=1, help="Epochs per stage."),
    coarse_epochs: int = typer.Option(None, min=1, help="Epochs of the coarse stage (default: --epochs)."),
    texture_epochs: int = typer.Option(None, min=1, help="Epochs of the texture stage (default: --epochs)."),
    batch_size: int = typer.Option(4, min=1, help="Batch size per process."),
    lr: float = typer.Option(1e-4, help="Adam learning rate."),
    lr_decay: float = typer.Option(0.98, help="Learning-rate factor per epoch (ExponentialLR)."),
    grad_clip: float = typer.Option(5.0, help="Gradient-norm clip (0 = off)."),
    seed: int = typer.Option(0, help="Seed of initialisation, data order and augmentation."),
    flip: bool = typer.Option(False, "--flip", help="Random left/right flips (seeded per epoch and item)."),
    model: str = typer.Option("ict", "--model", "-m", help="Morphable model."),
    depth: int = typer.Option(50, help="Regressor ResNet depth: 50 (paper), 26 or 14."),
    width: int = typer.Option(64, help="Regressor ResNet stem width (64 = standard)."),
    regressor: str = typer.Option(None, help="Stage-1 regressor for --stage texture "
                                  "(default RUN/regressor.safetensors)."),
    critic_steps: int = typer.Option(5, help="Critic updates per generator update."),
    gp_lambda: float = typer.Option(10.0, help="WGAN-GP gradient-penalty weight."),
    adv_weight: float = typer.Option(1e-3, help="Adversarial loss weight."),
    critic_widths: str = typer.Option("16,32,64,128,256,512", help="Critic channel widths."),
    critic_norm: str = typer.Option("layer", help="Critic normalisation: layer or none."),
    gen_k: int = typer.Option(6, "--gen-k", help="Chebyshev order K of the generator's graph convolutions."),
    gen_fc_channels: int = typer.Option(32, help="Generator decoder: channels per vertex after the FC layer."),
    gen_decoder_widths: str = typer.Option("16,16,16,3", help="Generator decoder widths (one per level)."),
    gen_refiner_widths: str = typer.Option("16,32,32,16,3", help="Generator refiner widths (5)."),
    identity_weight: float = typer.Option(0.2, help="Identity-loss weight (both stages; 0 = off)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    amp: bool = typer.Option(None, "--amp/--no-amp", help="Mixed precision (bf16; CUDA only; default on with CUDA)."),
    threads: int = typer.Option(0, min=0, help="CPU threads per process (0 = torch default)."),
    workers: int = typer.Option(0, min=0, help="DataLoader worker processes."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's checkpoints."),
    max_steps: int = typer.Option(None, help="Stop (with a checkpoint) after this many steps in this run; "
                                  "--resume continues."),
    log_every: int = typer.Option(10, help="Steps between log lines."),
    checkpoint_every: int = typer.Option(200, help="Steps between checkpoints (also at every epoch end)."),
    image_every: int = typer.Option(1, help="Epochs between image grids (0 = never)."),
    no_eval: bool = typer.Option(False, "--no-eval", help="Skip the held-out losses."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train the coefficient regressor (stage 1) and/or the GCN texture generator (stage 2)."""
    from facegcn.cli.configure import check_cache
    from facegcn.io.atomic import check_writable_folder
    from facegcn.train.data import load_index

    if not _TRAIN_DEVICE.fullmatch(device):
        raise ConfigError(f"unknown device {device!r} (choose auto, cpu or cuda; cuda:N for the N-th GPU)")
    if not cache.is_dir():
        raise InputError(f"{cache}: " + ("not a folder" if cache.exists() else "no such folder")
                         + f"; make a training cache with `facegcn prepare PHOTO_DIR {cache}`")
    try:
        load_index(cache)
    except ModelFileError as exc:  # a missing or unreadable index is a bad input, not a bad model file
        raise InputError(str(exc)) from None
    check_writable_folder(out)
    check_cache()
    from facegcn.train.trainer import train  # torch

    cfg = TrainConfig(
        cache=str(cache), run_dir=str(out), stage=stage, epochs=epochs, coarse_epochs=coarse_epochs,
        texture_epochs=texture_epochs, batch_size=batch_size, lr=lr, lr_decay=lr_decay, grad_clip=grad_clip,
        seed=seed, flip=flip, model=model, depth=depth, width=width, regressor=regressor,
        critic_steps=critic_steps, gp_lambda=gp_lambda, adv_weight=adv_weight,
        critic_widths=_ints(critic_widths, "--critic-widths"), critic_norm=critic_norm, gen_K=gen_k,
        gen_fc_channels=gen_fc_channels, gen_decoder_widths=_ints(gen_decoder_widths, "--gen-decoder-widths"),
        gen_refiner_widths=_ints(gen_refiner_widths, "--gen-refiner-widths"), identity_weight=identity_weight,
        coarse_identity_weight=identity_weight, device=device, amp=amp, threads=threads,
        workers=workers, max_steps=max_steps, log_every=log_every, checkpoint_every=checkpoint_every,
        image_every=image_every, eval=not no_eval, progress=not quiet,
    )
    res = train(cfg, resume=resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    for r in res["stages"]:
        state = "skipped (already done)" if r["skipped"] else ("stopped" if r["stopped"] else "done")
        typer.echo(f"{r['stage']}: {state} at epoch {r['epoch']}, step {r['global_step']}")
    for k, v in res["files"].items():
        typer.echo(f"{k}: {v}")


def register(app: typer.Typer) -> None:
    """Add `prepare` and `train` to ``app`` (idempotent)."""
    register_command(app, prepare_cmd, "prepare")
    register_command(app, train_cmd, "train")
