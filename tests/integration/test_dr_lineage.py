"""Lineage in region B: rebuilt from the replicated log, through failover and restarts.

Datasets and their lineage links are written through the real application
(Datasets over the event log in the primary's PostgreSQL, TLS with the
client certificate); region B's follower reads its standby's copy of the log
into B's embedded lineage store, as the DR daemon does.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING, Any, Literal

import pytest
from eventsourcing.persistence import Mapper
from litestar.testing import TestClient

from adapters.catalog.lineage_sqlite import open_sqlite_lineage
from adapters.dr.health import wait_fresh
from adapters.dr.lineage_follower import follow_lineage, store_path
from adapters.dr.pair import RegionPair
from adapters.dr.region_log import open_region_log
from adapters.dr.roles import promote
from adapters.dr.site import Site, create_site
from adapters.ledger.transcoder import CanonicalJSONTranscoder
from api.app import create_app
from api.settings import Settings
from application.catalog.datasets import Datasets
from projections.lineage import LineageProjection
from projections.runner import BatchRunner
from tests.conftest import SECRET, bearer, dataset_spec
from tests.fakes import MemoryLineageView
from tests.integration.dr_support import dr_cli

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from uuid import UUID

    from adapters.ledger.store import Ledger
    from projections.lineage import LineageView

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

REGIONS = frozenset({"EU"})
WAIT_S = 20.0
DIRECTIONS: tuple[Literal["up", "down"], ...] = ("up", "down")


def _site(factory: pytest.TempPathFactory, name: str) -> Site:
    root = factory.mktemp(name)
    os.chmod(root, 0o755)  # noqa: PTH101 - postgres must traverse it
    return create_site(root / "pair", sync=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    made = _site(tmp_path_factory, "drlineage")
    try:
        yield made
    finally:
        made.close(destroy=True)


class Writer:
    """The dataset registry over the event log in one region of the pair."""

    def __init__(self, pair: RegionPair, region: str) -> None:
        self.log: Ledger = open_region_log(pair, region, create_tables=True)
        self.app = Datasets(self.log, regions=REGIONS)
        self.ids: dict[tuple[str, str], UUID] = {}
        self.position = 0

    def register(self, name: str, *upstream: str, tenant: str = "acme") -> UUID:
        result = self.app.register_dataset(
            tenant=tenant,
            spec=dataset_spec(name),
            upstream=[self.ids[tenant, u] for u in upstream],
        )
        self.ids[tenant, name] = result.id
        self.position = max(self.position, result.position or 0)
        return result.id

    def link(self, name: str, *upstream: str, tenant: str = "acme") -> None:
        result = self.app.link_lineage(
            tenant=tenant,
            dataset_id=self.ids[tenant, name],
            upstream=[self.ids[tenant, u] for u in upstream],
        )
        self.position = max(self.position, result.position or 0)

    def retire(self, name: str, tenant: str = "acme") -> None:
        result = self.app.retire_dataset(
            tenant=tenant, dataset_id=self.ids[tenant, name]
        )
        self.position = max(self.position, result.position or 0)

    def close(self) -> None:
        self.log.close()


def _rebuild(log: Ledger) -> MemoryLineageView:
    """The lineage graph rebuilt from a whole log into the reference fake."""
    view = MemoryLineageView()
    BatchRunner(
        projection=LineageProjection(view=view),
        recorder=log.recorder,
        mapper=Mapper(transcoder=CanonicalJSONTranscoder()),
    ).catch_up()
    return view


def _assert_same_graph(store: LineageView, writer: Writer, log: Ledger) -> None:
    """Every walk agrees with a rebuild from log; direct edges with the aggregates."""
    rebuilt = _rebuild(log)
    for (tenant, name), dataset_id in writer.ids.items():
        for direction in DIRECTIONS:
            got = store.lineage(tenant, dataset_id, direction, 10)
            assert got == rebuilt.lineage(tenant, dataset_id, direction, 10), name
        dataset = writer.app.get_dataset(tenant=tenant, dataset_id=dataset_id)
        one_hop = store.lineage(tenant, dataset_id, "up", 1)
        assert {u for d, u in one_hop.edges if d == dataset_id} == set(dataset.upstream)
        assert one_hop.nodes[0].status == ("retired" if dataset.retired else "active")


def _entries(log: Ledger, *, after: int = 0) -> int:
    return len(log.entries(after=after, limit=100_000))


def _write_graph(writer: Writer) -> None:
    """A chain, a diamond, a relink, a retirement and another tenant."""
    writer.register("raw")
    writer.register("clean", "raw")
    writer.register("report")
    writer.link("report", "clean")
    writer.register("left", "raw")
    writer.register("right", "raw")
    writer.register("joined", "left", "right")
    writer.retire("raw")
    writer.register("raw", tenant="globex")
    writer.register("mart", "raw", tenant="globex")


def test_region_b_store_equals_the_graph_written_on_the_primary(
    site: Site, tmp_path: Path
) -> None:
    """B's follower builds from B's replicated log the graph A's writers made."""
    writer = Writer(site.pair, "A")
    follower = follow_lineage(site.pair, "B")
    try:
        _write_graph(writer)
        assert follower.wait(writer.position, WAIT_S), follower.status()
        _assert_same_graph(follower.view, writer, writer.log)
        up = follower.view.lineage("acme", writer.ids["acme", "joined"], "up", 5)
        assert [(n.name, n.depth, n.status) for n in up.nodes] == [
            ("joined", 0, "active"),
            ("left", 1, "active"),
            ("right", 1, "active"),
            ("raw", 2, "retired"),
        ]
        assert follower.applied == _entries(writer.log)
        _check_api(site, writer, tmp_path)
    finally:
        follower.close()
        writer.close()


