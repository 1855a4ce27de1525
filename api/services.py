"""The wired object graph the API, the CLI and the scripts share."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import structlog

from adapters.catalog_sqlite import SQLiteCatalogView
from adapters.datafiles import LocalDataFiles
from adapters.ledger.store import Ledger, open_ledger
from api.metrics import Metrics
from application.datasets import Datasets
from projections.catalog import CatalogProjection, CatalogView, SearchCache
from projections.coverage import CatalogQueries
from projections.lineage import LineageProjection, LineageView
from projections.runner import BatchRunner

if TYPE_CHECKING:
    from api.settings import Settings

log = structlog.get_logger("conductor")


def catalog_view(ledger: Ledger) -> CatalogView:
    """The catalog view for the ledger's backend, in the same database."""
    if ledger.backend == "postgres":
        from adapters.catalog_postgres import PostgresCatalogView  # noqa: PLC0415

        view = ledger.factory.tracking_recorder(PostgresCatalogView)
    else:
        view = ledger.factory.tracking_recorder(SQLiteCatalogView)
    assert isinstance(view, CatalogView)
    return view


class Services:
    """Everything a request or a command needs, built once per process.

    A plain class on purpose: litestar would try to validate a dataclass
    dependency field by field.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        ledger: Ledger,
        datasets: Datasets,
        catalog: CatalogView,
        queries: CatalogQueries,
        runners: dict[str, BatchRunner],
        metrics: Metrics,
        lineage: LineageView | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.datasets = datasets
        self.catalog = catalog
        self.queries = queries
        self.runners = runners
        self.metrics = metrics
        self.lineage = lineage
        """The graph lineage view, when a graph database is configured."""
        self.search = SearchCache(catalog)
        self._closed = threading.Event()
        self._scheduler: Any = None

    def start(self) -> None:
        """Follow the log in the background and start the periodic jobs."""
        from api.jobs import scheduler  # noqa: PLC0415 - jobs import this module

        if not self.settings.projections:
            return  # another process (`conductor project`) keeps the views
        for runner in self.runners.values():
            runner.start()
        self._scheduler = scheduler(self)
        self._scheduler.start()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        for runner in self.runners.values():
            runner.stop()
        if self.lineage is not None:
            self.lineage.close()
        self.catalog.close()
        self.ledger.close()


def build_services(settings: Settings) -> Services:
    """Open the log, the applications, the views and their runners."""
    ledger = open_ledger(settings.resolved_database_url, pool_size=settings.pool_size)
    ledger.chained.idempotency_ttl_s = settings.idempotency_ttl_s
    datasets = Datasets(ledger, regions=frozenset(settings.regions))
    view = catalog_view(ledger)
    metrics = Metrics()
    runner = BatchRunner(
        projection=CatalogProjection(view=view),
        recorder=ledger.recorder,
        mapper=datasets.mapper,
        batch_size=settings.projection_batch,
        poll_interval=settings.projection_poll_s,
        on_batch=metrics.projected,
    )
    runners = {runner.name: runner}
    lineage = None
    if settings.neo4j_uri:
        from adapters.lineage_neo4j import connect  # noqa: PLC0415 - optional

        lineage = connect(
            settings.neo4j_uri,
            settings.neo4j_user,
            settings.neo4j_password,
            settings.neo4j_database,
        )
        runners["lineage"] = BatchRunner(
            projection=LineageProjection(view=lineage),
            recorder=ledger.recorder,
            mapper=datasets.mapper,
            batch_size=settings.projection_batch,
            poll_interval=settings.projection_poll_s,
            on_batch=metrics.projected,
        )
    ledger.chained.add_listener(metrics.committed)
    for each in runners.values():
        ledger.chained.add_listener(each.wake)
    metrics.watch_projections(lambda: list(runners.values()))
    return Services(
        settings=settings,
        ledger=ledger,
        datasets=datasets,
        catalog=view,
        queries=CatalogQueries(view, LocalDataFiles(settings.data_root_path)),
        runners=runners,
        metrics=metrics,
        lineage=lineage,
    )
