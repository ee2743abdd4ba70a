"""Data parallelism on CPU (gloo): N processes with batch b compute the gradients of one process
with batch N·b (synced BatchNorm, globally normalised masked losses, per-sample GP weights), and a
``torchrun`` job trains, logs once, checkpoints and resumes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from facegcn.io.weights import load_tensors
from tests.train.conftest import REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**kw) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), **kw}


@pytest.fixture(scope="module")
def cache4_identity(tmp_path_factory):
    """4 synthetic faces with dlib identity descriptors (so the identity losses are exercised too)."""
    from facegcn.train.synthetic import make_synthetic_cache
    from tests.train.conftest import one_thread

    root = tmp_path_factory.mktemp("cache4id")
    with one_thread():
        make_synthetic_cache(root, 4, seed=11, identity=True)
    return root


@pytest.mark.slow
def test_two_processes_average_to_the_joint_batch_gradients(cache4_identity, straight_run, tmp_path):
    from tests.train._ddp_worker import gradients

    reg = str(straight_run / "regressor.safetensors")
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, str(REPO / "tests" / "train" / "_ddp_worker.py"),
                               str(cache4_identity), reg, str(tmp_path)],
                              env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_PORT=port),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO) for r in range(2)]
    try:
        outs = [p.communicate(timeout=240)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)
    report = {}
    for name, dtype in (("f64", torch.float64), ("f32", torch.float32)):
        joint, joint_losses = gradients(str(cache4_identity), reg, 0, 1, dtype)
        meta0, g0 = load_tensors(tmp_path / f"grads-{name}-rank0.safetensors")
        meta1, g1 = load_tensors(tmp_path / f"grads-{name}-rank1.safetensors")
        assert g0.keys() == g1.keys() == joint.keys()
        assert {k.split("/")[0] for k in joint} == {"coarse", "critic", "gen"}
        assert "coarse/identity" in joint_losses and "gen/identity" in joint_losses  # identity terms active
        worst: dict[str, float] = {}
        scale: dict[str, float] = {}
        for k in joint:
            assert torch.equal(g0[k], g1[k]), k  # every rank holds the same averaged gradient
            net = k.split("/")[0]
            worst[net] = max(worst.get(net, 0.0), float((g0[k] - joint[k]).abs().max()))
            scale[net] = max(scale.get(net, 0.0), float(joint[k].abs().max()))
        report[name] = {net: (worst[net], scale[net]) for net in worst}
        # the averaged per-rank losses are the joint-batch losses
        for k, v in joint_losses.items():
            if k.endswith(("total", "landmark", "photo", "pixel", "vertex", "identity", "critic_loss")):
                avg = (meta0["losses"][k] + meta1["losses"][k]) / 2
                # f64 proves the identity; f32 only bounds rounding (the critic loss is a difference of
                # larger terms, and the fused graph products sum in another order: ~4e-5 seen)
                assert abs(avg - v) <= (1e-9 if name == "f64" else 1e-4) * max(1.0, abs(v)), (name, k, avg, v)
    print("max |grad(2 procs) - grad(joint)|, max |grad|:", report)
    # double precision: the same maths up to round-off
    for net, (d, g) in report["f64"].items():
        assert d <= 1e-9 * max(1.0, g), (net, d, g)
    # single precision: float32 round-off only (conv sums over 224² pixels with cancelling real /
    # fake terms; measured ≤ 6e-5 of the largest gradient, the regressor's ≤ 5e-7)
    for net, (d, g) in report["f32"].items():
        assert d <= 2e-4 * max(1.0, g), (net, d, g)
    assert report["f32"]["coarse"][0] <= 2e-6 * max(1.0, report["f32"]["coarse"][1])


@pytest.mark.slow
def test_torchrun_two_processes_train_stop_and_resume(cache8, straight_run, tmp_path):
    run = tmp_path / "run"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    base = [torchrun, "--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    args = ["-m", "facegcn.train", "train", str(cache8), "-o", str(run), "--stage", "coarse", "--epochs", "2",
            "--batch-size", "2", "--depth", "14", "--width", "8", "--lr", "0.001", "--threads", "1",
            "--log-every", "1", "--checkpoint-every", "1", "--device", "cpu", "-q"]
    for extra in (["--max-steps", "3"], ["--resume"]):
        r = subprocess.run(base + ["--master_port", str(_free_port())] + args + extra, env=_env(), cwd=REPO,
                           capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert r.stdout.count("coarse: done at epoch 2, step 4") == 1  # rank 0 prints, rank 1 stays quiet
    meta, _ = load_tensors(run / "checkpoints" / "coarse-last.safetensors")
    assert meta["done"] and meta["world_size"] == 2 and meta["global_step"] == 4
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in rows if x.get("kind") == "step"]
    assert steps == [1, 2, 3, 4]  # logged once (rank 0), resumed after step 3
    # step 1 sees the same global batch as the 1-process run with batch 4 → the same loss
    ref = [json.loads(x) for x in (straight_run / "log.jsonl").read_text().splitlines()]
    ref1 = next(x for x in ref if x.get("kind") == "step" and x["stage"] == "coarse" and x["step"] == 1)
    got1 = next(x for x in rows if x.get("kind") == "step" and x["step"] == 1)
    for k in ("total", "landmark", "photo", "reg"):
        assert abs(got1[k] - ref1[k]) <= 1e-5 * max(1.0, abs(ref1[k])), (k, got1[k], ref1[k])
    from facegcn.coarse.regressor import CoefficientRegressor

    CoefficientRegressor.load(run / "regressor.safetensors")
