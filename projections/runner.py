"""A batched projection runner: many events per view transaction.

The library's ProjectionRunner commits once per event (a few thousand events/s)
and only sees the events its topics select, so its tracking position lags the
log on unrelated events. This runner reads the whole log in pages, decodes only
the topics the projection handles, hands each page to ``process_batch`` and
tracks the last position read, so lag and read-your-writes waits are exact.
Behind on PostgreSQL, it reads the next page while the projection writes one.
See docs/adr/0002-batched-projections.md.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from eventsourcing.persistence import Tracking
from eventsourcing.sqlite import SQLiteApplicationRecorder

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from eventsourcing.persistence import (
        ApplicationRecorder,
        Mapper,
        Notification,
        TrackingRecorder,
    )

APPLICATION_NAME = "ledger"
QUIET_LINGER_S = 0.005
"""The linger while the log is quiet: a lone write shows in the views at once."""
RATE_WINDOW_S = 1.0
"""The time constant of a runner's estimate of the log's event rate."""
Page = tuple[int, list[tuple[Any, Tracking]], int]
"""(position of the page's last event, decoded items of the projection's
topics, events read)."""


class BatchProjection(Protocol):
    """A projection that can take a whole page of events at once."""

    @property
    def name(self) -> str: ...
    @property
    def topics(self) -> Sequence[str]: ...
    @property
    def view(self) -> Any: ...

    def process_batch(
        self, items: Sequence[tuple[Any, Tracking]], tracking: Tracking
    ) -> None: ...


@dataclass
class RunnerStatus:
    """A runner's health as /readyz and `projections status` report it."""

    name: str
    position: int
    head: int
    running: bool
    error: str = ""
    failures: int = 0

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


