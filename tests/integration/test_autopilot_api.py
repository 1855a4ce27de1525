"""The autopilot through real HTTP: budgets, metering, the acceptance pack.

The seed's acceptance pack, "budget/SLO burn triggers shaping and cap
reductions with audit", is test_burn_caps_and_shapes_the_tenant_with_audit:
real requests are metered, the controller lowers the cap and shapes the
tenant, the next requests get 429 with Retry-After, the other tenant is
untouched, the actions are events in the audited log, and the breach opens an
issue at a real webhook.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import msgspec.structs
import pytest
from litestar.testing import TestClient

from adapters.ledger.store import open_ledger
from api.app import create_app
from domain.autopilot.usage import Counts
from tests.conftest import bearer
from tests.integration.sink import SinkServer

if TYPE_CHECKING:
    from collections.abc import Iterator

    from api.settings import Settings

pytestmark = pytest.mark.integration

BUDGET = {
    "period": "day",
    "costCapUnits": 100000,
    "slo": {"query": {"availability": 0.999, "latencyP95Ms": 250}},
}


@pytest.fixture
def sink() -> Iterator[SinkServer]:
    server = SinkServer().start()
    yield server
    server.stop()


@pytest.fixture
def app_client(settings: Settings, sink: SinkServer) -> Iterator[TestClient[Any]]:
    wired = msgspec.structs.replace(
        settings, issue_webhook_url=sink.url, shaping_refresh_s=0.0
    )
    with TestClient(create_app(wired)) as client:
        yield client


def caught_up(services: Any, view: str) -> None:
    """Wait for a read model's own runner to reach the log's head."""
    head = services.core.ledger.head().position
    assert services.core.runners[view].wait(head, timeout=10)


def settle(client: TestClient[Any], requests: int) -> None:
    """Wait for the last responses' metering (it runs just after the reply)."""
    meter = client.app.state.conductor.autopilot.meter
    deadline = time.monotonic() + 5
    while meter.pending() < requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert meter.pending() >= requests


def number(stored: Any) -> float:
    """A Decimal as the log stores it (a tagged string)."""
    return float(stored["_data_"] if isinstance(stored, dict) else stored)


def head(client: TestClient[Any]) -> int:
    return client.app.state.conductor.core.ledger.head().position  # type: ignore[no-any-return]


def topics(client: TestClient[Any], after: int) -> list[str]:
    entries = client.app.state.conductor.core.ledger.entries(after=after, limit=1000)
    return [e.topic.rsplit(".", 1)[-1] for e in entries]


def test_budget_is_set_read_and_refused_clearly(app_client: TestClient[Any]) -> None:
    client = app_client
    first = client.put("/v1/tenants/acme/budget", json=BUDGET, headers=bearer())
    assert first.status_code == 201, first.text
    assert first.json()["costCapUnits"] == 100000
    before = head(client)
    again = client.put("/v1/tenants/acme/budget", json=BUDGET, headers=bearer())
    assert again.status_code == 200
    assert head(client) == before  # nothing changed, nothing recorded

    bad = dict(BUDGET, period="fortnight", costCapUnits=-1)
    bad["slo"] = {"query": {"availability": 2, "latencyP95Ms": 300}}
    refused = client.put("/v1/tenants/acme/budget", json=bad, headers=bearer())
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    named = {(e["field"], e["rule"]) for e in refused.json()["errors"]}
    assert named == {
        ("period", "enum"),
        ("costCapUnits", "positive"),
        ("slo.query.availability", "range"),
        ("slo.query.latencyP95Ms", "histogram-bound"),
    }
    assert head(client) == before

    got = client.get("/v1/tenants/acme/budget", headers=bearer())
    assert got.json()["period"] == "day"
    assert got.json()["slo"]["query"]["latencyP95Ms"] == 250
    assert client.get("/v1/tenants/other/budget", headers=bearer()).status_code == 404
    read_only = bearer("acme", "catalog.read")
    assert client.get("/v1/tenants/acme/budget", headers=read_only).status_code == 403
    put = client.put("/v1/tenants/acme/budget", json=BUDGET, headers=read_only)
    assert put.status_code == 403
    assert head(client) == before


