"""`facegcn evaluate`: metrics of the reconstruction on a folder of photos, or the synthetic
ground-truth benchmark. Register on the application with :func:`register`."""

from __future__ import annotations

from pathlib import Path

import typer

from facegcn.cli import options as opts
from facegcn.errors import ConfigError, InputError, PartialFailure


@opts.pipeline_options("config_file", "model", "detector", "checkpoint", "refine", "device", "threads", "fast", "quiet",
                       help={"refine": "GCN texture refinement (skipped when not available).",
                             "threads": "torch CPU threads (0: torch's default). 1 by default: on a shared, busy CPU "
                                        "more threads spin and run several times slower.",
                             "quiet": "No progress bars."})
def evaluate(
    photo_dir: Path = typer.Argument(None, help="Folder of photos (every file is tried; bad ones are skipped and listed)."),
    out: Path = typer.Option(Path("out/evaluate"), "-o", "--out", help="Report folder."),
    synthetic: int = typer.Option(0, "--synthetic", help="Run the synthetic ground-truth benchmark on N rendered faces instead."),
    seed: int = typer.Option(0, "--seed", help="First scene seed of the synthetic benchmark."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write the matplotlib figures."),
    labels: Path = typer.Option(None, "--labels", help="CSV of 'file,person' lines (file relative to PHOTO_DIR) for the "
                                "same-person / other-people identity statistics; without it, sub-folders are people."),
    fidelity: bool = typer.Option(True, "--fidelity/--no-fidelity", help="Measure the exported meshes (detail ratio, "
                                  "see-through share, identity of unlit renders at yaw 0 and ±30 degrees)."),
    *,
    pipeline: opts.PipelineOptions,
) -> None:
    """Evaluate reconstructions: PSNR / SSIM / L1 / identity / landmark NME per photo (coarse vs refined) and
    the fidelity of the exported meshes (detail ratio, see-through share, novel-view identity), or geometry (mm) and texture errors against synthetic ground truth (--synthetic N)."""
    from facegcn.cli.configure import check_cache
    from facegcn.io.atomic import check_writable_folder

    if synthetic < 0:
        raise ConfigError("--synthetic N needs N >= 1")
    if (photo_dir is None) == (synthetic == 0):
        raise ConfigError("give either PHOTO_DIR or --synthetic N (not both)")
    if labels is not None and synthetic:
        raise ConfigError("--labels goes with PHOTO_DIR, not --synthetic")
    cfg = pipeline.config()
    check_writable_folder(out)  # before the slow imports and any work
    if photo_dir is not None and not photo_dir.is_dir():
        raise InputError(f"{photo_dir}: " + ("not a folder" if photo_dir.exists() else "no such folder"))
    check_cache()
    # imported here, not at the top: it loads torch (~3 s), which `facegcn --help` must not wait for
    from facegcn.apps.evaluate import evaluate_folder, run_synthetic

    if synthetic:
        rep = run_synthetic(synthetic, out, cfg, seed=seed, plots=plots, echo=typer.echo)
        typer.echo("")
        typer.echo(rep.table.rstrip())
        for n in rep.notes:
            typer.echo(f"note: {n}")
        typer.echo(f"synthetic benchmark: {synthetic} image(s) in {rep.wall_s:.1f} s → {out / 'synthetic.md'}")
        return
    rep = evaluate_folder(photo_dir, out, cfg, plots=plots, echo=typer.echo, labels=labels, fidelity=fidelity)
    for n in rep.notes:
        typer.echo(f"note: {n}")
    typer.echo(f"evaluated {len(rep.rows)} photo(s), skipped {len(rep.skipped)} in {rep.wall_s:.1f} s → "
               f"{out / 'report.md'}")
    if rep.skipped:  # as `facegcn batch`: some photos could not be evaluated → exit 7
        name, why = rep.skipped[0]
        raise PartialFailure(f"{len(rep.skipped)} of {len(rep.rows) + len(rep.skipped)} photo(s) skipped "
                             f"(first: {name}: {why}); see {out / 'report.md'}")


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to a typer application."""
    opts.register_command(app, evaluate, "evaluate")
