"""Turn the library's expected errors into a clean message and a non-zero exit code."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.markup import escape

from megasense.config.extras import MissingExtraError

err_console = Console(stderr=True)

# Exception types that mean "the user's input or environment is wrong", not "megasense has a bug".
# Modules register their own error types here (see ``user_error``).
USER_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    ValueError,
    MissingExtraError,  # an optional extra is not installed; the message names it
)


@contextlib.contextmanager
def user_errors(exit_code: int = 2) -> Iterator[None]:
    """Print expected errors as ``error: <message>`` and exit with ``exit_code``."""
    try:
        yield
    except typer.Exit:
        raise
    except USER_ERRORS as exc:
        # escaped: a message such as "pip install 'megasense[onnx]'" would otherwise lose "[onnx]" as markup
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code) from None
    except OSError as exc:  # disk full, I/O errors: name the file where the OS gave one
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        message = escape(f"{where}{exc.strerror or exc}")
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code) from None
