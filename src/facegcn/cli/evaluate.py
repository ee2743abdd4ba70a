"""`facegcn evaluate`: metrics of the reconstruction on a folder of photos, or the synthetic
ground-truth benchmark. Register on the application with :func:`register`."""

from __future__ import annotations

from pathlib import Path

import typer

from facegcn.cli import options as opts
from facegcn.cli.reconstruct import build_config
from facegcn.errors import ConfigError


def evaluate(
    photo_dir: Path = typer.Argument(None, help="Folder of photos (every file is tried; bad ones are skipped and listed)."),
    out: Path = typer.Option(Path("out/evaluate"), "-o", "--out", help="Report folder."),
    synthetic: int = typer.Option(0, "--synthetic", help="Run the synthetic ground-truth benchmark on N rendered faces instead."),
    seed: int = typer.Option(0, "--seed", help="First scene seed of the synthetic benchmark."),
    model: str = opts.MODEL,
    detector: str = opts.DETECTOR,
    checkpoint: str = opts.CHECKPOINT,
    refine: bool = typer.Option(True, "--refine/--no-refine", help="GCN texture refinement (skipped when not available)."),
    device: str = opts.DEVICE,
    threads: int = typer.Option(1, "--threads", help="torch CPU threads (0: torch's default). 1 by default: on a shared, "
                                "busy CPU more threads spin and run several times slower."),
    fast: bool = typer.Option(False, "--fast", help="Fewer optimisation steps (preview quality)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write the matplotlib figures."),
    labels: Path = typer.Option(None, "--labels", help="CSV of 'file,person' lines (file relative to PHOTO_DIR) for the "
                                "same-person / other-people identity statistics; without it, sub-folders are people."),
    fidelity: bool = typer.Option(True, "--fidelity/--no-fidelity", help="Measure the exported meshes (detail ratio, "
                                  "see-through share, identity of unlit renders at yaw 0 and ±30 degrees)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Evaluate reconstructions: PSNR / SSIM / L1 / identity / landmark NME per photo (coarse vs refined) and
    the fidelity of the exported meshes (detail ratio, see-through share, novel-view identity), or geometry (mm) and texture errors against synthetic ground truth (--synthetic N)."""
    # imported here, not at the top: it loads torch (~3 s), which `facegcn --help` must not wait for
    from facegcn.apps.evaluate import evaluate_folder, run_synthetic

    if synthetic < 0:
        raise ConfigError("--synthetic N needs N >= 1")
    if (photo_dir is None) == (synthetic == 0):
        raise ConfigError("give either PHOTO_DIR or --synthetic N (not both)")
    if labels is not None and synthetic:
        raise ConfigError("--labels goes with PHOTO_DIR, not --synthetic")
    cfg = build_config(model=model, detector=detector, checkpoint=checkpoint, refine=refine, device=device,
                       quiet=quiet, fast=fast)
    if threads < 0:
        raise ConfigError("--threads must be >= 0")
    cfg.threads = threads
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


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to a typer application."""
    opts.register_command(app, evaluate, "evaluate")
