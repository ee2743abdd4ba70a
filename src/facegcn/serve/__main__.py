"""``python -m facegcn.serve [OPTIONS]``: the web demo without going through ``facegcn``'s command
list; same options, messages and exit codes as ``facegcn serve``."""

import sys

import typer

from facegcn.cli import serve as serve_command
from facegcn.cli.runner import run


def main(argv: list[str] | None = None) -> int:
    """Run the ``serve`` command alone with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    serve_command.register(app)  # a single command: typer runs it without a sub-command name
    return run(app, argv, prog_name="facegcn-serve")


if __name__ == "__main__":
    sys.exit(main())
