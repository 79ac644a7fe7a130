"""How a command ends when something goes wrong: the user's mistakes in one line, megasense's bugs in full.

megasense raises :class:`megasense.errors.MegasenseError` on purpose, with a message that says what
to change; the OS raises its file errors (no such file, a directory, no permission, disk full). Both
are the user's to fix: they print as ``error: <message>`` and the command exits with status 2. Any
other exception (a plain ``ValueError``, ``KeyError``, ``TypeError``...) is a bug in megasense: its
traceback is printed with a request to report it, and the command exits with status 1.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.markup import escape

from megasense.errors import MegasenseError

err_console = Console(stderr=True)

REPORT = "please report it to the megasense developers (the project's issue tracker) with the traceback above"
BUG_EXIT_CODE = 1
"""A bug: what Python itself exits with on an uncaught exception."""

# typer.Exit and typer.Abort subclass RuntimeError, and a usage error (typer.BadParameter) is click's to
# report: they pass through. (Recent typer ships its own copy of click, so its class is found from typer's.)
PASS_THROUGH: tuple[type[Exception], ...] = (
    typer.Exit,
    typer.Abort,
    next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"),
)

# The OS's file errors are the user's to fix whatever their message.
FILE_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


@contextlib.contextmanager
def user_errors(exit_code: int = 2) -> Iterator[None]:
    """Print megasense's errors and the OS's file errors as ``error: <message>`` and exit with ``exit_code``;
    print any other exception as a bug (its traceback and where to report it) and exit with status 1.

    ``typer.Exit``, ``typer.Abort``, click's usage errors, ``KeyboardInterrupt`` and ``SystemExit``
    pass through untouched. Use it as ``with user_errors():`` or as a decorator.
    """
    try:
        yield
    except PASS_THROUGH:
        raise
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            report_bug(exc)
            raise typer.Exit(BUG_EXIT_CODE) from None
        # escaped: a message such as "pip install 'megasense[onnx]'" would otherwise lose "[onnx]" as markup
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code) from None


def user_message(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None when ``exc`` is a bug in megasense."""
    if isinstance(exc, MegasenseError):
        return str(exc)
    if not isinstance(exc, OSError):
        return None
    if exc.strerror:  # raised by the OS: "[Errno 28] No space left on device: 'out.csv'" -> "out.csv: No space ..."
        files = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
        return f"{' -> '.join(files)}: {exc.strerror}" if files else exc.strerror
    if isinstance(exc, FILE_ERRORS) or exc.filename is not None:
        return str(exc)  # raised by megasense or a library with its own message
    return None  # an OSError without an OS cause (io.UnsupportedOperation, a library's own): a bug


def report_bug(exc: BaseException) -> None:
    """The traceback of ``exc`` on stderr, then where to report it."""
    traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.flush()
    err_console.print(
        f"[bold red]this is a bug in megasense {escape(_version())}[/]; {REPORT}",
        highlight=False,
        soft_wrap=True,
    )


def _version() -> str:
    from megasense import __version__

    return __version__
