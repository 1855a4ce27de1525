"""Shared token buckets on real SQLite and PostgreSQL, across processes and HTTP."""

from __future__ import annotations

import multiprocessing
import time
from typing import TYPE_CHECKING, Any

import pytest
from litestar import Litestar, get, put
from litestar.params import FromPath  # noqa: TC002 - litestar reads hints at runtime
from litestar.testing import TestClient

from adapters.autopilot.shaping_store import (
    MemoryShapingStore,
    ShapingRule,
    ShapingStore,
    Throttle,
    shaping_store,
)
from adapters.ledger.store import open_ledger
from api.auth import jwt_auth
from api.middleware.shaping import ShapingGate, add_throttle_header, shaping_hook
from api.problems import problem_plugin
from api.requests import require_json
from tests.conftest import SECRET, bearer
from tests.integration.shaping_worker import hammer

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

PROCESSES = 3
RATE, BURST, DURATION_S = 100.0, 20.0, 2.0


@pytest.fixture
def store(database_url: str) -> Iterator[ShapingStore]:
    ledger = open_ledger(database_url, pool_size=2)
    shaping = shaping_store(ledger)
    yield shaping
    shaping.close()
    ledger.close()


class CountingStore(ShapingStore):
    """A real store, counting the calls that reach the database."""

    def __init__(self, inner: ShapingStore) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def engage(
        self, tenant: str, *, rate: float, burst: float, reason: str, now: float
    ) -> None:
        self.inner.engage(tenant, rate=rate, burst=burst, reason=reason, now=now)

    def release(self, tenant: str) -> None:
        self.inner.release(tenant)

    def rules(self) -> dict[str, ShapingRule]:
        self.calls.append("rules")
        return self.inner.rules()

    def take(self, tenant: str, *, now: float, cost: float = 1.0) -> Throttle | None:
        self.calls.append(f"take:{tenant}")
        return self.inner.take(tenant, now=now, cost=cost)

    def close(self) -> None:
        self.inner.close()


def test_engage_release_and_rules(store: ShapingStore) -> None:
    """Rules are upserted, listed and released; the table survives a reopen."""
    assert store.rules() == {}
    store.engage("acme", rate=2.0, burst=5.0, reason="cost over budget", now=10.0)
    store.engage("beta", rate=0.5, burst=1.0, reason="p95 over SLO", now=11.0)
    store.engage("acme", rate=3.0, burst=6.0, reason="still over", now=12.0)
    assert store.rules() == {
        "acme": ShapingRule(3.0, 6.0, "still over", 10.0),
        "beta": ShapingRule(0.5, 1.0, "p95 over SLO", 11.0),
    }
    store.release("acme")
    store.release("nobody")
    assert list(store.rules()) == ["beta"]
    assert store.take("acme", now=13.0) is None


def test_the_database_buckets_agree_with_the_in_memory_one(
    store: ShapingStore,
) -> None:
    """The same script of engages and takes gives the same throttles."""
    memory = MemoryShapingStore()
    script: list[tuple[str, float, float]] = [
        ("engage", 100.0, 0),
        *(("take", 100.0, 1.0) for _ in range(4)),
        ("take", 100.3, 1.0),
        ("take", 100.2, 1.0),  # a lagging clock
        ("take", 100.9, 2.0),
        ("take", 101.4, 1.0),
        ("engage", 101.5, 0),
        ("take", 101.5, 1.0),
        ("take", 103.0, 5.0),
        ("take", 130.0, 1.0),
    ]
    seen: list[tuple[Throttle | None, Throttle | None]] = []
    for step, (what, now, cost) in enumerate(script):
        if what == "engage":
            for each in (store, memory):
                each.engage("acme", rate=1.5, burst=3.0 + step, reason="x", now=now)
        else:
            seen.append(
                (
                    store.take("acme", now=now, cost=cost),
                    memory.take("acme", now=now, cost=cost),
                )
            )
    for db, mem in seen:
        assert db is not None
        assert mem is not None
        assert db.allowed == mem.allowed
        assert db.tokens == pytest.approx(mem.tokens, abs=1e-9)
        assert db.retry_after_s == pytest.approx(mem.retry_after_s, abs=1e-9)
    allowed = [db.allowed for db, _ in seen if db]
    assert allowed == [*[True] * 3, *[False] * 4, True, True, False, True]


