"""Reads from a region's replicated copy: read models (catalog, exports), or
the event log itself (a dataset, its history).

With the API's log on the pair (adapters.dr.primary_ledger) the read models'
tables and tracking positions live in the primary's database and replicate
with it, so a standby holds a consistent, slightly older copy of each. A read
asked of a standby is answered there when the region is up, no staler than
the TTL and (if the caller names one) at or past the wanted log position in
the view it reads; otherwise the caller falls back to the primary. Staleness
is the replayed heartbeat's age, as for the DR router (adapters.dr.health).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import psycopg
from eventsourcing import persistence
from eventsourcing.persistence import TrackingRecorder
from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import tuple_row

from adapters.catalog.postgres import PostgresCatalogView
from adapters.dr.health import STALENESS_SQL
from adapters.dr.region_log import open_region_log
from projections.runner import APPLICATION_NAME

if TYPE_CHECKING:
    from collections.abc import Callable

    from adapters.dr.pair import RegionPair
    from adapters.ledger.store import Ledger
    from projections.catalog import CatalogView

T = TypeVar("T")
V = TypeVar("V", bound=TrackingRecorder)
_DOWN_FOR_S = 0.5
"""A region that just failed is skipped this long (reads go to the primary)."""


@dataclass(frozen=True)
class RegionRead(Generic[T]):
    """What a region's read model answered, and how current it was."""

    value: T
    region: str
    stale_ms: int
    position: int
    """The region's view's tracking position (log position it reflects)."""
    lag_events: int
    """Entries of the region's log the view has not applied yet."""


@dataclass(frozen=True)
class Fallback:
    """Why the region did not answer (the primary should)."""

    region: str
    reason: str
    stale_ms: int | None = None


@dataclass
class _Copy:
    log: Ledger
    datastore: PostgresDatastore
    views: dict[type[TrackingRecorder], TrackingRecorder] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def view(self, kind: type[V]) -> V:
        """The region's view of this class (read only: the log made its tables)."""
        with self.lock:
            view = self.views.get(kind)
            if view is None:
                view = self.views[kind] = self.log.factory.tracking_recorder(kind)
        assert isinstance(view, kind)
        return view

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.log.close()


class RegionCatalogs:
    """Read-only read-model views in the pair's regions, opened on first use."""

    def __init__(self, pair: Callable[[], RegionPair], *, ttl_ms: int) -> None:
        self._pair = pair
        self.ttl_ms = ttl_ms
        self._copies: dict[str, _Copy] = {}
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def read(
        self,
        region: str,
        work: Callable[[CatalogView], T],
        *,
        min_position: int | None = None,
    ) -> RegionRead[T] | Fallback:
        """work(view) on region's copy of the catalog, or why not."""
        return self.read_view(
            region, PostgresCatalogView, work, min_position=min_position
        )

    def read_view(
        self,
        region: str,
        kind: type[V],
        work: Callable[[V], T],
        *,
        min_position: int | None = None,
    ) -> RegionRead[T] | Fallback:
        """work(view) on region's copy of the view ``kind``, or why not.

        ``min_position`` and the answer's position are that view's tracking.
        """
        return self._read(
            region,
            lambda copy: copy.view(kind).max_tracking_id(APPLICATION_NAME) or 0,
            lambda copy: work(copy.view(kind)),
            min_position,
        )

    def read_log(
        self,
        region: str,
        work: Callable[[Ledger], T],
        *,
        min_position: int | None = None,
    ) -> RegionRead[T] | Fallback:
        """work(log) on region's copy of the event log itself, or why not.

        For reads of the write model (an aggregate, its history): the answer's
        position is the region's log head, ``min_position`` is checked against
        it, and nothing lags behind the log (lag_events 0).
        """
        return self._read(region, None, lambda copy: work(copy.log), min_position)

    def _read(
        self,
        region: str,
        tracked: Callable[[_Copy], int] | None,
        work: Callable[[_Copy], T],
        min_position: int | None,
    ) -> RegionRead[T] | Fallback:
        """Up, within the TTL and at min_position: then work(copy) answers.

        ``tracked`` gives the read model's position; None: the log itself is
        read, so the position is the log's head (read once, before the work).
        """
        if time.monotonic() < self._down_until.get(region, 0.0):
            return Fallback(region, "down")
        try:
            copy = self._copy(region)
            with copy.datastore.get_connection() as conn:
                row = conn.cursor(row_factory=tuple_row).execute(STALENESS_SQL)
                stale = row.fetchone()
            lag = int(stale[0]) if stale and stale[1] else 0
            if lag > self.ttl_ms:
                return Fallback(region, "stale", lag)
            if tracked is None:
                head = position = copy.log.recorder.max_notification_id() or 0
            else:
                position = tracked(copy)
            if min_position is not None and position < min_position:
                return Fallback(region, "behind", lag)
            value = work(copy)
            if tracked is not None:
                head = copy.log.recorder.max_notification_id() or 0
        except (psycopg.Error, persistence.PersistenceError):
            self._forget(region)
            return Fallback(region, "down")
        return RegionRead(value, region, lag, position, max(0, head - position))

    def _copy(self, region: str) -> _Copy:
        with self._lock:
            copy = self._copies.get(region)
            if copy is not None:
                return copy
            pair = self._pair()
            # A plain connection first: a dead region refuses it at once, where
            # a pool would wait out its timeout.
            pair.connect(region).close()
            log = open_region_log(
                pair, region, create_tables=False, pool_size=1, wait_s=1
            )
            datastore = cast("Any", log.factory).datastore
            assert isinstance(datastore, PostgresDatastore)
            copy = self._copies[region] = _Copy(log, datastore)
            return copy

    def _forget(self, region: str) -> None:
        with self._lock:
            self._down_until[region] = time.monotonic() + _DOWN_FOR_S
            copy = self._copies.pop(region, None)
        if copy is not None:
            copy.close()

    def close(self) -> None:
        with self._lock:
            copies, self._copies = list(self._copies.values()), {}
        for copy in copies:
            copy.close()
