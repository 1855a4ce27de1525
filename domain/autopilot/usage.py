"""Metering values: usage counts with a latency histogram, the Usage aggregate,
and the budget row the read model keeps for the controller."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate, event

from domain.autopilot.budget import LATENCY_BOUNDS_MS
from domain.topics import keep_stored_topics

if TYPE_CHECKING:
    from uuid import UUID

BUCKETS = len(LATENCY_BOUNDS_MS) + 1
"""Histogram slots: one per bound (at or under it) and one above the last."""


def latency_slot(ms: float) -> int:
    """The histogram slot of one request's latency."""
    for slot, bound in enumerate(LATENCY_BOUNDS_MS):
        if ms <= bound:
            return slot
    return len(LATENCY_BOUNDS_MS)


@dataclass
class Counts:
    """Metering summed over some span: one route class, or all of them."""

    requests: int = 0
    errors: int = 0
    throttled: int = 0
    units: float = 0.0
    hist: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def add(self, other: Counts) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.throttled += other.throttled
        self.units += other.units
        self.hist = [a + b for a, b in zip(self.hist, other.hist, strict=True)]

    def slower_than(self, bound_ms: int) -> int:
        """Requests above ``bound_ms`` (one of the histogram bounds)."""
        return sum(self.hist[LATENCY_BOUNDS_MS.index(bound_ms) + 1 :])

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "throttled": self.throttled,
            "units": round(self.units, 6),
        }


@dataclass
class BudgetRow:
    """A tenant's budget as the controller and GET /burn read it.

    Keyed by the budget's aggregate id: only the opening event names the
    tenant. A row with no period (the platform's guards) has no budget yet.
    """

    id: UUID
    tenant: str
    period: str = ""
    cost_cap_units: float = 0.0
    slo: dict[str, dict[str, Any]] = field(default_factory=dict)
    set_at_ms: int = 0
    cap_units_per_s: float | None = None
    shaping: dict[str, Any] | None = None
    """Token buckets in force by reason (cost-cap, slo-page): rate, burst."""


class Usage(Aggregate):
    """One flush of one process's meter for one tenant (immutable)."""

    class UsageRecorded(Aggregate.Created):
        tenant: str
        start_ms: int
        end_ms: int
        classes: dict[str, dict[str, Any]]
        """route class -> requests, errors, throttled, units (Decimal), hist."""

    @event(UsageRecorded)
    def __init__(
        self,
        *,
        tenant: str,
        start_ms: int,
        end_ms: int,
        classes: dict[str, dict[str, Any]],
    ) -> None:
        self.tenant = tenant
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.classes = classes


keep_stored_topics(__name__, stored_as="domain.usage")
