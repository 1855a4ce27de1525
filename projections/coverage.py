"""Catalog coverage: the share of a tenant's active datasets the registry governs.

A dataset is active when something uses it: the data-root scanner finds its
file, an ER embedding job read it, an export read it, lineage links it to an
active dataset, or a repository's newest recorded CI gate run names it
(projections/gate_runs.py). Active datasets are keyed by their data-root
location (a dataset without a location, by its id: the natural key's, so a
gate-named dataset that is not registered has the id it will get). One is
registered when an active registry entry (status active, not retired) has that
location (or is that dataset). A name the gate saw that is a registered dataset
with a location therefore counts once, with its file. Coverage is registered
over active: the seed's "catalog coverage % of active datasets".
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from domain.catalog.dataset import Dataset

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from uuid import UUID

    from projections.catalog import CatalogRow, CatalogView

SOURCES = ("files", "er-jobs", "exports", "lineage", "gate")
"""What can make a dataset active, in the order the coverage names them."""


class DataFiles(Protocol):
    """Where tenants' data files live (the coverage scan reads it)."""

    def list_files(self, tenant: str) -> Sequence[str]:
        """Relative paths of the tenant's data files (csv, jsonl, ndjson)."""


@dataclass(frozen=True, slots=True)
class ActiveDataset:
    """A dataset in use: its location (or, for one without, its id) and by what."""

    location: str
    dataset_id: UUID | None
    seen_by: tuple[str, ...]
    name: str = ""
    """The name a gate run used, for one no entry registers ("" otherwise)."""


@dataclass(frozen=True, slots=True)
class Coverage:
    """How much of a tenant's data the catalog governs."""

    tenant: str
    files_found: int
    files_registered: int
    unregistered: tuple[str, ...]
    missing_locations: tuple[str, ...]
    active: int
    """Registry entries with status active (not the datasets in use)."""
    retired: int
    classified: int
    contracted: int
    in_use: int = 0
    """Active datasets: used by files, ER jobs, exports, lineage or the gate."""
    registered_in_use: int = 0
    unregistered_in_use: tuple[ActiveDataset, ...] = field(default=())
    by_source: tuple[tuple[str, int, int], ...] = field(default=())
    """(source, active datasets it uses, of which registered), in SOURCES order."""

    @property
    def ratio(self) -> float:
        """Registered active datasets over active datasets (1.0 when none)."""
        return self.registered_in_use / self.in_use if self.in_use else 1.0

    @property
    def file_ratio(self) -> float:
        """Registered files over files found (1.0 when there are none)."""
        return self.files_registered / self.files_found if self.files_found else 1.0

    @property
    def classified_share(self) -> float:
        return self.classified / self.active if self.active else 1.0

    @property
    def contract_share(self) -> float:
        return self.contracted / self.active if self.active else 1.0


def _nothing(tenant: str) -> Sequence[str]:
    del tenant
    return ()


def _no_datasets(tenant: str) -> Sequence[UUID]:
    del tenant
    return ()


def _no_tenants() -> Sequence[str]:
    return ()


class _InUse:
    """Active datasets by key, what saw each, and which are registered."""

    def __init__(self, registered_locations: Iterable[str]) -> None:
        self.seen: dict[str, set[str]] = defaultdict(set)
        self.ids: dict[str, UUID] = {}
        self.names: dict[str, str] = {}
        self.registered = set(registered_locations)

    def see(self, location: str, source: str) -> None:
        self.seen[location].add(source)

    def see_row(self, dataset_id: UUID, row: CatalogRow | None, source: str) -> None:
        """A dataset named by id: keyed by its location, else by the id."""
        if row is not None and row.location:
            self.see(row.location, source)
            return
        key = f"dataset:{dataset_id}"
        self.ids[key] = dataset_id
        self.see(key, source)
        if row is not None and row.status == "active":
            self.registered.add(key)

    def see_name(
        self, name: str, dataset_id: UUID, row: CatalogRow | None, source: str
    ) -> None:
        """A dataset named by name: as its registered row, else by the id the
        name's registration would get."""
        self.see_row(dataset_id, row, source)
        if row is None or not row.location:
            self.names[f"dataset:{dataset_id}"] = name

    def unregistered(self) -> list[ActiveDataset]:
        return [
            ActiveDataset(
                location="" if key in self.ids else key,
                dataset_id=self.ids.get(key),
                seen_by=tuple(s for s in SOURCES if s in sources),
                name=self.names.get(key, ""),
            )
            for key, sources in sorted(self.seen.items())
            if key not in self.registered
        ]

    def by_source(self) -> tuple[tuple[str, int, int], ...]:
        counts = {s: [0, 0] for s in SOURCES}
        for key, sources in self.seen.items():
            for source in sources:
                counts[source][0] += 1
                counts[source][1] += key in self.registered
        return tuple((s, n, r) for s, (n, r) in counts.items())