def test_requests_are_metered_one_event_per_tenant_per_flush(
    app_client: TestClient[Any],
) -> None:
    client = app_client
    services = client.app.state.conductor
    client.put("/v1/tenants/acme/budget", json=BUDGET, headers=bearer())
    settle(client, 1)
    services.jobs.flush_meter()
    before = head(client)
    for _ in range(5):
        assert client.get("/v1/datasets", headers=bearer()).status_code == 200
    for _ in range(3):
        client.get("/v1/datasets", headers=bearer("other"))
    client.post("/v1/datasets", json={"name": 1}, headers=bearer())  # a 4xx counts
    assert head(client) == before  # metering is not on the request path
    settle(client, 9)
    services.jobs.flush_meter()
    assert topics(client, before) == ["UsageRecorded", "UsageRecorded"]
    caught_up(services, "usage")
    burn = client.get(
        "/v1/tenants/acme/burn",
        headers={**bearer(), "x-ig-min-position": str(head(client))},
    ).json()
    five = burn["requests"]["5m"]
    assert five["query"]["requests"] == 5
    assert five["query"]["units"] == 5.0
    assert five["command"]["requests"] == 2  # the PUT and the refused POST
    assert five["command"]["errors"] == 0
    assert burn["cost"]["spentUnits"] == pytest.approx(5.0 + 2.0 + 2.0)  # + PUT
    assert set(burn["slo"]) == {"5m", "30m", "1h", "6h", "3d"}


def test_burn_caps_and_shapes_the_tenant_with_audit(
    app_client: TestClient[Any], sink: SinkServer
) -> None:
    client = app_client
    services = client.app.state.conductor
    # 40 calls in the first hour of a 60-unit month burn ~480x its pace; the
    # projection breaches unless the month has under ~26 minutes left.
    tiny = dict(BUDGET, period="month", costCapUnits=60)
    client.put("/v1/tenants/acme/budget", json=tiny, headers=bearer())
    client.put("/v1/tenants/other/budget", json=BUDGET, headers=bearer("other"))
    for _ in range(40):
        client.get("/v1/datasets", headers=bearer())
        client.get("/v1/datasets", headers=bearer("other"))
    settle(client, 82)
    services.jobs.flush_meter()
    before = head(client)
    services.jobs.run_autopilot()
    recorded = topics(client, before)
    assert "CapAdjusted" in recorded
    assert "ShapingEngaged" in recorded
    assert "GuardBreached" in recorded

    budget = client.get("/v1/tenants/acme/budget", headers=bearer()).json()
    assert budget["capUnitsPerS"] is not None
    cost = client.get(
        "/v1/tenants/acme/burn",
        headers={**bearer(), "x-ig-min-position": str(head(client))},
    ).json()["cost"]
    # the cap spends exactly what is left over what is left of the hour
    assert budget["capUnitsPerS"] * cost["remainingS"] == pytest.approx(
        cost["remainingUnits"], rel=0.05
    )
    assert "cost-cap" in budget["shaping"]
    assert "cost-burn" in budget["guards"]

    answers = [client.get("/v1/datasets", headers=bearer()) for _ in range(5)]
    refused = [r for r in answers if r.status_code == 429]
    assert refused, [r.status_code for r in answers]
    problem = refused[0]
    assert int(problem.headers["retry-after"]) >= 1
    assert "reason=cost-cap" in problem.headers["x-ig-throttle"]
    assert problem.headers["content-type"].startswith("application/problem+json")
    # the neighbour is untouched, and the operator can still reach the budget
    assert client.get("/v1/datasets", headers=bearer("other")).status_code == 200
    assert (
        "x-ig-throttle"
        not in client.get("/v1/datasets", headers=bearer("other")).headers
    )
    assert client.get("/v1/tenants/acme/budget", headers=bearer()).status_code == 200

    # audit: the actions are in the log an auditor reads, with their numbers
    # acme itself is throttled now; an operator reads the whole log
    auditor = bearer("auditor", "audit.platform")
    log = client.get("/v1/log", params={"after": before}, headers=auditor).json()
    entries = log["entries"]
    cap = next(e for e in entries if e["topic"].endswith("CapAdjusted"))
    state = cap["state"]
    assert number(state["evidence"]["spentUnits"]) == pytest.approx(42.0)  # + PUT
    assert number(state["burn_rate"]) > 1

    # the breach opens one issue at the webhook, recorded back in the log
    services.jobs.deliver_incidents()
    opened = sink.accepted("open")
    assert [o["guard"] for o in opened] == ["cost-burn"]
    assert any(link.startswith("log:") for link in opened[0]["evidence"]["links"])
    services.jobs.run_autopilot()
    services.jobs.deliver_incidents()
    assert len(sink.accepted("open")) == 1  # still breached: no second issue
    assert "IssueOpened" in topics(client, before)
    # the operator's routes (budget, burn, incidents) are never shaped
    incidents = client.get("/v1/incidents", headers=bearer()).json()
    assert [i["guard"] for i in incidents["items"]] == ["cost-burn"]


