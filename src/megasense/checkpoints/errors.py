"""The one error type for checkpoint problems: it names the file and says what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class CheckpointError(ValueError):
    """A checkpoint, weight file or model directory cannot be read or written."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)
