"""The web demo's request handling without a browser: upload checks, one-line errors, clean-up,
timeouts (a real worker process is killed and replaced)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from facegcn.cli.reconstruct import build_config
from facegcn.serve.app import DemoServer, ServeOptions  # gradio itself is imported lazily

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="gradio is not installed")


@pytest.fixture(scope="module")
def gr():
    import gradio

    return gradio


class FakeWorker:
    """Stands in for the reconstruction process: returns a canned result or error."""

    def __init__(self, result):
        self.result = result
        self.jobs = []

    def wait_ready(self, timeout=0):
        return {"ready": True, "refine": True, "notes": []}

    def run(self, job, timeout):
        self.jobs.append(job)
        assert Path(job["image"]).is_file()
        res = self.result(job) if callable(self.result) else self.result
        return res

    def close(self):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "unused"))  # restored after the test (the server sets it)
    made = []

    def make(result):
        s = DemoServer(build_config(fast=True, quiet=True), ServeOptions(temp_root=str(tmp_path / "srv")),
                       worker=FakeWorker(result))
        made.append(s)
        return s

    yield make
    for s in made:
        s.worker.close()
        shutil.rmtree(s.temp_root, ignore_errors=True)


def _upload(server, name: str, data: bytes) -> Path:
    d = server.gradio_root / "abc123"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_bytes(data)
    return p


def test_error_message_is_one_line_without_server_paths(server, gr):
    def fail(job):
        return {"ok": False, "kind": "InputError", "exit_code": 3,
                "message": f"{job['image']}: not a recognised image file"}

    s = server(fail)
    up = _upload(s, "holiday.png", b"text, not an image")
    with pytest.raises(gr.Error) as e:
        s.reconstruct_upload(str(up))
    msg = e.value.message
    assert msg == "holiday.png: not a recognised image file"
    assert str(s.temp_root) not in msg and "\n" not in msg
    assert list(s.jobs_root.iterdir()) == []  # the failed job's folder is gone


def test_paths_outside_the_upload_folder_are_refused(server, tmp_path, gr):
    s = server({"ok": True})
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"x")
    for p in (str(secret), "/etc/passwd", str(s.gradio_root / ".." / ".." / "secret.png")):
        with pytest.raises(gr.Error, match="could not be found"):
            s.reconstruct_upload(p)
    assert s.worker.jobs == [] and list(s.jobs_root.iterdir()) == []
    s._cleanup(str(tmp_path))  # clean-up never leaves the job root
    assert secret.exists()


def test_success_copies_upload_and_cleans_up(server, gr):
    def ok(job):
        out = Path(job["outdir"])
        for n in ("mesh.glb", "coarse.png", "refined.png", "figure.png", "coeffs.json", "report.json"):
            (out / n).write_bytes(b"x")
        f = {k: str(out / n) for k, n in (("glb", "mesh.glb"), ("coarse", "coarse.png"), ("refined", "refined.png"),
                                           ("figure", "figure.png"), ("coeffs", "coeffs.json"), ("report", "report.json"))}
        return {"ok": True, "files": f, "metrics": {"landmark_nme": 0.03, "psnr_coarse": 20.0, "psnr_refined": 24.0},
                "timings": {"job_s": 1.5}, "faces": 1, "refined": True}

    s = server(ok)
    up = _upload(s, "weird name.JPG", b"jpegbytes")
    glb, coarse, refined, figure, downloads, status, job = s.reconstruct_upload(str(up))
    job_dir = Path(job)
    assert job_dir.parent == s.jobs_root and Path(s.worker.jobs[0]["image"]) == job_dir / "input.jpg"
    assert glb.endswith("mesh.glb") and refined.endswith("refined.png") and len(downloads) == 3
    assert "refined PSNR **24.00 dB**" in status
    s._cleanup(job)
    assert not job_dir.exists()
    # webcam frames are saved by the server itself
    res = s.reconstruct_webcam(np.zeros((64, 64, 3), np.uint8))
    assert Path(s.worker.jobs[-1]["image"]).name == "webcam.png"
    s._cleanup(res[-1])
    with pytest.raises(gr.Error):
        s.reconstruct_webcam(None)


@pytest.mark.slow
def test_worker_timeout_kills_and_restarts(tmp_path):
    from facegcn.serve.worker import ReconstructionWorker, WorkerTimeout
    from PIL import Image
    from skimage import data

    cfg = build_config(fast=True, quiet=True, refine=False, texture_size=256)
    cfg.coarse.steps_rigid, cfg.coarse.steps_landmark, cfg.coarse.steps_photo = 15, 30, 5
    w = ReconstructionWorker(cfg.to_json(), threads=1)
    try:
        w.wait_ready()
        pid = w._proc.pid
        img = tmp_path / "a.png"
        Image.fromarray(data.astronaut()[0:256, 92:348]).save(img)
        (tmp_path / "o1").mkdir()
        with pytest.raises(WorkerTimeout, match="longer than"):
            w.run({"image": str(img), "outdir": str(tmp_path / "o1")}, timeout=0.05)
        assert w._proc.pid != pid  # a fresh worker
        (tmp_path / "bad.png").write_text("nope")
        res = w.run({"image": str(tmp_path / "bad.png"), "outdir": str(tmp_path / "o1")}, timeout=120)
        assert res["ok"] is False and res["kind"] == "InputError" and res["exit_code"] == 3  # the new worker answers
        # (a successful job through the worker is covered by the browser test)
    finally:
        w.close()
    assert w._proc is None
