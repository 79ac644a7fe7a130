"""megasense's own exception types: what the CLI shows as a one-line error, and what callers can catch.

Everything megasense raises on purpose, because of the user's input or environment, is a
:class:`MegasenseError`. The CLI prints those as ``error: <message>`` and exits with status 2; any
other exception is a bug in megasense and is shown with its traceback and a request to report it.
The input errors also subclass ``ValueError`` (and a missing extra ``ImportError``) so code written
against the built-in types keeps working.

This module sits at the bottom of the layers: it imports nothing from megasense, and every layer
may raise these.
"""

from __future__ import annotations

from pathlib import Path


class MegasenseError(Exception):
    """Base of every error megasense raises on purpose; its message says what to change."""


class MegasenseInputError(MegasenseError, ValueError):
    """The input is wrong: a value, a file, a column, a label, a flag. The message names it."""


class ConfigError(MegasenseInputError):
    """A configuration value is out of range or inconsistent; the message names the key and the numbers."""


class TableError(MegasenseInputError):
    """A table cannot be read or written; the message names the file (and row/column where known)."""


class LabelError(MegasenseInputError):
    """Labels in the data do not fit the task or the model; the message names the labels."""


class CheckpointError(MegasenseInputError):
    """A checkpoint, weight file or model directory cannot be read or written."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class MissingExtraError(MegasenseError, ImportError):
    """An optional dependency is missing; the message names the extra (``pip install 'megasense[onnx]'``)."""
