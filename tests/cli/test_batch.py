"""`facegcn batch` and facegcn.apps.batch: inputs, bad files, summary CSV, exit codes, resume, processes, Ray.

References: the exit-code contract of facegcn.errors (0 / 7 / first error's code), the one-line
error rule (no traceback on stderr), and — for the parallel back-ends — the outputs of the plain
single-process run of the same items (coefficients compared numerically).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from facegcn.apps.batch import (
    COLUMNS,
    DONE_MARKER,
    BatchItem,
    collect_inputs,
    config_digest,
    process_item,
    read_summary,
    run_batch,
)
from facegcn.cli.reconstruct import build_config


def tiny_config():
    """The pipeline's fast settings, trimmed further: a few seconds per photo on 2 shared cores."""
    cfg = build_config(fast=True, quiet=True, refine=False, texture_size=256)
    cfg.coarse.steps_rigid, cfg.coarse.steps_landmark, cfg.coarse.steps_photo, cfg.coarse.steps_identity = 15, 30, 5, 0
    cfg.threads = 1  # small tensors: on a shared 2-core machine one thread is several times faster
    return cfg


def astronaut_crops(folder: Path) -> list[Path]:
    """Two different 256² photos of skimage's public-domain astronaut (a crop and a mirrored crop)."""
    from PIL import Image
    from skimage import data

    a = data.astronaut()
    folder.mkdir(parents=True, exist_ok=True)
    p1, p2 = folder / "a.png", folder / "b.jpg"
    Image.fromarray(a[0:256, 92:348]).save(p1)
    Image.fromarray(np.ascontiguousarray(a[8:264, 100:356][:, ::-1])).save(p2, quality=95)
    return [p1, p2]


@pytest.fixture
def cli(monkeypatch):
    """facegcn.cli.main with the batch command registered for this test only."""
    from facegcn.cli import batch as batch_cli
    from facegcn.cli import main
    from facegcn.cli.app import app

    monkeypatch.setattr(app, "registered_commands", list(app.registered_commands))
    batch_cli.register(app)
    return main


def _run_cli(main, argv):
    import torch

    threads = torch.get_num_threads()  # the config's threads=1 must not leak into other tests
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(argv)
    finally:
        torch.set_num_threads(threads)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch-in")
    good = astronaut_crops(d)
    (d / "bad.png").write_text("this is a text file, not a PNG\n")  # a bad file among good ones
    (d / "notes.txt").write_text("not an image extension: ignored\n")
    cfg = d.parent / f"{d.name}-config.json"
    cfg.write_text(tiny_config().to_json())
    return {"dir": d, "good": good, "bad": d / "bad.png", "config": cfg}


