"""`facegcn serve` under a bounded load, over plain HTTP on 127.0.0.1 only.

The server runs as a subprocess on a free port with the pipeline's fast settings trimmed further
(no refinement, few steps, 256² texture, one thread) and its own ``--temp-dir`` (and ``TMPDIR``).
The click events of the demo are private (``api_name=False``: not callable by gradio_client), so
the test talks to Gradio the way the page does: ``POST /gradio_api/upload``, ``POST
/gradio_api/queue/join`` with the event's ``fn_index``, the ``/gradio_api/queue/data`` event
stream, then the follow-up clean-up event (``POST /gradio_api/run/predict``), one session per
request.

1. Load: ``N_REQUESTS`` requests from ``CONCURRENCY`` client threads (a few of them bad uploads: a
   text file named ``.png``), each with a deadline. Every good request returns its files, every
   bad one the one-line error, nothing else fails; the server's job folders are gone afterwards.
2. Queue bound: a burst of ``BURST`` simultaneous requests against ``--queue-size QUEUE_SIZE``:
   those beyond the bound are refused at once (HTTP 503, "Queue is full"), the others complete.
3. SIGTERM: exit code 0 and nothing left in the server's temporary root (nor in its TMPDIR).

Requests/s and p95 latency are printed and written to ``test-artifacts/serve_load.json``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="gradio is not installed"),
]

N_REQUESTS = 50  # one reconstruction takes < 1 s here (one at a time on the server): the load phase ~30-60 s
CONCURRENCY = 4
BAD_EVERY = 10  # every 10th request uploads a text file named .png
QUEUE_SIZE = 4  # >= CONCURRENCY: the load phase never fills the queue
BURST = 10  # > QUEUE_SIZE + 1: the burst must be partly refused
REQUEST_TIMEOUT_S = 60.0
BAD_NAME = "not-a-photo.png"
BAD_MESSAGE = f"{BAD_NAME}: not a recognised image file"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DemoClient:
    """The page's side of one request, over HTTP (httpx is a dependency of gradio)."""

    def __init__(self, base: str):
        import httpx

        assert base.startswith("http://127.0.0.1:")  # never anything but this machine
        self.base = base.rstrip("/")
        self.http = httpx.Client(timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=10.0), trust_env=False)
        cfg = self.http.get(f"{self.base}/config").raise_for_status().json()
        by_elem = {c.get("props", {}).get("elem_id"): c["id"] for c in cfg["components"]}
        run_id, upload_id = by_elem["facegcn-run"], by_elem["facegcn-upload"]
        deps = cfg["dependencies"]
        click = next(d for d in deps if [run_id, "click"] in [list(t) for t in d["targets"]])
        self.fn_run = click["id"]
        assert click["inputs"] == [upload_id]
        # the .then(self._cleanup, inputs=job_state): the dependency triggered by the click's success
        then = [d for d in deps if d.get("trigger_after") == self.fn_run]
        assert len(then) == 1, then
        self.fn_cleanup = then[0]["id"]

    def close(self):
        self.http.close()

    def reconstruct(self, data: bytes, name: str, before_join=None, cleanup: bool = True) -> dict:
        """One request as the page makes it; returns {"ok", "status", "files" | "error", "latency_s", ...}.
        ``before_join`` (if given) is called between the upload and joining the queue; the latency
        is then counted from its return. ``cleanup=False``: no follow-up event (as an API client)."""
        t0 = time.perf_counter()
        session = uuid.uuid4().hex[:11]
        up = self.http.post(f"{self.base}/gradio_api/upload", files={"files": (name, data, "image/png")})
        up.raise_for_status()
        path = up.json()[0]
        if before_join is not None:
            before_join()
            t0 = time.perf_counter()
        deadline = t0 + REQUEST_TIMEOUT_S
        body = {"data": [{"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}],
                "fn_index": self.fn_run, "trigger_id": None, "session_hash": session, "event_data": None}
        join = self.http.post(f"{self.base}/gradio_api/queue/join", json=body)
        if join.status_code != 200:
            return {"ok": False, "status": join.status_code, "error": join.json().get("detail", join.text),
                    "latency_s": time.perf_counter() - t0, "joined": False}
        event_id = join.json()["event_id"]
        result = None
        with self.http.stream("GET", f"{self.base}/gradio_api/queue/data", params={"session_hash": session}) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"request {name} took longer than {REQUEST_TIMEOUT_S} s")
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed" and msg.get("event_id") == event_id:
                    result = msg
                    break
                if msg.get("msg") == "unexpected_error":
                    raise AssertionError(f"unexpected error from the server: {msg}")
        assert result is not None, "the event stream ended without a result"
        latency = time.perf_counter() - t0
        out = result.get("output") or {}
        if not result.get("success"):
            return {"ok": False, "status": 200, "error": out.get("error"), "latency_s": latency, "joined": True}
        values = out["data"]  # model3d, coarse, refined, figure, downloads, status, job_state
        files = [values[0], values[1], values[3], *(values[4] or [])]
        names = [Path(f["path"]).name for f in files if f]
        # the follow-up event (the page sends it after success): deletes the job folder
        if cleanup:
            clean = self.http.post(f"{self.base}/gradio_api/run/predict",
                                   json={"data": [None], "fn_index": self.fn_cleanup, "session_hash": session,
                                         "trigger_id": None, "event_data": None})
            assert clean.status_code == 200, clean.text
        # the files are served (from Gradio's cache, the job folder may already be gone)
        glb = self.http.get(f"{self.base}/gradio_api/file={values[0]['path']}")
        return {"ok": True, "status": 200, "files": names, "message": values[5], "latency_s": latency,
                "glb_status": glb.status_code, "glb_bytes": len(glb.content), "joined": True,
                "paths": [f["path"] for f in files if f]}


@pytest.fixture
def server(tmp_path):
    from facegcn.cli.reconstruct import build_config

    cfg = build_config(fast=True, quiet=True, refine=False, texture_size=256)
    cfg.coarse.steps_rigid, cfg.coarse.steps_landmark, cfg.coarse.steps_photo, cfg.coarse.steps_identity = 15, 30, 5, 0
    cfg.threads = 1
    (tmp_path / "config.json").write_text(cfg.to_json())
    temp_root, sys_tmp = tmp_path / "srv-tmp", tmp_path / "sys-tmp"
    sys_tmp.mkdir()
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", "TMPDIR": str(sys_tmp),
           "OMP_NUM_THREADS": "1", "NO_PROXY": "127.0.0.1,localhost"}
    env.pop("GRADIO_TEMP_DIR", None)
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "facegcn.serve", "--host", "127.0.0.1", "--port", str(port),
                             "--config", str(tmp_path / "config.json"), "--timeout", "60", "--max-file-mb", "2",
                             "--queue-size", str(QUEUE_SIZE), "--threads", "1", "--temp-dir", str(temp_root), "-q"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    info = {"url": f"http://127.0.0.1:{port}", "proc": proc, "temp_root": temp_root, "sys_tmp": sys_tmp,
            "log": tmp_path / "server.log"}
    try:
        _wait_up(info["url"] + "/config", proc, 120)
        yield info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _wait_up(url: str, proc, timeout: float) -> None:
    import httpx

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}")
        try:
            if httpx.get(url, timeout=5, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"server did not answer within {timeout} s")


