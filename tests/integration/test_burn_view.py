"""The burn read model equals what ``measure`` computes, live and rebuilt.

A realistic log (three tenants, budgets set and changed, four hours of
metering flushes with errors, slow and throttled requests, a cap the
autopilot adjusted) is folded by the usage and burn projections; each
tenant's burn row must equal ``measure(usage view, budget, asOf)``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from adapters.autopilot.burn_view import burn_view
from adapters.autopilot.usage_view import usage_view
from adapters.ledger.store import open_ledger
from application.autopilot.budgets import Budgets
from application.autopilot.metering import Meter, PriceTable
from application.autopilot.tenant_burn import measure
from domain.autopilot.budget import LATENCY_BOUNDS_MS, budget_id
from projections.burn import BurnProjection
from projections.runner import BatchRunner
from projections.usage import UsageProjection
from tests.conftest import bearer

if TYPE_CHECKING:
    from collections.abc import Iterator

    from litestar.testing import TestClient

    from adapters.ledger.store import Ledger
    from projections.burn import BurnRow, BurnView
    from projections.usage import UsageView

pytestmark = pytest.mark.integration
T0 = int(datetime(2026, 3, 10, 9, 0, tzinfo=UTC).timestamp() * 1000)
SLO = {
    "query": {"availability": Decimal("0.999"), "latency_p95_ms": 250},
    "command": {"availability": Decimal("0.99"), "latency_p95_ms": 1000},
}
PRICES = PriceTable(
    query_call=1.0, command_call=2.0, export_gb=1000.0, embedding_1k=10.0, drill_run=1
)


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    opened = open_ledger(database_url)
    yield opened
    opened.close()


def _runner(ledger: Ledger, projection: Any, budgets: Budgets, size: int) -> Any:
    return BatchRunner(
        projection=projection,
        recorder=ledger.recorder,
        mapper=budgets.mapper,
        batch_size=size,
    )


def _traffic(meter: Meter, rng: random.Random, tenant: str, at_ms: int) -> None:
    """A minute of one tenant's requests: mostly fine, some errors and slow."""
    hot = tenant == "acme" and 2 * 3600_000 < at_ms - T0 < 2 * 3600_000 + 600_000
    for _ in range(rng.randint(0, 40 if hot else 12)):
        route_class = rng.choice(["query", "query", "query", "command", "export"])
        status = rng.choices([200, 500, 429], weights=[90, 8 if hot else 1, 2])[0]
        latency = rng.choice(LATENCY_BOUNDS_MS) * rng.choice([0.5, 1, 1.5])
        meter.request(
            tenant,
            route_class,
            method="GET" if route_class == "query" else "POST",
            status=status,
            latency_ms=latency,
            now_ms=at_ms,
        )
    if rng.random() < 0.1:
        meter.charge_export(tenant, rng.randint(1, 10**9), at_ms)


def _history(budgets: Budgets, each_flush: Any = None) -> dict[str, int]:
    """Four hours of metering; returns each tenant's newest event time."""
    rng = random.Random(11)
    meter = Meter(budgets, PRICES)
    newest: dict[str, int] = {}
    budgets.set_budget(
        "acme", period="day", cost_cap_units=Decimal(2000), slo=SLO, at_ms=T0
    )
    budgets.set_budget(
        "globex",
        period="month",
        cost_cap_units=Decimal(50000),
        slo={"query": SLO["query"]},
        at_ms=T0 + 60_000,
    )
    newest.update(acme=T0, globex=T0 + 60_000)
    for minute in range(1, 4 * 60):
        at = T0 + minute * 60_000 + rng.randint(0, 59_000)
        for tenant in ("acme", "globex", "initech"):
            _traffic(meter, rng, tenant, at)
        if meter.pending():
            meter.flush(at)
            for tenant in ("acme", "globex", "initech"):
                newest[tenant] = max(newest.get(tenant, 0), at)
        if minute == 90:  # the cap the autopilot would set, and a new budget
            budgets.act(
                "acme",
                lambda b, at=at: b.adjust_cap(
                    new=Decimal("0.25"),
                    reason="cost-burn",
                    burn_rate=Decimal(3),
                    evidence={},
                    at_ms=at,
                ),
            )
            budgets.set_budget(
                "initech",
                period="hour",
                cost_cap_units=Decimal(100),
                slo={"command": SLO["command"]},
                at_ms=at - 3_600_000,  # set earlier than its newest usage
            )
        if each_flush is not None and minute % 17 == 0:
            each_flush()
    return newest


def _expected(usage: UsageView, tenant: str, as_of_ms: int) -> dict[str, Any]:
    row = usage.load_budgets([budget_id(tenant)])[budget_id(tenant)]
    burn = measure(usage, row, as_of_ms / 1000)
    evidence = burn.evidence()
    return {
        "cost": evidence["cost"],
        "slo": evidence["sloBurn"],
        "alerts": evidence["alerts"],
        "page": burn.page,
        "ticket": burn.ticket,
        "requests": {
            w: {rc: c.to_json() for rc, c in per.items()}
            for w, per in burn.windows.items()
        },
        "capUnitsPerS": row.cap_units_per_s,
        "shaping": row.shaping or {},
    }


