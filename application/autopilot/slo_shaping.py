"""SLO shaping: on a page, the heaviest tenant far above its neighbours'
mean is shaped to that mean (one new tenant per 5 minutes, the short
window, so one fix can show before the next); released once the page has
been quiet for the dwell time and the tenant no longer pushes against it.

Shaping exists to protect the other tenants: a tenant with no neighbours, or
whose load is under ``min_capacity_share`` of the shared capacity, is not
throttled for its own page; the page's guard raises the incident instead."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import structlog

from application.autopilot.actions import Action, AutopilotConfig
from domain.autopilot.budget import dec, decimals

if TYPE_CHECKING:
    from application.autopilot.budgets import Budgets
    from application.autopilot.tenant_burn import TenantBurn, UsageReadModel
    from domain.autopilot.budget import TenantBudget
    from domain.autopilot.usage import BudgetRow

log = structlog.get_logger("conductor.autopilot")


class SloShaper:
    """Remembers when a page was last seen and when it last shaped someone."""

    def __init__(
        self, budgets: Budgets, view: UsageReadModel, config: AutopilotConfig
    ) -> None:
        self.budgets = budgets
        self.view = view
        self.config = config
        self.last_page_s: float | None = None
        self.last_shape_s = -math.inf

    def tick(
        self, rows: list[BudgetRow], burns: dict[str, TenantBurn], now_s: float
    ) -> list[Action]:
        """Shape the heaviest tenant on a page; release the quiet ones."""
        if any(b.page for b in burns.values()) or self.last_page_s is None:
            self.last_page_s = now_s
        cfg = self.config
        minute = int(now_s // 60)
        # the last 5 minutes' buckets, the current one partly filled
        span = max(now_s - (minute - 4) * 60, 1.0)
        rates = {
            t: c.requests / span
            for t, c in self.view.active_tenants(minute - 4, minute).items()
        }
        # The rows are current: the tick waited for the projection, and this
        # tick's earlier actions (guards, cost caps) never touch slo-page.
        shaped = {
            r.tenant: r.shaping["slo-page"]
            for r in rows
            if r.shaping and "slo-page" in r.shaping
        }
        paging = sorted(t for t, b in burns.items() if b.page)
        actions: list[Action] = []
        if paging and now_s - self.last_shape_s >= 300.0:
            heavy = self._heaviest(rates, exclude=set(shaped))
            if heavy is None:
                self._decline(paging, rates, now_s)
            else:
                tenant, rate, others = heavy
                target = max(others, cfg.floor_rps)
                numbers = {
                    "paging": paging,
                    "requestsPerS5m": round(rate, 3),
                    "neighboursMeanPerS": round(others, 3),
                    "alerts": {t: burns[t].evidence()["alerts"] for t in paging},
                }
                reason = (
                    f"SLO page for {', '.join(paging)}: {tenant} sends "
                    f"{rate:.1f} req/s, {rate / max(others, 1e-9):.1f}x its "
                    f"neighbours' mean {others:.1f}; shaped to {target:.1f} req/s"
                )
                actions.append(self._engage_slo(tenant, target, reason, numbers, now_s))
                self.last_shape_s = now_s
        quiet = now_s - (self.last_page_s or now_s)
        for tenant, rule in shaped.items():
            if quiet < cfg.min_dwell_s:
                continue
            attempts = rates.get(tenant, 0.0)
            if attempts <= cfg.release_demand * float(rule["rate"]):
                numbers = {
                    "quietS": round(quiet, 1),
                    "attemptsPerS5m": round(attempts, 3),
                    "shapedRate": float(rule["rate"]),
                }
                reason = (
                    f"no SLO page for {quiet:.0f}s and {tenant} attempts "
                    f"{attempts:.1f} req/s (<= {cfg.release_demand}x the shaped "
                    f"{float(rule['rate']):.1f}); released"
                )
                actions.append(self._release_slo(tenant, reason, numbers, now_s))
        return actions

    def _release_slo(
        self, tenant: str, reason: str, numbers: dict[str, Any], now_s: float
    ) -> Action:
        at_ms = int(now_s * 1000)
        evidence = decimals(numbers)

        def release(budget: TenantBudget) -> None:
            budget.release_shaping(reason="slo-page", evidence=evidence, at_ms=at_ms)

        _, position = self.budgets.act(tenant, release)
        log.info("shaping-released", tenant=tenant, position=position)
        return Action(now_s, tenant, "shaping-released", reason, position, numbers)

    def _decline(
        self, paging: list[str], rates: dict[str, float], now_s: float
    ) -> None:
        """A page with no one worth shaping: the guards' incident is the action."""
        self.last_shape_s = now_s  # one line per short window, not per tick
        log.info(
            "shaping-declined",
            paging=paging,
            tenants=len(rates),
            heaviest_per_s=round(max(rates.values(), default=0.0), 3),
            min_per_s=round(self._min_rate(), 3),
        )

    def _min_rate(self) -> float:
        return self.config.min_capacity_share * self.config.capacity_rps

    def _heaviest(
        self, rates: dict[str, float], exclude: set[str]
    ) -> tuple[str, float, float] | None:
        """The heaviest tenant far above its neighbours' mean and carrying a
        meaningful share of the capacity, if any."""
        for tenant, rate in sorted(rates.items(), key=lambda kv: -kv[1]):
            if tenant in exclude:
                continue
            others = [r for t, r in rates.items() if t != tenant and r > 0]
            mean = sum(others) / len(others) if others else 0.0
            if (
                others
                and rate >= self._min_rate()
                and rate > self.config.heavy_share * max(mean, 1e-9)
            ):
                return tenant, rate, mean
            return None
        return None

    def _engage_slo(
        self,
        tenant: str,
        rate: float,
        reason: str,
        numbers: dict[str, Any],
        now_s: float,
    ) -> Action:
        at_ms = int(now_s * 1000)
        _, position = self.budgets.act(
            tenant,
            lambda b: b.engage_shaping(
                rate=dec(rate),
                burst=dec(max(rate * self.config.burst_s, 1.0)),
                reason="slo-page",
                evidence=decimals(numbers),
                at_ms=at_ms,
            ),
        )
        log.info(
            "shaping-engaged", tenant=tenant, position=position, rate=round(rate, 3)
        )
        return Action(
            now_s,
            tenant,
            "shaping-engaged",
            reason,
            position,
            {**numbers, "rate": rate},
        )