# ------------------------------------------------------------------------------ inputs
def test_collect_inputs_files_folders_globs(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y" / "deep").mkdir(parents=True)
    for p in ("x/face.png", "y/face.jpg", "y/deep/other.webp", "x/readme.txt"):
        (tmp_path / p).write_bytes(b"0")
    out = tmp_path / "x" / "out"
    out.mkdir()
    (out / "figure.png").write_bytes(b"0")  # an output of an earlier run: never an input
    items = collect_inputs([tmp_path / "x", str(tmp_path / "y" / "**" / "*.webp"), tmp_path / "y" / "face.jpg",
                            tmp_path / "x" / "face.png", tmp_path / "missing.png", str(tmp_path / "none*.png")],
                           exclude=out)
    srcs = [Path(i.source).name for i in items]
    assert srcs == ["face.png", "other.webp", "face.jpg", "missing.png", "none*.png"]  # duplicates once, txt ignored
    names = [i.name for i in items]
    assert len(set(names)) == len(names)
    assert names[0].startswith("face-") and names[2].startswith("face-") and names[1] == "other"  # same stem twice
    assert items[4].error and "no file matches" in items[4].error and items[3].error is None
    again = collect_inputs([tmp_path / "x", str(tmp_path / "y" / "**" / "*.webp"), tmp_path / "y" / "face.jpg"], exclude=out)
    assert [i.name for i in again] == names[:3]  # stable names: --resume finds the same folders
    rec = collect_inputs([tmp_path / "y"], recursive=True)
    assert sorted(Path(i.source).name for i in rec) == ["face.jpg", "other.webp"]


def test_unexpected_error_is_one_line_row(tmp_path):
    class Boom:
        def __call__(self, _):
            raise ValueError("something\nbroke")

    src = tmp_path / "p.png"
    src.write_bytes(b"x")
    row = process_item(Boom(), BatchItem(str(src), "p"), tmp_path / "out", "d")
    assert row["status"] == "InternalError" and row["exit_code"] == 70  # the CLI's code for a bug
    assert "\n" not in row["message"] and "something broke" in row["message"]
    assert (tmp_path / "out" / "p" / "error.log").read_text().startswith("Traceback")
    assert not (tmp_path / "out" / "p" / DONE_MARKER).exists()


def test_report_exit_codes(tmp_path):
    from facegcn.apps.batch import BatchReport
    from facegcn.errors import FaceGCNError, NoFaceError, PartialFailure

    ok = {"status": "ok", "exit_code": 0, "message": ""}
    noface = {"status": "NoFaceError", "exit_code": 4, "message": "x.png: no face found"}
    internal = {"status": "InternalError", "exit_code": 70, "message": "y.png: boom"}
    assert BatchReport([ok, ok], tmp_path, tmp_path).exit_code == 0
    BatchReport([ok], tmp_path, tmp_path).raise_for_status()
    with pytest.raises(PartialFailure) as e:
        BatchReport([ok, noface], tmp_path, tmp_path).raise_for_status()
    assert e.value.exit_code == 7 and "1 of 2" in str(e.value)
    with pytest.raises(NoFaceError) as e:
        BatchReport([noface, internal], tmp_path, tmp_path).raise_for_status()
    assert e.value.exit_code == 4 and BatchReport([noface, internal], tmp_path, tmp_path).exit_code == 4
    with pytest.raises(FaceGCNError) as e:
        BatchReport([internal, noface], tmp_path, tmp_path).raise_for_status()
    assert e.value.exit_code == 70 and "\n" not in str(e.value)


# ------------------------------------------------------------------ acceptance (serial)
def test_batch_folder_with_a_bad_file_then_resume(photos, tmp_path, cli):
    """Acceptance: `facegcn batch FOLDER -o OUT` with one bad file among good ones → all good ones
    done, the bad one reported, exit code 7; then `--resume` skips the finished ones."""
    out = tmp_path / "out"
    code, _, stderr = _run_cli(cli, ["batch", str(photos["dir"]), "-o", str(out), "--config", str(photos["config"])])
    assert code == 7, stderr  # PartialFailure
    assert "Traceback" not in stderr
    err_lines = [l for l in stderr.replace("\r", "\n").splitlines() if l.startswith("error:")]
    assert any("bad.png: not a recognised image file" in l for l in err_lines)  # the per-image report
    assert err_lines[-1].startswith("error: 1 of 3 item(s) failed")  # the final one-line summary
    assert "batch" in stderr and "3/3" in stderr  # the progress bar
    rows = read_summary(out / "summary.csv")
    assert [Path(r["input"]).name for r in rows] == ["a.png", "b.jpg", "bad.png"]
    assert list(rows[0].keys()) == list(COLUMNS)
    for r in rows[:2]:
        assert r["status"] == "ok" and r["message"] == "" and r["exit_code"] == "0"
        assert float(r["landmark_nme"]) < 0.2 and float(r["psnr_coarse"]) > 10 and float(r["total_s"]) > 0
        d = Path(r["output"])
        for f in ("mesh.obj", "mesh.ply", "mesh.glb", "coeffs.json", "report.json", "figure.png"):
            assert (d / f).is_file(), f
        marker = json.loads((d / DONE_MARKER).read_text())
        assert marker["row"]["status"] == "ok" and marker["source"] == str(Path(r["input"]).resolve())
        assert marker["config"] == config_digest(tiny_config().to_json())
    bad = rows[2]
    assert bad["status"] == "InputError" and bad["exit_code"] == "3" and "not a recognised image file" in bad["message"]
    assert not (out / "bad" / DONE_MARKER).exists()

    # --resume: finished items are skipped (files untouched), the bad one is tried again
    before = {p: p.stat().st_mtime_ns for p in (out / "a" / "mesh.ply", out / "b" / "mesh.ply")}
    code, _, err = _run_cli(cli, ["batch", str(photos["dir"]), "-o", str(out), "--config", str(photos["config"]),
                                  "--resume", "-q"])
    assert code == 7 and "Traceback" not in err
    again = read_summary(out / "summary.csv")
    assert [r["resumed"] for r in again] == ["True", "True", "False"]
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert [r["landmark_nme"] for r in again[:2]] == [r["landmark_nme"] for r in rows[:2]]
    # a source that changed since (here: its recorded size no longer matches) is redone
    m = json.loads((out / "a" / DONE_MARKER).read_text())
    m["size"] += 1
    (out / "a" / DONE_MARKER).write_text(json.dumps(m))
    code, _, err = _run_cli(cli, ["batch", str(photos["dir"]), "-o", str(out), "--config", str(photos["config"]),
                                  "--resume", "-q"])
    assert code == 7
    assert [r["resumed"] for r in read_summary(out / "summary.csv")] == ["False", "True", "False"]
    assert json.loads((out / "a" / DONE_MARKER).read_text())["size"] == photos["good"][0].stat().st_size


def test_all_failed_gives_first_error_code(tmp_path, cli, photos):
    d = tmp_path / "in"
    d.mkdir()
    (d / "1-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (d / "2-empty.png").write_bytes(b"")
    code, _, err = _run_cli(cli, ["batch", str(d), "-o", str(tmp_path / "out"), "--config", str(photos["config"]), "-q"])
    assert code == 3  # InputError, the first failure's code
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: all 2 item(s) failed") and "Traceback" not in err
    assert all(l.startswith("error: ") for l in lines)
    # no face at all: NoFaceError's code
    from PIL import Image

    d2 = tmp_path / "in2"
    d2.mkdir()
    Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(d2 / "grey.png")
    code, _, err = _run_cli(cli, ["batch", str(d2 / "*.png"), "-o", str(tmp_path / "out2"), "--config", str(photos["config"]), "-q"])
    assert code == 4 and "no face" in err.lower()
    assert read_summary(tmp_path / "out2" / "summary.csv")[0]["status"] == "NoFaceError"


def test_ray_missing_is_a_one_line_config_error(tmp_path, cli, photos, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    code, _, err = _run_cli(cli, ["batch", str(photos["good"][0]), "-o", str(tmp_path), "--ray", "local", "-q"])
    assert code == 2 and err.strip().count("\n") == 0 and "pip install ray" in err


def test_ray_unreachable_address_fails_fast(tmp_path, cli, photos):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = _run_cli(cli, ["batch", str(photos["good"][0]), "-o", str(tmp_path), "--ray", f"127.0.0.1:{port}", "-q"])
    assert code == 2 and err.strip().count("\n") == 0 and "cannot reach Ray" in err


# ------------------------------------------------------------------- parallel back-ends
def _coeffs(d: Path) -> np.ndarray:
    c = json.loads((d / "coeffs.json").read_text())["coefficients"]
    return np.concatenate([np.asarray(c[k], np.float64) for k in ("id", "exp", "tex", "angles", "sh", "trans")])


def _same_as_serial(report, reference):
    ref = {Path(r["input"]).name: r for r in reference.rows}
    assert [Path(r["input"]).name for r in report.rows] == list(ref)
    for r in report.rows:
        s = ref[Path(r["input"]).name]
        assert r["status"] == s["status"] and r["message"] == s["message"]
        if r["status"] == "ok":  # same per-item function; only processes/threads differ → float noise at most
            a, b = _coeffs(Path(r["output"])), _coeffs(Path(s["output"]))
            np.testing.assert_allclose(a, b, atol=2e-3, rtol=1e-3)
            assert abs(float(r["landmark_nme"]) - float(s["landmark_nme"])) < 1e-3
            assert (Path(r["output"]) / "mesh.glb").is_file() and (Path(r["output"]) / DONE_MARKER).is_file()


@pytest.fixture
def parallel_inputs(photos, tmp_path):
    """One good photo and the bad file, and their single-process run (the reference)."""
    inputs = [photos["good"][0], photos["bad"]]
    return inputs, run_batch(inputs, tmp_path / "serial", tiny_config(), progress=False)


@pytest.mark.slow
def test_workers_processes_match_single_process(parallel_inputs, tmp_path):
    inputs, reference = parallel_inputs
    report = run_batch(inputs, tmp_path / "pool", tiny_config(), workers=2, progress=False)
    assert report.backend == "processes(2)" and report.exit_code == 7
    _same_as_serial(report, reference)


@pytest.mark.slow
def test_ray_tasks_match_single_process(parallel_inputs, tmp_path):
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    inputs, reference = parallel_inputs
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        report = run_batch(inputs, tmp_path / "ray", tiny_config(), ray_address="local", progress=False)
    finally:
        ray.shutdown()
    assert report.backend == "ray" and report.exit_code == 7
    _same_as_serial(report, reference)
