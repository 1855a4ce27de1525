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
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import psycopg
from eventsourcing.persistence import Mapper

from adapters.dr.health import STALENESS_SQL
from adapters.dr.region_log import open_region_log
from adapters.ledger.transcoder import CanonicalJSONTranscoder
from adapters.lineage_sqlite import open_sqlite_lineage
from projections.lineage import LineageProjection
from projections.runner import APPLICATION_NAME, BatchRunner

if TYPE_CHECKING:
    from pathlib import Path
    from uuid import UUID

    from adapters.dr.pair import RegionPair
    from adapters.ledger.store import Ledger
    from projections.catalog import LineageGraphView
    from projections.lineage import LineageView
    from projections.runner import RunnerStatus

FOLLOWER_REGION = "B"
"""The region whose lineage `dr up`'s daemon keeps (the standby at creation)."""
STORE_FILE = "lineage.sqlite"
POLL_S = 0.1
"""Another region's commits cannot wake the follower: it polls this often."""
EVENTS_TABLE = "stored_events"
"""The library's events table name for the log's (unnamed) environment."""


@dataclass(frozen=True)
class Neo4jTarget:
    """Where a region keeps its lineage graph when it has a Neo4j of its own."""

    uri: str
    user: str = "neo4j"
    password: str = ""
    database: str = ""


def store_path(root: Path, region: str) -> Path:
    """The embedded lineage store of a region of the pair rooted at root."""
    return root / region / STORE_FILE


def open_lineage_store(
    root: Path, region: str, neo4j: Neo4jTarget | None = None
) -> LineageView:
    """The region's lineage store: Neo4j if given, else the embedded SQLite file."""
    if neo4j is not None:
        from adapters.lineage_neo4j import connect  # noqa: PLC0415 - optional

        return connect(neo4j.uri, neo4j.user, neo4j.password, neo4j.database)
    return open_sqlite_lineage(store_path(root, region))


class LineageFollower:
    """Keeps one region's lineage store up with the event log in that region."""

    def __init__(
        self, log: Ledger, view: LineageView, *, poll_interval: float = POLL_S
    ) -> None:
        self.log = log
        self.view = view
        self.applied = 0
        """Log entries read and applied by this follower since it was made."""
        self._closed = False
        self.runner = BatchRunner(
            projection=LineageProjection(view=view),
            recorder=log.recorder,
            mapper=Mapper(transcoder=CanonicalJSONTranscoder()),
            poll_interval=poll_interval,
            linger=0,
            on_batch=self._count,
        )

    def _count(self, _name: str, events: int, _position: int) -> None:
        self.applied += events

    def start(self) -> LineageFollower:
        self.runner.start()
        return self

    def stop(self) -> None:
        self.runner.stop()

    def close(self) -> None:
        """Stop following and release the store and the log's connections."""
        if self._closed:
            return
        self._closed = True
        self.runner.stop()
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
