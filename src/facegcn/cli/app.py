"""The ``facegcn`` typer application: built here, one command module at a time."""

from __future__ import annotations

import typer

from facegcn import __version__
from facegcn.cli import batch, demo, evaluate, model, reconstruct, serve, train, version, video
from facegcn.cli.options import Group

# registration order is the order of `facegcn --help` (sub-applications such as `model` come last)
COMMANDS = (train, reconstruct, demo, batch, video, evaluate, serve, version, model)

app = typer.Typer(
    help="facegcn: high-fidelity 3D face reconstruction from a single photo (GCN texture refinement).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=Group,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _main(
    show_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                      help="Print the version and exit."),
) -> None:
    """facegcn: high-fidelity 3D face reconstruction from a single photo (GCN texture refinement)."""


for command in COMMANDS:
    command.register(app)
