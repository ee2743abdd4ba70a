"""`facegcn serve`: the web demo. Register on a typer app with :func:`register`; ``python -m
facegcn.serve`` runs this command on its own."""

from __future__ import annotations

from pathlib import Path

import typer

from facegcn.cli import options as opts
from facegcn.cli.configure import config_from_options
from facegcn.serve.app import ServeOptions, serve as run_server


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0 exposes the demo to your network)."),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="TCP port."),
    max_file_mb: float = typer.Option(20.0, "--max-file-mb", min=0.1, help="Largest accepted upload, in MB."),
    timeout: float = typer.Option(300.0, "--timeout", min=1.0, help="Per-request time limit in seconds."),
    queue_size: int = typer.Option(8, "--queue-size", min=1, help="Requests allowed to wait while one runs."),
    temp_dir: Path = typer.Option(None, "--temp-dir", help="Where the server keeps its temporary files (default: system temp)."),
    threads: int = typer.Option(0, "--threads", min=0, help="Torch threads for the reconstruction worker (0 = default)."),
    config_file: Path = opts.CONFIG_FILE,
    model: str = opts.MODEL,
    detector: str = opts.DETECTOR,
    checkpoint: str = opts.CHECKPOINT,
    refine: bool = typer.Option(True, "--refine/--no-refine", help="GCN texture refinement."),
    texture_size: int = opts.TEXTURE_SIZE,
    device: str = opts.DEVICE,
    fast: bool = typer.Option(False, "--fast", help="Fewer optimisation steps (quicker previews)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Less console output."),
) -> None:
    """Start the web demo (Gradio) on http://HOST:PORT — upload or webcam photo → 3D face."""
    cfg = config_from_options(config_file=config_file, model=model, detector=detector, all_faces=False,
                              checkpoint=checkpoint, refine=refine, fmt="obj,ply,glb", texture_size=texture_size,
                              device=device, quiet=True, fast=fast)
    options = ServeOptions(host=host, port=port, max_file_mb=max_file_mb, timeout_s=timeout, queue_size=queue_size,
                           temp_root=str(temp_dir) if temp_dir else None, threads=threads)
    if not quiet:
        typer.echo(f"facegcn serve: loading models, then serving on http://{host}:{port} (Ctrl-C stops)", err=True)
    run_server(cfg, options, block=True, quiet=quiet)


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app`` (idempotent)."""
    opts.register_command(app, serve, "serve")
