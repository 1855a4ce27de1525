"""The periodic jobs do their work when called (the scheduler only times them)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from api.wiring.jobs import meter_scheduler, scheduler
from application.base import IdempotencyKey
from domain.ledger.keys import SigningKeyRing
from domain.values import DatasetSpec
from tests.conftest import bearer, dataset_body

if TYPE_CHECKING:
    from litestar.testing import TestClient

pytestmark = pytest.mark.integration


def test_refresh_coverage_sets_every_tenants_gauge(
    client: TestClient[Any], settings: Any
) -> None:
    """Tenants with datasets get a coverage gauge without anyone asking the API."""
    (settings.data_root_path / "acme").mkdir(parents=True)
    (settings.data_root_path / "acme" / "a.csv").write_text("x\n")
    (settings.data_root_path / "acme" / "b.csv").write_text("x\n")
    done = client.post(
        "/v1/datasets", json=dataset_body("a", location="a.csv"), headers=bearer("acme")
    )
    client.get(
        "/v1/datasets",
        headers={**bearer("acme"), "x-ig-min-position": str(done.json()["position"])},
    )
    services = client.app.state.conductor
    services.jobs.refresh_coverage()
    assert (
        'conductor_catalog_coverage_ratio{tenant="acme"} 0.5'
        in client.get("/metrics").text
    )


def test_purge_forgets_only_expired_idempotency_keys(client: TestClient[Any]) -> None:
    """Keys past their TTL are dropped; a fresh key still replays."""
    services = client.app.state.conductor
    spec = DatasetSpec(
        name="x",
        license="L",
        purposes=("p",),
        retention="P1Y",
        region="EU",
        contract_version="v1",
    )
    services.catalog.registry.register_dataset(
        tenant="acme", spec=spec, idempotency=IdempotencyKey("old", "f")
    )
    services.core.ledger.chained.idempotency_ttl_s = 1.0
    time.sleep(1.1)
    services.catalog.registry.register_dataset(
        tenant="acme",
        spec=DatasetSpec(**{**spec.__dict__, "name": "y"}),
        idempotency=IdempotencyKey("new", "f"),
    )
    services.jobs.purge_idempotency_keys()
    services.core.ledger.chained.idempotency_ttl_s = 3600
    assert services.core.ledger.find_idempotency("acme", "old") is None
    assert services.core.ledger.find_idempotency("acme", "new") is not None


def test_the_scheduler_carries_every_job(client: TestClient[Any]) -> None:
    """serve refreshes coverage, purges keys, signs checkpoints on intervals,
    runs queued ER embedding jobs in the off-peak window (and, every lease,
    due ones whose run was lost) and ticks the autopilot (incidents are
    delivered only when a webhook is set); every API process flushes its
    meter."""
    services = client.app.state.conductor
    jobs = scheduler(services)
    assert {job.id for job in jobs.get_jobs()} == {
        "coverage",
        "idempotency",
        "checkpoint",
        "er-offpeak",
        "er-due",
        "autopilot",
        "usage-purge",
    }
    assert [job.id for job in meter_scheduler(services).get_jobs()] == ["meter"]
    services.core.settings = msgspec.structs.replace(
        services.core.settings, issue_webhook_url="http://127.0.0.1:9/hook"
    )
    assert "incidents" in {job.id for job in scheduler(services).get_jobs()}


def test_a_checkpoint_is_signed_after_n_events_or_t_seconds(
    client: TestClient[Any], settings: Any
) -> None:
    """Few new events and a fresh checkpoint: nothing; N events, or T later: signed."""
    services = client.app.state.conductor
    services.core.settings = msgspec.structs.replace(
        settings, checkpoint_every_events=3, checkpoint_interval_s=3600.0
    )
    auth = bearer("acme")
    assert client.post("/v1/datasets", json=dataset_body("a"), headers=auth).is_success
    services.jobs.sign_checkpoint()  # none yet, 1 event < 3, started < T ago
    assert services.core.checkpoints.latest() is None
    for name in ("b", "c"):
        assert client.post(
            "/v1/datasets", json=dataset_body(name), headers=auth
        ).is_success
    services.jobs.sign_checkpoint()
    first = services.core.checkpoints.latest()
    assert first is not None
    assert first.size == services.core.checkpoints.sync()
    assert client.post("/v1/datasets", json=dataset_body("d"), headers=auth).is_success
    services.jobs.sign_checkpoint()
    assert services.core.checkpoints.latest().size == first.size  # 1 new event < 3
    for name in ("x", "y"):
        assert client.post(
            "/v1/datasets", json=dataset_body(name), headers=auth
        ).is_success
    services.jobs.sign_checkpoint()
    second = services.core.checkpoints.latest()
    assert second.size == services.core.checkpoints.sync() > first.size
    assert client.post("/v1/datasets", json=dataset_body("e"), headers=auth).is_success
    services.core.settings = msgspec.structs.replace(
        settings, checkpoint_every_events=1000, checkpoint_interval_s=0.0
    )
    services.jobs.sign_checkpoint()  # 1 new event; the last checkpoint is old enough
    assert services.core.checkpoints.latest().size == second.size + 1
    keys = services.exports.app._load(SigningKeyRing.create_id())
    assert services.core.keys.active_key_id() in keys.keys  # recorded before signing


def test_the_first_checkpoint_waits_t_seconds_from_process_start(
    client: TestClient[Any], settings: Any
) -> None:
    """No checkpoint yet: a young process waits; one started T ago signs at once."""
    services = client.app.state.conductor
    services.core.settings = msgspec.structs.replace(
        settings, checkpoint_every_events=1000, checkpoint_interval_s=60.0
    )
    assert client.post(
        "/v1/datasets", json=dataset_body("a"), headers=bearer("acme")
    ).is_success
    services.jobs.sign_checkpoint()
    assert services.core.checkpoints.latest() is None
    services.core.started_at = datetime.now(UTC) - timedelta(seconds=61)
    services.jobs.sign_checkpoint()
    signed = services.core.checkpoints.latest()
    assert signed is not None
    assert signed.size == services.core.checkpoints.sync()
