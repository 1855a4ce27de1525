"""What one controller tick sees of a tenant: windowed counts, cost and SLO burn."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from application.autopilot.burn import (
    MIN_EVENTS,
    WINDOWS,
    CostBurn,
    cost_burn,
    period_bounds,
)
from application.autopilot.burn import slo_alerts as compute_slo_alerts
from domain.autopilot.usage import Counts

if TYPE_CHECKING:
    from application.autopilot.burn import SloAlert
    from domain.autopilot.usage import BudgetRow


class UsageReadModel(Protocol):
    """What the controller reads (projections.usage.UsageView)."""

    def budgets(self) -> list[BudgetRow]: ...

    def window(
        self, tenant: str, first_minute: int, last_minute: int
    ) -> dict[str, Counts]: ...

    def active_tenants(
        self, first_minute: int, last_minute: int
    ) -> dict[str, Counts]: ...


@dataclass
class TenantBurn:
    """What one tick saw for one tenant."""

    tenant: str
    windows: dict[str, dict[str, Counts]]
    cost: CostBurn
    slo: dict[str, dict[str, dict[str, float]]]
    alerts: list[SloAlert] = field(default_factory=list)

    @property
    def page(self) -> bool:
        return any(a.severity == "page" for a in self.alerts)

    @property
    def ticket(self) -> bool:
        return any(a.severity == "ticket" for a in self.alerts)

    @property
    def cost_breach(self) -> bool:
        return (
            self.cost.burn["1h"] > 1.0
            and self.cost.projected_units
            > self.cost.spent_units + self.cost.remaining_units
        )

    def total(self, window: str) -> Counts:
        out = Counts()
        for counts in self.windows[window].values():
            out.add(counts)
        return out

    def unit_price(self) -> float:
        """Units per served request over the last hour (1 when unknown)."""
        hour = self.total("1h")
        served = hour.requests - hour.throttled
        return hour.units / served if served > 0 and hour.units > 0 else 1.0

    def evidence(self) -> dict[str, Any]:
        return {
            "cost": self.cost.to_json(),
            "sloBurn": {
                w: {
                    rc: {k: round(v, 3) for k, v in slis.items()}
                    for rc, slis in per.items()
                }
                for w, per in self.slo.items()
            },
            "alerts": [
                f"{a.severity}:{a.route_class}.{a.sli} {a.long_burn:.1f}x/"
                f"{a.long_window} {a.short_burn:.1f}x/{a.short_window}"
                for a in self.alerts
            ],
            "requests5m": self.total("5m").to_json(),
        }


def measure(
    view: UsageReadModel,
    row: BudgetRow,
    now_s: float,
    *,
    min_events: int = MIN_EVENTS,
) -> TenantBurn:
    """Read the windows and the period's spend for one tenant; compute burns."""
    minute = int(now_s // 60)
    windows = {
        name: view.window(row.tenant, minute - seconds // 60 + 1, minute)
        for name, seconds in WINDOWS.items()
    }
    start, _ = period_bounds(row.period, now_s)
    since = max(start, row.set_at_ms / 1000)
    spent = sum(
        c.units for c in view.window(row.tenant, int(start // 60), minute).values()
    )
    cost = cost_burn(
        cap_units=row.cost_cap_units,
        period=row.period,
        now_s=now_s,
        spent_in_period=spent,
        units_by_window={
            name: sum(c.units for c in per.values()) for name, per in windows.items()
        },
        since_s=since,
    )
    slo, alerts = compute_slo_alerts(windows, row.slo, min_events=min_events)
    return TenantBurn(row.tenant, windows, cost, slo, alerts)
