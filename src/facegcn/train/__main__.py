"""``python -m facegcn.train {prepare,train} ...`` — the training commands on their own, e.g. for

    torchrun --nproc_per_node 2 -m facegcn.train train CACHE -o RUN --stage both

Same messages and exit codes as ``facegcn prepare`` / ``facegcn train`` (one line on stderr, no
traceback, library warnings hidden): it runs under :func:`facegcn.cli.runner.run`.
"""

from __future__ import annotations

import sys
import warnings

if not sys.warnoptions:  # import-time warnings (torch, ...) are not for users either; see cli.runner
    warnings.simplefilter("ignore")

import typer  # noqa: E402

from facegcn.cli.options import Group  # noqa: E402
from facegcn.cli.runner import run  # noqa: E402
from facegcn.cli.train import register  # noqa: E402

app = typer.Typer(help="facegcn training: prepare a cache, train the networks.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False, cls=Group)
register(app)


def main(argv: list[str] | None = None) -> int:
    """Run one training command; returns the exit status (errors are one line on stderr).

    Args:
        argv: the arguments after ``python -m facegcn.train`` (default: ``sys.argv[1:]``).
    """
    return run(app, argv, prog_name="python -m facegcn.train")


if __name__ == "__main__":
    sys.exit(main())
