"""Catalog coverage: registered active datasets over the datasets in use."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from eventsourcing.popo import POPOTrackingRecorder

from domain.catalog.dataset import Dataset
from projections.catalog import CatalogRow, CatalogStats, CatalogView
from projections.coverage import ActiveDataset, CatalogQueries

if TYPE_CHECKING:
    from collections.abc import Sequence

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def row(location: str, *, status: str = "active", upstream: Any = ()) -> CatalogRow:
    return CatalogRow(
        id=uuid4(), tenant="acme", name=location or "unlocated", description="",
        license="CC0", purposes=("research",), retention="P1Y", region="EU",
        contract_version="v1", contract_status="active", tags=(), owner="",
        location=location, columns=(), upstream=tuple(upstream), status=status,
        version=1, created_at=NOW, updated_at=NOW, position=1,
    )  # fmt: skip


class StatsView(POPOTrackingRecorder, CatalogView):
    """What coverage reads of the catalog: stats, rows by id, active edges."""

    def __init__(self, rows: Sequence[CatalogRow]) -> None:
        super().__init__()
        self.by_id = {r.id: r for r in rows}

    def stats(self, tenant: str) -> CatalogStats:
        active = [r for r in self.by_id.values() if r.status == "active"]
        return CatalogStats(
            active=len(active),
            retired=len(self.by_id) - len(active),
            with_columns=0,
            with_contract=len(active),
            locations=tuple(r.location for r in active if r.location),
        )

    def load_rows(self, ids: Sequence[UUID]) -> dict[UUID, CatalogRow]:
        return {i: self.by_id[i] for i in ids if i in self.by_id}

    def active_edges(self, tenant: str) -> list[tuple[UUID, UUID]]:
        return [
            (r.id, up)
            for r in self.by_id.values()
            if r.status == "active"
            for up in r.upstream
        ]

    def write_batch(self, *_: Any) -> None: ...
    def search(self, *_: Any) -> Any: ...
    def get(self, *_: Any) -> Any: ...
    def lineage(self, *_: Any) -> Any: ...
    def tenants(self) -> list[str]:
        return ["acme"]

    def rows(self, **_: Any) -> list[CatalogRow]:
        return []

    def reset(self) -> None: ...


class Files:
    def __init__(self, *names: str) -> None:
        self.names = names

    def list_files(self, tenant: str) -> tuple[str, ...]:
        return self.names


def test_files_er_jobs_exports_and_lineage_all_make_a_dataset_active() -> None:
    """Each source counts once per location; a dataset without one by its id."""
    retired = row("old.csv", status="retired")  # gone: only lineage still uses it
    unlocated = row("")
    exported_gone = row("exported-then-retired.csv", status="retired")
    exported = row("report.csv")
    downstream = row("a.csv", upstream=[retired.id, unlocated.id])
    view = StatsView([retired, unlocated, exported_gone, exported, downstream])
    queries = CatalogQueries(view, Files("a.csv", "b.csv"))
    queries.job_locations = lambda _t: ["people.csv", "a.csv"]
    queries.exported_datasets = lambda _t: [exported.id, exported_gone.id]
    coverage = queries.coverage("acme")
    # a.csv, b.csv, people.csv, report.csv, old.csv, the unlocated one
    assert coverage.in_use == 6
    assert coverage.registered_in_use == 3  # a.csv, report.csv, the unlocated one
    assert coverage.ratio == 0.5
    assert coverage.file_ratio == 0.5  # a.csv of a.csv, b.csv
    assert coverage.unregistered_in_use == (
        ActiveDataset("b.csv", None, ("files",)),
        ActiveDataset("old.csv", None, ("lineage",)),
        ActiveDataset("people.csv", None, ("er-jobs",)),
    )


def test_a_retired_upstream_is_covered_when_its_file_is_registered_again() -> None:
    """Registered means an active entry with the location, whichever entry."""
    retired = row("shared.csv", status="retired")
    successor = row("shared.csv")
    downstream = row("d.csv", upstream=[retired.id])
    queries = CatalogQueries(
        StatsView([retired, successor, downstream]), Files("d.csv", "shared.csv")
    )
    coverage = queries.coverage("acme")
    assert (coverage.in_use, coverage.registered_in_use) == (2, 2)
    assert coverage.ratio == 1.0


def test_no_dataset_in_use_is_full_coverage() -> None:
    """Nothing active, nothing to govern: 1.0, as for no files before."""
    coverage = CatalogQueries(StatsView([row("x.csv")]), Files()).coverage("acme")
    assert (coverage.in_use, coverage.ratio) == (0, 1.0)


def named(name: str, location: str = "", **over: Any) -> CatalogRow:
    """A row whose id is the name's natural key (how the gate finds it)."""
    return replace(row(location, **over), id=Dataset.create_id("acme", name), name=name)


def test_the_datasets_a_gate_run_names_are_active_and_keyed_like_the_others() -> None:
    """A name registered with a location counts once with its file; one
    without a location by its id; an unregistered or retired name is
    unregistered, under the id it will get, with the name the gate used."""
    orders = named("orders", "orders.csv")
    events = named("events")  # registered, no location
    legacy = named("legacy", status="retired")
    view = StatsView([orders, events, legacy])
    queries = CatalogQueries(view, Files("orders.csv"))
    queries.gate_datasets = lambda _t: ["events", "ghost", "legacy", "orders"]
    coverage = queries.coverage("acme")
    # orders.csv (files and gate), events, ghost, legacy
    assert (coverage.in_use, coverage.registered_in_use) == (4, 2)
    assert coverage.ratio == 0.5
    ghost = Dataset.create_id("acme", "ghost")
    assert sorted(coverage.unregistered_in_use, key=lambda u: u.name) == [
        ActiveDataset("", ghost, ("gate",), name="ghost"),
        ActiveDataset("", legacy.id, ("gate",), name="legacy"),
    ]
    by_source = {s: (n, r) for s, n, r in coverage.by_source}
    assert by_source["gate"] == (4, 2)
    assert by_source["files"] == (1, 1)
    assert by_source["exports"] == (0, 0)


def test_a_gate_named_dataset_with_an_exported_file_counts_once() -> None:
    """The same dataset by name (gate), by id (export) and by file is one."""
    orders = named("orders", "orders.csv")
    queries = CatalogQueries(StatsView([orders]), Files("orders.csv"))
    queries.gate_datasets = lambda _t: ["orders"]
    queries.exported_datasets = lambda _t: [orders.id]
    coverage = queries.coverage("acme")
    assert (coverage.in_use, coverage.registered_in_use) == (1, 1)
    assert coverage.unregistered_in_use == ()


def test_another_tenants_row_never_registers_a_gate_named_dataset() -> None:
    """A row under the name's id that belongs to another tenant is not ours."""
    theirs = replace(named("orders"), tenant="globex")
    queries = CatalogQueries(StatsView([theirs]), Files())
    queries.gate_datasets = lambda _t: ["orders"]
    coverage = queries.coverage("acme")
    assert (coverage.in_use, coverage.registered_in_use) == (1, 0)
    assert coverage.unregistered_in_use[0].name == "orders"


def test_over_another_view_keeps_the_gate_source() -> None:
    """A standby's catalog answers coverage with the same gate runs."""
    queries = CatalogQueries(StatsView([]), Files())
    queries.gate_datasets = lambda _t: ["ghost"]
    other = queries.over(StatsView([named("ghost")]))
    assert other.coverage("acme").ratio == 1.0
    assert queries.coverage("acme").ratio == 0.0
