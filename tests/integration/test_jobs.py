"""The periodic jobs do their work when called (the scheduler only times them)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from api.runtime.jobs import (
    meter_scheduler,
    purge_idempotency_keys,
    refresh_coverage,
    scheduler,
    sign_checkpoint,
)
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
    services = client.app.dependencies["services"].dependency()
    refresh_coverage(services)
    assert (
        'conductor_catalog_coverage_ratio{tenant="acme"} 0.5'
        in client.get("/metrics").text
    )


def test_purge_forgets_only_expired_idempotency_keys(client: TestClient[Any]) -> None:
    """Keys past their TTL are dropped; a fresh key still replays."""
    services = client.app.dependencies["services"].dependency()
    spec = DatasetSpec(
        name="x",
        license="L",
        purposes=("p",),
        retention="P1Y",
        region="EU",
        contract_version="v1",
    )
    services.datasets.register_dataset(
        tenant="acme", spec=spec, idempotency=IdempotencyKey("old", "f")
    )
    services.ledger.chained.idempotency_ttl_s = 1.0
    time.sleep(1.1)
    services.datasets.register_dataset(
        tenant="acme",
        spec=DatasetSpec(**{**spec.__dict__, "name": "y"}),
        idempotency=IdempotencyKey("new", "f"),
    )
    purge_idempotency_keys(services)
    services.ledger.chained.idempotency_ttl_s = 3600
    assert services.ledger.find_idempotency("acme", "old") is None
    assert services.ledger.find_idempotency("acme", "new") is not None


def test_the_scheduler_carries_every_job(client: TestClient[Any]) -> None:
    """serve refreshes coverage, purges keys, signs checkpoints on intervals,
    runs queued ER embedding jobs in the off-peak window (and, every lease,
    due ones whose run was lost) and ticks the autopilot (incidents are
    delivered only when a webhook is set); every API process flushes its
    meter."""
    services = client.app.dependencies["services"].dependency()
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
    services.settings = msgspec.structs.replace(
        services.settings, issue_webhook_url="http://127.0.0.1:9/hook"
    )
    assert "incidents" in {job.id for job in scheduler(services).get_jobs()}


def test_a_checkpoint_is_signed_after_n_events_or_t_seconds(
    client: TestClient[Any], settings: Any
) -> None:
    """Few new events and a fresh checkpoint: nothing; N events, or T later: signed."""
    services = client.app.state.services
    services.settings = msgspec.structs.replace(
        settings, checkpoint_every_events=3, checkpoint_interval_s=3600.0
    )
    auth = bearer("acme")
    assert client.post("/v1/datasets", json=dataset_body("a"), headers=auth).is_success
    sign_checkpoint(services)  # none yet, 1 event < 3, started < T ago
    assert services.checkpoints.latest() is None
    for name in ("b", "c"):
        assert client.post(
            "/v1/datasets", json=dataset_body(name), headers=auth
        ).is_success
    sign_checkpoint(services)
    first = services.checkpoints.latest()
    assert first is not None
    assert first.size == services.checkpoints.sync()
    assert client.post("/v1/datasets", json=dataset_body("d"), headers=auth).is_success
    sign_checkpoint(services)
    assert services.checkpoints.latest().size == first.size  # 1 new event < 3
    for name in ("x", "y"):
        assert client.post(
            "/v1/datasets", json=dataset_body(name), headers=auth
        ).is_success
    sign_checkpoint(services)
    second = services.checkpoints.latest()
    assert second.size == services.checkpoints.sync() > first.size
    assert client.post("/v1/datasets", json=dataset_body("e"), headers=auth).is_success
    services.settings = msgspec.structs.replace(
        settings, checkpoint_every_events=1000, checkpoint_interval_s=0.0
    )
    sign_checkpoint(services)  # 1 new event, but the last checkpoint is old enough
    assert services.checkpoints.latest().size == second.size + 1
    keys = services.exports._load(SigningKeyRing.create_id())
    assert services.keys.active_key_id() in keys.keys  # recorded before signing


def test_the_first_checkpoint_waits_t_seconds_from_process_start(
    client: TestClient[Any], settings: Any
) -> None:
    """No checkpoint yet: a young process waits; one started T ago signs at once."""
    services = client.app.state.services
    services.settings = msgspec.structs.replace(
        settings, checkpoint_every_events=1000, checkpoint_interval_s=60.0
    )
    assert client.post(
        "/v1/datasets", json=dataset_body("a"), headers=bearer("acme")
    ).is_success
    sign_checkpoint(services)
    assert services.checkpoints.latest() is None
    services.started_at = datetime.now(UTC) - timedelta(seconds=61)
    sign_checkpoint(services)
    signed = services.checkpoints.latest()
    assert signed is not None
    assert signed.size == services.checkpoints.sync()
