"""The catalog's wiring: the dataset registry and the catalog read models."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.catalog.gate_runs_view import PostgresGateRunsView, SQLiteGateRunsView
from adapters.catalog.postgres import PostgresCatalogView
from adapters.catalog.sqlite import SQLiteCatalogView
from api.wiring.core import Core, view_of
from application.catalog.datasets import Datasets
from application.catalog.gate import GateRuns
from projections.catalog import CatalogView, SearchCache
from projections.coverage import CatalogQueries

if TYPE_CHECKING:
    from adapters.catalog.datafiles import LocalDataFiles
    from adapters.ledger.store import Ledger
    from projections.gate_runs import GateRunsView
    from projections.lineage import LineageView


def catalog_view(ledger: Ledger) -> CatalogView:
    """The catalog view for the ledger's backend, in the same database."""
    view = view_of(ledger, SQLiteCatalogView, PostgresCatalogView)
    assert isinstance(view, CatalogView)
    return view


class CatalogBundle:
    """The dataset registry (write side) and the catalog read models."""

    def __init__(
        self,
        *,
        registry: Datasets,
        view: CatalogView,
        queries: CatalogQueries,
        lineage: LineageView | None,
        gate_runs: GateRuns,
        gate_view: GateRunsView,
    ) -> None:
        self.registry = registry
        self.gate_runs = gate_runs
        """Recorded CI gate runs (CatalogGateRan)."""
        self.gate_view = gate_view
        """Each repository's newest recorded gate run (a coverage source)."""
        self.view = view
        self.search = SearchCache(view)
        self.queries = queries
        self.lineage = lineage
        """The graph lineage view, when a graph database is configured."""


def wire_catalog(core: Core, files: LocalDataFiles) -> CatalogBundle:
    """The registry, the catalog view and, with NEO4J_URI, the graph lineage."""
    settings = core.settings
    view = catalog_view(core.ledger)
    gate_view = view_of(core.ledger, SQLiteGateRunsView, PostgresGateRunsView)
    queries = CatalogQueries(view, files)
    queries.gate_datasets = gate_view.gate_datasets
    queries.gate_tenants = gate_view.tenants
    lineage: LineageView | None = None
    if settings.neo4j_uri:
        from adapters.catalog.lineage_neo4j import connect  # noqa: PLC0415 - optional

        lineage = connect(
            settings.neo4j_uri,
            settings.neo4j_user,
            settings.neo4j_password,
            settings.neo4j_database,
            namespace=settings.neo4j_namespace,
        )
    return CatalogBundle(
        registry=Datasets(core.ledger, regions=frozenset(settings.regions)),
        view=view,
        queries=queries,
        lineage=lineage,
        gate_runs=GateRuns(core.ledger),
        gate_view=gate_view,
    )
