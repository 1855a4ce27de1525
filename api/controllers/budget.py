"""/v1/tenants/{tenant}/budget and /burn: a tenant's budget, and how fast it burns.

The burn is the burn read model's (projections/burn.py): each tenant's burns
as of its newest usage, not recomputed per request.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from api.auth import requires
from api.problems import Problem
from api.requests import principal, read_model
from api.wiring.autopilot import AutopilotBundle
from api.wiring.core import Core
from domain.autopilot.budget import TenantBudget, dec

Tenant = FromPath[str]


# Edge bounds (400, rule "range") that no real budget comes near: they keep
# absurd numbers (1e308 units, 10**24 ms) out of the log and the autopilot's
# arithmetic. The domain's own rules (availability in [0.5, 1), a latency that
# is a histogram bound, a positive cap) still answer 422 inside them, all at
# once; availability needs no edge bound (JSON has no NaN, and the domain's
# range refuses the rest).
MAX_COST_CAP_UNITS = 1e12
MAX_LATENCY_MS = 3_600_000
RouteClass = Annotated[str, msgspec.Meta(max_length=32)]


class SloIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    availability: float
    """Share of requests that must not fail (5xx), e.g. 0.999."""
    latency_p95_ms: Annotated[int, msgspec.Meta(ge=1, le=MAX_LATENCY_MS)]
    """95 % of requests answer within this (one of the meter's bounds)."""


class BudgetIn(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    period: Annotated[str, msgspec.Meta(max_length=16)]
    """hour, day, week or month (UTC calendar periods)."""
    cost_cap_units: Annotated[float, msgspec.Meta(le=MAX_COST_CAP_UNITS)]
    """Units the tenant may spend per period (at most 10^12)."""
    slo: Annotated[dict[RouteClass, SloIn], msgspec.Meta(max_length=16)] = (
        msgspec.field(default_factory=dict)
    )
    """Route class (query, command, export, embedding, drill) -> targets."""


def _budget_json(budget: TenantBudget) -> dict[str, Any]:
    return {
        "tenant": budget.tenant,
        "version": budget.version,
        "period": budget.period,
        "costCapUnits": float(budget.cost_cap_units),
        "slo": {
            rc: {
                "availability": float(t["availability"]),
                "latencyP95Ms": int(t["latency_p95_ms"]),
            }
            for rc, t in budget.slo.items()
        },
        "capUnitsPerS": None
        if budget.cap_units_per_s is None
        else float(budget.cap_units_per_s),
        "shaping": {
            reason: {"rate": float(r["rate"]), "burst": float(r["burst"])}
            for reason, r in budget.shaping.items()
        },
        "guards": sorted(budget.guards),
        "issues": dict(budget.issues),
    }


def _own(request: Request[Any, Any, Any], tenant: str) -> str:
    """The path's tenant must be the token's (other tenants do not exist here)."""
    if principal(request).tenant != tenant:
        raise Problem(404, f"tenant {tenant} not found")
    return tenant


def _budgets(autopilot: AutopilotBundle) -> Any:
    if autopilot.budgets is None:
        raise Problem(503, "budgets are not available in this process")
    return autopilot.budgets


class BudgetController(Controller):
    path = "/v1/tenants/{tenant:str}"
    tags = ["autopilot"]  # noqa: RUF012

    @put(
        "/budget",
        operation_id="SetBudget",
        sync_to_thread=True,
        guards=[requires("budget.admin")],
    )
    def set_budget(
        self,
        request: Request[Any, Any, Any],
        tenant: Tenant,
        data: JSONBody[BudgetIn],
        autopilot: NamedDependency[AutopilotBundle],
    ) -> Response[dict[str, Any]]:
        """Set the period, cost cap and SLO targets (201 first time, then 200)."""
        _own(request, tenant)
        budgets = _budgets(autopilot)
        slo = {
            rc: {
                "availability": dec(t.availability, 6),
                "latency_p95_ms": t.latency_p95_ms,
            }
            for rc, t in data.slo.items()
        }
        result = budgets.set_budget(
            tenant,
            period=data.period,
            cost_cap_units=Decimal(repr(float(data.cost_cap_units))),
            slo=slo,
            at_ms=int(time.time() * 1000),
        )
        budget = budgets.budget(tenant)
        headers = {"x-ig-position": str(result.position)} if result.position else {}
        return Response(
            _budget_json(budget),
            status_code=201 if result.created else 200,
            headers=headers,
        )

    @get(
        "/budget",
        operation_id="GetBudget",
        sync_to_thread=True,
        guards=[requires("budget.admin", "audit.read")],
    )
    def get_budget(
        self,
        request: Request[Any, Any, Any],
        tenant: Tenant,
        autopilot: NamedDependency[AutopilotBundle],
    ) -> dict[str, Any]:
        """The budget and the autopilot's standing decisions (cap, shaping, guards)."""
        _own(request, tenant)
        budget = _budgets(autopilot).budget(tenant)
        if budget is None or not budget.period:
            raise Problem(404, f"tenant {tenant} has no budget")
        return _budget_json(budget)

    @get(
        "/burn",
        operation_id="GetBurn",
        sync_to_thread=True,
        guards=[requires("budget.admin", "audit.read")],
    )
    def get_burn(
        self,
        request: Request[Any, Any, Any],
        tenant: Tenant,
        core: NamedDependency[Core],
        autopilot: NamedDependency[AutopilotBundle],
    ) -> Response[dict[str, Any]]:
        """Cost burn and SLO error-budget burn over 5 m, 30 m, 1 h, 6 h and 3 d,
        as of the tenant's newest usage (``asOf``), from the burn read model."""
        _own(request, tenant)
        headers = read_model(
            request, core.runners["burn"], core.settings.min_position_wait_s
        )
        row = autopilot.burn.burn(tenant)
        if row is None:
            raise Problem(404, f"tenant {tenant} has no budget")
        body = {
            "tenant": tenant,
            "cost": row.cost,
            "slo": row.slo,
            "alerts": row.alerts,
            "page": row.page,
            "ticket": row.ticket,
            "requests": row.requests,
            "capUnitsPerS": row.cap_units_per_s,
            "shaping": row.shaping,
            "asOf": datetime.fromtimestamp(row.as_of_ms / 1000, UTC).isoformat(),
            "position": row.position,
        }
        return Response(body, headers=headers)
