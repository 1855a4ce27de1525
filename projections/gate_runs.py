"""The gate runs read model: what each repository's newest recorded CI gate run named.

A ``CatalogGateRan.Ran`` event (``conductor catalog gate --record``) says which
datasets a repository used at a commit. A repository's current use is its
newest recorded run, by log position: the log cannot order commits, and a
repository that stops naming a dataset stops using it. The view keeps one row
per (tenant, repository): that run's id, commit, position and dataset names.
Catalog coverage counts those names as active datasets (source ``gate``).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID  # noqa: TC003 - a dataclass field, kept at runtime

from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from domain.catalog.gate import CatalogGateRan

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass(frozen=True, slots=True)
class RepoUse:
    """A repository's newest recorded gate run."""

    tenant: str
    repo: str
    run_id: UUID
    commit: str
    position: int
    datasets: tuple[str, ...]
    failing: tuple[str, ...]


class GateRunsView(TrackingRecorder):
    """What the gate runs projection writes and catalog coverage reads."""

    @abstractmethod
    def write_batch(self, uses: Sequence[RepoUse], tracking: Tracking) -> None:
        """Upsert each repository's row unless the stored run is newer (a
        higher position), and record tracking, in one transaction."""

    @abstractmethod
    def repo_uses(self, tenant: str) -> Sequence[RepoUse]:
        """The tenant's repositories' newest runs, by repository."""

    @abstractmethod
    def tenants(self) -> Sequence[str]:
        """Every tenant with a recorded gate run."""

    @abstractmethod
    def reset(self) -> None:
        """Drop every row and the tracking position."""

    def gate_datasets(self, tenant: str) -> list[str]:
        """The dataset names the tenant's repositories use now, distinct, sorted."""
        return sorted({name for use in self.repo_uses(tenant) for name in use.datasets})

    def close(self) -> None:
        """Release connections of the view's own."""


class GateRunsProjection(Projection[GateRunsView]):
    name = "gate-runs"
    topics = (get_topic(CatalogGateRan.Ran),)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.process_batch([(domain_event, tracking)], tracking)

    def process_batch(
        self, items: Sequence[tuple[Any, Tracking]], tracking: Tracking
    ) -> None:
        newest: dict[tuple[str, str], RepoUse] = {}
        for event, each in items:
            if not isinstance(event, CatalogGateRan.Ran):
                continue
            # items come in log order: a later run of a repository replaces it
            newest[(event.tenant, event.repo)] = RepoUse(
                tenant=event.tenant,
                repo=event.repo,
                run_id=event.originator_id,
                commit=event.commit,
                position=each.notification_id,
                datasets=tuple(event.datasets),
                failing=tuple(event.failing),
            )
        self.view.write_batch(list(newest.values()), tracking)
