"""`facegcn serve`: the web demo. Register on a typer app with :func:`register`; ``python -m
facegcn.serve`` runs this command on its own."""

from __future__ import annotations

from pathlib import Path

import typer

from facegcn.cli import options as opts
from facegcn.serve.app import ServeOptions, check_port, serve as run_server


@opts.pipeline_options("config_file", "model", "detector", "checkpoint", "refine", "texture_size", "texture", "device",
                       "fast", "quiet", help={"fast": "Fewer optimisation steps (quicker previews).",
                                              "quiet": "Less console output."})
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0 exposes the demo to your network)."),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="TCP port."),
    max_file_mb: float = typer.Option(20.0, "--max-file-mb", min=0.1, help="Largest accepted upload, in MB."),
    timeout: float = typer.Option(300.0, "--timeout", min=1.0, help="Per-request time limit in seconds."),
    queue_size: int = typer.Option(8, "--queue-size", min=1, help="Requests allowed to wait while one runs."),
    temp_dir: Path = typer.Option(None, "--temp-dir", help="Where the server keeps its temporary files (default: system temp)."),
    max_jobs: int = typer.Option(ServeOptions.max_jobs, "--max-jobs", min=1,
                                 help="Result folders kept on disk at most (oldest deleted first; each is deleted "
                                      "once delivered anyway)."),
    max_disk_mb: float = typer.Option(ServeOptions.max_disk_mb, "--max-disk-mb", min=1.0,
                                      help="Disk the server's temporary files may use, in MB (results and uploads; "
                                           "oldest deleted first)."),
    threads: int = typer.Option(0, "--threads", min=0, help="Torch threads for the reconstruction worker (0 = default)."),
    *,
    pipeline: opts.PipelineOptions,
) -> None:
    """Start the web demo (Gradio) on http://HOST:PORT — upload or webcam photo → 3D face."""
    from facegcn.cli.configure import check_cache

    # every format: the page shows the GLB and offers the others; no progress bars in the worker
    cfg = pipeline.config(fmt="obj,ply,glb", quiet=True)
    options = ServeOptions(host=host, port=port, max_file_mb=max_file_mb, timeout_s=timeout, queue_size=queue_size,
                           temp_root=str(temp_dir) if temp_dir else None, threads=threads, max_jobs=max_jobs,
                           max_disk_mb=max_disk_mb)
    check_port(host, port)  # before the models load (seconds)
    check_cache()
    quiet = pipeline.quiet
    if not quiet:
        typer.echo(f"facegcn serve: loading models, then serving on http://{host}:{port} (Ctrl-C stops)", err=True)
    run_server(cfg, options, block=True, quiet=quiet)


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app`` (idempotent)."""
    opts.register_command(app, serve, "serve")
