"""The error raised when an optional part of megasense needs an extra that is not installed."""

from __future__ import annotations


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the extra (``pip install 'megasense[onnx]'``).

    The CLI prints it as a user error (no traceback), like a bad file or a bad value.
    """
