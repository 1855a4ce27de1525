"""The autopilot: every tick, read the burn, act on budgets, record why.

Cost: when the last hour's spending would exhaust the period's budget, cap
the tenant at the rate that keeps the rest of the period inside it (the cap
becomes a token bucket of cap / units-per-request); lift it, with hysteresis,
once demand falls well under that rate. SLO: when a page fires (SRE-workbook
multi-window burn rates, over windows with enough requests), shape the
heaviest tenant whose request rate is far above its neighbours' mean and a
meaningful share of the shared capacity to that mean (else the page stays an
incident only); release once the page has been
quiet for the dwell time and the tenant no longer pushes against its bucket.
Every action is an event on the tenant's budget with the numbers behind it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from application.autopilot.actions import Action, AutopilotConfig
from application.autopilot.slo_guards import Guards
from application.autopilot.slo_shaping import SloShaper
from application.autopilot.tenant_burn import measure
from domain.autopilot.budget import dec, decimals, sig

if TYPE_CHECKING:
    from application.autopilot.budgets import Budgets
    from application.autopilot.slo_guards import IncidentSink
    from application.autopilot.tenant_burn import TenantBurn, UsageReadModel
    from domain.autopilot.budget import TenantBudget
    from domain.autopilot.usage import BudgetRow


log = structlog.get_logger("conductor.autopilot")


class ShapingRules(Protocol):
    """The shared token-bucket store (adapters.autopilot.shaping_store.ShapingStore)."""

    def engage(
        self, tenant: str, *, rate: float, burst: float, reason: str, now: float
    ) -> None: ...

    def release(self, tenant: str) -> None: ...

    def rules(self) -> dict[str, Any]: ...


class Autopilot:
    """The controller; tick() is what the scheduler job and the simulation call."""

    def __init__(
        self,
        budgets: Budgets,
        view: UsageReadModel,
        shaping: ShapingRules,
        incidents: IncidentSink | None = None,
        config: AutopilotConfig | None = None,
    ) -> None:
        self.budgets = budgets
        self.view = view
        self.shaping = shaping
        self.config = config or AutopilotConfig()
        self.guards = Guards(budgets, incidents)
        self.slo = SloShaper(budgets, view, self.config)
        self.last_burns: dict[str, TenantBurn] = {}

    def tick(self, now_s: float) -> list[Action]:
        """Measure every budgeted tenant and act; returns what was done."""
        actions: list[Action] = []
        rows = self.view.budgets()
        burns = {
            row.tenant: measure(
                self.view, row, now_s, min_events=self.config.min_events
            )
            for row in rows
        }
        self.last_burns = burns
        for row in rows:
            burn = burns[row.tenant]
            actions += self.guards.burn(row.tenant, burn, now_s)
            actions += self._cost(row, burn, now_s)
        actions += self.slo.tick(rows, burns, now_s)
        self._sync_store(rows, now_s)
        return actions

    def set_guard(
        self,
        tenant: str,
        guard: str,
        *,
        on: bool,
        evidence: dict[str, Any],
        now_s: float,
    ) -> Action | None:
        """Breach or clear one guard (the platform's and the jobs' guards too)."""
        return self.guards.set(tenant, guard, on=on, evidence=evidence, now_s=now_s)

    # cost caps

    def _cost(self, row: BudgetRow, burn: TenantBurn, now_s: float) -> list[Action]:
        budget = self.budgets.budget(row.tenant)
        if budget is None:
            return []
        cost = burn.cost
        cap = None if budget.cap_units_per_s is None else float(budget.cap_units_per_s)
        since_change = now_s - budget.cap_changed_ms / 1000
        price = burn.unit_price()
        age = max(now_s - row.set_at_ms / 1000, 1.0)
        # Demand counts what the bucket refused too, and is the higher of the
        # 30 m and 1 h rates: a cap is lifted only when both have come down.
        demand = max(
            (w.units + w.throttled * price) / min(float(seconds), age)
            for w, seconds in ((burn.total("30m"), 1800), (burn.total("1h"), 3600))
        )
        numbers = {
            **cost.to_json(),
            "capUnitsPerS": cap,
            "demandUnitsPerS": round(demand, 6),
            "unitsPerRequest": round(price, 6),
        }
        decision = self._cap_decision(row, burn, cap, demand, since_change)
        if decision is None:
            return []
        new, reason = decision
        return self._set_cap(
            row.tenant, new, reason, cost.burn["1h"], numbers, price, now_s
        )

    def _cap_decision(  # noqa: PLR0911 - a decision table
        self,
        row: BudgetRow,
        burn: TenantBurn,
        cap: float | None,
        demand: float,
        since_change: float,
    ) -> tuple[float | None, str] | None:
        """The new cap (None: lifted) and why, or None to leave it."""
        cfg, cost = self.config, burn.cost
        safe = cost.safe_units_per_s
        if cap is None:
            if not burn.cost_breach:
                return None
            return safe, (
                f"cost burn {cost.burn['1h']:.2f}x over 1h: at this rate the period "
                f"spends {cost.projected_units:.0f} of {row.cost_cap_units:.0f} units;"
                f" capped at {safe:.4f} units/s (remaining {cost.remaining_units:.0f}"
                f" over {cost.remaining_s:.0f}s)"
            )
        if safe < cap * cfg.lower_step:
            return (
                safe,
                f"budget still running out: safe rate {safe:.4f} < cap {cap:.4f}",
            )
        if since_change < cfg.min_dwell_s:
            return None
        if demand < safe * cfg.raise_below:
            return None, (
                f"burn recovered: demand {demand:.4f} units/s under "
                f"{cfg.raise_below:.0%} of the safe rate {safe:.4f}; cap lifted"
            )
        if safe > cap / cfg.lower_step / cfg.lower_step:
            return (
                safe,
                f"budget left grew: safe rate {safe:.4f} > cap {cap:.4f}; raised",
            )
        return None

    def _set_cap(
        self,
        tenant: str,
        new: float | None,
        reason: str,
        burn_rate: float,
        numbers: dict[str, Any],
        price: float,
        now_s: float,
    ) -> list[Action]:
        at_ms = int(now_s * 1000)
        evidence = {k: v for k, v in numbers.items() if v is not None}

        def act(b: TenantBudget) -> None:
            b.adjust_cap(
                new=None if new is None else sig(new),
                reason=reason,
                burn_rate=dec(burn_rate, 4),
                evidence=decimals(evidence),
                at_ms=at_ms,
            )
            if new is None:
                b.release_shaping(
                    reason="cost-cap", evidence=decimals(evidence), at_ms=at_ms
                )
            else:
                rate = max(new / price, self.config.floor_rps / 10)
                b.engage_shaping(
                    rate=dec(rate),
                    burst=dec(max(rate * self.config.burst_s, 1.0)),
                    reason="cost-cap",
                    evidence=decimals(evidence),
                    at_ms=at_ms,
                )

        _, position = self.budgets.act(tenant, act)
        kind = "cap-lifted" if new is None else "cap-adjusted"
        log.info(kind, tenant=tenant, position=position, burn=round(burn_rate, 3))
        numbers = {
            **numbers,
            "newCapUnitsPerS": None if new is None else float(sig(new)),
        }
        return [Action(now_s, tenant, kind, reason, position, numbers)]

    def _sync_store(self, rows: list[BudgetRow], now_s: float) -> None:
        """Make the shared bucket store match the budgets (idempotent)."""
        current = self.shaping.rules()
        for row in rows:
            budget = self.budgets.budget(row.tenant)
            rule = budget.effective_shaping() if budget is not None else None
            have = current.get(row.tenant)
            if rule is None:
                if have is not None:
                    self.shaping.release(row.tenant)
                continue
            rate, burst, reason = (
                float(rule["rate"]),
                float(rule["burst"]),
                rule["reason"],
            )
            if have is None or (
                not math.isclose(float(have.rate), rate) or have.reason != reason
            ):
                self.shaping.engage(
                    row.tenant, rate=rate, burst=burst, reason=reason, now=now_s
                )
