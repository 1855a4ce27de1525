"""The usage read model: metering in per-minute buckets, and the budgets.

UsageRecorded batches fold into (tenant, minute, route class) buckets, summed
by the view on upsert; the burn windows (5 m .. 3 d) and period spend are
sums over bucket ranges. BudgetSet and the autopilot's standing decisions
fold into one row per tenant, which the controller walks every tick.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from domain.autopilot.budget import TenantBudget
from domain.autopilot.usage import BUCKETS, BudgetRow, Counts, Usage

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID


@dataclass
class UsageChanges:
    """One batch of events, folded: bucket increments and budget rows."""

    buckets: dict[tuple[str, int, str], Counts] = field(default_factory=dict)
    budgets: dict[UUID, BudgetRow] = field(default_factory=dict)


class UsageView(TrackingRecorder):
    """What the usage projection writes and the controller and API read."""

    @abstractmethod
    def load_budgets(self, ids: Sequence[UUID]) -> dict[UUID, BudgetRow]:
        """Current rows for these budget ids."""

    @abstractmethod
    def apply(self, changes: UsageChanges, tracking: Tracking) -> None:
        """Add the bucket increments, upsert the budgets, track: one transaction."""

    @abstractmethod
    def budgets(self) -> list[BudgetRow]:
        """Every tenant that has a budget (a period and a cap)."""

    @abstractmethod
    def window(
        self, tenant: str, first_minute: int, last_minute: int
    ) -> dict[str, Counts]:
        """Route class -> counts summed over the minutes [first, last]."""

    @abstractmethod
    def active_tenants(self, first_minute: int, last_minute: int) -> dict[str, Counts]:
        """Tenant -> all classes summed over the minutes (tenants with traffic)."""

    @abstractmethod
    def purge(self, before_minute: int) -> int:
        """Drop buckets older than ``before_minute``; returns rows dropped."""

    @abstractmethod
    def reset(self) -> None:
        """Drop every row and the tracking position."""

    def close(self) -> None:
        """Release connections of the view's own."""


def counts_from_event(data: dict[str, Any]) -> Counts:
    """One route class's entry of a UsageRecorded event as Counts."""
    hist = [int(v) for v in data.get("hist", [])]
    return Counts(
        requests=int(data.get("requests", 0)),
        errors=int(data.get("errors", 0)),
        throttled=int(data.get("throttled", 0)),
        units=float(data.get("units", 0)),
        hist=hist + [0] * (BUCKETS - len(hist)),
    )


class UsageFold:
    """Folds usage and budget events into UsageChanges (the usage and burn
    projections share it)."""

    @singledispatchmethod
    def apply(self, event: Any, changes: UsageChanges) -> None:
        """Other events leave the usage unchanged."""

    @apply.register
    def _(self, event: Usage.UsageRecorded, changes: UsageChanges) -> None:
        minute = event.end_ms // 60_000
        for route_class, data in event.classes.items():
            key = (event.tenant, minute, route_class)
            bucket = changes.buckets.setdefault(key, Counts())
            bucket.add(counts_from_event(data))

    @apply.register
    def _(self, event: TenantBudget.Opened, changes: UsageChanges) -> None:
        changes.budgets[event.originator_id] = BudgetRow(
            id=event.originator_id, tenant=event.tenant
        )

    @apply.register
    def _(self, event: TenantBudget.BudgetSet, changes: UsageChanges) -> None:
        row = changes.budgets.get(event.originator_id)
        if row is not None:
            row.period = event.period
            row.cost_cap_units = float(event.cost_cap_units)
            row.slo = event.slo
            row.set_at_ms = event.at_ms

    @apply.register
    def _(self, event: TenantBudget.CapAdjusted, changes: UsageChanges) -> None:
        row = changes.budgets.get(event.originator_id)
        if row is not None:
            row.cap_units_per_s = None if event.new is None else float(event.new)

    @apply.register
    def _(self, event: TenantBudget.ShapingEngaged, changes: UsageChanges) -> None:
        row = changes.budgets.get(event.originator_id)
        if row is not None:
            row.shaping = {
                **(row.shaping or {}),
                event.reason: {"rate": float(event.rate), "burst": float(event.burst)},
            }

    @apply.register
    def _(self, event: TenantBudget.ShapingReleased, changes: UsageChanges) -> None:
        row = changes.budgets.get(event.originator_id)
        if row is not None and row.shaping:
            row.shaping.pop(event.reason, None)
            row.shaping = row.shaping or None


class UsageProjection(UsageFold, Projection[UsageView]):
    name = "usage"
    topics = tuple(
        get_topic(cls)
        for cls in (
            Usage.UsageRecorded,
            TenantBudget.Opened,
            TenantBudget.BudgetSet,
            TenantBudget.CapAdjusted,
            TenantBudget.ShapingEngaged,
            TenantBudget.ShapingReleased,
        )
    )

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.process_batch([(domain_event, tracking)], tracking)

    def process_batch(
        self, items: Sequence[tuple[Any, Tracking]], tracking: Tracking
    ) -> None:
        changes = UsageChanges()
        ids = list(
            dict.fromkeys(
                event.originator_id
                for event, _ in items
                if isinstance(event, TenantBudget.Event)
            )
        )
        if ids:
            changes.budgets = self.view.load_budgets(ids)
        for event, _ in items:
            self.apply(event, changes)
        self.view.apply(changes, tracking)
