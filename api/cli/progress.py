"""Progress for long CLI work: a live line on a terminal, sparse lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Reports ``done`` of ``total`` with a rate, at most every ``every`` seconds."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        every: float = 0.5,
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.every = every if self.stream.isatty() else max(every, 5.0)
        self.started = time.perf_counter()
        self._last = 0.0
        self._shown = False

    def update(self, done: int, *, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < self.every:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        of = f"/{self.total:,}" if self.total else ""
        pct = f" {100 * done / self.total:5.1f}%" if self.total else ""
        line = f"{self.label}: {done:,}{of}{pct}  {rate:,.0f}/s  {elapsed:,.1f}s"
        if self.stream.isatty():
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._shown = True

    def finish(self, done: int) -> None:
        self.update(done, force=True)
        if self.stream.isatty() and self._shown:
            self.stream.write("\n")
            self.stream.flush()
