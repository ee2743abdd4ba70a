"""Command-line interface (typer). Thin: parses options, calls library functions, maps errors.

Every :class:`facegcn.errors.FaceGCNError` becomes one line on stderr and its ``exit_code``.
"""

from __future__ import annotations

import sys

from facegcn.cli.app import app


def main(argv: list[str] | None = None) -> int:
    from facegcn.errors import FaceGCNError

    try:
        app(args=argv, prog_name="facegcn", standalone_mode=False)
    except FaceGCNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # typer/click exits (e.g. --help)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except Exception as exc:  # click usage errors etc.
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            print("error: aborted", file=sys.stderr)
            return 1
        raise
    return 0


def entry() -> None:  # pragma: no cover - console script
    sys.exit(main())