def _check_api(site: Site, writer: Writer, var: Path) -> None:
    """GET /v1/dr/lineage/{id} answers from region B's store with its position."""
    settings = Settings(
        var=str(var),
        database_url=f"sqlite:///{var / 'conductor.db'}",
        jwt_secret=SECRET,
        dr_root=str(site.pair.root),
        dr_region="B",
        checkpoint_interval_s=3600.0,
    )
    headers = bearer("acme", "dr.operate")
    report = writer.ids["acme", "report"]
    with TestClient(create_app(settings)) as api:
        got = api.get(f"/v1/dr/lineage/{report}?depth=2", headers=headers)
        assert got.status_code == 200, got.text
        assert [n["name"] for n in got.json()["nodes"]] == ["report", "clean", "raw"]
        assert got.headers["x-ig-read-region"] == "B"
        assert got.headers["x-ig-lag-events"] == "0"
        assert int(got.headers["x-ig-position"]) >= writer.position
        down = api.get(
            f"/v1/dr/lineage/{writer.ids['acme', 'raw']}?direction=down&depth=1",
            headers=headers,
        ).json()
        assert {n["name"] for n in down["nodes"]} == {"raw", "clean", "left", "right"}
        other = api.get(
            f"/v1/dr/lineage/{writer.ids['globex', 'mart']}", headers=headers
        )
        assert other.status_code == 404  # another tenant's dataset
        assert other.headers["content-type"].startswith("application/problem+json")
        _check_stale_header(site, api, f"/v1/dr/lineage/{report}", headers)
        denied = api.get(
            f"/v1/dr/lineage/{report}", headers=bearer("acme", "catalog.read")
        )
        assert denied.status_code == 403


def _check_stale_header(
    site: Site, api: TestClient[Any], url: str, headers: dict[str, str]
) -> None:
    """With the link cut B's store still answers, saying how stale B's log is."""
    site.relay.cut()
    try:
        deadline = time.monotonic() + WAIT_S
        got = api.get(url, headers=headers)
        while int(got.headers.get("x-ig-stale-read", "0")) == 0:
            assert time.monotonic() < deadline, "x-ig-stale-read never appeared"
            time.sleep(0.05)
            got = api.get(url, headers=headers)
        assert got.status_code == 200
        assert got.headers["x-ig-read-region"] == "B"
    finally:
        site.relay.restore()
    wait_fresh(site.pair)
    fresh = api.get(url, headers=headers)
    assert "x-ig-stale-read" not in fresh.headers


