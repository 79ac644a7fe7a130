"""The one JSONL log: one JSON object per line, appended and flushed per record so a crashed run keeps its log.

Training runs write their metrics here (``train.metrics_path``); each record gets a ``time`` field
(Unix seconds) first. Numbers that JSON does not know (NumPy scalars, 0-d tensors) are written as
numbers, anything else as its ``str``.
"""

from __future__ import annotations

import json
import numbers
import time
from pathlib import Path
from typing import Any, TextIO

from megasense.errors import MegasenseError


class JsonlLogError(MegasenseError, OSError):
    """The log file cannot be opened or written; the message names it."""


class JsonlLog:
    """``with JsonlLog(path) as log: log.write({...})``; with ``path=None`` every write is dropped."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._handle: TextIO | None = None

    def __enter__(self) -> JsonlLog:
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = open(self.path, "a", encoding="utf-8")
            except OSError as exc:
                raise JsonlLogError(f"{self.path}: cannot open the log for appending ({_reason(exc)})") from None
        return self

    def write(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            return
        line = json.dumps({"time": round(time.time(), 3), **record}, default=_plain)
        try:
            self._handle.write(line + "\n")
            self._handle.flush()
        except OSError as exc:
            raise JsonlLogError(f"{self.path}: cannot write to the log ({_reason(exc)})") from None

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _reason(exc: OSError) -> str:
    """The system's reason and the path it concerns, which may be a parent of the log (``File exists: runs/a``)."""
    reason = exc.strerror or str(exc)
    return f"{reason}: {exc.filename}" if exc.filename else reason


def _plain(value: Any) -> Any:
    """What ``json`` cannot write by itself: NumPy scalars and 0-d tensors as numbers, anything else as text."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            value = item()
        except (TypeError, ValueError, RuntimeError):  # an array or tensor of more than one element
            return str(value)
        if isinstance(value, (bool, int, float, str)) or value is None:
            return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)
