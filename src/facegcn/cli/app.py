"""The ``facegcn`` typer application: built here, one command module at a time."""

from __future__ import annotations

import typer

from facegcn.cli import batch, demo, evaluate, model, reconstruct, serve, train, version, video

# registration order is the order of `facegcn --help` (sub-applications such as `model` come last)
COMMANDS = (train, reconstruct, demo, batch, video, evaluate, serve, version, model)

app = typer.Typer(
    help="facegcn: high-fidelity 3D face reconstruction from a single photo (GCN texture refinement).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for command in COMMANDS:
    command.register(app)