class BatchRunner:
    """Keeps one projection caught up with the log, in batches."""

    def __init__(
        self,
        *,
        projection: BatchProjection,
        recorder: ApplicationRecorder,
        mapper: Mapper[Any],
        batch_size: int = 1000,
        poll_interval: float = 0.5,
        linger: float = 0.05,
        busy_events_s: float = 200.0,
        on_batch: Callable[[str, int, int], None] | None = None,
        read_ahead: bool | None = None,
    ) -> None:
        self.projection = projection
        self.view: TrackingRecorder = projection.view
        self.recorder = recorder
        self.mapper = mapper
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.linger = linger
        """After a wake-up under load, wait this long for more commits to share
        the batch, unless a reader waits for a position (see wait)."""
        self.busy_events_s = busy_events_s
        """Under load: this process commits this many events/s or more
        (averaged over about RATE_WINDOW_S; a backlog read at start-up does not
        count). Below it the runner lingers QUIET_LINGER_S."""
        self._rate = 0.0
        self._rate_at = time.monotonic()
        self.on_batch = on_batch
        self.read_ahead = (
            not isinstance(recorder, SQLiteApplicationRecorder)
            if read_ahead is None
            else read_ahead
        )
        """Read the next page while the projection writes this one (see
        _pages). Off on SQLite by default: there the reading thread contends
        with the writing one for the GIL (sqlite3 releases it per row), and
        catch-up measured slower."""
        self._topics = frozenset(projection.topics)
        # A projection may decode stored states itself (straight into structs,
        # see projections/catalog_state.py), faster than the mapper's objects.
        decode = getattr(projection, "decode", None)
        self._decode: Callable[[Notification], Any] = (
            decode if decode is not None else self._to_domain_event
        )
        self._wake = threading.Event()
        self._urgent = threading.Event()
        self._resume = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error = ""
        self.failures = 0

    @property
    def name(self) -> str:
        return self.projection.name

    def _to_domain_event(self, notification: Notification) -> Any:
        return self.mapper.to_domain_event(notification)

    def position(self) -> int:
        return self.view.max_tracking_id(APPLICATION_NAME) or 0

    def status(self) -> RunnerStatus:
        return RunnerStatus(
            name=self.name,
            position=self.position(),
            head=self.recorder.max_notification_id() or 0,
            running=self._thread is not None and self._thread.is_alive(),
            error=self.error,
            failures=self.failures,
        )

    def catch_up(
        self,
        *,
        until: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Process pages to the end of the log (or ``until``); returns events read."""
        read = 0
        for page in self._pages(self.position(), until):
            position, items, count = page
            self.projection.process_batch(items, Tracking(APPLICATION_NAME, position))
            read += count
            if self.on_batch is not None:
                self.on_batch(self.name, count, position)
            if progress is not None:
                progress(read, position)
        return read

    def _page(self, position: int) -> Page | None:
        """The page after ``position``, decoded: (last position, items, events)."""
        notifications = self.recorder.select_notifications(
            start=position, limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return None
        topics, decode = self._topics, self._decode
        items = [
            (decode(n), Tracking(APPLICATION_NAME, n.id))
            for n in notifications
            if n.topic in topics
        ]
        return notifications[-1].id, items, len(notifications)

    def _pages(self, position: int, until: int | None) -> Iterator[Page]:
        """Decoded pages after ``position``, reading ahead while behind.

        Behind (a full page) and with ``read_ahead``, the next page is read
        and decoded in a thread while the projection folds and writes this
        one: on PostgreSQL the write is mostly waiting for the server, and
        reading is independent of it (the log only grows). Caught up, pages
        come one at a time.
        """
        if until is not None and position >= until:
            return
        page = self._page(position)
        if not self.read_ahead or page is None or page[2] < self.batch_size:
            while page is not None:
                yield page
                if until is not None and page[0] >= until:
                    return
                page = self._page(page[0])
            return
        with ThreadPoolExecutor(1, thread_name_prefix=f"read-{self.name}") as ahead:
            while page is not None:
                position = page[0]
                more = until is None or position < until
                following = ahead.submit(self._page, position) if more else None
                yield page
                page = following.result() if following is not None else None

    def wake(self, _position: int = 0, events: int = 0) -> None:
        """Ask the runner to look at the log now (called after local commits,
        one at a time: group commit's leader calls its listeners)."""
        if events:
            self._arrived(events)
        self._wake.set()

    def resume(self, *_: object) -> None:
        """Look at the log now, cutting short a backoff after a failure.

        For when the log moved to another node (a DR switch): the failure the
        runner is backing off from is over. Takes and ignores any arguments so
        it can be a listener.
        """
        self._resume.set()
        self._wake.set()

    def start(self) -> None:
        """Follow the log in a daemon thread until stop()."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"projection-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._urgent.set()
        self._wake.set()
        self._resume.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait(self, position: int, timeout: float) -> bool:
        """Whether the view reached ``position`` within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            if self.position() >= position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._urgent.set()  # no lingering while someone waits
            self._wake.set()
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)

    def _arrived(self, events: int) -> None:
        """Fold ``events`` just committed into the decaying events/s estimate."""
        now = time.monotonic()
        decay = math.exp(-(now - self._rate_at) / RATE_WINDOW_S)
        self._rate = self._rate * decay + events / RATE_WINDOW_S
        self._rate_at = now

    def _linger_s(self) -> float:
        """How long to gather commits after a wake-up (see linger)."""
        if self._rate >= self.busy_events_s:
            return self.linger
        return min(self.linger, QUIET_LINGER_S)

    def _loop(self) -> None:
        backoff = self.poll_interval
        while not self._stop.is_set():
            self._wake.clear()
            self._urgent.clear()
            self._resume.clear()  # a resume() from now on cuts the backoff short
            try:
                self.catch_up()
            except Exception as error:
                self.failures += 1
                self.error = f"{type(error).__name__}: {error}"
                resumed = self._resume.wait(backoff)  # stop() sets it too
                backoff = self.poll_interval if resumed else min(backoff * 2, 30.0)
                continue
            self.error = ""
            backoff = self.poll_interval
            if self._wake.wait(self.poll_interval) and (linger := self._linger_s()):
                # Commits arrive in bursts: gathering them for a while makes one
                # view transaction out of many (and frees the GIL and the write
                # lock for the commands meanwhile). Under load, ten views each
                # writing per commit kept SQLite's write lock so busy that a
                # command waited ~7 ms to begin its commit. Quiet, a write
                # shows in the views within milliseconds, as clients that read
                # without x-ig-min-position expect; a read waiting for a
                # position cuts even the long linger short.
                self._urgent.wait(linger)
