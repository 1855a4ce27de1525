"""`conductor autopilot simulate`: synthetic traffic against the real controller.

Virtual time, one-second steps. Each tenant offers requests by a scenario's
rate curve; a tenant with a rule in the (real, database-backed) bucket store
gets what its bucket grants; a simple service model turns the total served
load into errors and slow requests (overload sheds with 5xx; near capacity
latency climbs past the targets). Everything else is the product: the real
meter flushes UsageRecorded events into a real SQLite log, the real usage
projection folds them, and the real Autopilot ticks and records its actions.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from adapters.autopilot.shaping_store import shaping_store
from adapters.autopilot.usage_view import usage_view
from adapters.ledger.store import open_ledger
from application.autopilot.actions import Action, AutopilotConfig
from application.autopilot.autopilot import Autopilot
from application.autopilot.budgets import Budgets
from application.autopilot.metering import Meter
from domain.autopilot.budget import LATENCY_BOUNDS_MS
from domain.autopilot.usage import Counts
from projections.runner import BatchRunner
from projections.usage import UsageProjection

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

START = datetime(2026, 1, 5, tzinfo=UTC).timestamp()
"""Simulated time starts at a Monday 00:00 UTC (a fresh day, week and month)."""
SLO = {"query": {"availability": Decimal("0.999"), "latency_p95_ms": 250}}
SLOW_SLOT = LATENCY_BOUNDS_MS.index(250) + 1
"""Where the model puts a slow request: the first slot above the target."""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    duration_s: int
    capacity_rps: float
    rates: dict[str, Callable[[float], float]]
    """Tenant -> offered requests/s at t seconds into the run."""
    cap_units: dict[str, float] = field(default_factory=dict)
    period: str = "day"
    flush_s: int = 10
    interval_s: int = 10
    config: AutopilotConfig = field(default_factory=AutopilotConfig)


def _step(before: float, after: float, at: float, until: float = math.inf) -> Any:
    return lambda t: after if at <= t < until else before


def _oscillate(low: float, high: float, period_s: float) -> Any:
    return lambda t: high if (t // (period_s / 2)) % 2 == 0 else low


SCENARIOS: dict[str, Scenario] = {
    "burst": Scenario(
        name="burst",
        description=(
            "three tenants at 10 req/s on a 60 req/s service; at 30 min 'noisy' "
            "bursts to 150 req/s for 90 min"
        ),
        duration_s=3 * 3600,
        capacity_rps=60.0,
        rates={
            "noisy": _step(10.0, 150.0, 1800.0, 7200.0),
            "quiet-a": _step(10.0, 10.0, 0.0),
            "quiet-b": _step(10.0, 10.0, 0.0),
        },
        cap_units={"noisy": 1e9, "quiet-a": 1e9, "quiet-b": 1e9},
    ),
    "noisy-neighbour": Scenario(
        name="noisy-neighbour",
        description=(
            "four tenants on a 100 req/s service; from 20 min 'big' ramps to "
            "90 req/s and 'medium' to 40 req/s: the heaviest is shaped first"
        ),
        duration_s=3 * 3600,
        capacity_rps=100.0,
        rates={
            "big": lambda t: 20.0 if t < 1200 else min(90.0, 20.0 + (t - 1200) / 20),
            "medium": lambda t: 10.0 if t < 1200 else min(40.0, 10.0 + (t - 1200) / 40),
            "small-a": _step(8.0, 8.0, 0.0),
            "small-b": _step(8.0, 8.0, 0.0),
        },
        cap_units={"big": 1e9, "medium": 1e9, "small-a": 1e9, "small-b": 1e9},
    ),
    "slow-burn": Scenario(
        name="slow-burn",
        description=(
            "one tenant with 100,000 units a day spends 2 units/s (1.7x pace); at "
            "12 h demand falls to 0.5 units/s, then oscillates"
        ),
        duration_s=86400 - 60,
        capacity_rps=1000.0,
        rates={
            "spender": lambda t: (
                2.0
                if t < 12 * 3600
                else 0.5
                if t < 16 * 3600
                else _oscillate(0.3, 1.6, 600.0)(t)
            ),
        },
        cap_units={"spender": 100_000.0},
        flush_s=30,
        interval_s=60,
    ),
}


def service(load_rps: float, capacity_rps: float) -> tuple[float, float]:
    """(error fraction, slow fraction) of a service serving ``load_rps``."""
    u = load_rps / capacity_rps
    errors = max(0.0, (u - 1.0) / u) if u > 0 else 0.0
    slow = min(1.0, max(0.0, (u - 0.8) / 0.2))
    return errors, slow


@dataclass
class Timeline:
    scenario: str
    description: str
    samples: list[dict[str, Any]] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    wall_s: float = 0.0
    interval_s: int = 10
    """Seconds per sample (the controller's interval)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "description": self.description,
            "samples": self.samples,
            "start": START,
            "actions": [
                {**a.to_json(), "t": round(a.at_s - START, 3)} for a in self.actions
            ],
            "wallS": round(self.wall_s, 2),
            "intervalS": self.interval_s,
        }


class _Offered:
    """Fractional requests carried from second to second."""

    def __init__(self) -> None:
        self.carry: dict[str, float] = {}

    def take(self, tenant: str, rate: float) -> int:
        total = self.carry.get(tenant, 0.0) + rate
        whole = int(total)
        self.carry[tenant] = total - whole
        return whole


def simulate(
    scenario: Scenario,
    workdir: Path,
    *,
    speed: float = 0.0,
    progress: Callable[[float, list[Action]], None] | None = None,
) -> Timeline:
    """Run a scenario in virtual time; ``speed`` > 0 paces it (sim s per real s)."""
    sim = _Simulation(scenario, workdir)
    try:
        return sim.run(speed, progress)
    finally:
        sim.close()


