"""The error raised when an optional part of megasense needs an extra that is not installed.

Defined in ``megasense.errors`` with the other error types; kept importable from here.
"""

from __future__ import annotations

from megasense.errors import MissingExtraError

__all__ = ["MissingExtraError"]
