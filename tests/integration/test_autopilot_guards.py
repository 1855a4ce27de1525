"""The seed's other guards become issues too: an export left without proof,
catalog coverage under 90 %, a firing replica-lag alert, ER recall under +10 %;
and volume charges (GB exported) reach the meter."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec.structs
import pytest
from litestar.testing import TestClient

from api.app import create_app
from application.autopilot.budgets import PLATFORM
from application.dr.lag_alerts import LagAlerts
from tests.conftest import bearer
from tests.integration.test_er_api import wait_job, write_people
from tests.integration.test_exports import proven

if TYPE_CHECKING:
    from api.settings import Settings

pytestmark = pytest.mark.integration


def caught_up(services: Any, view: str) -> None:
    """Wait for a read model's own runner to reach the log's head."""
    head = services.core.ledger.head().position
    assert services.core.runners[view].wait(head, timeout=10)


def guards(client: TestClient[Any], tenant: str) -> set[str]:
    budget = client.app.state.conductor.autopilot.budgets.budget(tenant)
    return set() if budget is None else set(budget.guards)


def opened(client: TestClient[Any], tenant: str) -> list[str]:
    incidents = client.app.state.conductor.autopilot.incidents.list(tenant, "all")
    return sorted(i.guard for i in incidents if i.state != "dropped")


def test_an_export_without_proof_breaches_until_the_next_proven_one(
    client: TestClient[Any], settings: Settings
) -> None:
    services = client.app.state.conductor
    _, export_id, _ = proven(client, settings)
    deadline = time.monotonic() + 5
    while services.autopilot.meter.pending() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    # the proven export was charged by the GB (a few hundred bytes: > 0 units)
    services.autopilot.meter.flush(int(time.time() * 1000))
    caught_up(services, "usage")
    window = services.autopilot.usage.window("acme", 0, 10**9)
    assert window["export"].units > 0
    assert "export-without-proof" not in guards(client, "acme")

    services.jobs.export_finished(UUID(export_id), "delivered")
    assert "export-without-proof" in guards(client, "acme")
    assert opened(client, "acme") == ["export-without-proof"]
    services.jobs.export_finished(UUID(export_id), "proven")
    assert "export-without-proof" not in guards(client, "acme")


def test_catalog_coverage_under_90_percent_breaches_for_the_tenant(
    client: TestClient[Any], settings: Settings
) -> None:
    services = client.app.state.conductor
    root = settings.data_root_path / "acme"
    root.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        (root / f"unregistered-{i}.csv").write_text("a\n1\n")
    body = {
        "name": "one", "license": "CC-BY-4.0", "purposes": ["investigation"],
        "retention": "P1Y", "region": "EU", "contractVersion": "v1",
        "location": "unregistered-0.csv",
        "columns": [{"name": "a", "classification": "public"}],
    }  # fmt: skip
    assert client.post("/v1/datasets", json=body, headers=bearer()).status_code == 201
    caught_up(services, "catalog")
    services.jobs.refresh_coverage()  # 1 of 3 files registered
    assert "catalog-coverage" in guards(client, "acme")
    breach = [
        e for e in services.core.ledger.entries(after=0, limit=1000)
        if e.topic.endswith("GuardBreached")
    ]  # fmt: skip
    evidence = json.loads(breach[-1].state)["evidence"]
    assert evidence["threshold"] is not None
    for i in (1, 2):
        body.update(name=f"d{i}", location=f"unregistered-{i}.csv")
        client.post("/v1/datasets", json=body, headers=bearer())
    caught_up(services, "catalog")
    services.jobs.refresh_coverage()
    assert "catalog-coverage" not in guards(client, "acme")


def test_replica_lag_and_er_recall_are_platform_guards(
    client: TestClient[Any], settings: Settings
) -> None:
    services = client.app.state.conductor
    # the ER eval recorded a recall delta under +10 %
    root = settings.var_path / "er"
    root.mkdir(parents=True, exist_ok=True)
    (root / "last-eval.json").write_text(json.dumps({"recall_delta": 0.04}))
    services.jobs.platform_guards()
    assert "er-recall" in guards(client, PLATFORM)
    (root / "last-eval.json").write_text(json.dumps({"recall_delta": 0.2}))
    services.jobs.platform_guards()
    assert "er-recall" not in guards(client, PLATFORM)

    # a firing lag alert (as the DR watcher records it) is the replica-lag guard
    alerts = LagAlerts(services.core.ledger)
    alerts.fire_alert(region="B", lag_ms=9000, threshold_ms=5000, above_for_ms=600_000)
    assert alerts.firing() == ["B"]
    services.jobs.platform_guards()
    assert "replica-lag" in guards(client, PLATFORM)
    assert "replica-lag" in opened(client, PLATFORM)
    alerts.clear_alert(region="B", lag_ms=10)
    services.jobs.platform_guards()
    assert "replica-lag" not in guards(client, PLATFORM)


def test_a_shaped_tenants_forced_embedding_job_waits_for_off_peak(
    settings: Settings,
) -> None:
    """Under shaping, force=true is not honoured: the job is deferred (and says so)."""
    hour = (datetime.now(UTC).hour + 12) % 24
    later = msgspec.structs.replace(settings, er_offpeak_hours=str(hour))
    with TestClient(create_app(later)) as client:
        services = client.app.state.conductor
        write_people(later, 20)
        services.autopilot.shaping.store.engage(
            "acme", rate=1000.0, burst=1000.0, reason="slo-page", now=time.time()
        )
        made = client.post(
            "/v1/er/jobs",
            json={"entitySet": "crm", "location": "people.csv", "force": True},
            headers=bearer("acme", "er.write"),
        )
        assert made.status_code == 202, made.text
        assert made.headers["x-ig-deferred"] == "off-peak; reason=slo-page"
        job = made.json()
        assert job["status"] == "scheduled"
        assert datetime.fromisoformat(job["runAfter"]).hour == hour
        # an unshaped tenant's forced job still runs at once
        write_people(later, 20, tenant="other")
        now = client.post(
            "/v1/er/jobs",
            json={"entitySet": "crm", "location": "people.csv", "force": True},
            headers=bearer("other", "er.write"),
        )
        assert now.status_code == 202
        assert "x-ig-deferred" not in now.headers
        deadline = time.monotonic() + 30
        while True:
            got = client.get(
                f"/v1/er/jobs/{now.json()['id']}", headers=bearer("other", "er.read")
            ).json()
            if got["status"] == "completed" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert got["status"] == "completed", got
        assert wait_job(client, job["id"], "scheduled")["done"] == 0
