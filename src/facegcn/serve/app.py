"""The Gradio web demo: photo (upload or webcam) → coarse and refined results, 3D viewer, downloads.

Thin: every request copies its photo into a fresh job folder under the server's own temporary
root and hands it to a :class:`~facegcn.serve.worker.ReconstructionWorker` (the pipeline, in a
separate process). Safety and limits:

* binds ``127.0.0.1`` unless told otherwise; uploads above ``max_file_mb`` are refused by Gradio
  (``max_file_size``);
* one reconstruction at a time (``default_concurrency_limit=1``), at most ``queue_size`` waiting
  requests; each request is stopped after ``timeout_s`` (the worker process is killed/restarted);
* the only path taken from a request is the upload that Gradio itself stored; it must lie inside
  Gradio's upload folder (else the request is refused), and its bytes are copied into the job
  folder under a fixed name — no client-supplied name reaches the file system;
* bad files and photos without a face give the pipeline's one-line message (``gr.Error``); the
  server's paths are replaced by the upload's base name, and no file a client can download holds
  a server path (``report.json`` names the upload, ``config.json`` only the base names of model
  and checkpoint files);
* bounded disk: a job folder is deleted once its results were delivered (Gradio copies them
  into its own cache when the request returns; the page's follow-up event deletes it at once,
  otherwise a timer does a few seconds later), at most ``max_jobs`` job folders exist, and the
  temporary root (job folders, uploads and Gradio's cache) is kept under ``max_disk_mb``
  (oldest first) by a sweep every ``sweep_every_s`` seconds; the whole temporary root is removed
  when the server stops;
* the port is checked before the models load; Gradio's own console lines (the local URL, the
  ``share=True`` hint) are replaced by one line of ours.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from facegcn.errors import ConfigError
from facegcn.serve.jobs import JobFolders, check_port, inside as _inside
from facegcn.serve.worker import ReconstructionWorker, WorkerCrashed, WorkerTimeout

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_SSR_MODE", "False")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
ELEM = {  # element ids (stable hooks for tests and custom CSS)
    "upload": "facegcn-upload", "run": "facegcn-run", "webcam": "facegcn-webcam", "run_webcam": "facegcn-run-webcam",
    "model3d": "facegcn-model3d", "coarse": "facegcn-coarse", "refined": "facegcn-refined",
    "figure": "facegcn-figure", "downloads": "facegcn-downloads", "status": "facegcn-status",
}


@dataclass
class ServeOptions:
    """How the demo is served: address, limits (sizes in MB, times in seconds) and folders."""

    host: str = "127.0.0.1"
    port: int = 7860
    max_file_mb: float = 20.0
    timeout_s: float = 300.0
    queue_size: int = 8
    cache_ttl_s: int = 3600  # Gradio's copies of results and uploads are deleted after this
    job_ttl_s: int = 1800  # a job folder older than this is swept even if it never finished
    deliver_grace_s: float = 5.0  # a finished job's folder is deleted this long after it returned
    max_jobs: int = 8  # job folders on disk at most (oldest finished first)
    max_disk_mb: float = 2000.0  # the whole temporary root at most (oldest first)
    sweep_every_s: float = 5.0  # the sweeper's period
    temp_root: str | None = None  # default: a fresh folder in the system temp dir
    threads: int = 0  # torch threads in the worker (0 = torch default)


def _format_metrics(res: dict, notes: list[str]) -> str:
    m, t = res.get("metrics", {}), res.get("timings", {})
    parts = []
    if "landmark_nme" in m:
        parts.append(f"landmark NME **{m['landmark_nme']:.4f}**")
    if "psnr_coarse" in m:
        parts.append(f"coarse PSNR **{m['psnr_coarse']:.2f} dB**")
    if "psnr_refined" in m:
        parts.append(f"refined PSNR **{m['psnr_refined']:.2f} dB**")
    if "job_s" in t:
        parts.append(f"{t['job_s']:.1f} s")
    text = "Done: " + ", ".join(parts) + "."
    if res.get("faces", 1) > 1:
        text += f" {res['faces']} faces found; showing the most confident one."
    for n in notes:
        text += f"\n\n_{n}._"
    return text


def _user_error(message: str):
    """A one-line error for the page (gr.Error), logged as one line on the server (no traceback)."""
    import gradio as gr  # lazy everywhere here: optional dependency, and seconds to import

    msg = " ".join(str(message).split())
    print(f"facegcn serve: request failed: {msg}", file=sys.stderr, flush=True)
    return gr.Error(msg, duration=30, print_exception=False)


class DemoServer:
    """Owns the temporary root, the worker and the Gradio Blocks.

    Args:
        config: the :class:`~facegcn.config.Config` the worker reconstructs with.
        options: see :class:`ServeOptions` (default: its defaults).
        worker: stands in for the :class:`~facegcn.serve.worker.ReconstructionWorker` (tests).
    """

    def __init__(self, config, options: ServeOptions | None = None, *, worker=None):
        self.opts = options or ServeOptions()
        self.config = config
        root = self.opts.temp_root
        if root:
            Path(root).mkdir(parents=True, exist_ok=True)
            self.temp_root = Path(tempfile.mkdtemp(prefix="facegcn-serve-", dir=root))
        else:
            self.temp_root = Path(tempfile.mkdtemp(prefix="facegcn-serve-"))
        self.jobs_root = self.temp_root / "jobs"
        self.jobs_root.mkdir()
        self.gradio_root = self.temp_root / "gradio"
        self.gradio_root.mkdir()
        os.environ["GRADIO_TEMP_DIR"] = str(self.gradio_root)  # uploads and result cache live here
        cfg_json = config.to_json()
        self.jobs = JobFolders(self.jobs_root, self.gradio_root, self.opts)
        self.worker = worker or ReconstructionWorker(cfg_json, threads=self.opts.threads)
        self.demo = self._build()

    # ------------------------------------------------------------------ disk
    def _new_job(self) -> Path:
        return self.jobs.new()

    def _cleanup(self, job_dir) -> None:
        self.jobs.remove(job_dir)

    def sweep(self, reserve: int = 0) -> None:
        """Enforce the disk bounds now (see :meth:`facegcn.serve.jobs.JobFolders.sweep`)."""
        self.jobs.sweep(reserve=reserve)

    # ------------------------------------------------------------------ requests

    def _accept_upload(self, upload, job: Path) -> tuple[Path, str]:
        """Copy Gradio's stored upload into the job folder; returns (our path, display name)."""
        src = Path(upload if isinstance(upload, (str, os.PathLike)) else getattr(upload, "name", ""))
        if not str(src) or not _inside(src, self.gradio_root) or not src.is_file():
            raise _user_error("the upload could not be found; please upload the photo again")
        size = src.stat().st_size
        if size > self.opts.max_file_mb * 1024 * 1024:
            raise _user_error(f"the file is too large ({size / 1e6:.1f} MB; limit {self.opts.max_file_mb:g} MB)")
        display = re.sub(r"[^\w.\- ]+", "_", src.name)[-80:] or "upload"
        suffix = src.suffix.lower() if src.suffix.lower() in IMAGE_SUFFIXES else ".img"
        dst = job / f"input{suffix}"
        shutil.copyfile(src, dst)
        return dst, display

    def _run(self, image_path: Path, display: str, job: Path):
        try:
            ready = self.worker.wait_ready()
            res = self.worker.run({"image": str(image_path), "outdir": str(job / "out"), "name": display},
                                  timeout=self.opts.timeout_s)
        except (WorkerTimeout, WorkerCrashed) as exc:
            raise _user_error(str(exc)) from None
        except Exception as exc:  # e.g. the worker could not load the models
            raise _user_error(" ".join(str(exc).split()) or type(exc).__name__) from None
        if not res.get("ok"):
            msg = res.get("message", "reconstruction failed").replace(str(image_path), display)
            msg = msg.replace(str(job), "")
            raise _user_error(msg)
        f = res["files"]
        notes = list(ready.get("notes", []))
        refined = f.get("refined")
        # the zip first (everything, the OBJ with its .mtl and textures), then the one-file meshes
        downloads = [f[k] for k in ("zip", "glb", "ply", "coeffs", "report") if k in f]
        status = _format_metrics(res, notes)
        self.jobs.finished(job)  # Gradio copies the files into its cache next; the sweeper deletes the folder
        return f.get("glb"), f.get("coarse"), refined, f.get("figure"), downloads, status, str(job)

    def reconstruct_upload(self, upload):
        """The upload button: ``upload`` is the path Gradio stored the file at. Returns the page's
        outputs (3D model, coarse and refined previews, figure, downloads, status text, job folder)."""
        if not upload:
            raise _user_error("please choose a photo first")
        job = self._new_job()
        try:
            path, display = self._accept_upload(upload, job)
            return self._run(path, display, job)
        except BaseException:
            self._cleanup(job)
            raise

    def reconstruct_webcam(self, frame):
        """The webcam button: ``frame`` is Gradio's ``(H, W, 3 or 4)`` uint8 array; returns the same
        outputs as :meth:`reconstruct_upload`."""
        import numpy as np  # lazy: `facegcn --help` imports this module and need not wait for numpy/PIL
        from PIL import Image

        if frame is None:
            raise _user_error("please take a webcam picture first")
        job = self._new_job()
        try:
            a = np.asarray(frame)
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in (3, 4):
                raise _user_error("the webcam picture could not be read")
            path = job / "webcam.png"
            Image.fromarray(a[..., :3]).save(path)
            return self._run(path, "webcam picture", job)
        except BaseException:
            self._cleanup(job)
            raise

    # --------------------------------------------------------------------- layout
    def _build(self):
        import gradio as gr  # see _user_error

        mb = self.opts.max_file_mb
        with gr.Blocks(title="facegcn — 3D face from one photo", analytics_enabled=False,
                       delete_cache=(max(60, self.opts.cache_ttl_s // 4), self.opts.cache_ttl_s)) as demo:
            gr.Markdown(
                "# facegcn — a 3D face from one photo\n"
                "Upload a photo with a face (or take one with the webcam). You get the coarse 3DMM fit, "
                "the GCN-refined texture, an interactive 3D model and the files (a zip with everything — the OBJ with "
                "its material and textures, GLB, PLY, coefficients — and the GLB and PLY on their own). "
                f"Limits: {mb:g} MB per photo, one reconstruction at a time.")
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    with gr.Tab("Upload"):
                        upload = gr.File(label=f"Photo (JPEG, PNG, WebP, ...; at most {mb:g} MB)", file_count="single",
                                         file_types=["image"], type="filepath", elem_id=ELEM["upload"])
                        run_btn = gr.Button("Reconstruct", variant="primary", elem_id=ELEM["run"])
                    with gr.Tab("Webcam"):
                        cam = gr.Image(sources=["webcam"], type="numpy", label="Webcam", elem_id=ELEM["webcam"])
                        cam_btn = gr.Button("Reconstruct from webcam", variant="primary", elem_id=ELEM["run_webcam"])
                    status = gr.Markdown("", elem_id=ELEM["status"])
                with gr.Column(scale=2):
                    model3d = gr.Model3D(label="3D face (GLB) — drag to rotate", height=420, clear_color=(1.0, 1.0, 1.0, 1.0),
                                         elem_id=ELEM["model3d"])
                    with gr.Row():
                        coarse = gr.Image(label="Coarse (3DMM fit)", type="filepath", interactive=False, elem_id=ELEM["coarse"])
                        refined = gr.Image(label="Refined (GCN texture)", type="filepath", interactive=False, elem_id=ELEM["refined"])
                    figure = gr.Image(label="Photo | coarse | refined | geometry | landmarks", type="filepath",
                                      interactive=False, elem_id=ELEM["figure"])
                    downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id=ELEM["downloads"])
            job_state = gr.State(None)
            outputs = [model3d, coarse, refined, figure, downloads, status, job_state]
            for btn, fn, inp in ((run_btn, self.reconstruct_upload, upload), (cam_btn, self.reconstruct_webcam, cam)):
                btn.click(fn, inputs=inp, outputs=outputs, show_progress="full", api_name=False).then(
                    self._cleanup, inputs=job_state, outputs=None, queue=False, api_name=False)
        demo.queue(default_concurrency_limit=1, max_size=self.opts.queue_size)
        return demo

    # ----------------------------------------------------------------- lifecycle
    def launch(self, *, block: bool = True, quiet: bool = False):
        """Start serving (and the disk sweeper); with ``block=False`` returns once the server is up
        (call :meth:`close`), else serves until interrupted (Ctrl-C or SIGTERM)."""
        import gradio as gr  # see _user_error

        theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                                  font_mono=["ui-monospace", "monospace"])  # no web fonts: works offline
        try:
            self.demo.launch(server_name=self.opts.host, server_port=self.opts.port, share=False,
                             max_file_size=f"{self.opts.max_file_mb:g}mb", show_error=True, quiet=True,
                             prevent_thread_lock=True, allowed_paths=[str(self.jobs_root)], ssr_mode=False,
                             footer_links=[], theme=theme, inbrowser=False, mcp_server=False)
        except OSError as exc:  # e.g. the port was taken between check_port and now
            raise ConfigError(f"cannot serve on {self.opts.host}:{self.opts.port}: {' '.join(str(exc).split())}; "
                              "choose another port with --port") from None
        self.jobs.start_sweeper()
        if not quiet:
            print(f"facegcn serve: serving on http://{self.opts.host}:{self.opts.port} (Ctrl-C stops)",
                  file=sys.stderr, flush=True)
        if block:
            try:
                while True:
                    time.sleep(0.2)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: a normal stop
                pass
        return self

    def close(self) -> None:
        """Stop serving, the sweeper and the worker, and delete the temporary root."""
        self.jobs.stop_sweeper()
        try:
            self.demo.close()
        except Exception:  # noqa: BLE001 - best effort on shutdown
            pass
        self.worker.close()
        shutil.rmtree(self.temp_root, ignore_errors=True)


def serve(config, options: ServeOptions | None = None, *, block: bool = True, quiet: bool = False) -> DemoServer:
    """Build and start the demo. Blocks until interrupted (Ctrl-C or SIGTERM) unless ``block=False``.

    Args:
        config: the :class:`~facegcn.config.Config` the worker reconstructs with.
        options: host, port, limits and folders (default :class:`ServeOptions`).
        block: serve until interrupted, then clean up; otherwise return once serving.
        quiet: no console line of ours (Gradio's own lines are never shown).

    Returns:
        The running (``block=False``) or closed server.

    Raises:
        ConfigError: the port cannot be used (checked before the models load), or the models
            cannot load.
    """
    options = options or ServeOptions()
    check_port(options.host, options.port)
    server = DemoServer(config, options)
    if block and threading.current_thread() is threading.main_thread():
        def _stop(signum, frame):  # SIGTERM (e.g. from a service manager): stop like Ctrl-C, clean up
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _stop)
    try:
        server.worker.wait_ready()  # fail early (one line) if the models cannot load
        server.launch(block=block, quiet=quiet)
    except BaseException:
        server.close()
        raise
    if block:
        server.close()
    return server
