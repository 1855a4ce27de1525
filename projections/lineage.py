"""The lineage graph read model, for graph stores (Neo4j) beside the SQL catalog.

The catalog view keeps lineage in SQL tables with recursive queries (the
embedded default). When a graph database is configured, this projection keeps
a copy there; it is rebuildable from the log like every projection.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from domain.catalog.dataset import Dataset

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from projections.catalog import LineageGraphView


@dataclass
class LineageChanges:
    """A batch of events folded into final node properties and upstream sets."""

    nodes: dict[UUID, dict[str, str]] = field(default_factory=dict)
    upstream: dict[UUID, tuple[UUID, ...]] = field(default_factory=dict)


class LineageView(TrackingRecorder):
    """A lineage store the LineageProjection writes and the API reads."""

    @abstractmethod
    def apply(
        self, changes: LineageChanges, tracking: Tracking, tip_hash: str | None = None
    ) -> None:
        """Write the folded changes and the tracking position atomically, and
        with them ``tip_hash``, the log's chain hash at that position, if given
        (so a follower can tell later whether the log still holds what it
        applied; see adapters.dr.lineage_follower)."""

    @abstractmethod
    def tip(self, application_name: str) -> tuple[int, str] | None:
        """(position, chain hash) kept by the last apply that gave a hash."""

    @abstractmethod
    def lineage(
        self, tenant: str, root: UUID, direction: Literal["up", "down"], depth: int
    ) -> LineageGraphView:
        """Walk the lineage from ``root`` up to ``depth`` hops."""

    @abstractmethod
    def reset(self) -> None:
        """Drop everything (before a rebuild)."""

    def close(self) -> None:
        """Release connections (graph stores hold a driver)."""


class LineageProjection(Projection[LineageView]):
    """Folds Dataset events into graph nodes and DERIVED_FROM edges."""

    name = "lineage"
    topics = tuple(
        get_topic(cls)
        for cls in (Dataset.Registered, Dataset.LineageLinked, Dataset.Retired)
    )

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.process_batch([(domain_event, tracking)], tracking)

    def process_batch(
        self, items: Sequence[tuple[Any, Tracking]], tracking: Tracking
    ) -> None:
        changes = LineageChanges()
        for event, _ in items:
            self.fold(event, changes)
        self.view.apply(changes, tracking)

    @singledispatchmethod
    def fold(self, event: Any, changes: LineageChanges) -> None:
        """Other events do not touch the graph."""

    @fold.register
    def _(self, event: Dataset.Registered, changes: LineageChanges) -> None:
        changes.nodes[event.originator_id] = {
            "tenant": event.tenant,
            "name": event.name,
            "status": "active",
        }
        changes.upstream[event.originator_id] = tuple(event.upstream)

    @fold.register
    def _(self, event: Dataset.LineageLinked, changes: LineageChanges) -> None:
        changes.upstream[event.originator_id] = tuple(event.upstream)

    @fold.register
    def _(self, event: Dataset.Retired, changes: LineageChanges) -> None:
        changes.nodes.setdefault(event.originator_id, {})["status"] = "retired"
