"""Running a typer application under the CLI's error contract: one line on stderr, one exit code.

Every :class:`facegcn.errors.FaceGCNError` becomes one line on stderr and its ``exit_code``:
2 configuration/usage, 3 bad input, 4 no face, 5 bad model/checkpoint file, 6 output not
writable, 7 partial failure (some photos failed), 130 interrupted (Ctrl-C: one ``error:
interrupted`` line). An ``OSError`` that a command did not translate is reported the same way
(exit 6 when it concerns the output folder given with ``-o``/``--out`` or is a full/read-only
disk; exit 2 when it concerns the cache folder, ``FACEGCN_CACHE``). Anything else is a bug: one
line on stderr and exit code 70 (``EX_SOFTWARE``); set ``FACEGCN_DEBUG=1`` to get the traceback
instead. Python warnings from libraries are not shown (they would break the one-line contract)
unless asked for with ``python -W ...`` / ``PYTHONWARNINGS`` or ``FACEGCN_DEBUG=1``. A bare
command group (``facegcn``, ``facegcn model``) prints its help and exits 2, without an error line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
import warnings

import typer

from facegcn.errors import ConfigError, FaceGCNError, OutputError

EXIT_INTERNAL = 70  # sysexits.h EX_SOFTWARE: an unexpected error, i.e. a bug
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `facegcn ... | head`
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EROFS, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _error(text: object) -> None:
    line = f"error: {_one_line(text)}"
    try:
        try:
            print(line, file=sys.stderr, flush=True)
        except UnicodeEncodeError:  # e.g. a non-UTF-8 file name (surrogate escapes) on a strict stream
            print(line.encode("utf-8", "backslashreplace").decode("utf-8"), file=sys.stderr, flush=True)
    except Exception:  # stderr closed: nothing sensible left to do
        pass


class _TolerantStreams:
    """File names that are not valid UTF-8 reach us as surrogate escapes; printing one to a
    strict stdout/stderr would fail *after* the work is done. Print them as backslash escapes
    (what Python's stderr does anyway) for the duration of a command."""

    def __enter__(self):
        self.saved = []
        for stream in (sys.stdout, sys.stderr):
            errors = getattr(stream, "errors", None)
            if errors == "strict" and hasattr(stream, "reconfigure"):
                try:
                    stream.reconfigure(errors="backslashreplace")
                    self.saved.append((stream, errors))
                except Exception:
                    pass
        return self

    def __exit__(self, *exc):
        for stream, errors in self.saved:
            try:
                stream.reconfigure(errors=errors)
            except Exception:
                pass
        return False


def _output_paths(args: list[str]) -> list[str]:
    """The values of -o/--out in ``args`` (every sub-command that writes files takes one)."""
    outs = []
    for i, a in enumerate(args):
        if a in ("-o", "--out") and i + 1 < len(args):
            outs.append(args[i + 1])
        elif a.startswith("--out="):
            outs.append(a[len("--out="):])
        elif a.startswith("-o") and len(a) > 2 and not a.startswith("--"):
            outs.append(a[2:])
    return outs


def _related(a: str, b: str) -> bool:
    """Whether path ``a`` is ``b``, inside ``b`` or one of ``b``'s parents."""
    try:
        x, y = os.path.abspath(a), os.path.abspath(b)
        return os.path.commonpath([x, y]) in (x, y)
    except (ValueError, TypeError):
        return False


def _cache_root() -> str | None:
    from facegcn.cache import cache_dir

    try:
        return str(cache_dir(create=False))
    except Exception:  # noqa: BLE001 - e.g. no home folder
        return None


def _os_error(exc: OSError, args: list[str]) -> tuple[int, str]:
    from facegcn.io.atomic import describe_write_error  # error path only: facegcn.io imports numpy (~0.2 s)

    names = [os.fsdecode(f) for f in (exc.filename, exc.filename2) if isinstance(f, (str, bytes, os.PathLike))]
    cache = _cache_root()
    if cache and any(_related(n, cache) for n in names):
        var = "FACEGCN_CACHE" if os.environ.get("FACEGCN_CACHE") else "the cache folder"
        return ConfigError.exit_code, (f"cannot use {var} ({cache}): {names[0]}: {exc.strerror or exc}; "
                                       "set FACEGCN_CACHE to a writable folder")
    outs = _output_paths(args)
    hit = next((n for n in names if any(_related(n, o) for o in outs)), None)
    if hit is not None or exc.errno in _OUTPUT_ERRNOS:
        target = hit or (names[0] if names else (outs[0] if outs else "output"))
        return OutputError.exit_code, describe_write_error(exc, target)
    where = f"{names[0]}: " if names else ""
    return EXIT_INTERNAL, f"{where}{exc.strerror or exc} ({type(exc).__name__})"


class _Interrupts:
    """Notes whether SIGINT arrived (typer turns a KeyboardInterrupt into a silent exit 130)."""

    def __init__(self):
        self.seen = False
        self.saved = None

    def _handler(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, OSError):
                if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                    self.saved = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGINT, self.saved)
        return False


def run(app: typer.Typer, argv: list[str] | None = None, *, prog_name: str = "facegcn") -> int:
    """Run ``app`` on ``argv`` and map the outcome to an exit code (see the module doc).

    Args:
        app: the typer application.
        argv: the arguments (default: ``sys.argv[1:]``).
        prog_name: the program name shown in usage and help.

    Returns:
        The exit code: 0, a :class:`~facegcn.errors.FaceGCNError`'s ``exit_code``, 2 for usage
        errors, 70 for a bug, 130 when interrupted, 141 for a closed stdout, or a command's own
        ``typer.Exit`` code.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("FACEGCN_DEBUG", "") not in ("", "0")
    interrupts = _Interrupts()
    try:
        with warnings.catch_warnings(), _TolerantStreams(), interrupts:
            if not (sys.warnoptions or debug):
                warnings.simplefilter("ignore")
            result = app(args=args, prog_name=prog_name, standalone_mode=False)
    except FaceGCNError as exc:
        _error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # typer/click exits (e.g. --help)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except BrokenPipeError:  # stdout closed early: not an error worth a message
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except Exception:
            pass
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        show = getattr(exc, "show", None)
        code = getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):  # usage errors from typer's (vendored) click
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: typer printed its help; no error line
                return 2
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            if _one_line(message):
                _error(message)
            return 2 if code == 2 else code
        if type(exc).__name__ == "Abort":
            _error("aborted")
            return 1
        if debug:
            raise
        if isinstance(exc, OSError):  # e.g. a folder that could not be created
            code, msg = _os_error(exc, args)
            _error(msg)
            return code
        if isinstance(exc, MemoryError):
            _error("out of memory")
            return EXIT_INTERNAL
        _error(f"internal error: {type(exc).__name__}: {exc} (set FACEGCN_DEBUG=1 for the traceback)")
        return EXIT_INTERNAL
    # without standalone mode, click returns `raise typer.Exit(code)`'s code (or a command's return value)
    if interrupts.seen and result == EXIT_INTERRUPTED:  # typer's own KeyboardInterrupt → Exit(130)
        _error("interrupted")
        return EXIT_INTERRUPTED
    if isinstance(result, int) and not isinstance(result, bool) and 0 <= result <= 255:
        return result
    return 0