class _Simulation:
    """The real parts over a fresh SQLite log in ``workdir``."""

    def __init__(self, scenario: Scenario, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        for stale in workdir.glob(f"{scenario.name}.db*"):
            stale.unlink()
        self.scenario = scenario
        self.ledger = open_ledger(f"sqlite:///{workdir / scenario.name}.db")
        self.budgets = Budgets(self.ledger)
        self.meter = Meter(self.budgets)
        self.view = usage_view(self.ledger)
        self.runner = BatchRunner(
            projection=UsageProjection(view=self.view),
            recorder=self.ledger.recorder,
            mapper=self.budgets.mapper,
            batch_size=5000,
            poll_interval=1.0,
        )
        self.store = shaping_store(self.ledger)
        # the controller knows the capacity its tenants share (ADR 0015)
        config = replace(scenario.config, capacity_rps=scenario.capacity_rps)
        self.autopilot = Autopilot(self.budgets, self.view, self.store, config=config)
        for tenant in scenario.rates:
            self.budgets.set_budget(
                tenant,
                period=scenario.period,
                cost_cap_units=Decimal(repr(scenario.cap_units.get(tenant, 1e9))),
                slo=SLO,
                at_ms=int(START * 1000),
            )

    def run(
        self, speed: float, progress: Callable[[float, list[Action]], None] | None
    ) -> Timeline:
        scenario = self.scenario
        timeline = Timeline(
            scenario.name, scenario.description, interval_s=scenario.interval_s
        )
        carry = _Offered()
        started = time.perf_counter()
        rules: dict[str, Any] = {}
        window: dict[str, list[int]] = {t: [0, 0, 0] for t in scenario.rates}
        for step in range(scenario.duration_s + 1):
            now = START + step
            _second(scenario, self.store, self.meter, carry, rules, window, now)
            if step % scenario.flush_s == 0:
                self.meter.flush(int(now * 1000))
            if step % scenario.interval_s == 0 and step > 0:
                self.runner.catch_up()
                actions = self.autopilot.tick(now)
                rules = self.store.rules()
                timeline.actions += actions
                timeline.samples.append(_sample(step, self.autopilot, rules, window))
                window = {t: [0, 0, 0] for t in scenario.rates}
                if progress is not None:
                    progress(step / scenario.duration_s, actions)
            if speed > 0:
                ahead = step / speed - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
        timeline.wall_s = time.perf_counter() - started
        return timeline

    def close(self) -> None:
        self.store.close()
        self.view.close()
        self.ledger.close()


def _second(
    scenario: Scenario,
    store: Any,
    meter: Meter,
    carry: _Offered,
    rules: dict[str, Any],
    window: dict[str, list[int]],
    now: float,
) -> None:
    """One simulated second: offer, shape, serve, meter."""
    served: dict[str, int] = {}
    throttled: dict[str, int] = {}
    for tenant, rate in scenario.rates.items():
        n = carry.take(tenant, rate(now - START))
        granted = _grant(store, tenant, n, now) if tenant in rules else n
        served[tenant], throttled[tenant] = granted, n - granted
        window[tenant][0] += n
        window[tenant][1] += granted
        window[tenant][2] += n - granted
    error_frac, slow_frac = service(sum(served.values()), scenario.capacity_rps)
    for tenant, n in served.items():
        counts = Counts(
            requests=n + throttled[tenant],
            errors=round(n * error_frac),
            throttled=throttled[tenant],
            units=float(n) * meter.prices.query_call,
        )
        slow = round(n * slow_frac)
        counts.hist[0], counts.hist[SLOW_SLOT] = n - slow, slow
        meter.add(tenant, "query", counts, int(now * 1000))


def _grant(store: Any, tenant: str, n: int, now: float) -> int:
    """How many of n requests the tenant's bucket lets through this second."""
    if n == 0:
        return 0
    first = store.take(tenant, now=now, cost=float(n))
    if first is None or first.allowed:
        return n
    some = int(first.tokens)
    if some <= 0:
        return 0
    again = store.take(tenant, now=now, cost=float(some))
    return some if again is None or again.allowed else 0


def _sample(
    step: int, autopilot: Autopilot, rules: dict[str, Any], window: dict[str, list[int]]
) -> dict[str, Any]:
    seconds = max(autopilot.config.interval_s, 1.0)
    tenants: dict[str, Any] = {}
    for tenant, (offered, served, throttled) in window.items():
        burn = autopilot.last_burns.get(tenant)
        rule = rules.get(tenant)
        slo_1h = slo_5m = 0.0
        if burn is not None:
            slo_1h = max((max(v.values()) for v in burn.slo["1h"].values()), default=0)
            slo_5m = max((max(v.values()) for v in burn.slo["5m"].values()), default=0)
        tenants[tenant] = {
            "offeredRps": round(offered / seconds, 3),
            "servedRps": round(served / seconds, 3),
            "throttledRps": round(throttled / seconds, 3),
            "sloBurn1h": round(slo_1h, 3),
            "sloBurn5m": round(slo_5m, 3),
            "costBurn1h": round(burn.cost.burn["1h"], 4) if burn else 0.0,
            "spentUnits": round(burn.cost.spent_units, 1) if burn else 0.0,
            "capUnits": burn.cost.spent_units + burn.cost.remaining_units
            if burn
            else 0.0,
            "shapedRps": None if rule is None else round(rule.rate, 3),
            "page": bool(burn and burn.page),
        }
    return {"t": step, "tenants": tenants}