class CatalogQueries:
    """Read-side queries that need more than the catalog view itself."""

    def __init__(self, view: CatalogView, files: DataFiles) -> None:
        self.view = view
        self.files = files
        self.job_locations: Callable[[str], Sequence[str]] = _nothing
        """Data-root files a tenant's ER jobs read (wired to the ER read model)."""
        self.exported_datasets: Callable[[str], Sequence[UUID]] = _no_datasets
        """Datasets a tenant's exports read (wired to the exports read model)."""
        self.gate_datasets: Callable[[str], Sequence[str]] = _nothing
        """Dataset names the tenant's repositories' newest gate runs name
        (wired to the gate runs read model)."""
        self.gate_tenants: Callable[[], Sequence[str]] = _no_tenants
        """Tenants with a recorded gate run (wired to the same read model)."""

    def over(self, view: CatalogView) -> CatalogQueries:
        """The same queries over another region's catalog view (same sources)."""
        queries = CatalogQueries(view, self.files)
        queries.job_locations = self.job_locations
        queries.exported_datasets = self.exported_datasets
        queries.gate_datasets = self.gate_datasets
        queries.gate_tenants = self.gate_tenants
        return queries

    def coverage(self, tenant: str, *, limit: int = 100) -> Coverage:
        """Active datasets an active entry registers, and the data files."""
        stats = self.view.stats(tenant)
        found = set(self.files.list_files(tenant))
        registered = {loc for loc in stats.locations if loc in found}
        in_use = self._in_use(tenant, found, stats.locations)
        unregistered = in_use.unregistered()
        return Coverage(
            tenant=tenant,
            files_found=len(found),
            files_registered=len(registered),
            unregistered=tuple(sorted(found - registered))[:limit],
            missing_locations=tuple(sorted(set(stats.locations) - found))[:limit],
            active=stats.active,
            retired=stats.retired,
            classified=stats.with_columns,
            contracted=stats.with_contract,
            in_use=len(in_use.seen),
            registered_in_use=len(in_use.seen) - len(unregistered),
            unregistered_in_use=tuple(unregistered[:limit]),
            by_source=in_use.by_source(),
        )

    def _in_use(self, tenant: str, found: set[str], locations: Sequence[str]) -> _InUse:
        in_use = _InUse(locations)
        for location in found:
            in_use.see(location, "files")
        for location in self.job_locations(tenant):
            in_use.see(location, "er-jobs")
        exported = set(self.exported_datasets(tenant))
        linked = {end for edge in self.view.active_edges(tenant) for end in edge}
        named = {Dataset.create_id(tenant, n): n for n in self.gate_datasets(tenant)}
        wanted = exported | linked | set(named)
        rows = self.view.load_rows(sorted(wanted)) if wanted else {}
        for dataset_id in sorted(exported):
            row = rows.get(dataset_id)
            # Retiring a dataset ends its use: its past exports are history.
            if row is not None and row.status == "active":
                in_use.see_row(dataset_id, row, "exports")
        for dataset_id in sorted(linked):
            # An active dataset's upstream is in use, retired or not.
            in_use.see_row(dataset_id, rows.get(dataset_id), "lineage")
        for dataset_id, name in sorted(named.items(), key=lambda kv: kv[1]):
            # A name is a dataset by the tenant's natural key: its own only.
            row = rows.get(dataset_id)
            mine = row if row is not None and row.tenant == tenant else None
            in_use.see_name(name, dataset_id, mine, "gate")
        return in_use
