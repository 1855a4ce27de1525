"""The catalog read model: search with facets, lineage and coverage.

The view interface lives here; SQLite and PostgreSQL views live in adapters/.
The projection folds a whole batch of events into final rows in memory, so a
view writes each touched dataset once per batch, rows and tracking in one
transaction (exactly once). The fold works on ``CatalogRecord``, a row in the
form the views store it (lists as JSON text, times as ISO text), so stored
event states pass their fields through without decoding and re-encoding them.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

import msgspec
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
    from_event,
    ids_text,
    text,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

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
    afters: Sequence[tuple[Any, int]] = ()
    """Each item's keyset position: a search ``after`` one continues right
    after that item (GraphQL's cursor on every edge)."""


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


class CatalogRecord(msgspec.Struct, array_like=True, gc=False):
    """A catalog row as the views store it, in their column order.

    Lists are JSON text (``purposes``, ``tags``, ``columns`` of [name,
    classification] pairs, ``upstream`` of hex ids), times ISO 8601 text, the
    id 32 hex digits. Mutable: the projection folds events into it in place.
    ``array_like``: a batch encodes to one JSON array of rows in C. Only
    text and numbers: untracked by the garbage collector (``gc=False``).
    """

    id: str
    tenant: str
    name: str
    description: str
    license: str
    purposes: str
    retention: str
    region: str
    contract_version: str
    contract_status: str
    tags: str
    owner: str
    location: str
    columns: str
    upstream: str
    status: str
    version: int
    created_at: str
    updated_at: str
    position: int


_encode = msgspec.json.encode


def record_of(row: CatalogRow) -> CatalogRecord:
    """A row in the stored form."""
    return CatalogRecord(
        id=row.id.hex,
        tenant=row.tenant,
        name=row.name,
        description=row.description,
        license=row.license,
        purposes=_encode(row.purposes).decode(),
        retention=row.retention,
        region=row.region,
        contract_version=row.contract_version,
        contract_status=row.contract_status,
        tags=_encode(row.tags).decode(),
        owner=row.owner,
        location=row.location,
        columns=_encode(row.columns).decode(),
        upstream=_encode([u.hex for u in row.upstream]).decode(),
        status=row.status,
        version=row.version,
        created_at=row.created_at.isoformat(),
        updated_at=row.updated_at.isoformat(),
        position=row.position,
    )


class CatalogView(TrackingRecorder):
    """What the catalog projection writes and what the API reads."""

    @abstractmethod
    def load_rows(self, ids: Sequence[UUID]) -> dict[UUID, CatalogRow]:
        """Current rows for these ids (missing ids are left out)."""

    def load_records(self, keys: Sequence[str]) -> dict[str, CatalogRecord]:
        """Current stored rows for these hex ids (missing ones are left out).

        What the fold starts from; the SQL views read them without decoding.
        """
        rows = self.load_rows([UUID(k) for k in keys])
        return {row.id.hex: record_of(row) for row in rows.values()}

    @abstractmethod
    def write_batch(
        self,
        added: Sequence[CatalogRecord],
        updated: Sequence[CatalogRecord],
        tracking: Tracking,
    ) -> None:
        """Insert ``added``, update ``updated``, record tracking: one transaction.

        ``added`` are rows the view does not hold yet, in log order (they are
        numbered in that order, so a rebuild numbers them alike); ``updated``
        are rows it holds, whose lineage links are replaced.
        """

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

    def downstream(self, tenant: str, ids: Sequence[UUID]) -> dict[UUID, list[UUID]]:
        """The active datasets linked directly below each of ``ids`` (ids with
        none are left out). The stores answer from their index on upstream;
        this fallback reads every link of the tenant."""
        wanted = set(ids)
        below: dict[UUID, list[UUID]] = {}
        for down, up in self.active_edges(tenant):
            if up in wanted:
                below.setdefault(up, []).append(down)
        return below

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
    """Rows touched by a batch of events, folded in memory (keyed by hex id)."""

    def __init__(self, rows: dict[str, CatalogRecord]) -> None:
        self.rows = rows
        self.stored = set(rows)
        """Keys of the rows the view held before the batch."""
        self.changed: dict[str, None] = {}
        """Keys in the order first changed: new rows get their rids in log
        order, so a rebuild numbers them as the live view did."""

    def touch(self, event: Any, tracking: Tracking) -> CatalogRecord | None:
        """The row an event changes, its version, time and position moved on."""
        row = self.rows.get(event.key)
        if row is None:  # an event for a dataset the view never saw: skip it
            return None
        row.version = event.originator_version
        row.updated_at = event.timestamp.data
        row.position = tracking.notification_id
        self.changed[event.key] = None
        return row


class CatalogProjection(Projection[CatalogView]):
    """Folds Dataset events into catalog rows."""

    name = "catalog"
    topics = DATASET_TOPICS
    decode = staticmethod(decode)
    """The batched runner decodes stored states with this, not the mapper."""

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """One event at a time (the library's ProjectionRunner calls this)."""
        state = from_event(domain_event)
        self.process_batch([] if state is None else [(state, tracking)], tracking)

    def process_batch(
        self, items: Sequence[tuple[Any, Tracking]], tracking: Tracking
    ) -> None:
        """Fold a batch of events, then write rows and ``tracking`` at once."""
        # Only datasets registered before this batch have a row to read first.
        first: dict[str, type] = {}
        for event, _ in items:
            first.setdefault(event.key, type(event))
        wanted = [key for key, cls in first.items() if cls is not RegisteredState]
        batch = CatalogBatch(self.view.load_records(wanted) if wanted else {})
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
        rows, stored = batch.rows, batch.stored
        self.view.write_batch(
            [rows[key] for key in batch.changed if key not in stored],
            [rows[key] for key in batch.changed if key in stored],
            tracking,
        )

    @singledispatchmethod
    def apply(self, event: Any, tracking: Tracking, batch: CatalogBatch) -> None:
        """Events the catalog does not show leave it unchanged."""

    @apply.register
    def _(
        self, event: RegisteredState, tracking: Tracking, batch: CatalogBatch
    ) -> None:
        at = event.timestamp.data
        batch.rows[event.key] = CatalogRecord(
            event.key,
            event.tenant,
            event.name,
            event.description,
            event.license,
            text(event.purposes),
            event.retention,
            event.region,
            event.contract_version,
            event.contract_status,
            text(event.tags),
            event.owner,
            event.location,
            text(event.columns),
            ids_text(event.upstream),
            "active",
            event.originator_version,
            at,
            at,
            tracking.notification_id,
        )
        batch.changed[event.key] = None

    @apply.register
    def _(self, event: AmendedState, tracking: Tracking, batch: CatalogBatch) -> None:
        row = batch.touch(event, tracking)
        if row is not None:
            row.description = event.description
            row.license = event.license
            row.purposes = text(event.purposes)
            row.retention = event.retention
            row.region = event.region
            row.contract_version = event.contract_version
            row.contract_status = event.contract_status
            row.tags = text(event.tags)
            row.owner = event.owner
            row.location = event.location
            row.columns = text(event.columns)

    @apply.register
    def _(
        self, event: LineageLinkedState, tracking: Tracking, batch: CatalogBatch
    ) -> None:
        row = batch.touch(event, tracking)
        if row is not None:
            row.upstream = ids_text(event.upstream)

    @apply.register
    def _(self, event: RetiredState, tracking: Tracking, batch: CatalogBatch) -> None:
        row = batch.touch(event, tracking)
        if row is not None:
            row.status = "retired"


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