def test_a_breach_recorded_before_a_crash_still_gets_its_issue(
    app_client: TestClient[Any], sink: SinkServer
) -> None:
    """The guard's event was saved but the process died before the incident:
    the next process's first tick opens it, linked to that event."""
    services = app_client.app.state.conductor
    autopilot = services.autopilot.controller
    guards = autopilot.guards
    incidents, guards.incidents = guards.incidents, None  # "crash" here
    evidence = {"coverage": 0.5, "threshold": 0.9}
    autopilot.set_guard(
        "acme", "catalog-coverage", on=True, evidence=evidence, now_s=1.0
    )
    assert services.autopilot.incidents.list("acme", "all") == []
    guards.incidents = incidents
    guards._asserted.clear()  # a new process
    autopilot.set_guard(
        "acme", "catalog-coverage", on=True, evidence=evidence, now_s=2.0
    )
    autopilot.set_guard(
        "acme", "catalog-coverage", on=True, evidence=evidence, now_s=3.0
    )
    services.jobs.deliver_incidents()
    opened = sink.accepted("open")
    assert [o["guard"] for o in opened] == ["catalog-coverage"]
    breach = next(
        e for e in services.core.ledger.entries(after=0, limit=100)
        if e.topic.endswith("GuardBreached")
    )  # fmt: skip
    assert opened[0]["evidence"]["links"] == [
        f"log:{breach.position}:sha256:{breach.hash}"
    ]


def test_shutdown_flushes_the_meter(settings: Settings) -> None:
    """The last interval's metering reaches the log when the process stops."""
    with TestClient(create_app(settings)) as client:
        for _ in range(3):
            client.get("/v1/datasets", headers=bearer())
        settle(client, 3)
        ledger = client.app.state.conductor.core.ledger
        before = ledger.head().position
    reopened = open_ledger(settings.resolved_database_url)
    try:
        entries = reopened.entries(after=before, limit=10)
    finally:
        reopened.close()
    usage = [json.loads(e.state) for e in entries if e.topic.endswith("UsageRecorded")]
    assert [(u["tenant"], u["classes"]["query"]["requests"]) for u in usage] == [
        ("acme", 3)
    ]


def test_burn_gauges_and_an_issue_resolved_when_the_guard_clears(
    app_client: TestClient[Any], sink: SinkServer
) -> None:
    client = app_client
    services = client.app.state.conductor
    client.put("/v1/tenants/acme/budget", json=BUDGET, headers=bearer())
    client.get("/v1/datasets", headers=bearer())
    settle(client, 2)
    services.jobs.flush_meter()
    services.jobs.run_autopilot()
    scraped = client.get("/metrics").text
    assert 'conductor_burn_rate{kind="cost",tenant="acme",window="1h"}' in scraped
    assert 'conductor_burn_rate{kind="slo",tenant="acme",window="5m"}' in scraped

    autopilot = services.autopilot.controller
    evidence = {"coverage": 0.5, "threshold": 0.9}
    autopilot.set_guard("acme", "catalog-coverage", on=True, evidence=evidence, now_s=1)
    services.jobs.deliver_incidents()
    assert [o["guard"] for o in sink.accepted("open")] == ["catalog-coverage"]
    autopilot.set_guard(
        "acme", "catalog-coverage", on=False, evidence=evidence, now_s=2
    )
    services.jobs.deliver_incidents()
    [resolved] = sink.accepted("resolve")
    assert resolved["external_id"] == "ISSUE-1"
    assert resolved["guard"] == "catalog-coverage"
    topics_now = topics(client, 0)
    assert topics_now.count("IssueOpened") == topics_now.count("IssueResolved") == 1
    budget = services.autopilot.budgets.budget("acme")
    assert budget.issues == {}
    assert "catalog-coverage" not in budget.guards


def test_usage_older_than_a_month_is_purged(app_client: TestClient[Any]) -> None:
    services = app_client.app.state.conductor
    now_ms = int(time.time() * 1000)
    for age_days in (40, 1):
        services.autopilot.meter.add(
            "acme",
            "query",
            Counts(requests=7, units=7.0),
            now_ms - age_days * 86_400_000,
        )
        services.autopilot.meter.flush(now_ms - age_days * 86_400_000)
    caught_up(services, "usage")
    everything = services.autopilot.usage.active_tenants(0, 10**9)
    assert everything["acme"].requests == 14
    services.jobs.purge_usage()
    assert services.autopilot.usage.active_tenants(0, 10**9)["acme"].requests == 7
