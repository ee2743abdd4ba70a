"""Exact resume: a run stopped (max-steps, or SIGKILL of the process) and resumed ends with the same
tensors, bit for bit, as the uninterrupted run — models, optimizers, schedulers, RNG states."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from facegcn.train.checkpoint import load_state
from facegcn.train.loop import checkpoint_path
from facegcn.train.trainer import read_log, train
from tests.train.conftest import REPO, assert_runs_equal, tiny_config


@pytest.mark.slow
def test_max_steps_stop_and_resume_is_bit_exact(straight_run, cache8, tmp_path):
    run = tmp_path / "run"
    r1 = train(tiny_config(cache8, run, max_steps=3))
    assert r1["stopped"] and r1["stages"][-1]["global_step"] == 3
    assert not (run / "regressor.safetensors").exists() and not checkpoint_path(run, "texture").exists()
    r2 = train(tiny_config(cache8, run, max_steps=3), resume=True)  # 1 coarse step, then 2 texture steps
    assert r2["stopped"] and [s["stage"] for s in r2["stages"]] == ["coarse", "texture"]
    assert (run / "regressor.safetensors").is_file() and r2["stages"][1]["global_step"] == 2
    r3 = train(tiny_config(cache8, run), resume=True)
    assert not r3["stopped"] and r3["stages"][0]["skipped"] and r3["stages"][1]["global_step"] == 4
    n = assert_runs_equal(straight_run, run)
    assert n > 100
    events = [r.get("event") for r in read_log(run) if "event" in r]
    assert events.count("resume") == 3  # coarse (run 2), texture (run 3) + the finished coarse stage skipped


def _cli_args(cache, run) -> list[str]:
    return ["train", str(cache), "-o", str(run), "--stage", "both", "--epochs", "2", "--batch-size", "4",
            "--depth", "14", "--width", "8", "--lr", "0.001", "--critic-steps", "2", "--threads", "1",
            "--log-every", "1", "--checkpoint-every", "1", "--image-every", "1", "--device", "cpu",
            "--critic-widths", "4,8,8,8,8,8", "--gen-k", "3", "--gen-fc-channels", "8",
            "--gen-decoder-widths", "4,4,4,3", "--gen-refiner-widths", "4,4,4,4,3", "-q"]


@pytest.mark.slow
def test_sigkill_mid_run_leaves_an_intact_checkpoint_and_resume_is_bit_exact(straight_run, cache8, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "facegcn.train", *_cli_args(cache8, run)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    log = run / "log.jsonl"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if log.is_file():
                steps = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
                if any(s.get("kind") == "step" and s.get("stage") == "coarse" and s["step"] >= 2 for s in steps):
                    break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # the checkpoint on disk is complete and loadable (atomic writes)
    meta, sections = load_state(checkpoint_path(run, "coarse"))
    assert meta["stage"] == "coarse" and meta["global_step"] >= 1 and not meta["done"]
    assert "model/regressor" in sections and "optim/opt" in sections and "rng" in sections
    res = train(tiny_config(cache8, run), resume=True)
    assert not res["stopped"]
    assert not list((run / "checkpoints").glob(".*.tmp"))
    assert_runs_equal(straight_run, run)
