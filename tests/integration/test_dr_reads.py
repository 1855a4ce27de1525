"""Reads by region and the API's caches on the DR pair (the log on the pair).

The app is built with CONDUCTOR_DR_ROOT and no database URL (as in
test_dr_ledger.py): lineage, coverage and the exports read model honour
x-ig-read-from like the catalog search; a switch of primary empties the
per-process search cache and wakes the projection runners; the CLI tools
that read the log open the pair's primary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from adapters.dr.health import wait_fresh
from adapters.dr.roles import switchover
from api.runtime.dr import ledger_label, on_primary_switch
from projections.runner import BatchRunner
from tests.conftest import SECRET, bearer, dataset_body
from tests.integration.dr_support import TTL_MS, pair_api, pair_site
from tests.integration.server import REPO_ROOT
from tests.integration.test_exports import register, request, settle

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from litestar.testing import TestClient

    from adapters.dr.site import Site
    from api.bootstrap import Conductor

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

H = bearer("acme")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from pair_site(tmp_path_factory, "drreads")


@pytest.fixture(scope="module")
def api(
    site: Site, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient[Any]]:
    yield from pair_api(
        site,
        tmp_path_factory,
        "drreadsvar",
        log_on_pair=True,
        projection_poll_s=0.05,
        metering=False,  # no periodic events: the log only moves when we write
    )


def _services(api: TestClient[Any]) -> Conductor:
    services: Conductor = api.app.state.conductor
    return services


def _get(api: TestClient[Any], path: str, **headers: str) -> Any:
    got = api.get(path, headers={**H, **headers})
    assert got.status_code == 200, (path, got.text)
    return got


def _routes(dataset_id: str, export_id: str) -> list[str]:
    return [
        f"/v1/datasets/{dataset_id}/lineage?direction=down",
        f"/v1/datasets/{dataset_id}",  # the write model, from a region's log
        f"/v1/datasets/{dataset_id}/history",
        "/v1/catalog/coverage",
        "/v1/exports",
        f"/v1/exports/{export_id}",
    ]


def _assert_b_answers_like_a(api: TestClient[Any], wanted: dict[str, Any]) -> None:
    """B's copies answer, at or past A's positions, what A answered."""
    for path, primary in wanted.items():
        assert primary.headers["x-ig-read-region"] == "A", path
        minimum = primary.headers.get("x-ig-position", "0")
        for read_from in ("secondary", "nearest"):  # the API's region is B
            got = _get(
                api,
                path,
                **{"x-ig-read-from": read_from, "x-ig-min-position": minimum},
            )
            assert got.headers["x-ig-read-region"] == "B", path
            assert int(got.headers["x-ig-position"]) >= int(minimum), path
            if path.startswith("/v1/exports/"):  # the read model's row
                row, export = got.json(), primary.json()
                for field in ("id", "status", "datasetId", "decision", "proof"):
                    assert row.get(field) == export.get(field), field
            else:
                assert got.json() == primary.json(), path
            assert got.headers.get("etag") == primary.headers.get("etag"), path


def _assert_stale_then_primary(
    api: TestClient[Any], site: Site, wanted: dict[str, Any], lineage_path: str
) -> None:
    """Under a cut link B's answers carry x-ig-stale-read, then A answers."""
    secondary = {"x-ig-read-from": "secondary"}
    site.relay.cut()  # B stops replaying: its copies age, and say so
    try:
        deadline = time.monotonic() + 15
        got = _get(api, lineage_path, **secondary)
        while "x-ig-stale-read" not in got.headers:
            assert time.monotonic() < deadline, "x-ig-stale-read never appeared"
            time.sleep(0.05)
            got = _get(api, lineage_path, **secondary)
        for path in wanted:
            got = _get(api, path, **secondary)
            assert got.headers["x-ig-read-region"] == "B", path
            assert 0 < int(got.headers["x-ig-stale-read"]) <= TTL_MS, path
        while got.headers["x-ig-read-region"] == "B":  # past the TTL: A answers
            assert time.monotonic() < deadline, "no fallback to the primary"
            time.sleep(0.05)
            got = _get(api, lineage_path, **secondary)
        for path, primary in wanted.items():
            got = _get(api, path, **secondary)
            assert got.headers["x-ig-read-region"] == "A", path
            assert "x-ig-stale-read" not in got.headers, path
            if not path.startswith("/v1/exports/"):
                assert got.json() == primary.json(), path
    finally:
        site.relay.restore()
    wait_fresh(site.pair)


