"""Progress for long CLI work, with rich: a live bar on a terminal (percentage
and ETA when the total is known), sparse plain lines otherwise.

Counts are named for what they count (``unit``: rows, events, records,
vectors, bytes); bytes are shown as sizes. When the output is not a terminal
each update is one line, the first after ``delay`` seconds and then at most
every ``every`` seconds; ``finish`` adds the final line only if the work
took longer than ``delay`` and the last line printed was not already it
(quick commands print no progress at all).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress

if TYPE_CHECKING:
    from typing import TextIO

    from rich.progress import ProgressColumn, TaskID


def _amount(value: float, unit: str) -> str:
    return decimal(int(value)) if unit == "bytes" else f"{int(value):,} {unit}"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Reports ``done`` of ``total`` (in ``unit``) with a rate and, when the
    total is known, a percentage and the time remaining."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "items",
        stream: TextIO | None = None,
        every: float = 5.0,
        delay: float = 1.0,
    ) -> None:
        self.label = label
        self.total = total or None
        self.unit = unit
        self.stream = stream or sys.stderr
        self.every = every
        self.delay = delay
        self.started = time.perf_counter()
        self._last_at = -float("inf")
        self._last_key: tuple[int, int | None] | None = None
        self._done = 0
        self._live: RichProgress | None = None
        self._task: TaskID | None = None
        if self.stream.isatty():
            console = Console(file=self.stream)
            self._live = RichProgress(*self._columns(), console=console)
            self._task = self._live.add_task(label, total=self.total)
            self._live.start()

    def _columns(self) -> list[ProgressColumn]:
        counted: ProgressColumn = (
            DownloadColumn()
            if self.unit == "bytes"
            else MofNCompleteColumn()
            if self.total
            else TextColumn(f"{{task.completed:,.0f}} {self.unit}")
        )
        columns: list[ProgressColumn] = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            counted,
        ]
        if self.unit != "bytes" and self.total:
            columns.append(TextColumn(self.unit))
        columns += [TaskProgressColumn(), TimeRemainingColumn(), TimeElapsedColumn()]
        if self.unit == "bytes":
            columns.append(TransferSpeedColumn())
        return columns

    def update(self, done: int, *, total: int | None = None) -> None:
        """``done`` so far (and the total, when it became known)."""
        self._done = done
        if total:
            self.total = total
        if self._live is not None and self._task is not None:
            self._live.update(self._task, completed=done, total=self.total)
            return
        now = time.perf_counter()
        if now - self.started >= self.delay and now - self._last_at >= self.every:
            self._last_at = now
            self._write(done, self.line(done, now))

    def line(self, done: int, now: float | None = None) -> str:
        """The plain line: label, amount (of total, percentage), rate, ETA."""
        elapsed = max((now or time.perf_counter()) - self.started, 1e-9)
        rate = done / elapsed
        text = f"{self.label}: {_amount(done, self.unit)}"
        if self.total:
            share = min(done / self.total, 1.0)
            text += f" of {_amount(self.total, self.unit)} ({100 * share:.1f}%)"
        text += f", {_amount(rate, self.unit)}/s, elapsed {_clock(elapsed)}"
        if self.total and rate > 0 and done < self.total:
            text += f", ETA {_clock((self.total - done) / rate)}"
        return text

    def _write(self, done: int, line: str) -> None:
        key = (done, self.total)
        if key == self._last_key:  # the same progress again: no new line
            return
        self._last_key = key
        self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self, done: int | None = None) -> None:
        """The final state, once: a terminal's bar completes and stays."""
        final = self._done if done is None else done
        if self._live is not None and self._task is not None:
            self._live.update(self._task, completed=final, total=self.total or final)
            self._live.stop()
            self._live = None
            return
        if time.perf_counter() - self.started >= self.delay:
            self._write(final, self.line(final))
