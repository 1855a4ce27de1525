"""Catalog coverage: registered active datasets over the datasets in use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from eventsourcing.popo import POPOTrackingRecorder

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