def test_lineage_coverage_and_exports_are_routed_by_x_ig_read_from(
    site: Site, api: TestClient[Any]
) -> None:
    """B's replicated read models (and B's log, for a dataset and its
    history) answer like A's; stale header; TTL -> A."""
    settings = _services(api).core.settings
    source = register(api, settings, "customers")
    derived = api.post(
        "/v1/datasets", json=dataset_body("derived", upstream=[source]), headers=H
    )
    assert derived.status_code == 201, derived.text
    export_id = request(api, source).json()["id"]
    assert settle(api, export_id)["status"] == "proven"
    head = _services(api).core.ledger.recorder.max_notification_id() or 0
    for runner in _services(api).core.runners.values():
        assert runner.wait(head, 10), runner.status()
    # The primary's read models, at the positions B must reach.
    wanted = {
        path: _get(api, path, **{"x-ig-read-from": "primary"})
        for path in _routes(source, export_id)
    }
    wait_fresh(site.pair)
    before = _read_counts(api)
    _assert_b_answers_like_a(api, wanted)
    fresh = _read_counts(api)
    assert fresh[1] - before[1] >= 2 * len(wanted)  # every answer of B counted
    coverage = wanted["/v1/catalog/coverage"].json()
    assert coverage["filesRegistered"] == 1
    lineage = wanted[_routes(source, export_id)[0]].json()
    assert {node["name"] for node in lineage["nodes"]} >= {"customers", "derived"}

    # Not found in B's copies either; a bad header is a 400 on every route.
    secondary = {"x-ig-read-from": "secondary"}
    nowhere = uuid.uuid4()
    for path in (
        f"/v1/exports/{nowhere}",
        f"/v1/datasets/{nowhere}/lineage",
        f"/v1/datasets/{nowhere}",
        f"/v1/datasets/{nowhere}/history",
    ):
        missing = api.get(path, headers={**H, **secondary})
        assert missing.status_code == 404, missing.text
        assert missing.headers["content-type"].startswith("application/problem+json")
    for path in wanted:
        bad = api.get(path, headers={**H, "x-ig-read-from": "anywhere"})
        assert bad.status_code == 400, (path, bad.text)
        assert bad.json()["errors"][0]["field"] == "x-ig-read-from"

    # B's log is not yet at a position asked for: A answers.
    ahead = str((_services(api).core.ledger.recorder.max_notification_id() or 0) + 1000)
    got = _get(
        api,
        f"/v1/datasets/{source}",
        **{"x-ig-read-from": "secondary", "x-ig-min-position": ahead},
    )
    assert got.headers["x-ig-read-region"] == "A"
    assert got.json() == wanted[f"/v1/datasets/{source}"].json()

    _assert_stale_then_primary(api, site, wanted, _routes(source, export_id)[0])
    after = _read_counts(api)
    stale, secondary = after[0] - before[0], after[1] - before[1]
    assert stale >= len(wanted)  # the cut link's answers, each with its header
    assert 0 < stale / secondary <= 1  # the stale-read rate
    metrics = api.get("/metrics").text
    assert 'conductor_dr_secondary_reads_total{region="B"}' in metrics
    assert 'conductor_dr_stale_reads_total{region="B"}' in metrics


def _read_counts(api: TestClient[Any]) -> tuple[float, float]:
    """(stale reads, secondary reads) region B answered, from /metrics' registry."""
    registry = _services(api).core.metrics.registry
    stale = registry.get_sample_value("conductor_dr_stale_reads_total", {"region": "B"})
    secondary = registry.get_sample_value(
        "conductor_dr_secondary_reads_total", {"region": "B"}
    )
    return stale or 0.0, secondary or 0.0


