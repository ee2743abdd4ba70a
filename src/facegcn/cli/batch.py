"""`facegcn batch`: many photos (files, folders, globs) → OUT/<name>/ each + OUT/summary.csv.

Thin: options → :func:`facegcn.apps.batch.run_batch`; its report → exit code (0 all ok, 7 some
failed, the first error's code when all failed). Register on a typer app with :func:`register`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from facegcn.cli import options as opts
from facegcn.cli.configure import config_from_options


def batch(
    inputs: list[str] = typer.Argument(..., help="Photo files, folders and glob patterns (quote them: 'photos/**/*.jpg')."),
    out: Path = typer.Option(Path("out/batch"), "-o", "--out", help="Output folder: OUT/<name>/ per photo and OUT/summary.csv."),
    resume: bool = typer.Option(False, "--resume", help="Skip photos already finished in OUT (same file, same settings)."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes on this machine (one torch thread each when > 1)."),
    ray: str = typer.Option(None, "--ray", metavar="ADDRESS",
                            help="Run the photos as Ray tasks: 'local', 'auto' or a cluster address (needs the optional 'ray' package)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders of folder inputs."),
    config_file: Path = opts.CONFIG_FILE,
    model: str = opts.MODEL,
    detector: str = opts.DETECTOR,
    all_faces: bool = typer.Option(False, "--all-faces", help="Reconstruct every face (OUT/<name>/face_<i>/)."),
    checkpoint: str = opts.CHECKPOINT,
    refine: bool = typer.Option(True, "--refine/--no-refine", help="GCN texture refinement."),
    fmt: str = opts.FORMAT,
    texture_size: int = opts.TEXTURE_SIZE,
    device: str = opts.DEVICE,
    fast: bool = typer.Option(False, "--fast", help="Fewer optimisation steps (preview quality)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Reconstruct many photos; bad files are reported and skipped. Writes OUT/summary.csv."""
    # deferred: facegcn.apps.batch imports numpy (via facegcn.io) and tqdm, +0.3 s on `facegcn --help`
    from facegcn.apps.batch import run_batch

    cfg = config_from_options(config_file=config_file, model=model, detector=detector, all_faces=all_faces,
                              checkpoint=checkpoint, refine=refine, fmt=fmt, texture_size=texture_size,
                              device=device, quiet=quiet, fast=fast)
    report = run_batch(inputs, out, cfg, workers=workers, resume=resume, recursive=recursive, ray_address=ray)
    resumed = sum(1 for r in report.rows if str(r.get("resumed")) in ("True", "true", "1"))
    extra = f" ({resumed} resumed)" if resumed else ""
    typer.echo(f"{report.n_ok} of {len(report.rows)} ok{extra}, {len(report.failed)} failed, "
               f"{report.elapsed_s:.1f} s; summary: {report.summary_path}")
    report.raise_for_status()


def register(app: typer.Typer) -> None:
    """Add the ``batch`` command to ``app`` (idempotent)."""
    opts.register_command(app, batch, "batch")
