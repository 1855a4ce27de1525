"""Lineage in region B: a graph read model rebuilt from the replicated log there.

Region B's PostgreSQL is a read-only hot standby, so its lineage read model
lives in B's own store: an embedded SQLite file in the region's directory, or
Neo4j when one is configured. A follower is the projections' BatchRunner with
the LineageProjection, reading B's copy of the log (read-only SQL over TLS)
and keeping its own tracking position in the store, in the same transaction
as the graph. It follows the region, not a role: after a failover B's log
simply continues (the promoted node allocates positions past every one it
replayed), so there is no gap and, the tracking being exactly-once, no
double apply; a restarted follower resumes from its tracking position.

The store lives outside B's PostgreSQL, so a pg_rewind of B (B was a primary
that lost an asynchronous failover) would leave the store ahead of B's log,
holding events the log no longer has. Each apply therefore keeps the log's
chain hash at its position (the store's "tip"), and the follower checks the
tip against the log before every batch and every CHECK_S: the hash at a
position commits to the whole log up to it, so a match means everything the
store applied is still in the log. On a mismatch (or a store without a tip)
the store is emptied and rebuilt from the log, and the follower says so
(`lineage_store_rebuilt`, with the reason).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import psycopg
import structlog
from eventsourcing.persistence import Mapper

from adapters.catalog.lineage_sqlite import open_sqlite_lineage
from adapters.dr.health import STALENESS_SQL
from adapters.dr.region_log import open_region_log
from adapters.ledger.transcoder import CanonicalJSONTranscoder
from projections.lineage import LineageChanges, LineageProjection
from projections.runner import APPLICATION_NAME, BatchRunner

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path
    from uuid import UUID

    from eventsourcing.persistence import Tracking

    from adapters.dr.pair import RegionPair
    from adapters.ledger.store import Ledger
    from projections.catalog import LineageGraphView
    from projections.lineage import LineageView
    from projections.runner import RunnerStatus

log = structlog.get_logger("conductor.dr.lineage")
FOLLOWER_REGION = "B"
"""The region whose lineage `dr up`'s daemon keeps (the standby at creation)."""
STORE_FILE = "lineage.sqlite"
POLL_S = 0.1
"""Another region's commits cannot wake the follower: it polls this often."""
CHECK_S = 1.0
"""How often the follower checks its store's tip against the log when idle."""
EVENTS_TABLE = "stored_events"
"""The library's events table name for the log's (unnamed) environment."""


@dataclass(frozen=True)
class Neo4jTarget:
    """Where a region keeps its lineage graph when it has a Neo4j of its own."""

    uri: str
    user: str = "neo4j"
    password: str = ""
    database: str = ""
    namespace: str = "conductor"
    """The region's follower writes under ``<namespace>.region-<region>``."""


def store_path(root: Path, region: str) -> Path:
    """The embedded lineage store of a region of the pair rooted at root."""
    return root / region / STORE_FILE


def open_lineage_store(
    root: Path, region: str, neo4j: Neo4jTarget | None = None
) -> LineageView:
    """The region's lineage store: Neo4j if given, else the embedded SQLite file."""
    if neo4j is not None:
        from adapters.catalog.lineage_neo4j import connect  # noqa: PLC0415 - optional

        return connect(
            neo4j.uri,
            neo4j.user,
            neo4j.password,
            neo4j.database,
            namespace=f"{neo4j.namespace}.region-{region}",
        )
    return open_sqlite_lineage(store_path(root, region))


class LogRewoundError(RuntimeError):
    """The log no longer holds what the lineage store applied (rebuilding)."""


class ChainCheck:
    """Whether a lineage store still matches the log it was built from."""

    def __init__(self, log: Ledger, view: LineageView) -> None:
        self.log = log
        self.view = view
        self.rebuilds = 0

    def hash_at(self, position: int) -> str | None:
        """The log's chain hash at position (None: no event there)."""
        rows = self.log.chained.chain_hashes(after=position - 1, limit=1)
        return rows[0][1] if rows and rows[0][0] == position else None

    def diverged(self) -> str | None:
        """Why the store no longer matches the log; None when it does."""
        position = self.view.max_tracking_id(APPLICATION_NAME) or 0
        if position == 0:
            return None
        tip = self.view.tip(APPLICATION_NAME)
        if tip is None or tip[0] != position:
            return f"the store keeps no chain hash at its position {position}"
        found = self.hash_at(position)
        if found is None:
            return f"the log has no event at {position} any more"
        if found != tip[1]:
            return f"the log's event at {position} is not the one the store applied"
        return None

    def rebuild(self, reason: str) -> None:
        """Empty the store; its follower then applies the log from the start."""
        log.warning(
            "lineage_store_rebuilt",
            reason=reason,
            position=self.view.max_tracking_id(APPLICATION_NAME) or 0,
        )
        self.view.reset()
        self.rebuilds += 1


class CheckedLineageProjection(LineageProjection):
    """The lineage projection that keeps the log's chain hash with its tip and
    applies nothing on top of a prefix the log no longer holds."""

    def __init__(self, view: LineageView, check: ChainCheck) -> None:
        super().__init__(view=view)
        self.check = check

    def process_batch(
        self, items: Sequence[tuple[Any, Tracking]], tracking: Tracking
    ) -> None:
        reason = self.check.diverged()
        if reason is not None:
            self.check.rebuild(reason)
            # Abort this catch-up: its pages continue the old position. The
            # runner retries at once from the emptied store's position 0.
            raise LogRewoundError(reason)
        changes = LineageChanges()
        for event, _ in items:
            self.fold(event, changes)
        self.view.apply(
            changes, tracking, tip_hash=self.check.hash_at(tracking.notification_id)
        )