def test_without_the_header_reads_come_from_the_region_the_api_runs_in(
    site: Site, api: TestClient[Any]
) -> None:
    """The API runs in region B (CONDUCTOR_DR_REGION): `nearest` is the default."""
    assert site.pair.state.standby == "B"
    got = _get(api, "/v1/datasets?limit=5")
    assert got.headers["x-ig-read-region"] == "B"
    asked = _get(api, "/v1/datasets?limit=5", **{"x-ig-read-from": "nearest"})
    assert asked.json() == got.json()


def _search(api: TestClient[Any]) -> Any:
    """On the primary: its per-process cache is what a switch must empty."""
    return _get(
        api, "/v1/datasets?limit=200&status=any", **{"x-ig-read-from": "primary"}
    )


def test_a_switch_empties_the_search_cache_and_resumes_the_runners(
    site: Site, api: TestClient[Any]
) -> None:
    """After a switchover the same search at the same position is a miss."""
    services = _services(api)
    switches: list[tuple[str, int]] = []
    # build_conductor wired the cache's clear and the runners' resume; this
    # listener only records that the switch was announced.
    assert on_primary_switch(
        services.core.ledger, lambda region, epoch: switches.append((region, epoch))
    )
    _search(api)
    cached = _search(api)
    assert cached.headers["x-ig-cache"] == "hit"

    switched = switchover(site.pair, "B", site.relay)
    follower = getattr(services.core.ledger, "follower", None)
    assert follower is not None
    deadline = time.monotonic() + 10
    while follower.target != ("B", switched.epoch):
        assert time.monotonic() < deadline, follower.target
        time.sleep(0.02)
    assert switches[-1] == ("B", switched.epoch)

    after = _search(api)
    # Same position (no write since), yet not served from the old primary's pages.
    assert after.headers["x-ig-position"] == cached.headers["x-ig-position"]
    assert after.headers["x-ig-cache"] == "miss"
    assert after.json() == cached.json()
    assert _search(api).headers["x-ig-cache"] == "hit"

    created = api.post("/v1/datasets", json=dataset_body("on-b"), headers=H)
    deadline = time.monotonic() + 15
    while created.status_code == 503:  # the switch may still refuse a write
        assert time.monotonic() < deadline, created.text
        time.sleep(0.05)
        created = api.post("/v1/datasets", json=dataset_body("on-b"), headers=H)
    assert created.status_code == 201, created.text
    for runner in services.core.runners.values():
        assert runner.wait(created.json()["position"], 10), runner.status()


