"""A projection built while events arrive equals one rebuilt from the whole log."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from adapters.catalog.sql import FACET_LIMIT
from adapters.ledger.store import open_ledger
from api.wiring.catalog import catalog_view
from application.catalog.datasets import Datasets
from domain.catalog.dataset import Dataset
from domain.values import Column, DatasetSpec
from projections.catalog import CatalogProjection, CatalogQuery
from projections.runner import BatchRunner

if TYPE_CHECKING:
    from projections.catalog import CatalogPage, CatalogRow, CatalogView

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REGIONS = frozenset({"US", "EU", "UK"})
N = 10_000


def spec(i: int, rng: random.Random) -> DatasetSpec:
    return DatasetSpec(
        name=f"ds-{i:05d}",
        description=" ".join(
            rng.choices(
                ["orders", "payments", "clicks", "people", "ledger", "stream", "daily"],
                k=6,
            )
        ),
        license=rng.choice(["Restricted-TOS", "CC-BY-4.0", "Embargoed"]),
        purposes=tuple(
            sorted(set(rng.choices(["investigation", "fraud", "ops"], k=2)))
        ),
        retention=rng.choice(["P1Y", "P90D", "indefinite"]),
        region=rng.choice(sorted(REGIONS)),
        contract_version="v1",
        tags=tuple(sorted(set(rng.choices(["a", "b", "c", "d"], k=2)))),
        columns=(Column("email", "pii.email"), Column(f"c{i % 7}", "public")),
    )


def all_rows(view: CatalogView) -> list[CatalogRow]:
    rows: list[CatalogRow] = []
    while batch := view.rows(after=rows[-1].id if rows else None, limit=2000):
        rows += batch
    return rows


def expected_facets(
    rows: list[CatalogRow], status: str, *, region: str
) -> tuple[dict[str, dict[str, int]], int]:
    """Disjunctive facets by brute force over the rows."""
    scoped = [r for r in rows if status == "any" or r.status == status]
    licenses = Counter(r.license for r in scoped if r.region == region)
    regions = Counter(r.region for r in scoped)
    purposes = Counter(p for r in scoped if r.region == region for p in r.purposes)
    tags = Counter(t for r in scoped if r.region == region for t in r.tags)
    contracts = Counter(r.contract_status for r in scoped if r.region == region)

    def top(counter: Counter[str]) -> dict[str, int]:
        return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))

    total = sum(1 for r in scoped if r.region == region)
    facets = {
        "license": top(licenses),
        "purpose": top(purposes),
        "region": top(regions),
        "tag": dict(list(top(tags).items())[:FACET_LIMIT]),
        "contractStatus": top(contracts),
    }
    return facets, total


SEARCHES = [
    CatalogQuery(tenant="acme", q="payments"),
    CatalogQuery(tenant="acme", q="pay orders", status="any"),
    CatalogQuery(tenant="acme", q="amended", region="EU"),
    CatalogQuery(tenant="acme", q="ledger", license="Embargoed", purpose="fraud"),
    CatalogQuery(tenant="acme", q="ds", tag="z"),
    CatalogQuery(tenant="acme", tag="a", region="US"),
    CatalogQuery(tenant="acme", purpose="ops", status="retired"),
    CatalogQuery(tenant="acme", limit=50),
    CatalogQuery(tenant="other", q="payments"),
]


def searched(view: CatalogView) -> list[CatalogPage]:
    """Each search's first page and, through its cursor, its second."""
    pages = []
    for query in SEARCHES:
        page = view.search(query)
        pages.append(page)
        if page.next_after is not None:
            pages.append(view.search(dataclasses.replace(query, after=page.next_after)))
    return pages


