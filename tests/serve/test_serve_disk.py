"""The web demo keeps its disk bounded and hands out no server paths (issue 17, items 6 and 8).

1. Over HTTP on 127.0.0.1 (the requests an API client makes: upload, join the queue, read the
   event stream, fetch the GLB; *no* follow-up clean-up event), 20 requests against a server with
   ``max_jobs=3``: never more than 3 job folders, none a few seconds after the last one, and
   every GLB still downloadable (Gradio's own copy). The pipeline is replaced by a stand-in that
   writes small files, so the 20 requests take seconds; the server, the queue and the clean-up
   are the real ones.
2. The worker's job with the real pipeline (3 optimisation steps): no file a client can get —
   the downloads and everything in the zip — holds a path of the server; ``report.json`` names
   the upload; the zip holds the OBJ with its ``.mtl`` and textures; the downloads start with the
   zip and the GLB and offer no bare ``mesh.obj``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import time
import zipfile
from pathlib import Path

import pytest

from facegcn.cli.reconstruct import build_config
from facegcn.serve.app import DemoServer, ServeOptions

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="gradio is not installed")

N_REQUESTS = 20
MAX_JOBS = 3


class FilesWorker:
    """Stands in for the reconstruction process: writes the files a job writes (small ones)."""

    def __init__(self):
        self.jobs = []

    def wait_ready(self, timeout=0):
        return {"ready": True, "refine": False, "notes": []}

    def run(self, job, timeout):
        self.jobs.append(job)
        out = Path(job["outdir"])
        names = {"glb": "mesh.glb", "ply": "mesh.ply", "coarse": "coarse.png", "figure": "figure.png",
                 "coeffs": "coeffs.json", "report": "report.json"}
        for n in names.values():
            (out / n).write_bytes(b"x" * 2000)
        zpath = out.parent / "facegcn-result.zip"
        with zipfile.ZipFile(zpath, "w") as zf:
            zf.writestr("facegcn-result/mesh.glb", b"x")
        files = {k: str(out / n) for k, n in names.items()}
        files["zip"] = str(zpath)
        return {"ok": True, "files": files, "metrics": {"landmark_nme": 0.03, "psnr_coarse": 20.0},
                "timings": {"job_s": 0.01}, "faces": 1, "refined": False}

    def close(self):
        pass


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "unused"))  # restored after the test (the server sets it)
    opts = ServeOptions(port=_free_port(), temp_root=str(tmp_path / "srv"), max_jobs=MAX_JOBS, sweep_every_s=0.5,
                        deliver_grace_s=1.0, queue_size=4)
    s = DemoServer(build_config(fast=True, quiet=True), opts, worker=FilesWorker())
    s.launch(block=False, quiet=True)
    try:
        yield s
    finally:
        s.close()
    assert not s.temp_root.exists()


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 90, 80)).save(buf, format="PNG")
    return buf.getvalue()


def test_twenty_api_requests_leave_at_most_the_cap(live_server, capfd):
    from tests.serve.test_serve_load import DemoClient

    client = DemoClient(f"http://127.0.0.1:{live_server.opts.port}")
    counts = []
    try:
        for i in range(N_REQUESTS):
            r = client.reconstruct(_png(), f"photo-{i}.png", cleanup=False)  # as an API client: no follow-up event
            assert r["ok"] and r["glb_status"] == 200 and r["glb_bytes"] == 2000, r
            assert r["files"][:1] == ["mesh.glb"] and r["files"][-5:] == [
                "facegcn-result.zip", "mesh.glb", "mesh.ply", "coeffs.json", "report.json"], r["files"]
            counts.append(live_server.jobs.count())
    finally:
        client.close()
    assert max(counts) <= MAX_JOBS, counts
    t0 = time.perf_counter()
    while live_server.jobs.count() and time.perf_counter() - t0 < 5:  # delivered: swept on the timer
        time.sleep(0.1)
    assert live_server.jobs.count() == 0
    out = capfd.readouterr()
    assert "share=True" not in out.out + out.err and "Running on local URL" not in out.out + out.err


def test_disk_cap_removes_oldest_cached_files(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "unused"))
    s = DemoServer(build_config(fast=True, quiet=True), ServeOptions(temp_root=str(tmp_path / "srv"), max_disk_mb=1.0),
                   worker=FilesWorker())
    try:
        files = []
        for i in range(5):  # 5 × 400 kB in Gradio's cache: over the 1 MB cap
            d = s.gradio_root / f"h{i}"
            d.mkdir()
            (d / "mesh.glb").write_bytes(b"x" * 400_000)
            files.append(d / "mesh.glb")
            time.sleep(0.01)
        s.sweep()
        left = [f for f in files if f.exists()]
        assert left == files[-2:]  # the newest, within the cap
    finally:
        s.close()


@pytest.fixture(scope="module")
def reconstructor():
    from facegcn.pipeline import Reconstructor

    cfg = build_config(fast=True, quiet=True, refine=False, texture_size=128)
    cfg.coarse.steps_rigid, cfg.coarse.steps_landmark, cfg.coarse.steps_photo, cfg.coarse.steps_identity = 3, 3, 3, 0
    cfg.threads = 1
    return Reconstructor(cfg)


def test_no_server_path_in_anything_a_client_gets(reconstructor, tmp_path):
    from PIL import Image
    from skimage import data

    from facegcn.serve.worker import public_config, run_job

    job = tmp_path / "facegcn-serve-abc" / "jobs" / "0123456789abcdef"
    (job / "out").mkdir(parents=True)
    Image.fromarray(data.astronaut()[0:256, 92:348]).save(job / "input.png")
    res = run_job(reconstructor, {"image": str(job / "input.png"), "outdir": str(job / "out"), "name": "holiday.png"})
    assert res["ok"]
    secrets = [str(tmp_path), str(job), "input.png"]
    given = [Path(p) for k, p in res["files"].items() if k in ("zip", "glb", "ply", "coeffs", "report")]
    for p in given:
        data_ = p.read_bytes()
        assert not any(s.encode() in data_ for s in secrets), p
    assert json.loads((job / "out" / "report.json").read_text())["photo"] == "holiday.png"
    with zipfile.ZipFile(res["files"]["zip"]) as zf:
        names = {Path(n).name for n in zf.namelist()}
        assert {"mesh.obj", "mesh.mtl", "mesh.png", "mesh.glb", "report.json", "config.json"} <= names
        mtl = zf.read("facegcn-result/mesh.mtl").decode()
        assert all(ln.split()[-1] in names for ln in mtl.splitlines() if ln.startswith("map_Kd"))
        for n in zf.namelist():
            blob = zf.read(n)
            assert not any(s.encode() in blob for s in secrets), n
    cfg = reconstructor.cfg
    old = (cfg.model, cfg.checkpoint)
    try:
        cfg.model, cfg.checkpoint = "/srv/models/BFM_model_front.mat", "/srv/runs/run1/"
        pub = public_config(cfg)
        assert (pub.model, pub.checkpoint) == ("BFM_model_front.mat", "run1")
    finally:
        cfg.model, cfg.checkpoint = old
    shutil.rmtree(job)
