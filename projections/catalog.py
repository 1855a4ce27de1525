"""The catalog read model: search with facets, lineage and coverage.

The view interface lives here; SQLite and PostgreSQL views live in adapters/.
The projection folds a whole batch of events into final rows in memory, so a
view writes each touched dataset once per batch, rows and tracking in one
transaction (exactly once).
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from domain.catalog.dataset import Dataset
from projections.catalog_state import (
    AmendedState,
    LineageLinkedState,
    RegisteredState,
    RetiredState,
    decode,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime
    from uuid import UUID

STATUSES = ("active", "retired")
FACETS = ("license", "purpose", "region")


@dataclass(frozen=True, slots=True)
class CatalogRow:
    """One dataset as the catalog shows it."""

    id: UUID
    tenant: str
    name: str
    description: str
    license: str
    purposes: tuple[str, ...]
    retention: str
    region: str
    contract_version: str
    contract_status: str
    tags: tuple[str, ...]
    owner: str
    location: str
    columns: tuple[tuple[str, str], ...]
    upstream: tuple[UUID, ...]
    status: str
    version: int
    created_at: datetime
    updated_at: datetime
    position: int


@dataclass(frozen=True, slots=True)
class CatalogQuery:
    """A search: free text, facet filters and a keyset cursor."""

    tenant: str
    q: str = ""
    license: str | None = None
    purpose: str | None = None
    region: str | None = None
    tag: str | None = None
    contract_status: str | None = None
    status: Literal["active", "retired", "any"] = "active"
    sort: Literal["relevance", "name"] = "relevance"
    """With text, "relevance" ranks by BM25 and "name" lists the matches by
    name; without text both list by name."""
    after: tuple[float, int] | None = None
    limit: int = 20


@dataclass(frozen=True, slots=True)
class CatalogPage:
    """A page of results, the facet counts of the whole result, the next cursor."""

    items: Sequence[CatalogRow]
    total: int
    facets: dict[str, dict[str, int]]
    next_after: tuple[float, int] | None


@dataclass(frozen=True, slots=True)
class LineageNode:
    id: UUID
    name: str
    status: str
    depth: int


@dataclass(frozen=True, slots=True)
class LineageGraphView:
    """Datasets reachable from a root, and the edges (downstream -> upstream)."""

    nodes: Sequence[LineageNode]
    edges: Sequence[tuple[UUID, UUID]]


@dataclass(frozen=True, slots=True)
class CatalogStats:
    """Per-tenant counts behind the coverage figures."""

    active: int
    retired: int
    with_columns: int
    with_contract: int
    locations: tuple[str, ...] = field(default=())


class CatalogView(TrackingRecorder):
    """What the catalog projection writes and what the API reads."""

    @abstractmethod
    def load_rows(self, ids: Sequence[UUID]) -> dict[UUID, CatalogRow]:
        """Current rows for these ids (missing ids are left out)."""

    @abstractmethod
    def write_batch(self, rows: Sequence[CatalogRow], tracking: Tracking) -> None:
        """Upsert rows and record tracking, in one transaction."""

    @abstractmethod
    def search(self, query: CatalogQuery) -> CatalogPage:
        """Ranked full-text search with facet counts and a keyset cursor."""

    @abstractmethod
    def get(self, tenant: str, dataset_id: UUID) -> CatalogRow | None:
        """One row, if it exists in this tenant."""

    @abstractmethod
    def lineage(
        self, tenant: str, root: UUID, direction: Literal["up", "down"], depth: int
    ) -> LineageGraphView:
        """Walk the lineage from ``root`` up to ``depth`` hops."""

    @abstractmethod
    def stats(self, tenant: str) -> CatalogStats:
        """Counts behind the coverage figures."""

    @abstractmethod
    def active_edges(self, tenant: str) -> Sequence[tuple[UUID, UUID]]:
        """Lineage links (downstream, upstream) whose downstream is active."""

    @abstractmethod
    def tenants(self) -> Sequence[str]:
        """Every tenant with at least one dataset."""

    @abstractmethod
    def rows(self, *, after: UUID | None, limit: int) -> Sequence[CatalogRow]:
        """Every row across tenants in id order (for rebuild comparisons)."""

    @abstractmethod
    def reset(self) -> None:
        """Drop every row and the tracking position (before a rebuild)."""

    def close(self) -> None:
        """Release connections of the view's own (the datastore closes the rest)."""

    def invalidate(self, *_: object) -> None:
        """Forget what is cached from the rows (the log moved to another node).

        Takes and ignores any arguments so it can be a listener.
        """


DATASET_TOPICS = tuple(
    get_topic(cls)
    for cls in (
        Dataset.Registered,
        Dataset.Amended,
        Dataset.LineageLinked,
        Dataset.Retired,
    )
)


class CatalogBatch:
    """Rows touched by a batch of events, folded in memory."""

    def __init__(self, rows: dict[UUID, CatalogRow]) -> None:
        self.rows = rows

    def update(self, event: Any, tracking: Tracking, **changes: Any) -> None:
        row = self.rows.get(event.originator_id)
        if row is None:  # an event for a dataset the view never saw: skip it
            return
        self.rows[event.originator_id] = replace(
            row,
            version=event.originator_version,
            updated_at=event.timestamp,
            position=tracking.notification_id,
            **changes,
        )


