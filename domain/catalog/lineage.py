"""A tenant's lineage graph: the consistency boundary for "lineage never cycles".

Each dataset records its own upstream links, but acyclicity is a rule over the
whole graph, so concurrent links must conflict. One graph aggregate per tenant
makes them conflict on its version (see docs/adr/0003-lineage-consistency.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import LineageCycleError
from domain.topics import keep_stored_topics

if TYPE_CHECKING:
    from collections.abc import Sequence


class LineageGraph(Aggregate):
    """Upstream edges of every dataset of one tenant (downstream -> upstream)."""

    class Started(Aggregate.Created):
        tenant: str

    class EdgesAdded(Aggregate.Event):
        downstream: UUID
        upstream: tuple[UUID, ...]

    @staticmethod
    def create_id(tenant: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/tenants/{tenant}/lineage")

    @event(Started)
    def __init__(self, *, tenant: str) -> None:
        self.tenant = tenant
        # Hex strings, not UUIDs: snapshots store this dict as JSON (str keys).
        self.edges: dict[str, list[str]] = {}

    def upstream_of(self, node: UUID) -> tuple[UUID, ...]:
        """The direct upstream datasets of ``node``."""
        return tuple(UUID(u) for u in self.edges.get(node.hex, ()))

    def add_edges(self, downstream: UUID, upstream: Sequence[UUID]) -> None:
        """Record that ``upstream`` feed ``downstream``; refuse any cycle."""
        new = [u for u in upstream if u.hex not in self.edges.get(downstream.hex, ())]
        if not new:
            return
        for u in new:
            path = self._path(u, downstream)
            if path is not None:
                raise LineageCycleError((downstream, *path))
        self._add(downstream=downstream, upstream=tuple(new))

    @event(EdgesAdded)
    def _add(self, *, downstream: UUID, upstream: tuple[UUID, ...]) -> None:
        links = self.edges.setdefault(UUID(str(downstream)).hex, [])
        links.extend(UUID(str(u)).hex for u in upstream)

    def _path(self, start: UUID, goal: UUID) -> list[UUID] | None:
        """An upstream walk from start to goal, if there is one (iterative DFS)."""
        parents: dict[str, str | None] = {start.hex: None}
        stack = [start.hex]
        while stack:
            node = stack.pop()
            if node == goal.hex:
                path = [node]
                while (parent := parents[path[-1]]) is not None:
                    path.append(parent)
                return [UUID(n) for n in reversed(path)]
            for up in self.edges.get(node, ()):
                if up not in parents:
                    parents[up] = node
                    stack.append(up)
        return None


keep_stored_topics(__name__, stored_as="domain.lineage")