def _photo_bytes() -> bytes:
    import io

    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()[0:256, 92:348]).save(buf, format="PNG")
    return buf.getvalue()


def _p95(xs) -> float:
    return float(np.percentile(np.asarray(xs, float), 95))


def test_serve_under_load(server, artifacts_dir):
    t_test = time.perf_counter()
    client = DemoClient(server["url"])
    photo, bad = _photo_bytes(), b"this is a text file renamed .png\n"
    try:
        client.reconstruct(photo, "warmup.png")  # the worker's first job (caches, numba) is not measured
        jobs = [(bad, BAD_NAME) if i % BAD_EVERY == BAD_EVERY - 1 else (photo, f"face-{i:02d}.png")
                for i in range(N_REQUESTS)]
        # ---- 1. the load: CONCURRENCY clients, one request at a time each
        t0 = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as ex:
            futs = [ex.submit(client.reconstruct, d, n) for d, n in jobs]
            results = [f.result(timeout=REQUEST_TIMEOUT_S * N_REQUESTS) for f in futs]
        wall = time.perf_counter() - t0
        unexpected = []
        for (_, name), r in zip(jobs, results):
            if name == BAD_NAME:
                if r["ok"] or r["error"] != BAD_MESSAGE:  # one line, no server path, no traceback
                    unexpected.append((name, r))
            elif not (r["ok"] and {"mesh.glb", "coarse.png", "figure.png", "mesh.ply", "coeffs.json",
                                   "report.json", "facegcn-result.zip"} <= set(r["files"]) and "mesh.obj" not in r["files"]
                      and r["message"].startswith("Done") and r["glb_status"] == 200 and r["glb_bytes"] > 1000):
                unexpected.append((name, r))
        assert unexpected == [], unexpected
        good_lat = [r["latency_s"] for (_, n), r in zip(jobs, results) if n != BAD_NAME]
        stats = {"requests": N_REQUESTS, "bad_uploads": sum(n == BAD_NAME for _, n in jobs), "concurrency": CONCURRENCY,
                 "wall_s": round(wall, 2), "requests_per_s": round(N_REQUESTS / wall, 3),
                 "p95_latency_s": round(_p95([r["latency_s"] for r in results]), 2),
                 "p95_latency_good_s": round(_p95(good_lat), 2), "median_latency_good_s": round(float(np.median(good_lat)), 2)}
        print(f"load phase: {stats}")
        jobs_root = next(server["temp_root"].glob("facegcn-serve-*")) / "jobs"
        assert list(jobs_root.iterdir()) == []  # every job folder was removed after its request

        # ---- 2. the queue bound: a burst of simultaneous requests
        barrier = threading.Barrier(BURST)  # all uploads first, then every request joins the queue at once

        def burst_one(i):
            return client.reconstruct(photo, f"burst-{i}.png", before_join=lambda: barrier.wait(timeout=30))

        t0 = time.perf_counter()
        with ThreadPoolExecutor(BURST) as ex:
            burst = [f.result(timeout=REQUEST_TIMEOUT_S * BURST) for f in [ex.submit(burst_one, i) for i in range(BURST)]]
        refused = [r for r in burst if not r["joined"]]
        accepted = [r for r in burst if r["joined"]]
        assert all(r["ok"] for r in accepted), accepted
        assert all(r["status"] == 503 and "Queue is full" in r["error"] for r in refused), refused
        assert len(accepted) <= QUEUE_SIZE + 1 and len(refused) >= BURST - QUEUE_SIZE - 1, (len(accepted), len(refused))
        assert max(r["latency_s"] for r in refused) < 5.0  # refused at once (HTTP 503), not left hanging
        stats.update(burst=BURST, queue_size=QUEUE_SIZE, burst_accepted=len(accepted), burst_refused=len(refused),
                     burst_wall_s=round(time.perf_counter() - t0, 2))
    finally:
        client.close()

    # ---- 3. SIGTERM: clean exit, no temporary files left
    proc = server["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert list(server["temp_root"].iterdir()) == []  # job folders, uploads, Gradio's cache: all gone
    # nothing elsewhere in the server's TMPDIR either (torch creates its empty per-user inductor cache
    # folder, torchinductor_<user>, when imported: not a file of the server's)
    left = sorted(str(p.relative_to(server["sys_tmp"])) for p in server["sys_tmp"].rglob("*")
                  if not (p.parent == server["sys_tmp"] and p.name.startswith("torchinductor_") and p.is_dir()
                          and not any(p.iterdir())))
    assert left == [], left
    log = server["log"].read_text()
    assert "Traceback" not in log, log[-3000:]
    assert log.count(f"request failed: {BAD_MESSAGE}") == stats["bad_uploads"]  # one line each on the server

    stats["test_s"] = round(time.perf_counter() - t_test, 1)
    (artifacts_dir / "serve_load.json").write_text(json.dumps(stats, indent=1) + "\n")
    print(f"serve load: {N_REQUESTS} requests, {CONCURRENCY} concurrent: {stats['requests_per_s']:.2f} req/s, "
          f"p95 latency {stats['p95_latency_s']:.1f} s; burst of {BURST}: {len(accepted)} accepted, {len(refused)} refused")