def _actual(row: BurnRow) -> dict[str, Any]:
    return {
        "cost": row.cost,
        "slo": row.slo,
        "alerts": row.alerts,
        "page": row.page,
        "ticket": row.ticket,
        "requests": row.requests,
        "capUnitsPerS": row.cap_units_per_s,
        "shaping": row.shaping,
    }


def _rows(view: BurnView) -> dict[str, BurnRow | None]:
    return {t: view.burn(t) for t in ("acme", "globex", "initech", "nobody")}


def test_the_burn_rows_equal_measure_live_and_rebuilt(ledger: Ledger) -> None:
    """Folded in small batches while events arrive, then rebuilt at once:
    the same rows, each equal to measure() as of the tenant's newest event."""
    budgets = Budgets(ledger)
    usage, burn = usage_view(ledger), burn_view(ledger)
    usage_runner = _runner(ledger, UsageProjection(view=usage), budgets, 1000)
    burn_runner = _runner(ledger, BurnProjection(view=burn), budgets, 7)
    try:
        newest = _history(budgets, each_flush=burn_runner.catch_up)
        usage_runner.catch_up()
        burn_runner.catch_up()
        live = _rows(burn)
        assert live["nobody"] is None
        for tenant in ("acme", "globex", "initech"):
            row = live[tenant]
            assert row is not None, tenant
            assert row.as_of_ms == newest[tenant], tenant
            assert _actual(row) == _expected(usage, tenant, row.as_of_ms), tenant
        acme = live["acme"]
        assert acme is not None
        assert acme.cap_units_per_s == 0.25
        assert set(acme.requests["5m"]) <= {"query", "command", "export"}
        assert acme.cost["spentUnits"] > 0

        burn.reset()
        rebuilt = _runner(ledger, BurnProjection(view=burn), budgets, 1000)
        rebuilt.catch_up()
        assert _rows(burn) == live
        assert burn.max_tracking_id("ledger") == usage.max_tracking_id("ledger")
    finally:
        usage.close()
        burn.close()


def test_the_burn_rows_follow_the_configured_minimum_of_events(
    ledger: Ledger,
) -> None:
    """CONDUCTOR_AUTOPILOT_MIN_EVENTS reaches the read model: a minimum no
    window can hold leaves every row without alerts, where the default's
    measure() has some, so GET /burn shows what the controller acts on."""
    budgets = Budgets(ledger)
    usage, burn = usage_view(ledger), burn_view(ledger, min_events=10**9)
    usage_runner = _runner(ledger, UsageProjection(view=usage), budgets, 1000)
    burn_runner = _runner(ledger, BurnProjection(view=burn), budgets, 1000)
    try:
        newest = _history(budgets, each_flush=lambda: None)
        usage_runner.catch_up()
        burn_runner.catch_up()
        rows = _rows(burn)
        by_default = [
            _expected(usage, t, newest[t])["alerts"] for t in ("acme", "globex")
        ]
        assert any(by_default), "the history should breach with the default"
        for tenant in ("acme", "globex", "initech"):
            row = rows[tenant]
            assert row is not None, tenant
            assert not row.alerts, tenant
            assert not row.page, tenant
            assert not row.ticket, tenant
    finally:
        usage.close()
        burn.close()


def test_another_tenants_burn_answers_as_if_it_had_none(
    client: TestClient[Any],
) -> None:
    """acme asking for globex's burn gets the 404 of a tenant with no budget;
    globex gets its own, with asOf and position."""
    budget = {"period": "day", "costCapUnits": 100}
    for tenant in ("acme", "globex"):
        put = client.put(
            f"/v1/tenants/{tenant}/budget", json=budget, headers=bearer(tenant)
        )
        assert put.status_code == 201, put.text
    at = put.headers["x-ig-position"]
    theirs = client.get("/v1/tenants/globex/burn", headers=bearer("acme"))
    nobody = client.get("/v1/tenants/nobody/burn", headers=bearer("acme"))
    assert theirs.status_code == nobody.status_code == 404
    assert theirs.json() == {
        **nobody.json(),
        "detail": nobody.json()["detail"].replace("nobody", "globex"),
    }
    own = client.get(
        "/v1/tenants/globex/burn",
        headers={**bearer("globex"), "x-ig-min-position": at},
    )
    assert own.status_code == 200, own.text
    body = own.json()
    assert int(own.headers["x-ig-position"]) >= int(at)
    assert body["position"] == int(at)
    assert datetime.fromisoformat(body["asOf"]).tzinfo is not None
    assert set(body) >= {
        "tenant", "cost", "slo", "alerts", "page", "ticket", "requests",
        "capUnitsPerS", "shaping", "asOf", "position",
    }  # fmt: skip
    assert set(body["cost"]["burn"]) == {"5m", "30m", "1h", "6h", "3d"}
