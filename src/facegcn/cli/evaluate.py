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
    aflw2000: Path = typer.Option(None, "--aflw2000", help="AFLW2000-3D folder (.jpg + .mat): landmark NME per yaw bin "
                                  "[0,30) [30,60) [60,90] and the mean of the bins (3DDFA's protocol), plus misses."),
    aflw_source: str = typer.Option("fit", "--aflw-source", help="With --aflw2000: 'fit' (the coarse fit's projected 3D "
                                    "landmarks, the AFLW2000-3D convention) or 'frontend' (the detector's 68 points)."),
    limit: int = typer.Option(0, "--limit", help="With --aflw2000: only the first N images (0: all)."),
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
    if aflw_source not in ("fit", "frontend"):
        raise ConfigError(f"unknown --aflw-source {aflw_source!r} (choose fit or frontend)")
    if sum([photo_dir is not None, synthetic > 0, aflw2000 is not None]) != 1:
        raise ConfigError("give one of PHOTO_DIR, --synthetic N or --aflw2000 DIR")
    if labels is not None and synthetic:
        raise ConfigError("--labels goes with PHOTO_DIR, not --synthetic")
    cfg = pipeline.config()
    check_writable_folder(out)  # before the slow imports and any work
    if photo_dir is not None and not photo_dir.is_dir():
        raise InputError(f"{photo_dir}: " + ("not a folder" if photo_dir.exists() else "no such folder"))
    if aflw2000 is not None and not aflw2000.is_dir():
        raise InputError(f"{aflw2000}: " + ("not a folder" if aflw2000.exists() else "no such folder"))
    check_cache()
    if aflw2000 is not None:
        _aflw(aflw2000, out, cfg, aflw_source, limit)
        return
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


def _aflw(folder: Path, out: Path, cfg, source: str, limit: int) -> None:
    from facegcn.apps.evaluate.aflw import evaluate_aflw, fit_predictor, frontend_predictor, write_aflw_report

    if source == "fit":
        from facegcn.pipeline import Reconstructor

        cfg.refine.enabled = False
        predict = fit_predictor(Reconstructor(cfg))
    else:
        predict = frontend_predictor(cfg.frontend.detector)
    res = evaluate_aflw(folder, predict, limit=limit or None)
    files = write_aflw_report(res, out)
    typer.echo(files["table"].read_text().rstrip())  # the table and the machine line
    typer.echo(f"AFLW2000-3D: {len(res.rows)} image(s) → {files['table']}")


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to a typer application."""
    opts.register_command(app, evaluate, "evaluate")
