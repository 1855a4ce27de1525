"""The API's event log on a DR pair: always the primary of the current epoch.

The log, the read models that live beside it (catalog, exports, usage, ...)
and every store opened from ``ledger.factory.datastore`` share one datastore,
so following the primary is one operation: when dr.json names another primary
or epoch, the datastore gets a fresh connection pool on the new primary's port
and the old pool is closed (its waiting callers fail at once instead of
waiting on a dead node). Projections simply go on reading: their tracking
positions replicated with the tables.

Failures during a switch become region errors (adapters.dr.router), which the
API answers with 503 problems, never a 500: a node in recovery refuses the
insert's LOCK TABLE (25006, ``read-only-replica``); a node whose ``dr_epoch``
differs from the writer's fails the check inside the insert's transaction
(``stale-epoch``); an unreachable primary is ``region-unavailable``. Each
insert is one transaction (events, chain, idempotency), so nothing is left.
"""

from __future__ import annotations

import contextlib
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import psycopg
import structlog
from eventsourcing import persistence
from eventsourcing.postgres import ConnectionPool, PostgresDatastore
from psycopg import errors
from psycopg.sql import SQL

from adapters.dr.region_log import open_region_log
from adapters.dr.router import (
    ReadOnlyReplicaError,
    RegionError,
    RegionUnavailableError,
    StaleEpochError,
)
from adapters.ledger.postgres import LedgerPostgresRecorder
from adapters.ledger.store import Ledger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from psycopg import Connection, Cursor
    from psycopg.rows import DictRow

    from adapters.dr.pair import RegionPair

log = structlog.get_logger("conductor.dr.ledger")

RECORDER_TOPIC = "adapters.dr.primary_ledger:PrimaryLedgerRecorder"
WATCH_S = 0.1
"""How often the ledger looks at dr.json for a new primary or epoch."""
WAIT_S = 2
"""How long a caller waits for a pooled connection before a 503."""
_STALE_EPOCH = "dr_stale_epoch"
_CHECK_EPOCH_FUNCTION = f"""
CREATE OR REPLACE FUNCTION dr_check_epoch(expected bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE node_epoch bigint;
BEGIN
    SELECT epoch INTO node_epoch FROM dr_epoch WHERE id = 1 FOR SHARE;
    IF node_epoch IS DISTINCT FROM expected THEN
        RAISE EXCEPTION '{_STALE_EPOCH}' USING DETAIL = coalesce(node_epoch, -1);
    END IF;
END $$"""


class LedgerUnavailableError(RegionUnavailableError, persistence.OperationalError):
    """The primary cannot be reached (the library's read retries still apply)."""


class PrimaryDatastore(PostgresDatastore):
    """The library's datastore, with region errors and a pool that can move."""

    follower: PrimaryFollower
    region: str
    epoch: int

    @contextmanager
    def get_connection(self) -> Iterator[Connection[DictRow]]:
        target = self.region, self.epoch  # the pool may move meanwhile
        try:
            with super().get_connection() as conn:
                yield conn
        except RegionError:
            raise
        except persistence.PersistenceError as error:
            region_error = self.follower.region_error(error, *target)
            if region_error is None:
                raise
            raise region_error from error


class PrimaryLedgerRecorder(LedgerPostgresRecorder):
    """The chained recorder, checking the pair's epoch inside each insert."""

    def _lock_table(self, curs: Cursor[DictRow]) -> None:
        super()._lock_table(curs)  # a hot standby refuses this (25006)
        epoch = getattr(self.datastore, "epoch", None)
        if epoch is not None:
            curs.execute(SQL("SELECT dr_check_epoch(%s)"), (epoch,), prepare=True)


@dataclass
class PrimaryLedger(Ledger):
    """A Ledger whose datastore follows the pair's primary until closed."""

    follower: PrimaryFollower | None = None

    def close(self) -> None:
        if self.follower is not None:
            self.follower.stop()
        super().close()


