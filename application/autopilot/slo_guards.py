"""Guards: a breach or clear is an event on the tenant's budget and opens or
resolves one issue per guard per tenant (through application.autopilot.incidents)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from application.autopilot.actions import Action
from domain.autopilot.budget import budget_id, decimals

if TYPE_CHECKING:
    from application.autopilot.budgets import Budgets
    from application.autopilot.tenant_burn import TenantBurn

log = structlog.get_logger("conductor.autopilot")


class IncidentSink(Protocol):
    """Where breached guards become issues (application.autopilot.incidents)."""

    def breach(
        self,
        tenant: str,
        guard: str,
        *,
        title: str,
        body: str,
        labels: list[str],
        evidence: dict[str, Any],
        now: float,
    ) -> Any: ...

    def clear(
        self, tenant: str, guard: str, *, evidence: dict[str, Any], now: float
    ) -> Any: ...


class Guards:
    """Guard state lives in the budgets; issues in the incident store."""

    def __init__(self, budgets: Budgets, incidents: IncidentSink | None) -> None:
        self.budgets = budgets
        self.incidents = incidents
        self._asserted: set[tuple[str, str]] = set()
        """(tenant, guard) whose issue this process has made sure of."""

    def burn(self, tenant: str, burn: TenantBurn, now_s: float) -> list[Action]:
        """The cost and SLO guards of one tick's burn."""
        out = []
        for guard, on in (
            ("cost-burn", burn.cost_breach),
            ("slo-page", burn.page),
            ("slo-ticket", burn.ticket),
        ):
            action = self.set(
                tenant, guard, on=on, evidence=burn.evidence(), now_s=now_s
            )
            if action is not None:
                out.append(action)
        return out

    def set(
        self,
        tenant: str,
        guard: str,
        *,
        on: bool,
        evidence: dict[str, Any],
        now_s: float,
    ) -> Action | None:
        """Breach or clear a guard when its state changes; open/resolve its issue."""
        budget = self.budgets.budget(tenant)
        breached = budget is not None and guard in budget.guards
        if on == breached:
            if on and (tenant, guard) not in self._asserted:
                # once per process: a crash between the event and the incident
                # must not leave a breach without its issue (breach dedups)
                links = self._breach_links(tenant, guard)
                self._open_issue(tenant, guard, evidence, links, now_s)
            return None
        at_ms = int(now_s * 1000)
        recorded = decimals(evidence)
        if on:
            _, position = self.budgets.act(
                tenant, lambda b: b.breach(guard=guard, evidence=recorded, at_ms=at_ms)
            )
        else:
            _, position = self.budgets.act(
                tenant, lambda b: b.clear(guard=guard, evidence=recorded, at_ms=at_ms)
            )
        links = self._links(position)
        if on:
            self._open_issue(tenant, guard, evidence, links, now_s)
        elif self.incidents is not None:
            full = {**evidence, "links": links}
            self.incidents.clear(tenant, guard, evidence=full, now=now_s)
        kind = "guard-breached" if on else "guard-cleared"
        log.info(kind, tenant=tenant, guard=guard, position=position)
        return Action(now_s, tenant, kind, guard, position, {"links": links})

    def _open_issue(
        self,
        tenant: str,
        guard: str,
        evidence: dict[str, Any],
        links: list[str],
        now_s: float,
    ) -> None:
        self._asserted.add((tenant, guard))
        if self.incidents is None:
            return
        self.incidents.breach(
            tenant,
            guard,
            title=f"[conductor] {guard} breached for tenant {tenant}",
            body=_body(tenant, guard, evidence, links),
            labels=["conductor", "autopilot", guard],
            evidence={**evidence, "links": links},
            now=now_s,
        )

    def _breach_links(self, tenant: str, guard: str) -> list[str]:
        """The chain link of the guard's standing GuardBreached event."""
        entries = self.budgets.event_log.entries_for(budget_id(tenant))
        for entry in reversed(entries):
            if (
                entry.topic.endswith("GuardBreached")
                and json.loads(entry.state).get("guard") == guard
            ):
                return [f"log:{entry.position}:sha256:{entry.hash}"]
        return []

    def _links(self, position: int | None) -> list[str]:
        if position is None:
            return []
        entries = self.budgets.event_log.entries(after=position - 1, limit=1)
        return [f"log:{e.position}:sha256:{e.hash}" for e in entries]


def _body(tenant: str, guard: str, evidence: dict[str, Any], links: list[str]) -> str:
    lines = [f"Guard `{guard}` breached for tenant `{tenant}`.", "", "Evidence:"]
    lines += [f"- {link}" for link in links]
    for alert in evidence.get("alerts", []):
        lines.append(f"- alert {alert}")
    cost = evidence.get("cost")
    if isinstance(cost, dict):
        lines.append(
            f"- cost burn 1h {cost['burn'].get('1h')}, projected "
            f"{cost['projectedUnits']} units, remaining {cost['remainingUnits']}"
        )
    return "\n".join(lines)