def test_processes_share_one_bucket(database_url: str, store: ShapingStore) -> None:
    """Several OS processes together get burst + rate x elapsed, not one each."""
    ctx = multiprocessing.get_context("spawn")
    ready, go, start = ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
    workers = [
        ctx.Process(
            target=hammer, args=(database_url, "acme", DURATION_S, ready, go, start)
        )
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        assert [ready.get(timeout=60) for _ in workers] == ["ready"] * PROCESSES
        start.value = time.time()
        store.engage("acme", rate=RATE, burst=BURST, reason="load", now=start.value)
        go.set()
        counts = [ready.get(timeout=60) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
    allowed = sum(c[0] for c in counts)
    elapsed = max(c[3] for c in counts) - start.value
    bound = BURST + RATE * elapsed
    assert all(c[0] > 0 and c[1] > 0 for c in counts), counts
    assert allowed <= bound + 1, (allowed, bound, counts)
    assert allowed >= 0.95 * bound, (allowed, bound, counts)


def _app(gate: ShapingGate) -> Litestar:
    @get("/v1/tenants/{tenant:str}/things", sync_to_thread=False)
    def things(tenant: FromPath[str]) -> dict[str, str]:
        return {"tenant": tenant}

    @put("/v1/tenants/{tenant:str}/budget", sync_to_thread=False)
    def budget(tenant: FromPath[str]) -> dict[str, str]:
        return {"tenant": tenant}

    @get("/healthz", sync_to_thread=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar(
        route_handlers=[things, budget, healthz],
        on_app_init=[jwt_auth(SECRET).on_app_init],
        plugins=[problem_plugin()],
        before_request=shaping_hook(lambda: gate, then=require_json),
        before_send=[add_throttle_header],
    )


def test_an_over_rate_tenant_gets_a_429_problem(store: ShapingStore) -> None:
    """Retry-After, x-ig-throttle and the problem fields; budget stays open."""
    now = [1000.0]
    store.engage("acme", rate=0.5, burst=2.0, reason="cost over budget", now=now[0])
    gate = ShapingGate(store, refresh_s=60.0, clock=lambda: now[0])
    acme = bearer("acme")
    with TestClient(_app(gate)) as client:
        first = client.get("/v1/tenants/acme/things", headers=acme)
        assert first.status_code == 200
        assert first.headers["x-ig-throttle"] == (
            "rate=0.5;burst=2;remaining=1;reason=cost over budget"
        )
        assert client.get("/v1/tenants/acme/things", headers=acme).status_code == 200
        refused = client.get("/v1/tenants/acme/things", headers=acme)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["retry-after"] == "2"
        assert refused.headers["x-ig-throttle"] == (
            "rate=0.5;burst=2;remaining=0;reason=cost over budget"
        )
        body: dict[str, Any] = refused.json()
        assert body["type"] == "/problems/throttled"
        assert body["status"] == 429
        assert (body["tenant"], body["rateLimit"], body["retryAfterS"]) == (
            "acme",
            0.5,
            2.0,
        )
        budget = client.put("/v1/tenants/acme/budget", headers=acme, json={})
        assert budget.status_code == 200
        assert "x-ig-throttle" not in budget.headers
        assert client.get("/healthz").status_code == 200
        now[0] += 0.5  # a quarter of a token: still refused, rounded up to 1 s
        again = client.get("/v1/tenants/acme/things", headers=acme)
        assert (again.status_code, again.headers["retry-after"]) == (429, "2")
        now[0] += 1.5
        assert client.get("/v1/tenants/acme/things", headers=acme).status_code == 200


def test_unshaped_tenants_never_reach_the_database(store: ShapingStore) -> None:
    """Only the cached rule set is read; takes happen for shaped tenants only."""
    counting = CountingStore(store)
    store.engage("acme", rate=1000.0, burst=1000.0, reason="load", now=time.time())
    gate = ShapingGate(counting, refresh_s=60.0)
    with TestClient(_app(gate)) as client:
        for _ in range(20):
            response = client.get("/v1/tenants/beta/things", headers=bearer("beta"))
            assert response.status_code == 200
            assert "x-ig-throttle" not in response.headers
        assert client.get("/v1/tenants/acme/things", headers=bearer("acme")).is_success
    assert counting.calls == ["rules", "take:acme"]
