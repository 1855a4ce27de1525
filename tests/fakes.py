"""Hand-written fakes for ports (no mocks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from eventsourcing.persistence import IntegrityError

from projections.catalog import LineageGraphView, LineageNode
from projections.lineage import LineageChanges, LineageView

if TYPE_CHECKING:
    from uuid import UUID

    from eventsourcing.persistence import Tracking


class MemoryLineageView(LineageView):
    """A graph in dicts, with the same fold and tracking rules as Neo4j's."""

    def __init__(self) -> None:
        self.nodes: dict[UUID, dict[str, str]] = {}
        self.upstream: dict[UUID, tuple[UUID, ...]] = {}
        self.position: int | None = None
        self.tips: dict[str, tuple[int, str]] = {}

    def max_tracking_id(self, application_name: str) -> int | None:
        del application_name
        return self.position

    def insert_tracking(self, tracking: Tracking) -> None:
        self.apply(LineageChanges(), tracking)

    def apply(
        self, changes: LineageChanges, tracking: Tracking, tip_hash: str | None = None
    ) -> None:
        if self.position is not None and self.position >= tracking.notification_id:
            raise IntegrityError(tracking)
        for key, props in changes.nodes.items():
            self.nodes.setdefault(key, {}).update(props)
        self.upstream.update(changes.upstream)
        self.position = tracking.notification_id
        if tip_hash is not None:
            self.tips[tracking.application_name] = (tracking.notification_id, tip_hash)

    def tip(self, application_name: str) -> tuple[int, str] | None:
        return self.tips.get(application_name)

    def lineage(
        self, tenant: str, root: UUID, direction: Literal["up", "down"], depth: int
    ) -> LineageGraphView:
        def neighbours(node: UUID) -> tuple[UUID, ...]:
            if direction == "up":
                return self.upstream.get(node, ())
            return tuple(d for d, ups in self.upstream.items() if node in ups)

        seen = {root: 0}
        frontier = [root]
        for hop in range(1, depth + 1):
            frontier = [n for f in frontier for n in neighbours(f) if n not in seen]
            seen.update(dict.fromkeys(frontier, hop))
        found = [n for n in seen if self.nodes.get(n, {}).get("tenant") == tenant]
        return LineageGraphView(
            nodes=sorted(
                (
                    LineageNode(
                        n, self.nodes[n]["name"], self.nodes[n]["status"], seen[n]
                    )
                    for n in found
                ),
                key=lambda n: (n.depth, n.name),
            ),
            edges=sorted(
                (d, u) for d in found for u in self.upstream.get(d, ()) if u in seen
            ),
        )

    def reset(self) -> None:
        self.nodes.clear()
        self.upstream.clear()
        self.position = None
        self.tips.clear()
