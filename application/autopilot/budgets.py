"""Tenant budgets in the shared log: set them, meter usage, record the autopilot."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from application.base import CommandResult, LedgerApplication
from domain.autopilot.budget import TenantBudget, budget_id
from domain.autopilot.usage import Usage

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from decimal import Decimal

    from eventsourcing.utils import Environment, EnvType

PLATFORM = "_platform"
"""The pseudo-tenant of platform-wide guards (replica lag): no real tenant
can have this name (a tenant starts with a letter or digit)."""


class Budgets(LedgerApplication):
    """Commands on TenantBudget and Usage aggregates.

    The controller reads every budgeted tenant's aggregate several times a
    tick, and a budget grows by its guards' breaches and clears for as long
    as the tenant lives: budgets are cached and fast-forwarded (one indexed
    query for the events since) instead of replayed from the start.
    """

    name = "ledger"
    CACHE = 4096

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        cached = {**dict(env or {}), self.AGGREGATE_CACHE_MAXSIZE: str(self.CACHE)}
        return super().construct_env(name, cached)

    def set_budget(
        self,
        tenant: str,
        *,
        period: str,
        cost_cap_units: Decimal,
        slo: dict[str, dict[str, Any]],
        at_ms: int,
    ) -> CommandResult:
        """Create or change a tenant's budget; no event when nothing changes."""
        budget = self.budget(tenant)
        created = budget is None
        if budget is None:
            budget = TenantBudget(tenant=tenant)
        changed = budget.set_budget(
            period=period, cost_cap_units=cost_cap_units, slo=slo, at_ms=at_ms
        )
        if not changed and not created:
            return CommandResult(budget.id, budget.version, None)
        recordings = self.save(budget)
        position = recordings[-1].notification.id if recordings else None
        return CommandResult(budget.id, budget.version, position, created)

    def budget(self, tenant: str) -> TenantBudget | None:
        found = self._load(budget_id(tenant))
        return found if isinstance(found, TenantBudget) else None

    def record_usage(self, batches: Sequence[dict[str, Any]]) -> int | None:
        """One UsageRecorded per batch (tenant, start_ms, end_ms, classes), in
        one transaction; returns the last log position."""
        if not batches:
            return None
        usages = [Usage(**batch) for batch in batches]
        recordings = self.save(*usages)
        return recordings[-1].notification.id if recordings else None

    def act(
        self, tenant: str, action: Callable[[TenantBudget], None]
    ) -> tuple[TenantBudget, int | None]:
        """Apply one autopilot action to the tenant's budget and save it."""
        budget = self.budget(tenant) or TenantBudget(tenant=tenant)
        action(budget)
        recordings = self.save(budget)
        return budget, recordings[-1].notification.id if recordings else None

    # The incidents' recorder (application.autopilot.incidents.IssueRecorder).

    def issue_opened(
        self, *, tenant: str, guard: str, external_id: str, evidence_links: list[str]
    ) -> int | None:
        return self.act(
            tenant,
            lambda b: b.issue_opened(
                guard=guard, external_id=external_id, evidence_links=evidence_links
            ),
        )[1]

    def issue_resolved(
        self, *, tenant: str, guard: str, external_id: str
    ) -> int | None:
        return self.act(
            tenant, lambda b: b.issue_resolved(guard=guard, external_id=external_id)
        )[1]
