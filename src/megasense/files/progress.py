"""The one progress display: rich bars over a known (or estimated) number of items, on stderr so piped
output stays clean.

``progress_bar(description, total)`` is one bar; ``ProgressBars`` is one live display holding several
bars at once (an analysis reads, scores and embeds together). A bar shows its description, done/total,
time elapsed and a rate-based time left, plus an optional status line of named fields
(``status="loss {loss:.4f}"``, updated with ``advance(n, loss=...)``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.table import Column
from rich.text import Text

Progress = Callable[[int], None]
"""Called with the number of items (texts, rows) just finished."""


class Bar:
    """``advance(n, **fields)`` for one bar: ``n`` more items done (or ``completed=`` items done in all)
    and new values of the status fields. It can also take a better estimate of the total as work goes
    on. A disabled bar does nothing."""

    def __init__(self, display: RichProgress | None = None, task: TaskID | None = None) -> None:
        self.display, self.task = display, task

    def __call__(self, n: int = 0, *, completed: int | None = None, **fields: Any) -> None:
        if self.display is not None:
            self.display.update(self.task, advance=n, completed=completed, **fields)

    def estimate_total(self, total: int) -> None:
        if self.display is not None:
            self.display.update(self.task, total=total)


def estimate_total(progress: Progress | None, done: int, fraction: float | None) -> None:
    """Tell a bar (if ``progress`` is one) that ``done`` items were ``fraction`` of the work: a file read once
    in chunks gives its bar a total (and a time left) from the share of bytes read so far."""
    update = getattr(progress, "estimate_total", None)
    if update is not None and fraction:
        update(max(done, round(done / fraction)))


class _Status(ProgressColumn):
    """The bar's status fields through a ``str.format`` template (``"loss {loss:.4f}"``); on a narrow
    terminal the other columns shrink and the status stays whole."""

    def __init__(self, template: str) -> None:
        super().__init__(table_column=Column(no_wrap=True))
        self.template = template

    def render(self, task: Task) -> Text:
        try:
            return Text(self.template.format(**task.fields))
        except (KeyError, ValueError, TypeError):  # a field not given yet, or not a number yet
            return Text("")


class ProgressBars:
    """One live display on stderr; ``bars(description, total)`` adds a bar and yields its ``advance``.

    Stages that run together each get their own line at once, which separate ``rich`` displays cannot
    do. ``status`` adds the status column to every bar; a bar with one is narrower, to leave it room.
    With ``enabled=False`` nothing is shown and every bar does nothing.
    """

    def __init__(self, *, enabled: bool = True, status: str = "") -> None:
        columns: list[ProgressColumn] = [
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(bar_width=20 if status else 40),
            MofNCompleteColumn(),
        ]
        if status:
            columns.append(_Status(status))
        columns += [TimeElapsedColumn(), TimeRemainingColumn()]
        self.display = RichProgress(*columns, console=Console(stderr=True), transient=False) if enabled else None

    def __enter__(self) -> ProgressBars:
        if self.display is not None:
            self.display.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.display is not None:
            self.display.stop()

    @contextlib.contextmanager
    def __call__(
        self, description: str, total: int | None = None, *, completed: int = 0, **fields: Any
    ) -> Iterator[Bar]:
        """A bar of ``total`` items (None: unknown until ``estimate_total``), starting at ``completed``, with
        the first values of the status fields."""
        if self.display is None:
            yield Bar()
            return
        task = self.display.add_task(description, total=total, completed=completed, **fields)
        try:
            yield Bar(self.display, task)
        finally:  # a bar of unknown length shows its count when done
            if total is None:
                done = next(t.completed for t in self.display.tasks if t.id == task)
                self.display.update(task, total=max(done, 1))


@contextlib.contextmanager
def progress_bar(
    description: str, total: int | None, *, enabled: bool = True, status: str = "", completed: int = 0, **fields: Any
) -> Iterator[Bar]:
    """One bar in a display of its own; yields ``advance(n, **fields)``, and disappears when off.

    With ``total=None`` the total is unknown until ``advance.estimate_total(n)`` (or ``estimate_total``) sets it.
    """
    with (
        ProgressBars(enabled=enabled, status=status) as bars,
        bars(description, total, completed=completed, **fields) as bar,
    ):
        yield bar
