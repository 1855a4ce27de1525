"""The catalog's catch-up path: stored states folded without the mapper, pages
read ahead of the writes, and what the views write per batch."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from eventsourcing.persistence import Tracking

from adapters.ledger.store import open_ledger
from api.wiring.catalog import catalog_view
from application.catalog.datasets import Datasets
from domain.values import Column, DatasetSpec
from projections.catalog import CatalogProjection
from projections.runner import APPLICATION_NAME, BatchRunner

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from uuid import UUID

    from eventsourcing.persistence import ApplicationRecorder, Notification

    from adapters.ledger.store import Ledger
    from projections.catalog import CatalogRow, CatalogView

pytestmark = pytest.mark.integration
REGIONS = frozenset({"EU", "US"})


def spec(name: str, **over: Any) -> DatasetSpec:
    fields: dict[str, Any] = {
        "name": name,
        "license": "CC-BY-4.0",
        "purposes": ("ops",),
        "retention": "P1Y",
        "region": "EU",
        "contract_version": "v1",
        **over,
    }
    return DatasetSpec(**fields)


def all_rows(view: CatalogView) -> list[CatalogRow]:
    rows: list[CatalogRow] = []
    while batch := view.rows(after=rows[-1].id if rows else None, limit=500):
        rows += batch
    return rows


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    opened = open_ledger(database_url)
    try:
        yield opened
    finally:
        opened.close()


def fill(app: Datasets, n: int) -> list[UUID]:
    return [
        app.register_dataset(tenant="acme", spec=spec(f"ds-{i:03d}")).id
        for i in range(n)
    ]


class CountingRecorder:
    """The log's recorder, noting where each page read starts; it can be told
    to fail one read (as a dropped connection would)."""

    def __init__(self, recorder: ApplicationRecorder, fail_at: int = 0) -> None:
        self.recorder = recorder
        self.starts: list[int | None] = []
        self.fail_at = fail_at

    def select_notifications(
        self, start: int | None, limit: int, **kwargs: Any
    ) -> Sequence[Notification]:
        self.starts.append(start)
        if len(self.starts) == self.fail_at:
            msg = "connection dropped"
            raise ConnectionError(msg)
        return self.recorder.select_notifications(start, limit, **kwargs)

    def max_notification_id(self) -> int | None:
        return self.recorder.max_notification_id()


def runner_on(
    ledger: Ledger, view: CatalogView, recorder: Any, **kwargs: Any
) -> BatchRunner:
    return BatchRunner(
        projection=CatalogProjection(view=view),
        recorder=recorder,
        mapper=Datasets(ledger, regions=REGIONS).mapper,
        **kwargs,
    )


class TestStoredStates:
    def test_fold_to_the_rows_the_domain_events_give(self, ledger: Ledger) -> None:
        """Text that JSON escapes, empty lists, columns, links, amendments and
        retirement: rows folded from stored states (the batched runner, pages of
        three) equal rows folded from the mapper's domain events, one at a time
        (the library runner's path)."""
        app = Datasets(ledger, regions=REGIONS)
        tricky = 'Zürich "quoted" back\\slash\n\ttabbed — データ 🚀'
        first = app.register_dataset(
            tenant="acme",
            spec=spec(
                "raw",
                description=tricky,
                tags=("t.1", "b"),
                owner="Ørsted",
                location='s3://bucket/päth "x".csv',
                columns=(Column("naïve", "pii.name"), Column('q"uote', "public")),
            ),
        ).id
        second = app.register_dataset(
            tenant="acme", spec=spec("clean", purposes=("ops", "fraud"))
        ).id
        third = app.register_dataset(tenant="other", spec=spec("other")).id
        app.link_lineage(tenant="acme", dataset_id=second, upstream=[first])
        app.amend_dataset(
            tenant="acme",
            dataset_id=first,
            expected_version=1,
            changes={"description": tricky[::-1], "tags": (), "columns": ()},
        )
        app.retire_dataset(tenant="other", dataset_id=third, reason="gone")
        view = catalog_view(ledger)
        runner_on(ledger, view, ledger.recorder, batch_size=3).catch_up()
        folded = all_rows(view)
        edges = view.active_edges("acme")

        view.reset()
        projection = CatalogProjection(view=view)
        mapper = Datasets(ledger, regions=REGIONS).mapper
        for n in ledger.recorder.select_notifications(start=None, limit=100):
            tracking = Tracking(APPLICATION_NAME, n.id)
            if n.topic in projection.topics:
                projection.process_event(mapper.to_domain_event(n), tracking)
            else:
                view.insert_tracking(tracking)

        assert all_rows(view) == folded
        assert view.active_edges("acme") == edges == [(second, first)]
        by_id = {row.id: row for row in folded}
        assert by_id[first].description == tricky[::-1]
        assert by_id[first].tags == ()
        assert by_id[first].columns == ()
        assert by_id[first].owner == "Ørsted"
        assert by_id[first].location == 's3://bucket/päth "x".csv'
        assert by_id[first].version == 2
        assert by_id[first].updated_at > by_id[first].created_at
        assert by_id[second].purposes == ("ops", "fraud")
        assert by_id[second].upstream == (first,)
        assert by_id[third].status == "retired"
        assert by_id[third].tenant == "other"

    def test_unicode_columns_survive_the_stored_form(self, ledger: Ledger) -> None:
        """Columns read back as the (name, classification) pairs registered."""
        app = Datasets(ledger, regions=REGIONS)
        columns = (Column("naïve", "pii.name"), Column('q"uote\\', "public"))
        dataset = app.register_dataset(
            tenant="acme", spec=spec("cols", columns=columns)
        ).id
        view = catalog_view(ledger)
        runner_on(ledger, view, ledger.recorder).catch_up()
        row = view.get("acme", dataset)
        assert row is not None
        assert row.columns == (("naïve", "pii.name"), ('q"uote\\', "public"))


class TestReadAhead:
    def test_reads_each_page_once_and_stops_at_until(self, ledger: Ledger) -> None:
        """Behind, the next page is read while this one is written: every page
        starts where the last ended, none twice, and ``until`` ends the reads."""
        app = Datasets(ledger, regions=REGIONS)
        fill(app, 50)
        assert ledger.recorder.max_notification_id() == 50
        view = catalog_view(ledger)
        recorder = CountingRecorder(ledger.recorder)
        runner = runner_on(ledger, view, recorder, batch_size=7, read_ahead=True)

        assert runner.catch_up(until=20) == 21  # whole pages: 7, 14, 21
        assert runner.position() == 21
        assert recorder.starts == [0, 7, 14]
        assert len(all_rows(view)) == 21

        assert runner.catch_up() == 29
        assert runner.position() == 50
        # Each page once, in order, and the empty read that ends the catch-up.
        assert recorder.starts[3:] == [21, 28, 35, 42, 49, 50]
        live = all_rows(view)
        assert len(live) == 50

        view.reset()
        runner_on(ledger, view, ledger.recorder, read_ahead=False).catch_up()
        assert all_rows(view) == live

    def test_a_failed_read_surfaces_and_loses_nothing(self, ledger: Ledger) -> None:
        """A read ahead that fails raises from catch_up after the pages before
        it are written; the next catch-up resumes there: nothing lost, nothing
        applied twice."""
        app = Datasets(ledger, regions=REGIONS)
        ids = fill(app, 30)
        app.retire_dataset(tenant="acme", dataset_id=ids[3])
        view = catalog_view(ledger)
        recorder = CountingRecorder(ledger.recorder, fail_at=3)
        runner = runner_on(ledger, view, recorder, batch_size=10, read_ahead=True)

        with pytest.raises(ConnectionError):
            runner.catch_up()
        assert runner.position() == 20  # two pages written, the third read failed
        assert len(all_rows(view)) == 20

        assert runner.catch_up() == 11
        assert runner.position() == 31
        resumed = all_rows(view)
        assert len(resumed) == 30
        assert [row.id for row in resumed if row.status == "retired"] == [ids[3]]

        view.reset()
        runner_on(ledger, view, ledger.recorder).catch_up()
        assert all_rows(view) == resumed

    def test_is_off_on_sqlite_and_on_for_postgresql(self, ledger: Ledger) -> None:
        """The default follows the measurement (ADR 0002): on SQLite the two
        threads contend for the GIL and catch-up is slower."""
        runner = runner_on(ledger, catalog_view(ledger), ledger.recorder)
        assert runner.read_ahead is (ledger.backend == "postgres")


class TestLinger:
    def test_a_busy_log_lingers_until_a_read_waits(self, ledger: Ledger) -> None:
        """Under load a runner gathers commits (here for up to 30 s), yet a 10 s
        wait for a position is served, and stop() ends the linger at once."""
        app = Datasets(ledger, regions=REGIONS)
        view = catalog_view(ledger)
        runner = woken_only(ledger, view, linger=30.0, busy_events_s=0.0)
        thread = runner._thread  # to see it end
        assert thread is not None
        try:
            first = app.register_dataset(tenant="acme", spec=spec("one")).position
            assert first is not None
            runner.wake(first, 1)  # as the commit listener does
            time.sleep(0.3)
            assert runner.position() < first  # gathering more commits
            last = app.register_dataset(tenant="acme", spec=spec("two")).position
            assert last is not None
            assert runner.wait(last, timeout=10.0)
            assert sorted(r.name for r in all_rows(view)) == ["0", "one", "two"]
            runner.wake(last + 1, 1)  # lingering again
            time.sleep(0.3)
        finally:
            runner.stop(timeout=10.0)
        assert not thread.is_alive()

    def test_a_quiet_log_shows_a_write_at_once(self, ledger: Ledger) -> None:
        """Below the busy rate the linger is milliseconds, not the 30 s set for
        load: a client reading without x-ig-min-position sees its write."""
        app = Datasets(ledger, regions=REGIONS)
        view = catalog_view(ledger)
        runner = woken_only(ledger, view, linger=30.0)
        try:
            for name in ("one", "two"):
                position = app.register_dataset(tenant="acme", spec=spec(name)).position
                assert position is not None
                runner.wake(position, 1)
                deadline = time.monotonic() + 10.0
                while runner.position() < position and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert runner.position() >= position
        finally:
            runner.stop(timeout=10.0)


def woken_only(ledger: Ledger, view: CatalogView, **kwargs: Any) -> BatchRunner:
    """A started runner, caught up, that looks at the log only when woken."""
    Datasets(ledger, regions=REGIONS).register_dataset(tenant="acme", spec=spec("0"))
    head = ledger.recorder.max_notification_id() or 0
    runner = runner_on(ledger, view, ledger.recorder, poll_interval=60.0, **kwargs)
    runner.start()
    deadline = time.monotonic() + 10.0
    while runner.position() < head and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.position() == head
    return runner
