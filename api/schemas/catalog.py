"""Catalog bodies: datasets, their history, lineage and coverage."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 - msgspec resolves at runtime
from uuid import UUID  # noqa: TC003 - msgspec resolves at runtime

import msgspec

from api.schemas.base import In, Out
from api.schemas.ledger import LogEntryOut  # noqa: TC001 - msgspec resolves at runtime


class ColumnIn(In):
    name: str
    classification: str


class DatasetCreate(In):
    name: str
    license: str
    purposes: list[str]
    retention: str
    region: str
    contract_version: str
    description: str = ""
    contract_status: str = "active"
    tags: list[str] = msgspec.field(default_factory=list)
    owner: str = ""
    location: str = ""
    columns: list[ColumnIn] = msgspec.field(default_factory=list)
    upstream: list[UUID] = msgspec.field(default_factory=list)


class DatasetUpdate(In):
    """A partial update: only the fields present change."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    license: str | msgspec.UnsetType = msgspec.UNSET
    purposes: list[str] | msgspec.UnsetType = msgspec.UNSET
    retention: str | msgspec.UnsetType = msgspec.UNSET
    region: str | msgspec.UnsetType = msgspec.UNSET
    contract_version: str | msgspec.UnsetType = msgspec.UNSET
    contract_status: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    tags: list[str] | msgspec.UnsetType = msgspec.UNSET
    owner: str | msgspec.UnsetType = msgspec.UNSET
    location: str | msgspec.UnsetType = msgspec.UNSET
    columns: list[ColumnIn] | msgspec.UnsetType = msgspec.UNSET


class LineageLink(In):
    upstream: list[UUID]


class ColumnOut(Out, frozen=True):
    name: str
    classification: str


class DatasetOut(Out, frozen=True):
    id: UUID
    tenant: str
    name: str
    description: str
    license: str
    purposes: list[str]
    retention: str
    region: str
    contract_version: str
    contract_status: str
    tags: list[str]
    owner: str
    location: str
    columns: list[ColumnOut]
    upstream: list[UUID]
    status: str
    version: int
    created_at: datetime
    updated_at: datetime | None = None
    position: int | None = None


class DatasetPage(Out, frozen=True):
    items: list[DatasetOut]
    total: int
    facets: dict[str, dict[str, int]]
    next: str | None
    """Opaque cursor for the next page (pass as ?after=)."""


class HistoryOut(Out, frozen=True):
    id: UUID
    entries: list[LogEntryOut]


class LineageNodeOut(Out, frozen=True):
    id: UUID
    name: str
    status: str
    depth: int


class LineageEdgeOut(Out, frozen=True):
    downstream: UUID
    upstream: UUID


class LineageOut(Out, frozen=True):
    root: UUID
    direction: str
    depth: int
    nodes: list[LineageNodeOut]
    edges: list[LineageEdgeOut]


class UnregisteredOut(Out, frozen=True, omit_defaults=True):
    location: str
    """The data-root location ("" for a dataset without one: see datasetId)."""
    dataset_id: UUID | None
    seen_by: list[str]
    """What uses it: files, er-jobs, exports, lineage, gate."""
    name: str | None = None
    """The name a CI gate run used (a dataset without a location only)."""


class CoverageSourceOut(Out, frozen=True):
    source: str
    """files | er-jobs | exports | lineage | gate"""
    active: int
    """Active datasets this source uses (a dataset may have several sources)."""
    registered: int


class CoverageOut(Out, frozen=True):
    tenant: str
    coverage: float
    """Share of the tenant's active datasets (in use) that an active entry registers."""
    files_found: int
    files_registered: int
    unregistered: list[str]
    """Data files no active entry registers."""
    active_datasets: int
    """Registry entries with status active (whether in use or not)."""
    retired_datasets: int
    classified_share: float
    """Share of active datasets that declare classified columns."""
    contract_share: float
    """Share of active datasets whose contract is active."""
    missing_locations: list[str]
    """Registered locations with no file behind them."""
    file_coverage: float
    """Registered data files over files found (what ``coverage`` was before)."""
    datasets_in_use: int
    """Active datasets: data files, ER jobs' files, exported, lineage-linked."""
    registered_in_use: int
    unregistered_in_use: list[UnregisteredOut]
    """The active datasets no active entry registers (at most 100)."""
    sources: list[CoverageSourceOut] = msgspec.field(default_factory=list)
    """Active and registered datasets by what uses them."""


class GateRunIn(In):
    """A CI gate run's summary (`conductor catalog gate --record` sends it)."""

    repo: str
    commit: str
    findings_digest: str
    findings: int
    datasets: list[str]
    failing: list[str] = msgspec.field(default_factory=list)


class GateRunOut(Out, frozen=True):
    id: UUID
    repo: str
    commit: str
    findings_digest: str
    findings: int
    datasets: list[str]
    failing: list[str]
    position: int | None = None
