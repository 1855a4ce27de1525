"""TenantBudget: a tenant's cost cap and SLO targets, and what the autopilot did.

BudgetSet fixes the period, the cost cap (units per period) and the SLO
targets per route class. UsageRecorded is a batch of metering (one event per
tenant per flush, never one per request) and is an aggregate of its own:
one flush, one new Usage, so API processes flushing at once never conflict
and loading a budget never replays the meter. CapAdjusted, ShapingEngaged /
ShapingReleased, GuardBreached / GuardCleared and IssueOpened / IssueResolved
are the autopilot's actions, each carrying the numbers that caused it, so an
auditor can replay why a tenant was limited. Events hold no floats (the log's
canonical JSON bans them): amounts and rates are Decimals, times are epoch ms.
"""

# ruff: noqa: ARG002 - an @event method's arguments are its event's fields
from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import ConflictError, FieldViolation, ValidationError
from domain.topics import keep_stored_topics

PERIODS = ("hour", "day", "week", "month")
ROUTE_CLASSES = ("query", "command", "export", "embedding", "drill")
LATENCY_BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
"""The meter's latency histogram bounds; an SLO latency target is one of them."""
GUARDS = (
    "cost-burn",
    "slo-page",
    "slo-ticket",
    "replica-lag",
    "export-without-proof",
    "catalog-coverage",
    "er-recall",
)


def dec(value: float, places: int = 6) -> Decimal:
    """A float as a Decimal rounded to ``places`` decimals (events hold no floats)."""
    return Decimal(repr(round(float(value), places)))


def sig(value: float, digits: int = 6) -> Decimal:
    """A float as a Decimal of ``digits`` significant digits.

    For rates that can be tiny: a month's cap is a few millionths of a unit a
    second, which six decimals would round away by a tenth.
    """
    return Decimal(f"{float(value):.{digits}g}")