class CatalogProjection(Projection[CatalogView]):
    """Folds Dataset events into catalog rows."""

    name = "catalog"
    topics = DATASET_TOPICS
    decode = staticmethod(decode)
    """The batched runner decodes stored states with this, not the mapper."""

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """One event at a time (the library's ProjectionRunner calls this)."""
        self.process_batch([(domain_event, tracking)], tracking)

    def process_batch(
        self, items: Sequence[tuple[Any, Tracking]], tracking: Tracking
    ) -> None:
        """Fold a batch of events, then write rows and ``tracking`` at once."""
        ids = list(dict.fromkeys(event.originator_id for event, _ in items))
        batch = CatalogBatch(self.view.load_rows(ids) if ids else {})
        before = dict(batch.rows)
        # The handler per event class, looked up once per batch: going through
        # the singledispatchmethod binds a new function for every event.
        dispatch = vars(CatalogProjection)["apply"].dispatcher.dispatch
        handlers: dict[type, Any] = {}
        for event, event_tracking in items:
            cls = type(event)
            handler = handlers.get(cls)
            if handler is None:
                handler = handlers[cls] = dispatch(cls)
            handler(self, event, event_tracking, batch)
        changed = [row for key, row in batch.rows.items() if before.get(key) is not row]
        self.view.write_batch(changed, tracking)

    @singledispatchmethod
    def apply(self, event: Any, tracking: Tracking, batch: CatalogBatch) -> None:
        """Events the catalog does not show leave it unchanged."""

    @apply.register
    def _(
        self,
        event: Dataset.Registered | RegisteredState,
        tracking: Tracking,
        batch: CatalogBatch,
    ) -> None:
        batch.rows[event.originator_id] = CatalogRow(
            id=event.originator_id,
            tenant=event.tenant,
            name=event.name,
            description=event.description,
            license=event.license,
            purposes=tuple(event.purposes),
            retention=event.retention,
            region=event.region,
            contract_version=event.contract_version,
            contract_status=event.contract_status,
            tags=tuple(event.tags),
            owner=event.owner,
            location=event.location,
            columns=_pairs(event.columns),
            upstream=tuple(event.upstream),
            status="active",
            version=event.originator_version,
            created_at=event.timestamp,
            updated_at=event.timestamp,
            position=tracking.notification_id,
        )

    @apply.register
    def _(
        self,
        event: Dataset.Amended | AmendedState,
        tracking: Tracking,
        batch: CatalogBatch,
    ) -> None:
        batch.update(
            event,
            tracking,
            description=event.description,
            license=event.license,
            purposes=tuple(event.purposes),
            retention=event.retention,
            region=event.region,
            contract_version=event.contract_version,
            contract_status=event.contract_status,
            tags=tuple(event.tags),
            owner=event.owner,
            location=event.location,
            columns=_pairs(event.columns),
        )

    @apply.register
    def _(
        self,
        event: Dataset.LineageLinked | LineageLinkedState,
        tracking: Tracking,
        batch: CatalogBatch,
    ) -> None:
        batch.update(event, tracking, upstream=tuple(event.upstream))

    @apply.register
    def _(
        self,
        event: Dataset.Retired | RetiredState,
        tracking: Tracking,
        batch: CatalogBatch,
    ) -> None:
        batch.update(event, tracking, status="retired")


def _pairs(columns: Sequence[Any]) -> tuple[tuple[str, str], ...]:
    """(name, classification) pairs from Column objects or decoded pairs."""
    if not columns or type(columns[0]) is tuple:  # decoded: already pairs
        return tuple(columns)
    return tuple((str(c[0]), str(c[1])) for c in columns)


class SearchCache:
    """Search results memoised per view position.

    The catalog cannot change without its tracking position moving, so a page
    computed at position P is exact for every later request at P. Dashboards
    repeat the same searches; a full-text search over a broad term is the
    expensive case this saves. A new position empties the cache.
    """

    def __init__(self, view: CatalogView, *, size: int = 512) -> None:
        self.view = view
        self.size = size
        self.hits = 0
        self.misses = 0
        self._position: int | None = None
        self._generation = 0
        """Bumped by clear(): a search begun before it never files its page."""
        self._pages: OrderedDict[CatalogQuery, CatalogPage] = OrderedDict()
        self._lock = threading.Lock()

    def search(self, query: CatalogQuery, position: int) -> tuple[CatalogPage, bool]:
        """The page for ``query`` and whether it came from the cache.

        ``position`` is the view's tracking position, read by the caller before
        this call (so a page is never filed under a later position than it saw).
        """
        with self._lock:
            if position != self._position:
                self._pages.clear()
                self._position = position
            page = self._pages.get(query)
            if page is not None:
                self._pages.move_to_end(query)
                self.hits += 1
                return page, True
            generation = self._generation
        page = self.view.search(query)
        with self._lock:
            self.misses += 1
            if position == self._position and generation == self._generation:
                self._pages[query] = page
                while len(self._pages) > self.size:
                    self._pages.popitem(last=False)
        return page, False

    def clear(self, *_: object) -> None:
        """Forget every page (the log moved to another node: positions may repeat).

        After a failover that lost events the new primary hands out positions
        the old one had used, for other content; a page filed under such a
        position must not be served again. Takes and ignores any arguments so
        it can be a listener.
        """
        with self._lock:
            self._pages.clear()
            self._position = None
            self._generation += 1
