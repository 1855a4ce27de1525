"""Shaping holds across API processes: two `conductor serve` on one PostgreSQL.

The bucket lives in the database, so a tenant shaped to r req/s gets r in
total, not r per process. Each server is a real process; the requests are
real HTTP; the rule is engaged in the shared store as the autopilot would.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from adapters.autopilot.shaping_store import shaping_store
from adapters.ledger.store import open_ledger
from tests.conftest import bearer
from tests.integration.server import Server

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]

RATE, BURST = 4.0, 4.0
# no autopilot in these processes: the test engages the rule itself
QUIET = {"CONDUCTOR_AUTOPILOT": "false", "CONDUCTOR_SHAPING_REFRESH_S": "0.2"}


def test_a_shaped_tenant_gets_its_rate_across_two_api_processes(
    postgres_url: str, tmp_path: Path
) -> None:
    ledger = open_ledger(postgres_url)
    store = shaping_store(ledger)
    with (
        (tmp_path / "a.log").open("w") as log_a,
        (tmp_path / "b.log").open("w") as log_b,
    ):
        servers = [
            Server(postgres_url, tmp_path / "var-a", log_a, env=QUIET),
            Server(postgres_url, tmp_path / "var-b", log_b, env=QUIET),
        ]
        try:
            store.engage(
                "acme", rate=RATE, burst=BURST, reason="slo-page", now=time.time()
            )
            time.sleep(0.5)  # both gates' caches see the rule
            counts = {"allowed": 0, "refused": 0, "other": 0}
            retry_after: list[int] = []
            lock = threading.Lock()
            started = time.time()
            stop = started + 3.0

            def hammer(base: str) -> None:
                with httpx.Client(base_url=base, headers=bearer("acme")) as client:
                    while time.time() < stop:
                        answer = client.get("/v1/datasets")
                        with lock:
                            if answer.status_code == 200:
                                counts["allowed"] += 1
                            elif answer.status_code == 429:
                                counts["refused"] += 1
                                retry_after.append(int(answer.headers["retry-after"]))
                            else:
                                counts["other"] += 1

            threads = [
                threading.Thread(target=hammer, args=(s.base,))
                for s in servers
                for _ in range(2)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.time() - started
            bound = BURST + RATE * elapsed
            assert counts["other"] == 0
            assert counts["refused"] > 0
            assert all(r >= 1 for r in retry_after)
            # one shared bucket: at most burst + rate x time in total (a bucket
            # per process would let through about twice as much)
            assert counts["allowed"] <= bound + 1, (counts, bound)
            assert counts["allowed"] >= 0.6 * bound, (counts, bound)
            # a neighbour is not shaped on either process
            for server in servers:
                other = httpx.get(
                    server.base + "/v1/datasets", headers=bearer("other"), timeout=5
                )
                assert other.status_code == 200
                assert "x-ig-throttle" not in other.headers
        finally:
            for server in servers:
                server.stop()
            store.close()
            ledger.close()
