"""The typer application and its sub-commands."""

from __future__ import annotations

from pathlib import Path

import typer

from facegcn.cli import options as opts

from facegcn.cli import model as model_cmds
from facegcn.cli import train as train_cmds

app = typer.Typer(
    help="facegcn: high-fidelity 3D face reconstruction from a single photo (GCN texture refinement).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(model_cmds.app, name="model")
train_cmds.register(app)


@app.command()
def reconstruct(
    photos: list[Path] = typer.Argument(..., help="Photo file(s)."),
    out: Path = typer.Option(Path("out"), "-o", "--out", help="Output folder."),
    model: str = opts.MODEL,
    detector: str = opts.DETECTOR,
    all_faces: bool = typer.Option(False, "--all-faces", help="Reconstruct every face, not only the best one."),
    checkpoint: str = opts.CHECKPOINT,
    refine: bool = typer.Option(True, "--refine/--no-refine", help="GCN texture refinement."),
    fmt: str = opts.FORMAT,
    texture_size: int = opts.TEXTURE_SIZE,
    device: str = opts.DEVICE,
    fast: bool = typer.Option(False, "--fast", help="Fewer optimisation steps (preview quality)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    threads: int = typer.Option(1, help="CPU threads (0 = torch default); 1 is fastest on small/shared CPUs."),
) -> None:
    """Reconstruct 3D faces from photos: meshes, coeffs.json, figures and a report per face."""
    from facegcn.cli.reconstruct import build_config, run

    cfg = build_config(model, detector, all_faces, checkpoint, refine, fmt, texture_size, device, quiet, fast,
                       threads)
    run(photos, out, cfg)


@app.command()
def demo(
    out: Path = typer.Option(Path("out/demo"), "-o", "--out", help="Output folder."),
    fast: bool = typer.Option(False, "--fast", help="Fewer optimisation steps."),
) -> None:
    """Reconstruct the bundled example photo (skimage's public-domain astronaut) into OUT."""
    from facegcn.cli.demo import run_demo

    run_demo(out, fast=fast)


def _register_feature_commands() -> None:
    from facegcn.cli import batch as batch_cmds
    from facegcn.cli import evaluate as evaluate_cmds
    from facegcn.cli import video as video_cmds
    from facegcn.serve import cli as serve_cmds

    for mod in (batch_cmds, video_cmds, evaluate_cmds, serve_cmds):
        mod.register(app)


_register_feature_commands()


@app.command()
def version() -> None:
    """Print the version."""
    from facegcn import __version__

    typer.echo(__version__)
