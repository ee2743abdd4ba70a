"""The typer application and its sub-commands."""

from __future__ import annotations

import typer

from facegcn.cli import model as model_cmds

app = typer.Typer(
    help="facegcn: high-fidelity 3D face reconstruction from a single photo (GCN texture refinement).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(model_cmds.app, name="model")


@app.command()
def demo(
    out: str = typer.Option("out/demo", "-o", "--out", help="Output folder."),
) -> None:
    """Run the main job on the bundled example (writes textured meshes into OUT)."""
    from facegcn.cli.demo import run_demo

    run_demo(out)


@app.command()
def version() -> None:
    """Print the version."""
    from facegcn import __version__

    typer.echo(__version__)
