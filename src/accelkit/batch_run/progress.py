"""The progress line of a corpus run: items done, items/s and the time left, drawn with rich on a
terminal and silent anywhere else (a pipe, a log file, a test)."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

__all__ = ["ProgressLine"]


class ProgressLine:
    """``with ProgressLine(console, rows): line.advance(rows, items)`` per finished block."""

    def __init__(self, console: Console, rows: int) -> None:
        self.start = time.perf_counter()
        self.items = 0
        self.progress: Progress | None = None
        if console.is_terminal:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                     TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                     console=console, transient=True)
            self.task = self.progress.add_task("running", total=max(rows, 1), rate="")

    def __enter__(self) -> ProgressLine:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.progress is not None:
            self.progress.stop()

    def advance(self, rows: int, items: int) -> None:
        """One block done: ``rows`` rows read, ``items`` of them run through the model."""
        self.items += items
        if self.progress is not None:
            rate = self.items / max(time.perf_counter() - self.start, 1e-9)
            self.progress.update(self.task, advance=rows, description=f"{self.items:,} items",
                                 rate=f"{rate:,.0f} items/s")