def _cli(site: Site, var: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m api.cli ARGS` with the pair and no database URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
    env.update(
        CONDUCTOR_DR_ROOT=str(site.pair.root),
        CONDUCTOR_DR_REGION="A",
        CONDUCTOR_VAR=str(var),
        CONDUCTOR_JWT_SECRET=SECRET,
        CONDUCTOR_LOG_LEVEL="warning",
    )
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_tools_open_the_log_on_the_pairs_primary(
    site: Site, api: TestClient[Any], tmp_path: Path
) -> None:
    """`log verify`, `audit export-log`, `projections status` read the primary (B)."""
    assert site.pair.state.primary == "B"  # after the previous test's switchover
    with site.pair.connect("B") as conn:
        row = conn.execute("SELECT count(*) FROM stored_events").fetchone()
    assert row is not None
    events = int(row[0])
    assert events > 0

    verified = _cli(site, tmp_path, "log", "verify", "--json")
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] is True
    assert report["checked"] >= events  # the API may have appended since

    out = tmp_path / "log.jsonl"
    exported = _cli(site, tmp_path, "audit", "export-log", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) >= events
    status = _cli(site, tmp_path, "projections", "status")
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line.split()[1:4] for line in status.stdout.splitlines()}
    position, head, lag = rows["catalog"]
    assert int(head) >= report["headPosition"]
    assert int(position) + int(lag) == int(head)
    assert not (tmp_path / "conductor.db").exists()  # no default SQLite log

    label = ledger_label(_services(api).core.settings)
    assert label.startswith(f"DR pair {site.pair.root}")
    assert "primary B" in label


class _FailingOnce:
    """A recorder whose first page read fails (a primary lost mid-switch)."""

    def __init__(self) -> None:
        self.calls = 0

    def select_notifications(self, **_: Any) -> Sequence[Any]:
        self.calls += 1
        if self.calls == 1:
            msg = "primary lost"
            raise ConnectionError(msg)
        return []

    def max_notification_id(self) -> int:
        return 0


class _Projection:
    name = "fake"
    topics: Sequence[str] = ()

    def __init__(self) -> None:
        self.view = self

    def max_tracking_id(self, _name: str) -> int:
        return 0

    def process_batch(self, *_: Any) -> None:  # pragma: no cover - no events
        return


def test_resume_cuts_a_failed_runners_backoff_short() -> None:
    """A runner backing off after a failure retries at once when resumed."""
    recorder = _FailingOnce()
    runner = BatchRunner(
        projection=_Projection(),
        recorder=recorder,  # type: ignore[arg-type]
        mapper=None,  # type: ignore[arg-type]
        poll_interval=30.0,  # the backoff a switch would otherwise wait out
    )
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while runner.failures == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert runner.error.startswith("ConnectionError")
        runner.wake()  # a commit's wake-up does not cut the backoff short
        time.sleep(0.1)
        assert recorder.calls == 1
        runner.resume("B", 2)
        deadline = time.monotonic() + 5
        while recorder.calls < 2 or runner.error:
            assert time.monotonic() < deadline, runner.status()
            time.sleep(0.01)
    finally:
        stopped = threading.Thread(target=runner.stop)
        stopped.start()
        stopped.join(5)
        assert not stopped.is_alive()


def test_disabling_secondary_reads_sends_every_read_to_the_primary(
    site: Site, api: TestClient[Any]
) -> None:
    """The seed's first backout: with the switch engaged, x-ig-read-from names
    the standby in vain (the primary answers, and says why); released, the
    standby answers again."""
    dr = _services(api).dr.runtime
    assert dr is not None
    state = dr.pair().state  # an earlier test may have switched the roles
    source = register(api, _services(api).core.settings, "backout")
    head = _services(api).core.ledger.recorder.max_notification_id() or 0
    wait_fresh(site.pair)
    path = f"/v1/datasets/{source}"
    secondary = {"x-ig-read-from": "secondary", "x-ig-min-position": str(head)}
    assert _get(api, path, **secondary).headers["x-ig-read-region"] == state.standby
    operator = bearer("ops", "platform.operate")
    engaged = api.put(
        "/v1/switches/disable-secondary-reads",
        json={"engaged": True, "reason": "replica suspect"},
        headers=operator,
    )
    assert engaged.status_code == 200, engaged.text
    try:
        got = _get(api, path, **secondary)
        assert got.headers["x-ig-read-region"] == state.primary
        assert got.headers["x-ig-backout"] == "disable-secondary-reads"
        assert "x-ig-stale-read" not in got.headers
        bad = api.get(path, headers={**H, "x-ig-read-from": "mars"})
        assert bad.status_code == 400  # still validated
    finally:
        released = api.put(
            "/v1/switches/disable-secondary-reads",
            json={"engaged": False, "reason": "replica checked"},
            headers=operator,
        )
        assert released.status_code == 200, released.text
    head = _services(api).core.ledger.recorder.max_notification_id() or 0
    secondary["x-ig-min-position"] = str(head)
    deadline = time.monotonic() + 10
    while _get(api, path, **secondary).headers["x-ig-read-region"] != state.standby:
        assert time.monotonic() < deadline, "the standby never answered again"
        time.sleep(0.05)
