"""kill -9 during a burst of writes loses nothing that was acknowledged."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import httpx
import pytest

from adapters.ledger.store import open_ledger
from api.wiring.catalog import catalog_view
from tests.conftest import bearer, dataset_body
from tests.integration.server import Server, cli

if TYPE_CHECKING:
    from pathlib import Path

    from projections.catalog import CatalogRow

pytestmark = [pytest.mark.integration, pytest.mark.slow]
H = bearer("acme")


def catalog_rows(database_url: str) -> list[CatalogRow]:
    ledger = open_ledger(database_url, pool_size=2)
    try:
        view = catalog_view(ledger)
        rows: list[CatalogRow] = []
        while batch := view.rows(after=rows[-1].id if rows else None, limit=1000):
            rows += batch
        return rows
    finally:
        ledger.close()


def burst(
    base: str, acknowledged: list[str], stop: threading.Event, worker: int
) -> None:
    """Register datasets until the server dies; keep the ids it acknowledged."""
    with httpx.Client(base_url=base, headers=H, timeout=5) as client:
        i = 0
        while not stop.is_set():
            try:
                response = client.post(
                    "/v1/datasets", json=dataset_body(f"w{worker}-{i}")
                )
            except httpx.HTTPError:
                return
            if response.status_code == 201:
                acknowledged.append(response.json()["id"])
            i += 1


def test_kill_9_mid_burst_loses_no_acknowledged_command(
    database_url: str, tmp_path: Path
) -> None:
    """After SIGKILL and restart: every 201 is there, the chain verifies and the
    catalog equals a fresh rebuild."""
    var = tmp_path / "var"
    log = (tmp_path / "server.log").open("w")
    server = Server(database_url, var, log)
    acknowledged: list[str] = []
    stop = threading.Event()
    workers = [
        threading.Thread(target=burst, args=(server.base, acknowledged, stop, w))
        for w in range(8)
    ]
    for w in workers:
        w.start()
    while len(acknowledged) < 150:
        if not any(w.is_alive() for w in workers):
            break
        threading.Event().wait(0.01)
    server.kill()  # mid-burst: writers are in flight
    stop.set()
    for w in workers:
        w.join()
    assert len(acknowledged) >= 150

    restarted = Server(database_url, var, log)
    try:
        with httpx.Client(base_url=restarted.base, headers=H, timeout=10) as client:
            for dataset_id in acknowledged:
                assert client.get(f"/v1/datasets/{dataset_id}").status_code == 200
            head = client.get("/v1/log?limit=1").json()["head"]
            assert head["events"] >= len(acknowledged)
            waited = client.get(
                "/v1/datasets?limit=1",
                headers={"x-ig-min-position": str(head["position"])},
            )
            assert waited.status_code == 200
            assert waited.json()["total"] == head["events"]
    finally:
        restarted.stop()
        log.close()

    verified = cli(database_url, var, "log", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    live = catalog_rows(database_url)
    rebuilt = cli(database_url, var, "projections", "rebuild", "catalog")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert catalog_rows(database_url) == live
    assert len(live) == head["events"]
