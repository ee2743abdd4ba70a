"""``python -m facegcn.train {prepare,train} ...`` — the training commands on their own, e.g. for

    torchrun --nproc_per_node 2 -m facegcn.train train CACHE -o RUN --stage both
"""

from __future__ import annotations

import sys

import typer

from facegcn.cli.train import register
from facegcn.errors import FaceGCNError

app = typer.Typer(help="facegcn training: prepare a cache, train the networks.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
register(app)


def main(argv: list[str] | None = None) -> int:
    """Run one training command; returns the exit status (errors are one line on stderr).

    Args:
        argv: the arguments after ``python -m facegcn.train`` (default: ``sys.argv[1:]``).
    """
    try:
        app(args=argv, prog_name="python -m facegcn.train", standalone_mode=False)
    except FaceGCNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except Exception as exc:  # typer / click usage errors
        show = getattr(exc, "show", None)
        code = getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            print(f"error: {exc.format_message() if hasattr(exc, 'format_message') else exc}", file=sys.stderr)
            return 2 if code == 2 else code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
