"""The burn read model: each tenant's cost and SLO burn per window, as of the
time of its newest usage (or budget change).

UsageRecorded and the budget events fold as for the usage read model (the
same per-minute buckets and budget rows, in tables of this view's own), and
every batch recomputes, for each tenant it touched, the burns over 5 m ..
3 d as of that tenant's newest event: one row per tenant and one per tenant
and window. The rows are a function of the log alone (no clock), so a
rebuild gives the same rows; see docs/adr/0011-dr-state-and-burn-read-models.md.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.projection import Projection

from domain.autopilot.budget import TenantBudget, budget_id
from domain.autopilot.usage import BudgetRow, Usage
from projections.usage import UsageChanges, UsageFold, UsageProjection

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID


@dataclass
class BurnChanges(UsageChanges):
    """One batch folded: usage changes, plus each touched tenant's clock."""

    as_of_ms: dict[UUID, int] = field(default_factory=dict)
    """Budget id -> the newest usage end or budget change in the batch."""
    positions: dict[UUID, int] = field(default_factory=dict)
    """Budget id -> the position of its newest event in the batch."""


@dataclass(frozen=True)
class BurnRow:
    """A tenant's burn as GET /v1/tenants/{t}/burn answers it."""

    tenant: str
    as_of_ms: int
    position: int
    """Log position of the newest event the burn includes."""
    cost: dict[str, Any]
    """CostBurn.to_json(), its ``burn`` by window."""
    slo: dict[str, dict[str, dict[str, float]]]
    """Window -> route class -> availability / latency burn."""
    requests: dict[str, dict[str, dict[str, Any]]]
    """Window -> route class -> requests, errors, throttled, units."""
    alerts: list[str]
    page: bool
    ticket: bool
    cap_units_per_s: float | None
    shaping: dict[str, Any]


class BurnView(TrackingRecorder):
    """What the burn projection writes and GET /v1/tenants/{t}/burn reads."""

    @abstractmethod
    def load_budgets(self, ids: Sequence[UUID]) -> dict[UUID, BudgetRow]:
        """Current budget rows for these budget ids."""

    @abstractmethod
    def apply(self, changes: BurnChanges, tracking: Tracking) -> None:
        """Add the buckets, upsert the budgets (each keeping its newest time),
        recompute the touched tenants' burns as of that time, track: one
        transaction."""

    @abstractmethod
    def burn(self, tenant: str) -> BurnRow | None:
        """The tenant's burn (None: no budget, or nothing folded yet)."""

    @abstractmethod
    def reset(self) -> None:
        """Drop every row and the tracking position."""

    def close(self) -> None:
        """Release connections of the view's own."""


class BurnProjection(UsageFold, Projection[BurnView]):
    name = "burn"
    topics = UsageProjection.topics

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.process_batch([(domain_event, tracking)], tracking)

    def process_batch(
        self, items: Sequence[tuple[Any, Tracking]], tracking: Tracking
    ) -> None:
        changes = BurnChanges()
        touched: dict[UUID, str | None] = {}
        for event, each in items:
            key, at_ms = clock_of(event)
            if key is None:
                continue
            touched.setdefault(key, getattr(event, "tenant", None))
            changes.positions[key] = each.notification_id
            if at_ms is not None:
                changes.as_of_ms[key] = max(changes.as_of_ms.get(key, 0), at_ms)
        if touched:
            changes.budgets = self.view.load_budgets(list(touched))
        for key, tenant in touched.items():
            if key not in changes.budgets and tenant is not None:
                # usage before any budget: a row to keep its clock on
                changes.budgets[key] = BudgetRow(id=key, tenant=tenant)
        for event, _ in items:
            self.apply(event, changes)
        self.view.apply(changes, tracking)


def clock_of(event: Any) -> tuple[UUID | None, int | None]:
    """The budget an event concerns and the time it moves its burn to (None:
    an event that changes the budget row but not the burn's time)."""
    if isinstance(event, Usage.UsageRecorded):
        return budget_id(event.tenant), event.end_ms
    if isinstance(event, TenantBudget.BudgetSet):
        return event.originator_id, event.at_ms
    if isinstance(event, TenantBudget.Event):
        return event.originator_id, None
    return None, None
