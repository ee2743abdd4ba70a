"""Command-line interface (typer). Thin: parses options, calls library functions, maps errors.

:mod:`facegcn.cli.app` builds the ``facegcn`` application from one module per command (each with
a ``register(app)``); :func:`facegcn.cli.runner.run` applies the error → exit-code contract
described there. :func:`main` and :func:`entry` (the console script) run the application.
"""

from __future__ import annotations

import sys

from facegcn.cli.app import app
from facegcn.cli.runner import EXIT_BROKEN_PIPE, EXIT_INTERNAL, EXIT_INTERRUPTED, run

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "app", "entry", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run ``facegcn`` with ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    return run(app, argv, prog_name="facegcn")


def entry() -> None:  # pragma: no cover - console script
    """The ``facegcn`` console script: :func:`main`, then exit with its code."""
    sys.exit(main())
