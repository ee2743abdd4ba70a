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
    except Exception as exc:  # usage errors from typer's (vendored) click
        show = getattr(exc, "show", None)
        code = getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            print(f"error: {exc.format_message() if hasattr(exc, 'format_message') else exc}", file=sys.stderr)
            return 2 if code == 2 else code
        if type(exc).__name__ == "Abort":
            print("error: aborted", file=sys.stderr)
            return 1
        raise
    return 0


def entry() -> None:  # pragma: no cover - console script
    sys.exit(main())
