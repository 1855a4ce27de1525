"""The API's own event log on the DR pair: it follows the primary across epochs.

The app is built with CONDUCTOR_DR_ROOT and no database URL, so its log, the
catalog/exports/usage read models and their tracking positions live in the
pair's primary (TLS with the client certificate) and replicate to the standby.
Datasets go through POST /v1/datasets; the pair fails over under a steady
writer; every answer is a 201 or a 503 problem, never a 500.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from adapters.dr.health import wait_fresh
from adapters.dr.roles import (
    promote,
    rewind_as_standby,
    switchover,
    wait_caught_up,
)
from adapters.ledger.verify import verify_chain
from tests.conftest import bearer, dataset_body
from tests.integration.dr_support import TTL_MS, pair_api, pair_site

if TYPE_CHECKING:
    from collections.abc import Iterator

    from litestar.testing import TestClient

    from adapters.dr.primary_ledger import PrimaryLedger
    from adapters.dr.site import Site

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

H = bearer("acme")
REGION_PROBLEMS = {
    "/problems/region-unavailable",
    "/problems/read-only-replica",
    "/problems/stale-epoch",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from pair_site(tmp_path_factory, "drledger")


@pytest.fixture(scope="module")
def api(
    site: Site, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient[Any]]:
    yield from pair_api(
        site,
        tmp_path_factory,
        "drledgervar",
        log_on_pair=True,
        projection_poll_s=0.05,
    )


def _ledger(api: TestClient[Any]) -> PrimaryLedger:
    ledger: PrimaryLedger = api.app.state.conductor.core.ledger
    return ledger


def _register(api: TestClient[Any], name: str) -> Any:
    return api.post("/v1/datasets", json=dataset_body(name), headers=H)


def _count_events(site: Site, region: str) -> int:
    with site.pair.connect(region) as conn:
        row = conn.execute("SELECT count(*) FROM stored_events").fetchone()
    assert row is not None
    return int(row[0])


def _logged(site: Site, region: str, name: str) -> int:
    """Events in region's log that mention a dataset name."""
    with site.pair.connect(region) as conn:
        row = conn.execute(
            "SELECT count(*) FROM stored_events "
            "WHERE convert_from(state, 'UTF8') LIKE %s",
            (f'%"{name}"%',),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _assert_region_problem(response: Any) -> None:
    """A 503 problem+json naming a region state, with Retry-After."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["retry-after"] == "1"
    assert response.json()["type"] in REGION_PROBLEMS


def _write_until_ok(api: TestClient[Any], name: str, timeout: float = 10.0) -> Any:
    """Retry a registration through 503s (as a client honouring Retry-After)."""
    deadline = time.monotonic() + timeout
    while True:
        got = _register(api, name)
        if got.status_code != 503 or time.monotonic() > deadline:
            return got
        _assert_region_problem(got)
        time.sleep(0.05)


def _names(api: TestClient[Any], position: int, **headers: str) -> set[str]:
    got = api.get(
        "/v1/datasets?limit=200&status=any",
        headers={**H, "x-ig-min-position": str(position), **headers},
    )
    assert got.status_code == 200, got.text
    return {item["name"] for item in got.json()["items"]}


class Writer(threading.Thread):
    """Registers datasets back to back; records every answer."""

    def __init__(self, api: TestClient[Any], prefix: str) -> None:
        super().__init__(name="dr-ledger-writer", daemon=True)
        self.api = api
        self.prefix = prefix
        self.stop = threading.Event()
        self.acked: dict[str, tuple[str, int]] = {}
        """name -> (dataset id, position) of every 201."""
        self.refused: list[Any] = []
        self.other: list[Any] = []
        self.acked_after: dict[str, float] = {}

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            name = f"{self.prefix}-{n}"
            got = _register(self.api, name)
            if got.status_code == 201:
                body = got.json()
                self.acked[name] = (body["id"], body["position"])
                self.acked_after[name] = time.monotonic()
            elif got.status_code == 503:
                self.refused.append(got)
                time.sleep(0.02)
            else:
                self.other.append(got)


def test_writes_go_to_the_primary_and_replicate(
    site: Site, api: TestClient[Any]
) -> None:
    """POST /v1/datasets lands in A's log; the standby B has it (sync mode)."""
    ledger = _ledger(api)
    assert ledger.follower is not None
    assert ledger.follower.target == ("A", 1)
    before = _count_events(site, "B")
    created = _register(api, "orders")
    assert created.status_code == 201, created.text
    position = created.json()["position"]
    assert _count_events(site, "A") == _count_events(site, "B") > before
    assert "orders" in _names(api, position)


def _search(api: TestClient[Any], read_from: str, **headers: str) -> Any:
    got = api.get(
        "/v1/datasets?limit=200",
        headers={**H, "x-ig-read-from": read_from, **headers},
    )
    assert got.status_code == 200, got.text
    return got


def test_catalog_reads_are_routed_by_x_ig_read_from(
    site: Site, api: TestClient[Any]
) -> None:
    """The standby's replicated catalog answers; stale header; TTL -> primary."""
    position = _register(api, "ledgers").json()["position"]
    assert "ledgers" in _names(api, position)  # the projection (on A) has it
    wait_fresh(site.pair)
    for read_from in ("secondary", "nearest"):  # the API's region is B
        got = _search(api, read_from, **{"x-ig-min-position": str(position)})
        assert got.headers["x-ig-read-region"] == "B"
        assert int(got.headers["x-ig-position"]) >= position
        assert "ledgers" in {item["name"] for item in got.json()["items"]}
    primary = _search(api, "primary")
    assert primary.headers["x-ig-read-region"] == "A"
    assert "ledgers" in {item["name"] for item in primary.json()["items"]}
    bad = api.get("/v1/datasets", headers={**H, "x-ig-read-from": "anywhere"})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "x-ig-read-from"

    site.relay.cut()  # B stops replaying: its catalog ages, and says so
    try:
        deadline = time.monotonic() + 15
        got = _search(api, "secondary")
        while "x-ig-stale-read" not in got.headers:
            assert time.monotonic() < deadline, "x-ig-stale-read never appeared"
            time.sleep(0.05)
            got = _search(api, "secondary")
        assert got.headers["x-ig-read-region"] == "B"
        assert 0 < int(got.headers["x-ig-stale-read"]) <= TTL_MS
        assert "ledgers" in {item["name"] for item in got.json()["items"]}
        while got.headers["x-ig-read-region"] == "B":  # past the TTL: A answers
            assert time.monotonic() < deadline, "no fallback to the primary"
            time.sleep(0.05)
            got = _search(api, "secondary")
        assert "x-ig-stale-read" not in got.headers
        assert "ledgers" in {item["name"] for item in got.json()["items"]}
    finally:
        site.relay.restore()
    wait_fresh(site.pair)
    assert "x-ig-stale-read" not in _search(api, "secondary").headers


def test_failover_under_writes_loses_nothing_acknowledged(
    site: Site, api: TestClient[Any]
) -> None:
    """Kill A, promote B: 503 problems meanwhile, then writes on B; nothing lost."""
    writer = Writer(api, "failover")
    writer.start()
    time.sleep(0.5)  # a baseline of acknowledged writes on A
    site.relay.cut()
    site.pair.cluster("A").kill()
    killed_at = time.monotonic()
    # The switch has not happened yet: a write now cannot succeed.
    _assert_region_problem(_register(api, "during-the-switch"))
    time.sleep(0.3)
    promote(site.pair, "B", site.relay)
    promoted_at = time.monotonic()
    deadline = promoted_at + 15
    while not any(t > promoted_at for t in writer.acked_after.values()):
        assert time.monotonic() < deadline, "no write was acknowledged by B"
        time.sleep(0.05)
    time.sleep(0.3)
    writer.stop.set()
    writer.join(timeout=30)

    assert writer.other == [], [(r.status_code, r.text) for r in writer.other]
    assert writer.refused, "no write met the switch"
    for refused in writer.refused:
        _assert_region_problem(refused)
    before = [n for n, t in writer.acked_after.items() if t < killed_at]
    after = [n for n, t in writer.acked_after.items() if t > promoted_at]
    assert before
    assert after
    ledger = _ledger(api)
    assert ledger.follower is not None
    assert ledger.follower.target == ("B", 2)

    # After the switch, writes succeed on B (and name it nowhere else).
    late = _write_until_ok(api, "after-the-switch")
    assert late.status_code == 201, late.text
    last = late.json()["position"]

    # Sync mode: every acknowledged dataset is in B's log, in order, chained.
    for name, (dataset_id, _position) in writer.acked.items():
        got = api.get(f"/v1/datasets/{dataset_id}", headers=H)
        assert got.status_code == 200, (name, got.text)
        assert got.json()["name"] == name
    report = verify_chain(ledger.chained)
    assert report.ok, report
    assert report.checked > len(writer.acked)

    # The projections resumed on B from their replicated tracking positions.
    for runner in api.app.state.conductor.core.runners.values():
        assert runner.wait(last, 15), runner.status()
    names = _names(api, last)
    assert set(writer.acked) | {"orders", "after-the-switch"} <= names
    with site.pair.connect("B") as conn:
        row = conn.execute(
            "SELECT count(*) FROM catalog_datasets WHERE tenant = 'acme'"
        ).fetchone()
    assert row is not None
    assert row[0] == len(names)


def test_a_stale_picture_of_the_pair_gets_503s_not_writes(
    site: Site, api: TestClient[Any]
) -> None:
    """dr.json naming the rewound A, or a wrong epoch: refused with nothing written."""
    site.relay.restore()  # A streams from B through the relay once rewound
    rewind_as_standby(site.pair, "A")
    state = site.pair.root / "dr.json"
    true_state = state.read_text(encoding="utf-8")
    ledger = _ledger(api)
    assert ledger.follower is not None
    try:
        stale = json.loads(true_state)
        stale["primary"] = "A"  # a writer still believing A is primary
        _rewrite(state, stale)
        _wait_target(ledger, ("A", stale["epoch"]))
        refused = _register(api, "to-a-standby")
        _assert_region_problem(refused)
        assert refused.json()["type"] == "/problems/read-only-replica"
        assert refused.json()["primary"] == "B"

        wrong = json.loads(true_state)
        wrong["epoch"] += 1  # B is not at this epoch: fenced in the transaction
        _rewrite(state, wrong)
        _wait_target(ledger, ("B", wrong["epoch"]))
        fenced = _register(api, "wrong-epoch")
        _assert_region_problem(fenced)
        assert fenced.json()["type"] == "/problems/stale-epoch"
        assert fenced.json()["nodeEpoch"] == wrong["epoch"] - 1
    finally:
        _rewrite(state, json.loads(true_state))
    for refused_name in ("to-a-standby", "wrong-epoch"):  # nothing half written
        assert _logged(site, "B", refused_name) == 0
    _wait_target(ledger, ("B", json.loads(true_state)["epoch"]))
    again = _write_until_ok(api, "back-on-b")
    assert again.status_code == 201, again.text
    assert _logged(site, "B", "back-on-b") == 1


def _rewrite(path: Any, state: dict[str, Any]) -> None:
    tmp = path.with_name(".dr.json.test")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    tmp.replace(path)


def _wait_target(ledger: PrimaryLedger, target: tuple[str, int]) -> None:
    assert ledger.follower is not None
    deadline = time.monotonic() + 10
    while ledger.follower.target != target:
        assert time.monotonic() < deadline, ledger.follower.target
        time.sleep(0.02)


def test_switchover_back_to_a_under_writes(site: Site, api: TestClient[Any]) -> None:
    """A graceful switchover to A: 201s and 503 problems only; A then takes writes."""
    writer = Writer(api, "switchover")
    writer.start()
    time.sleep(0.3)
    switched = switchover(site.pair, "A", site.relay)
    switched_at = time.monotonic()
    deadline = switched_at + 15
    while not any(t > switched_at for t in writer.acked_after.values()):
        assert time.monotonic() < deadline, "no write was acknowledged by A"
        time.sleep(0.05)
    writer.stop.set()
    writer.join(timeout=30)
    assert writer.other == [], [(r.status_code, r.text) for r in writer.other]
    for refused in writer.refused:
        _assert_region_problem(refused)
    ledger = _ledger(api)
    assert ledger.follower is not None
    assert ledger.follower.target == ("A", switched.epoch)
    for name, (dataset_id, _position) in writer.acked.items():
        got = api.get(f"/v1/datasets/{dataset_id}", headers=H)
        assert got.status_code == 200, (name, got.text)
    assert verify_chain(ledger.chained).ok
    wait_caught_up(site.pair)  # B, rewound into A's standby, has it all
    assert all(_logged(site, "B", name) == 1 for name in writer.acked)