class PrimaryFollower:
    """Re-points a PrimaryDatastore when dr.json names a new primary or epoch."""

    def __init__(
        self,
        pair: Callable[[], RegionPair],
        datastore: PrimaryDatastore,
        *,
        interval: float = WATCH_S,
    ) -> None:
        self._pair = pair
        self._datastore = datastore
        self._interval = interval
        self._lock = threading.Lock()
        self._poke = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[str, int], None]] = []

    @property
    def target(self) -> tuple[str, int]:
        """The (region, epoch) the ledger writes to now."""
        return self._datastore.region, self._datastore.epoch

    def start(self) -> PrimaryFollower:
        self._thread = threading.Thread(
            target=self._watch, name="dr-ledger-follower", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._poke.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def add_listener(self, listener: Callable[[str, int], None]) -> None:
        """Call ``listener(region, epoch)`` each time the ledger moves (once each)."""
        with self._lock:
            if listener not in self._listeners:
                self._listeners.append(listener)

    def poke(self) -> None:
        """Look at dr.json now (a write just failed: the primary may have moved)."""
        self._poke.set()

    def refresh(self) -> bool:
        """Follow dr.json's primary and epoch; whether the ledger moved."""
        pair = self._pair()
        wanted = (pair.state.primary, pair.state.epoch)
        with self._lock:
            if wanted == self.target:
                return False
            self._repoint(pair)
        return True

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._poke.wait(self._interval)
            self._poke.clear()
            try:
                self.refresh()
            except Exception:  # a dead follower would pin the ledger to one node
                log.warning("ledger_follow_failed", exc_info=True)

    def _repoint(self, pair: RegionPair) -> None:
        store = self._datastore
        region, epoch = pair.state.primary, pair.state.epoch
        old, new = store.pool, _pool_like(store, store.pool, pair.state.ports[region])
        # Opened before it is published: the library reads store.pool twice per
        # call (open, then connection) and must not meet an unopened pool.
        new.open(wait=False)
        store.pool = new
        previous = self.target
        store.region, store.epoch = region, epoch
        # Before the old pool's close (up to 1 s): what was derived from the old
        # primary's positions (a cached search page) must not meet the new one's.
        self._notify(region, epoch)
        # Callers waiting on the old pool fail now (PoolClosed -> 503) rather
        # than after the wait; connections in use close when they come back.
        old.close(timeout=1.0)
        log.info(
            "ledger_followed_primary",
            region=region,
            epoch=epoch,
            previous_region=previous[0],
            previous_epoch=previous[1],
        )

    def _notify(self, region: str, epoch: int) -> None:
        for listener in list(self._listeners):
            try:
                listener(region, epoch)
            except Exception:  # one listener must not stop the ledger following
                log.warning("ledger_switch_listener_failed", exc_info=True)

    def region_error(
        self, error: persistence.PersistenceError, region: str, epoch: int
    ) -> RegionError | None:
        """What a failed call on region's pool means (None: not a DR error)."""
        cause = error.__cause__
        if isinstance(error, persistence.OperationalError | persistence.InterfaceError):
            self.poke()
            return LedgerUnavailableError(f"primary {region} is unreachable")
        if isinstance(cause, errors.ReadOnlySqlTransaction):
            self.poke()
            return ReadOnlyReplicaError(region, _answering_primary(self._pair()))
        if (
            isinstance(cause, errors.RaiseException)
            and cause.diag.message_primary == _STALE_EPOCH
        ):
            self.poke()
            node_epoch = int(cause.diag.message_detail or -1)
            return StaleEpochError(region, node_epoch, epoch)
        return None


def _pool_like(
    store: PostgresDatastore, old: ConnectionPool[Any], port: int
) -> ConnectionPool[Any]:
    """An unopened pool like old (same TLS arguments and sizes) on another port."""
    assert isinstance(old.kwargs, dict)  # the library passes a plain dict
    kwargs = {**old.kwargs, "port": port}
    return ConnectionPool(
        get_password_func=old.get_password_func,
        connection_class=old.connection_class,
        kwargs=kwargs,
        min_size=old.min_size,
        max_size=old.max_size,
        open=False,
        configure=store.after_connect_func(),
        timeout=old.timeout,
        max_waiting=old.max_waiting,
        max_lifetime=old.max_lifetime,
        check=ConnectionPool.check_connection if store.pre_ping else None,
    )


def _answering_primary(pair: RegionPair) -> str | None:
    """The region that answers as a primary now, if any."""
    for region in (pair.state.primary, pair.state.standby):
        with contextlib.suppress(psycopg.Error), pair.connect(region) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if row is not None and not row[0]:
                return region
    return None


def install_epoch_check(pair: RegionPair) -> None:
    """Create dr_check_epoch() on the primary (it replicates to the standby)."""
    with pair.connect(pair.state.primary) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('dr_check_epoch'))")
        conn.execute(_CHECK_EPOCH_FUNCTION)


def open_primary_ledger(
    pair: Callable[[], RegionPair], *, pool_size: int = 8, interval: float = WATCH_S
) -> PrimaryLedger:
    """The event log on the pair's primary, following it across epochs."""
    current = pair()
    install_epoch_check(current)
    opened = open_region_log(
        current,
        current.state.primary,
        create_tables=True,
        pool_size=pool_size,
        recorder_topic=RECORDER_TOPIC,
        wait_s=WAIT_S,
    )
    store = cast("Any", opened.factory).datastore
    assert isinstance(store, PostgresDatastore)
    # The library's factory builds the datastore every recorder and view then
    # takes from it; giving that one object the DR behaviour covers them all.
    store.__class__ = PrimaryDatastore
    datastore = cast("PrimaryDatastore", store)
    datastore.region, datastore.epoch = current.state.primary, current.state.epoch
    follower = PrimaryFollower(pair, datastore, interval=interval)
    datastore.follower = follower
    log.info("ledger_opened_on_primary", region=datastore.region, epoch=datastore.epoch)
    return PrimaryLedger(
        env=opened.env,
        factory=opened.factory,
        recorder=opened.recorder,
        follower=follower.start(),
    )
