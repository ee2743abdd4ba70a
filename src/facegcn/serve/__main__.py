"""``python -m facegcn.serve [OPTIONS]``: the web demo without going through ``facegcn``'s command list."""

import sys

import typer

from facegcn.errors import FaceGCNError


def main(argv=None) -> int:
    from facegcn.serve.cli import serve

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(serve)
    try:
        app(args=argv, prog_name="facegcn-serve", standalone_mode=False)
    except FaceGCNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except Exception as exc:  # typer/click usage errors
        fm = getattr(exc, "format_message", None)
        if callable(fm):
            print(f"error: {fm()}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
