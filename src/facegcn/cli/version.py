"""`facegcn version`: print the package version."""

from __future__ import annotations

import typer

from facegcn import __version__
from facegcn.cli.options import register_command


def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def register(app: typer.Typer) -> None:
    """Add the ``version`` command to ``app`` (idempotent)."""
    register_command(app, version, "version")
