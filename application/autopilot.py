"""The autopilot: every tick, read the burn, act on budgets, record why.

Cost: when the last hour's spending would exhaust the period's budget, cap
the tenant at the rate that keeps the rest of the period inside it (the cap
becomes a token bucket of cap / units-per-request); lift it, with hysteresis,
once demand falls well under that rate. SLO: when a page fires (SRE-workbook
multi-window burn rates), shape the heaviest tenant whose request rate is far
above its neighbours' mean to that mean; release once the page has been
quiet for the dwell time and the tenant no longer pushes against its bucket.
Every action is an event on the tenant's budget with the numbers behind it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from application.burn import WINDOWS, CostBurn, cost_burn, period_bounds
from application.burn import slo_alerts as compute_slo_alerts
from domain.budget import budget_id, dec
from domain.usage import Counts

if TYPE_CHECKING:
    from application.budgets import Budgets
    from application.burn import SloAlert
    from domain.budget import TenantBudget
    from domain.usage import BudgetRow

log = structlog.get_logger("conductor.autopilot")


class IncidentSink(Protocol):
    """Where breached guards become issues (application.incidents.Incidents)."""

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


class UsageReadModel(Protocol):
    """What the controller reads (projections.usage.UsageView)."""

    def budgets(self) -> list[BudgetRow]: ...

    def window(
        self, tenant: str, first_minute: int, last_minute: int
    ) -> dict[str, Counts]: ...

    def active_tenants(
        self, first_minute: int, last_minute: int
    ) -> dict[str, Counts]: ...


class ShapingRules(Protocol):
    """The shared token-bucket store (adapters.shaping.ShapingStore)."""

    def engage(
        self, tenant: str, *, rate: float, burst: float, reason: str, now: float
    ) -> None: ...

    def release(self, tenant: str) -> None: ...

    def rules(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class AutopilotConfig:
    interval_s: float = 10.0
    min_dwell_s: float = 600.0
    """Least time between cap changes, and quiet time before a release."""
    raise_below: float = 0.8
    """Lift a cap when demand falls under this share of the safe rate."""
    lower_step: float = 0.95
    """Lower a cap again only when the safe rate fell under this share of it."""
    heavy_share: float = 1.5
    """A tenant is heavy when its 5 m rate exceeds this x its neighbours' mean."""
    release_demand: float = 1.2
    """Release SLO shaping when attempts stay under this x the shaped rate."""
    burst_s: float = 10.0
    """A bucket holds this many seconds of its rate."""
    floor_rps: float = 1.0


@dataclass(frozen=True)
class Action:
    """One thing the autopilot did (also an event in the log)."""

    at_s: float
    tenant: str
    kind: str
    reason: str
    position: int | None
    numbers: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "at": round(self.at_s, 3),
            "tenant": self.tenant,
            "kind": self.kind,
            "reason": self.reason,
            "position": self.position,
            "numbers": self.numbers,
        }


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


