"""/console/budgets: the signed-in tenant's budget, spend and burn per window
over time, the autopilot's caps and shaping with their reasons and evidence,
and its incidents.

The current figures are the API's: the budget through the same
``_budget_json`` as GET /v1/tenants/{t}/budget, the burn from the burn read
model as GET /burn reads it. The burn over time is the autopilot's own
``measure`` (the function the burn projection runs) over the usage read
model, as of each of the last hour's five-minute marks. The actions are the
budget's events in the log; the incidents the outbox's, as GET /v1/incidents
lists them. Only the token's tenant is shown: the API answers no other.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.response import Template

from api.console.session import ConsoleUser, require_scope
from api.controllers.budget import _budget_json  # the API's own figures
from api.controllers.incidents import incident_out
from api.wiring.autopilot import AutopilotBundle
from application.autopilot.burn import WINDOWS
from application.autopilot.tenant_burn import measure
from domain.autopilot.budget import TenantBudget, budget_id

if TYPE_CHECKING:
    from projections.burn import BurnRow

SCOPES = ("budget.admin", "audit.read")
"""GET /burn's guard."""
POINTS = 12
STEP_S = 300
"""The burn chart: twelve points five minutes apart, ending at the burn's asOf."""
ACTIONS: dict[type[Any], str] = {
    TenantBudget.BudgetSet: "budget set",
    TenantBudget.CapAdjusted: "cap adjusted",
    TenantBudget.ShapingEngaged: "shaping engaged",
    TenantBudget.ShapingReleased: "shaping released",
    TenantBudget.GuardBreached: "guard breached",
    TenantBudget.GuardCleared: "guard cleared",
    TenantBudget.IssueOpened: "issue opened",
    TenantBudget.IssueResolved: "issue resolved",
}
ACTIONS_SHOWN = 50


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def burn_json(row: BurnRow) -> dict[str, Any]:
    """The burn as GET /v1/tenants/{t}/burn answers it."""
    return {
        "cost": row.cost,
        "slo": row.slo,
        "alerts": row.alerts,
        "page": row.page,
        "ticket": row.ticket,
        "requests": row.requests,
        "capUnitsPerS": row.cap_units_per_s,
        "shaping": row.shaping,
        "asOf": _iso(row.as_of_ms),
        "position": row.position,
    }


def burn_history(
    autopilot: AutopilotBundle, tenant: str, as_of_ms: int
) -> dict[str, Any]:
    """Spend and cost burn per window at each mark (measure over usage)."""
    row = autopilot.usage.load_budgets([budget_id(tenant)]).get(budget_id(tenant))
    times: list[float] = []
    burns: dict[str, list[float]] = {w: [] for w in WINDOWS}
    spent: list[float] = []
    if row is None or not row.period:
        return {"t": times, "burn": burns, "spent": spent}
    end_s = as_of_ms / 1000
    for i in range(POINTS - 1, -1, -1):
        at = end_s - i * STEP_S
        cost = measure(autopilot.usage, row, at).cost.to_json()  # as GET /burn
        times.append(at)
        spent.append(cost["spentUnits"])
        for window in WINDOWS:
            burns[window].append(cost["burn"][window])
    return {"t": times, "burn": burns, "spent": spent}


def actions(autopilot: AutopilotBundle, tenant: str) -> list[dict[str, Any]]:
    """The budget's decisions in the log, newest first, with reason and evidence."""
    found = []
    for event in autopilot.budgets.events.get(budget_id(tenant), desc=True):
        kind = ACTIONS.get(type(event))
        if kind is None:
            continue
        data = event.__dict__
        found.append(
            {
                "kind": kind,
                "version": event.originator_version,
                "at": _iso(data.get("at_ms") or data["timestamp"].timestamp() * 1000),
                "reason": data.get("reason") or data.get("guard") or "",
                "detail": {
                    k: str(v)
                    for k, v in data.items()
                    if k in {"old", "new", "rate", "burst", "burn_rate", "external_id"}
                },
                "evidence": data.get("evidence") or data.get("evidence_links") or {},
            }
        )
        if len(found) == ACTIONS_SHOWN:
            break
    return found


def budget_figures(autopilot: AutopilotBundle, tenant: str) -> dict[str, Any]:
    """Everything the page shows, as JSON (the chart refreshes from it)."""
    budget = autopilot.budgets.budget(tenant)
    row = autopilot.burn.burn(tenant)
    return {
        "tenant": tenant,
        "budget": _budget_json(budget) if budget and budget.period else None,
        "burn": burn_json(row) if row else None,
        "history": burn_history(autopilot, tenant, row.as_of_ms) if row else None,
        "windows": list(WINDOWS),
    }


class BudgetPages(Controller):
    """The tenant's budget dashboard and its JSON refresh."""

    path = "/budgets"

    @get("/", name="console-budgets", sync_to_thread=True)
    def dashboard(
        self, user: ConsoleUser, autopilot: NamedDependency[AutopilotBundle]
    ) -> Template:
        """Budget, burn (now and over time), actions and incidents."""
        require_scope(user, *SCOPES)
        incidents = autopilot.incidents.list(user.tenant, "all")
        return Template(
            "budget/index.html",
            context={
                "user": user,
                "f": budget_figures(autopilot, user.tenant),
                "actions": actions(autopilot, user.tenant),
                "open": [incident_out(i) for i in incidents if i.resolved_at is None],
                "resolved": [
                    incident_out(i) for i in incidents if i.resolved_at is not None
                ],
            },
            headers={"Cache-Control": "no-store"},
        )

    @get("/data", name="console-budgets-data", sync_to_thread=True)
    def data(
        self, user: ConsoleUser, autopilot: NamedDependency[AutopilotBundle]
    ) -> dict[str, Any]:
        """The figures as JSON: the charts and the table refresh from it."""
        require_scope(user, *SCOPES)
        return budget_figures(autopilot, user.tenant)
