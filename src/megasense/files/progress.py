"""A rich progress bar over a known number of items, on stderr so piped output stays clean."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

Progress = Callable[[int], None]
"""Called with the number of items (texts, rows) just finished."""


class _Advance:
    """``advance(n)`` for one bar, which can also take a better estimate of the total as work goes on."""

    def __init__(self, bar: RichProgress | None = None, task=None) -> None:
        self.bar, self.task = bar, task

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def estimate_total(self, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, total=total)


def estimate_total(progress: Progress | None, done: int, fraction: float | None) -> None:
    """Tell a bar (if ``progress`` is one) that ``done`` items were ``fraction`` of the work: a file read once
    in chunks gives its bar a total (and a time left) from the share of bytes read so far."""
    update = getattr(progress, "estimate_total", None)
    if update is not None and fraction:
        update(max(done, round(done / fraction)))


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, *, enabled: bool = True) -> Iterator[_Advance]:
    """Yield ``advance(n)``; the bar shows done/total, rate-based time left, and disappears when off.

    With ``total=None`` the total is unknown until ``advance.estimate_total(n)`` (or ``estimate_total``) sets it.
    """
    if not enabled:
        yield _Advance()
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with RichProgress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield _Advance(bar, task)