def test_rebuild_of_10k_datasets_equals_the_incremental_projection(
    database_url: str,
) -> None:
    """Incremental (small batches, interleaved with writes) == full rebuild."""
    rng = random.Random(7)
    ledger = open_ledger(database_url)
    try:
        app = Datasets(ledger, regions=REGIONS)
        view = catalog_view(ledger)
        runner = BatchRunner(
            projection=CatalogProjection(view=view),
            recorder=ledger.recorder,
            mapper=app.mapper,
            batch_size=137,
        )
        ids = []
        for start in range(0, N, 500):
            batch = [
                Dataset.register(tenant="acme", spec=spec(i, rng), regions=REGIONS)
                for i in range(start, start + 500)
            ]
            app.save(*batch)
            ids += [d.id for d in batch]
            runner.catch_up()
            view.search(SEARCHES[start // 500 % len(SEARCHES)])  # index follows
        for i in rng.sample(range(N), 300):
            current = app.get_dataset(tenant="acme", dataset_id=ids[i])
            app.amend_dataset(
                tenant="acme",
                dataset_id=ids[i],
                expected_version=current.version,
                changes={"description": f"amended {i}", "tags": ("z",)},
            )
        runner.catch_up()
        view.search(SEARCHES[0])  # the index applies the amendments in place
        for i in rng.sample(range(1, N), 200):
            app.link_lineage(tenant="acme", dataset_id=ids[i], upstream=[ids[i - 1]])
        for i in rng.sample(range(N), 200):
            app.retire_dataset(tenant="acme", dataset_id=ids[i], reason="test")
        runner.catch_up()
        assert runner.position() == ledger.recorder.max_notification_id()

        incremental = all_rows(view)
        facets = view.search(
            CatalogQuery(tenant="acme", q="payments", status="any")
        ).facets
        for status in ("active", "retired", "any"):
            # Without text the facets come from the maintained cross-tab table;
            # they must equal counting the rows themselves.
            page = view.search(CatalogQuery(tenant="acme", status=status, region="EU"))  # type: ignore[arg-type]
            assert (page.facets, page.total) == expected_facets(
                incremental, status, region="EU"
            )
        lineage = view.lineage("acme", ids[5000], "up", 3)
        live = searched(view)
        # A second view over the same rows builds its index in one go: the
        # incrementally maintained one must answer exactly the same.
        assert searched(catalog_view(ledger)) == live
        assert sum(len(page.items) for page in live) > 100

        view.reset()
        assert all_rows(view) == []
        rebuilt_runner = BatchRunner(
            projection=CatalogProjection(view=view),
            recorder=ledger.recorder,
            mapper=app.mapper,
        )
        rebuilt_runner.catch_up()

        assert len(incremental) == N
        assert all_rows(view) == incremental
        assert (
            view.search(CatalogQuery(tenant="acme", q="payments", status="any")).facets
            == facets
        )
        assert view.lineage("acme", ids[5000], "up", 3) == lineage
        assert searched(view) == live  # the same view's index, rebuilt too
        assert sum(r.status == "retired" for r in incremental) == 200
        assert sum(r.description.startswith("amended") for r in incremental) >= 290
    finally:
        ledger.close()


def test_two_runners_on_one_view_converge_to_a_single_runners_result(
    database_url: str,
) -> None:
    """Racing runners conflict on tracking, roll back, retry, and end up equal
    to one."""
    ledger = open_ledger(database_url)
    try:
        app = Datasets(ledger, regions=REGIONS)
        view = catalog_view(ledger)
        rng = random.Random(3)
        base = spec(0, rng)
        for i in range(300):
            app.register_dataset(
                tenant="acme", spec=dataclasses.replace(base, name=f"n{i}")
            )
        runners = [
            BatchRunner(
                projection=CatalogProjection(view=view),
                recorder=ledger.recorder,
                mapper=app.mapper,
                batch_size=25,
            )
            for _ in range(2)
        ]
        for runner in runners:
            runner.start()
        head = ledger.recorder.max_notification_id() or 0
        assert runners[0].wait(head, timeout=30)
        for runner in runners:
            runner.stop()
        raced = all_rows(view)
        assert len(raced) == 300
        view.reset()
        BatchRunner(
            projection=CatalogProjection(view=view),
            recorder=ledger.recorder,
            mapper=app.mapper,
        ).catch_up()
        assert all_rows(view) == raced
    finally:
        ledger.close()


class LedgerApp(Datasets):
    """The registry, constructible from an env alone (as the library's runner needs)."""

    name = "ledger"

    def __init__(self, env: dict[str, str] | None = None) -> None:
        from eventsourcing.persistence import InfrastructureFactory  # noqa: PLC0415

        env = dict(env or {})
        factory = InfrastructureFactory.construct(env=env)

        class _Log:
            def __init__(self) -> None:
                self.env = env
                self.factory = factory
                self.recorder = factory.application_recorder()

        super().__init__(_Log(), regions=REGIONS)  # type: ignore[arg-type]


def test_the_library_projection_runner_builds_the_same_catalog(
    database_url: str,
) -> None:
    """eventsourcing's own ProjectionRunner (via our SQLite polling subscription on
    SQLite) and the batched runner produce identical rows."""
    from eventsourcing.projection import ProjectionRunner  # noqa: PLC0415

    from adapters.catalog.postgres import PostgresCatalogView  # noqa: PLC0415
    from adapters.catalog.sqlite import SQLiteCatalogView  # noqa: PLC0415
    from adapters.ledger.store import eventsourcing_env  # noqa: PLC0415

    ledger = open_ledger(database_url)
    try:
        app = Datasets(ledger, regions=REGIONS)
        rng = random.Random(11)
        ids = [
            app.register_dataset(tenant="acme", spec=spec(i, rng)).id for i in range(60)
        ]
        app.link_lineage(tenant="acme", dataset_id=ids[1], upstream=[ids[0]])
        last = app.retire_dataset(tenant="acme", dataset_id=ids[2]).position
        view = catalog_view(ledger)
        BatchRunner(
            projection=CatalogProjection(view=view),
            recorder=ledger.recorder,
            mapper=app.mapper,
        ).catch_up()
        ours = all_rows(view)
        view.reset()
    finally:
        ledger.close()
    view_class = (
        PostgresCatalogView if "postgres" in database_url else SQLiteCatalogView
    )
    with ProjectionRunner(
        application_class=LedgerApp,
        projection_class=CatalogProjection,
        view_class=view_class,
        env=eventsourcing_env(database_url),
    ) as runner:
        runner.wait(last, timeout=30)
        assert all_rows(runner.view) == ours  # type: ignore[arg-type]
