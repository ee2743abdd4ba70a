"""One reconstruction process for the web demo: models loaded once, one job at a time, killable.

The web server never runs the pipeline in its own process: a job that overruns its time limit
is stopped by killing the worker process (torch cannot be interrupted from another thread), and
a fresh worker is started for the next job. Jobs and results travel over a
``multiprocessing`` pipe between these two processes of ours; only paths inside the server's own
job folders and plain values cross it.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import sys
import threading
import time
import traceback
import zipfile
from pathlib import Path

from facegcn.errors import ConfigError, FaceGCNError

READY_TIMEOUT_S = 600.0  # model loading (first start, cold caches) may take a while


class WorkerTimeout(Exception):
    """A job (or the model loading) overran its time limit; the worker process was killed."""


class WorkerCrashed(Exception):
    """The worker process died (e.g. out of memory); a fresh one is started for the next job."""


def public_config(cfg):
    """``cfg`` as a client may see it: model and checkpoint files by their base names only."""
    from facegcn.config import Config  # the worker process only (see run_job)

    pub = Config.from_dict(cfg.to_dict())
    if pub.model and ("/" in pub.model or os.sep in pub.model):
        pub.model = Path(pub.model).name
    if pub.checkpoint:
        pub.checkpoint = Path(pub.checkpoint).name
    return pub


def _scrub(folder: Path, secrets: list[str]) -> None:
    """Replace any of ``secrets`` (server paths) in the text files of ``folder`` (safety net)."""
    for p in folder.iterdir():
        if p.suffix.lower() not in (".json", ".mtl") or not p.is_file():
            continue
        text = p.read_text(encoding="utf-8", errors="surrogateescape")
        new = text
        for s in sorted(set(secrets), key=len, reverse=True):
            new = new.replace(s, "")
        if new != text:
            p.write_text(new, encoding="utf-8", errors="surrogateescape")


def run_job(rec, job: dict) -> dict:
    """The whole job, in the worker process: reconstruct, write every output, add the two preview
    images (render over photo) and a zip of the files.

    Args:
        rec: the worker's :class:`~facegcn.pipeline.Reconstructor`.
        job: ``{"image": photo path, "outdir": folder to write}`` (both inside the server's job
            folder), and ``"name"``: the photo's name as the client knows it (what
            ``report.json`` records; no server path reaches a file the client gets).

    Returns:
        ``{"ok": True, "files": {kind: path}, "metrics": ..., "timings": ... (seconds, with
        ``job_s``), "faces": faces found, "refined": bool}``; the most confident face is shown.
    """
    # here, not at module top: the web server imports this module, and only the worker process
    # needs numpy/torch (facegcn.io.image, facegcn.io.imageops)
    from facegcn.io.image import Photo, load_image
    from facegcn.io.imageops import composite, image_to_uint8, write_png

    outdir = Path(job["outdir"])
    t0 = time.perf_counter()
    photo = load_image(job["image"])
    photo = Photo(photo.pixels, Path(Path(str(job.get("name") or "photo")).name))
    results = rec(photo)
    r = results[0]
    files = r.save(outdir, public_config(rec.cfg))
    obs, co = r.observation, r.coarse
    mask = co.rendering.mask[0].cpu().float()
    img = obs.image.cpu()
    previews = {"coarse": co.rendering.image[0], "refined": r.refined_render}
    for kind, render in previews.items():
        if render is not None:
            png = write_png(outdir / f"{kind}.png", image_to_uint8(composite(render.detach().cpu(), mask, img)))
            files[kind] = str(png)
    _scrub(outdir, [str(outdir.parent.resolve()), str(outdir.parent), str(job["image"])])
    zpath = outdir.parent / "facegcn-result.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(outdir.iterdir()):
            if p.is_file() and not p.name.startswith("."):
                zf.write(p, arcname=f"facegcn-result/{p.name}")
    files["zip"] = str(zpath)
    return {"ok": True, "files": files, "metrics": r.metrics, "timings": {**r.timings, "job_s": time.perf_counter() - t0},
            "faces": len(results), "refined": r.refined_render is not None}


def refine_available() -> bool:
    """Whether the GCN texture refinement is part of this installation."""
    try:
        return importlib.util.find_spec("facegcn.refine.per_image") is not None
    except (ImportError, ValueError):
        return False


def _worker_main(conn, config_json: str, threads: int) -> None:
    try:
        from facegcn.pipeline.runtime import set_threads  # the worker process only (torch; see run_job)

        set_threads(threads)
        from facegcn.config import Config
        from facegcn.pipeline import Reconstructor

        cfg = Config.from_dict(json.loads(config_json))
        cfg.progress = False
        notes = []
        if cfg.refine.enabled and not refine_available():
            cfg.refine.enabled = False
            notes.append("GCN texture refinement is not available in this installation; showing the coarse result")
        rec = Reconstructor(cfg)
        conn.send({"ready": True, "refine": cfg.refine.enabled and cfg.refine.steps > 0, "notes": notes})
    except BaseException as exc:  # noqa: BLE001 - reported to the server, which reports it to the user
        msg = " ".join(str(exc).split()) if isinstance(exc, FaceGCNError) else f"{type(exc).__name__}: {exc}"
        conn.send({"ready": False, "message": msg})
        return
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            res = run_job(rec, job)
        except FaceGCNError as exc:
            res = {"ok": False, "kind": type(exc).__name__, "exit_code": exc.exit_code, "message": str(exc)}
        except Exception as exc:  # noqa: BLE001 - one line to the user and to the server log
            message = " ".join(f"internal error: {type(exc).__name__}: {exc}".split())
            if os.environ.get("FACEGCN_DEBUG", "") not in ("", "0"):
                traceback.print_exc()  # developers get the traceback (as on the command line)
            else:
                print(f"facegcn serve: {message} (set FACEGCN_DEBUG=1 for the traceback)", file=sys.stderr, flush=True)
            res = {"ok": False, "kind": "InternalError", "exit_code": 70, "message": message}
        try:
            conn.send(res)
        except (BrokenPipeError, OSError):
            return


class ReconstructionWorker:
    """A child process (spawn) holding a :class:`~facegcn.pipeline.Reconstructor`.

    :meth:`run` sends one job and waits at most ``timeout`` seconds (model loading excluded);
    on timeout the process is killed and a new one started. Thread-safe: jobs are serialised.

    Args:
        config_json: the :class:`~facegcn.config.Config` as JSON.
        threads: torch threads in the worker (0 = torch's default).
        start: start the process (and the model loading) right away.
    """

    def __init__(self, config_json: str, threads: int = 0, start: bool = True):
        self.config_json = config_json
        self.threads = threads
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._proc = None
        self._conn = None
        self._ready: dict | None = None
        if start:
            self._start()

    def _start(self) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        self._proc = self._ctx.Process(target=_worker_main, args=(child, self.config_json, self.threads),
                                       name="facegcn-serve-worker", daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent
        self._ready = None

    def _kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
        if self._proc is not None:
            self._proc.join(timeout=10)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None
        self._ready = None

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> dict:
        """Block until the models are loaded; returns {"refine": bool, "notes": [...]}."""
        if self._proc is None or not self._proc.is_alive():
            self._kill()
            self._start()
        if self._ready is None:
            if not self._conn.poll(timeout):
                self._kill()
                raise WorkerTimeout(f"the reconstruction worker did not start within {timeout:.0f} s")
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                self._kill()
                raise WorkerCrashed("the reconstruction worker stopped while loading the models") from None
            if not msg.get("ready"):
                self._kill()
                raise ConfigError(msg.get("message", "the reconstruction worker could not start"))
            self._ready = msg
        return self._ready

    def run(self, job: dict, timeout: float) -> dict:
        """Run one job (see :func:`run_job`) and return its result dict (``"ok": False`` with
        ``kind``, ``exit_code`` and ``message`` for a failed reconstruction).

        Args:
            job: ``{"image": path, "outdir": path}``.
            timeout: seconds allowed for the job, after the models are loaded.

        Raises:
            WorkerTimeout: the job overran (the worker was restarted).
            WorkerCrashed: the worker died during the job (it was restarted).
        """
        with self._lock:
            self.wait_ready()
            self._conn.send(job)
            if not self._conn.poll(timeout):
                self._kill()
                self._start()  # loads in the background for the next job
                raise WorkerTimeout(f"the reconstruction took longer than {timeout:.0f} s and was stopped")
            try:
                return self._conn.recv()
            except (EOFError, OSError):
                self._kill()
                self._start()
                raise WorkerCrashed("the reconstruction worker stopped unexpectedly (out of memory?)") from None

    def close(self) -> None:
        """Ask the worker to exit, then make sure it has."""
        with self._lock:
            if self._conn is not None and self._proc is not None and self._proc.is_alive():
                try:
                    self._conn.send(None)
                    self._proc.join(timeout=5)
                except (OSError, BrokenPipeError):
                    pass
            self._kill()