class LineageFollower:
    """Keeps one region's lineage store up with the event log in that region."""

    def __init__(
        self,
        log: Ledger,
        view: LineageView,
        *,
        poll_interval: float = POLL_S,
        check_interval: float = CHECK_S,
    ) -> None:
        self.log = log
        self.view = view
        self.applied = 0
        """Log entries read and applied by this follower since it was made."""
        self._closed = False
        self.check = ChainCheck(log, view)
        self.runner = BatchRunner(
            projection=CheckedLineageProjection(view, self.check),
            recorder=log.recorder,
            mapper=Mapper(transcoder=CanonicalJSONTranscoder()),
            poll_interval=poll_interval,
            linger=0,
            on_batch=self._count,
        )
        self._check_interval = check_interval
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _count(self, _name: str, events: int, _position: int) -> None:
        self.applied += events

    def start(self) -> LineageFollower:
        self.runner.start()
        self._stop.clear()
        self._watcher = threading.Thread(
            target=self._watch, name="lineage-check", daemon=True
        )
        self._watcher.start()
        return self

    def _watch(self) -> None:
        """Check the tip while no batch comes (a rewound log may stay below
        the store's position, or reuse positions the follower never reads)."""
        while not self._stop.wait(self._check_interval):
            with contextlib.suppress(Exception):  # a down region: the runner says
                if self.check.diverged() is None:
                    continue
                self.runner.stop()  # no batch in flight while the store empties
                try:
                    reason = self.check.diverged()  # the runner may have rebuilt
                    if reason is not None:
                        self.check.rebuild(reason)
                finally:
                    if not self._stop.is_set():
                        self.runner.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=15)
            self._watcher = None
        self.runner.stop()

    def close(self) -> None:
        """Stop following and release the store and the log's connections."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        self.view.close()
        self.log.close()

    def position(self) -> int:
        """The last log position applied to the store (0 before the first)."""
        return self.runner.position()

    def status(self) -> RunnerStatus:
        """Position, the region's log head, and the last error (if failing)."""
        return self.runner.status()

    def wait(self, position: int, timeout: float) -> bool:
        """Whether the store reached position within timeout seconds."""
        return self.runner.wait(position, timeout)


def follow_lineage(
    pair: RegionPair,
    region: str = FOLLOWER_REGION,
    *,
    neo4j: Neo4jTarget | None = None,
    poll_interval: float = POLL_S,
) -> LineageFollower:
    """Start following region's log into region's lineage store (the daemon's)."""
    view = open_lineage_store(pair.root, region, neo4j)
    try:
        log = open_region_log(pair, region, create_tables=False, pool_size=1)
    except BaseException:
        view.close()
        raise
    return LineageFollower(log, view, poll_interval=poll_interval).start()


@dataclass(frozen=True)
class LineageRead:
    """A walk answered by a region's lineage store, and how current it is."""

    graph: LineageGraphView
    region: str
    position: int
    lag_events: int | None
    """Entries of the region's log not yet in the store (None: region down)."""
    stale_ms: int | None
    """The region's replication staleness (None: it is the primary, or down)."""


class RegionLineage:
    """The API's read side of a region's lineage store (a follower writes it)."""

    def __init__(
        self, pair: RegionPair, region: str, neo4j: Neo4jTarget | None = None
    ) -> None:
        self._pair = pair
        self.region = region
        self._neo4j = neo4j
        self._view: LineageView | None = None
        self._lock = threading.Lock()

    def available(self) -> bool:
        """Whether the region has a store (a follower has run there)."""
        return (
            self._neo4j is not None or store_path(self._pair.root, self.region).exists()
        )

    def read(
        self, tenant: str, root: UUID, direction: Literal["up", "down"], depth: int
    ) -> LineageRead:
        """Walk from root in the region's store; the region's head and staleness."""
        with self._lock:
            if self._view is None:
                self._view = open_lineage_store(
                    self._pair.root, self.region, self._neo4j
                )
            view = self._view
        position = view.max_tracking_id(APPLICATION_NAME) or 0
        graph = view.lineage(tenant, root, direction, depth)
        head, stale = self._region_head()
        lag = None if head is None else max(0, head - position)
        return LineageRead(graph, self.region, position, lag, stale)

    def _region_head(self) -> tuple[int | None, int | None]:
        """The region's log head and its staleness; (None, None) if it is down."""
        try:
            with self._pair.connect(self.region) as conn:
                head = conn.execute(
                    "SELECT coalesce(max(notification_id), 0) FROM " + EVENTS_TABLE
                ).fetchone()
                stale = conn.execute(STALENESS_SQL).fetchone()
        except psycopg.Error:  # down, or a pair made before the log existed
            return None, None
        assert head is not None
        assert stale is not None
        return int(head[0]), int(stale[0]) if stale[1] else None

    def close(self) -> None:
        with self._lock:
            if self._view is not None:
                with contextlib.suppress(Exception):
                    self._view.close()
                self._view = None