def decimals(data: Any) -> Any:
    """Floats to Decimals, recursively (events hold no floats)."""
    if isinstance(data, float):
        return dec(data)
    if isinstance(data, dict):
        return {k: decimals(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [decimals(v) for v in data]
    return data


def budget_id(tenant: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"/tenants/{tenant}/budget")


def validate_budget(
    period: str, cost_cap_units: Decimal, slo: dict[str, dict[str, Any]]
) -> None:
    """Every rule of a budget, each violation named by field and rule."""
    bad: list[FieldViolation] = []
    if period not in PERIODS:
        bad.append(FieldViolation("period", "enum", f"one of {', '.join(PERIODS)}"))
    if not cost_cap_units > 0:
        bad.append(FieldViolation("costCapUnits", "positive", "must be above 0"))
    for route_class, target in slo.items():
        where = f"slo.{route_class}"
        if route_class not in ROUTE_CLASSES:
            bad.append(
                FieldViolation(where, "enum", f"one of {', '.join(ROUTE_CLASSES)}")
            )
            continue
        availability = target.get("availability")
        if not isinstance(availability, Decimal) or not (
            Decimal("0.5") <= availability < 1
        ):
            bad.append(
                FieldViolation(f"{where}.availability", "range", "must be in [0.5, 1)")
            )
        latency = target.get("latency_p95_ms")
        if latency not in LATENCY_BOUNDS_MS:
            bounds = ", ".join(map(str, LATENCY_BOUNDS_MS))
            bad.append(
                FieldViolation(
                    f"{where}.latencyP95Ms", "histogram-bound", f"one of {bounds}"
                )
            )
    if bad:
        raise ValidationError(bad)


class BudgetNotSetError(ConflictError):
    """An autopilot action on a tenant that has no budget."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        super().__init__(f"tenant {tenant} has no budget")


class TenantBudget(Aggregate):
    """One tenant's budget and the autopilot's standing decisions about it."""

    class Opened(Aggregate.Created):
        tenant: str

    @event(Opened)
    def __init__(self, *, tenant: str) -> None:
        self.tenant = tenant
        self.period = ""
        self.cost_cap_units = Decimal(0)
        self.slo: dict[str, dict[str, Any]] = {}
        self.set_at_ms = 0
        self.cap_units_per_s: Decimal | None = None
        """The autopilot's spending cap (None: the budget's own pace suffices)."""
        self.cap_changed_ms = 0
        self.shaping: dict[str, dict[str, Any]] = {}
        """Token buckets by reason (cost-cap, slo-page): rate (req/s), burst."""
        self.guards: dict[str, int] = {}
        """Breached guards and when they breached (epoch ms)."""
        self.issues: dict[str, str] = {}
        """Open issues: guard -> the sink's external id."""

    @staticmethod
    def create_id(tenant: str) -> UUID:
        return budget_id(tenant)

    class BudgetSet(Aggregate.Event):
        period: str
        cost_cap_units: Decimal
        slo: dict[str, dict[str, Any]]
        at_ms: int

    def set_budget(
        self,
        *,
        period: str,
        cost_cap_units: Decimal,
        slo: dict[str, dict[str, Any]],
        at_ms: int,
    ) -> bool:
        """Set the period, cap and SLO targets; False when nothing changes."""
        validate_budget(period, cost_cap_units, slo)
        if (period, cost_cap_units, slo) == (
            self.period,
            self.cost_cap_units,
            self.slo,
        ):
            return False
        self._set(period=period, cost_cap_units=cost_cap_units, slo=slo, at_ms=at_ms)
        return True

    @event(BudgetSet)
    def _set(
        self,
        *,
        period: str,
        cost_cap_units: Decimal,
        slo: dict[str, dict[str, Any]],
        at_ms: int,
    ) -> None:
        self.period = period
        self.cost_cap_units = cost_cap_units
        self.slo = slo
        self.set_at_ms = at_ms

    class CapAdjusted(Aggregate.Event):
        old: Decimal | None
        new: Decimal | None
        reason: str
        burn_rate: Decimal
        evidence: dict[str, Any]
        at_ms: int

    def adjust_cap(
        self,
        *,
        new: Decimal | None,
        reason: str,
        burn_rate: Decimal,
        evidence: dict[str, Any],
        at_ms: int,
    ) -> None:
        """Lower (or raise, or lift with None) the spending cap, saying why."""
        self._require_budget()
        self._adjust(
            old=self.cap_units_per_s,
            new=new,
            reason=reason,
            burn_rate=burn_rate,
            evidence=evidence,
            at_ms=at_ms,
        )

    @event(CapAdjusted)
    def _adjust(
        self,
        *,
        old: Decimal | None,
        new: Decimal | None,
        reason: str,
        burn_rate: Decimal,
        evidence: dict[str, Any],
        at_ms: int,
    ) -> None:
        self.cap_units_per_s = new
        self.cap_changed_ms = at_ms

    class ShapingEngaged(Aggregate.Event):
        rate: Decimal
        burst: Decimal
        reason: str
        evidence: dict[str, Any]
        at_ms: int

    @event(ShapingEngaged)
    def engage_shaping(
        self,
        *,
        rate: Decimal,
        burst: Decimal,
        reason: str,
        evidence: dict[str, Any],
        at_ms: int,
    ) -> None:
        """Put (or change) a token bucket of ``rate`` req/s on the tenant."""
        self.shaping[reason] = {"rate": rate, "burst": burst}

    class ShapingReleased(Aggregate.Event):
        reason: str
        evidence: dict[str, Any]
        at_ms: int

    @event(ShapingReleased)
    def release_shaping(
        self, *, reason: str, evidence: dict[str, Any], at_ms: int
    ) -> None:
        self.shaping.pop(reason, None)

    def effective_shaping(self) -> dict[str, Any] | None:
        """The tightest bucket in force (rate, burst, reason), if any."""
        if not self.shaping:
            return None
        reason, rule = min(self.shaping.items(), key=lambda kv: kv[1]["rate"])
        return {**rule, "reason": reason}

    class GuardBreached(Aggregate.Event):
        guard: str
        evidence: dict[str, Any]
        at_ms: int

    @event(GuardBreached)
    def breach(self, *, guard: str, evidence: dict[str, Any], at_ms: int) -> None:
        self.guards[guard] = at_ms

    class GuardCleared(Aggregate.Event):
        guard: str
        evidence: dict[str, Any]
        at_ms: int

    @event(GuardCleared)
    def clear(self, *, guard: str, evidence: dict[str, Any], at_ms: int) -> None:
        self.guards.pop(guard, None)

    class IssueOpened(Aggregate.Event):
        guard: str
        external_id: str
        evidence_links: list[str]

    @event(IssueOpened)
    def issue_opened(
        self, *, guard: str, external_id: str, evidence_links: list[str]
    ) -> None:
        self.issues[guard] = external_id

    class IssueResolved(Aggregate.Event):
        guard: str
        external_id: str

    @event(IssueResolved)
    def issue_resolved(self, *, guard: str, external_id: str) -> None:
        self.issues.pop(guard, None)

    def _require_budget(self) -> None:
        if not self.period:
            raise BudgetNotSetError(self.tenant)


keep_stored_topics(__name__, stored_as="domain.budget")