def measure(view: UsageReadModel, row: BudgetRow, now_s: float) -> TenantBurn:
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
    slo, alerts = compute_slo_alerts(windows, row.slo)
    return TenantBurn(row.tenant, windows, cost, slo, alerts)


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
        self.incidents = incidents
        self.config = config or AutopilotConfig()
        self.last_page_s: float | None = None
        self.last_slo_shape_s = -math.inf
        self.last_burns: dict[str, TenantBurn] = {}
        self._asserted: set[tuple[str, str]] = set()
        """(tenant, guard) whose issue this process has made sure of."""

    def tick(self, now_s: float) -> list[Action]:
        """Measure every budgeted tenant and act; returns what was done."""
        actions: list[Action] = []
        rows = self.view.budgets()
        burns = {row.tenant: measure(self.view, row, now_s) for row in rows}
        self.last_burns = burns
        if any(b.page for b in burns.values()) or self.last_page_s is None:
            self.last_page_s = now_s
        for row in rows:
            burn = burns[row.tenant]
            actions += self._guards(row.tenant, burn, now_s)
            actions += self._cost(row, burn, now_s)
        actions += self._slo_shaping(rows, burns, now_s)
        self._sync_store(rows, now_s)
        return actions

    # guards

    def _guards(self, tenant: str, burn: TenantBurn, now_s: float) -> list[Action]:
        out = []
        for guard, on in (
            ("cost-burn", burn.cost_breach),
            ("slo-page", burn.page),
            ("slo-ticket", burn.ticket),
        ):
            action = self.set_guard(
                tenant, guard, on=on, evidence=burn.evidence(), now_s=now_s
            )
            if action is not None:
                out.append(action)
        return out

    def set_guard(
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
        recorded = _decimals(evidence)
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
                new=None if new is None else dec(new),
                reason=reason,
                burn_rate=dec(burn_rate, 4),
                evidence=_decimals(evidence),
                at_ms=at_ms,
            )
            if new is None:
                b.release_shaping(
                    reason="cost-cap", evidence=_decimals(evidence), at_ms=at_ms
                )
            else:
                rate = max(new / price, self.config.floor_rps / 10)
                b.engage_shaping(
                    rate=dec(rate),
                    burst=dec(max(rate * self.config.burst_s, 1.0)),
                    reason="cost-cap",
                    evidence=_decimals(evidence),
                    at_ms=at_ms,
                )

        _, position = self.budgets.act(tenant, act)
        kind = "cap-lifted" if new is None else "cap-adjusted"
        log.info(kind, tenant=tenant, position=position, burn=round(burn_rate, 3))
        numbers = {**numbers, "newCapUnitsPerS": None if new is None else round(new, 6)}
        return [Action(now_s, tenant, kind, reason, position, numbers)]

    # SLO shaping

    def _slo_shaping(
        self, rows: list[BudgetRow], burns: dict[str, TenantBurn], now_s: float
    ) -> list[Action]:
        cfg = self.config
        minute = int(now_s // 60)
        # the last 5 minutes' buckets, the current one partly filled
        span = max(now_s - (minute - 4) * 60, 1.0)
        rates = {
            t: c.requests / span
            for t, c in self.view.active_tenants(minute - 4, minute).items()
        }
        shaped = {
            r.tenant: r
            for r in rows
            if (b := self.budgets.budget(r.tenant)) is not None
            and "slo-page" in b.shaping
        }
        paging = sorted(t for t, b in burns.items() if b.page)
        actions: list[Action] = []
        if paging and now_s - self.last_slo_shape_s >= 300.0:
            heavy = self._heaviest(rates, exclude=set(shaped))
            if heavy is not None:
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
                self.last_slo_shape_s = now_s
        quiet = now_s - (self.last_page_s or now_s)
        for tenant in shaped:
            budget = self.budgets.budget(tenant)
            if budget is None or quiet < cfg.min_dwell_s:
                continue
            rule = budget.shaping["slo-page"]
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
        evidence = _decimals(numbers)

        def release(budget: TenantBudget) -> None:
            budget.release_shaping(reason="slo-page", evidence=evidence, at_ms=at_ms)

        _, position = self.budgets.act(tenant, release)
        log.info("shaping-released", tenant=tenant, position=position)
        return Action(now_s, tenant, "shaping-released", reason, position, numbers)

    def _heaviest(
        self, rates: dict[str, float], exclude: set[str]
    ) -> tuple[str, float, float] | None:
        """The heaviest tenant far above its neighbours' mean, if any."""
        for tenant, rate in sorted(rates.items(), key=lambda kv: -kv[1]):
            if tenant in exclude:
                continue
            others = [r for t, r in rates.items() if t != tenant]
            mean = sum(others) / len(others) if others else 0.0
            if others and rate > self.config.heavy_share * max(mean, 1e-9):
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
                evidence=_decimals(numbers),
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


def _decimals(data: Any) -> Any:
    """Floats to Decimals, recursively (events hold no floats)."""
    if isinstance(data, float):
        return dec(data)
    if isinstance(data, dict):
        return {k: _decimals(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_decimals(v) for v in data]
    return data


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