def test_failover_and_restart_keep_the_store_exact(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """After B is promoted the follower goes on with B's log; restarts resume."""
    with contextlib.ExitStack() as stack:
        own = _site(tmp_path_factory, "drlinfail")
        stack.callback(own.close, destroy=True)
        writer_a = Writer(own.pair, "A")
        stack.callback(writer_a.close)
        follower = follow_lineage(own.pair, "B")
        stack.callback(follower.close)
        _write_graph(writer_a)
        assert follower.wait(writer_a.position, WAIT_S), follower.status()

        # Failover: A is killed and fenced, B promoted (sync: nothing lost).
        promote(own.pair, "B", own.relay)
        writer_b = Writer(own.pair, "B")
        stack.callback(writer_b.close)
        writer_b.ids = dict(writer_a.ids)
        writer_b.register("after", "report", "joined")
        writer_b.link("clean", "left")
        writer_b.retire("report")
        assert writer_b.position > writer_a.position
        assert follower.wait(writer_b.position, WAIT_S), follower.status()
        _assert_same_graph(follower.view, writer_b, writer_b.log)
        # No gap and no double apply: every entry of B's log read exactly once.
        assert follower.applied == _entries(writer_b.log)
        # B's log kept every event the store applied: the tip check agrees.
        assert follower.check.rebuilds == 0
        assert follower.check.diverged() is None

        # Restart: stop, write more on B, a new follower resumes from tracking.
        stopped_at = follower.position()
        follower.close()
        writer_b.register("late", "after")
        writer_b.link("right", "clean")
        store = open_sqlite_lineage(store_path(own.pair.root, "B"))
        assert store.max_tracking_id("ledger") == stopped_at
        store.close()
        again = follow_lineage(own.pair, "B")
        stack.callback(again.close)
        assert again.wait(writer_b.position, WAIT_S), again.status()
        assert again.applied == _entries(writer_b.log, after=stopped_at) > 0
        _assert_same_graph(again.view, writer_b, writer_b.log)

        # B itself restarts under the follower: it reconnects and goes on.
        own.pair.cluster("B").stop("fast")
        own.pair.cluster("B").start()
        writer_c = Writer(own.pair, "B")  # the old pool's connections died
        stack.callback(writer_c.close)
        writer_c.ids = dict(writer_b.ids)
        writer_c.register("reborn", "late")
        assert again.wait(writer_c.position, WAIT_S), again.status()
        assert again.applied == _entries(writer_c.log, after=stopped_at)
        _assert_same_graph(again.view, writer_c, writer_c.log)
        assert again.check.rebuilds == 0


def test_dr_up_runs_region_b_follower_in_its_daemon(tmp_path: Path) -> None:
    """`conductor dr up` leaves a daemon that keeps B's lineage store current."""
    var = tmp_path / "var"
    var.mkdir()
    os.chmod(tmp_path, 0o755)  # noqa: PTH101 - postgres must traverse it
    os.chmod(var, 0o755)  # noqa: PTH101
    root = var / "dr"
    try:
        up = dr_cli(var, "up")
        assert up.returncode == 0, up.stderr
        assert "lineage" in up.stdout
        writer = Writer(RegionPair.load(root), "A")
        try:
            raw = writer.register("raw")
            clean = writer.register("clean", "raw")
        finally:
            writer.close()
        store = open_sqlite_lineage(store_path(root, "B"))
        try:
            deadline = time.monotonic() + WAIT_S
            while (store.max_tracking_id("ledger") or 0) < writer.position:
                assert time.monotonic() < deadline, (root / "daemon.log").read_text()
                time.sleep(0.05)
            graph = store.lineage("acme", clean, "up", 3)
            assert [n.id for n in graph.nodes] == [clean, raw]
        finally:
            store.close()
    finally:
        down = dr_cli(var, "down")
    assert down.returncode == 0, down.stderr
    assert not root.exists()
