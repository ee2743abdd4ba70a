"""`facegcn batch`: many photos (files, folders, globs) → OUT/<name>/ each + OUT/summary.csv.

Thin: options → :func:`facegcn.apps.batch.run_batch`; its report → exit code (0 all ok, 7 some
failed, the first error's code when all failed, 130 interrupted). Register on a typer app with
:func:`register`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from facegcn.cli import options as opts

PIPELINE = ("config_file", "model", "detector", "all_faces", "checkpoint", "refine", "fmt", "texture_size",
            "texture", "delight", "device", "threads", "fast", "quiet")


@opts.pipeline_options(*PIPELINE, help={
    "threads": "CPU threads of an in-process run (--workers 1; 0 = torch's default); worker processes use 1 each.",
    "quiet": "No progress bar."})
def batch(
    inputs: list[str] = typer.Argument(..., help="Photo files, folders and glob patterns (quote them: 'photos/**/*.jpg')."),
    out: Path = typer.Option(Path("out/batch"), "-o", "--out", help="Output folder: OUT/<name>/ per photo, "
                             "OUT/summary.csv and OUT/config.json (the run's settings)."),
    resume: bool = typer.Option(False, "--resume", help="Skip photos already finished in OUT (same file, same settings)."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes on this machine (one torch thread each when > 1)."),
    ray: str = typer.Option(None, "--ray", metavar="ADDRESS",
                            help="Run the photos as Ray tasks: 'local', 'auto' or a cluster address (needs the optional 'ray' package)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders of folder inputs."),
    *,
    pipeline: opts.PipelineOptions,
) -> None:
    """Reconstruct many photos; bad files are reported and skipped. Writes OUT/summary.csv."""
    # deferred: facegcn.apps.batch imports numpy (via facegcn.io) and tqdm, +0.3 s on `facegcn --help`
    from facegcn.apps.batch import run_batch
    from facegcn.cli.configure import check_cache

    cfg = pipeline.config()
    check_cache()
    report = run_batch(inputs, out, cfg, workers=workers, resume=resume, recursive=recursive, ray_address=ray)
    resumed = sum(1 for r in report.rows if str(r.get("resumed")) in ("True", "true", "1"))
    extra = f" ({resumed} resumed)" if resumed else ""
    typer.echo(f"{report.n_ok} of {len(report.rows)} ok{extra}, {len(report.failed)} failed, "
               f"{report.elapsed_s:.1f} s; summary: {report.summary_path}")
    report.raise_for_status()


def register(app: typer.Typer) -> None:
    """Add the ``batch`` command to ``app`` (idempotent)."""
    opts.register_command(app, batch, "batch")
