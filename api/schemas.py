"""Request and response bodies (msgspec, camelCase JSON, unknown fields refused)."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 - msgspec resolves at runtime
from typing import Any
from uuid import UUID  # noqa: TC003 - msgspec resolves at runtime

import msgspec


class In(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Base of request bodies."""


class Out(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    """Base of response bodies."""


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


class CommandAccepted(Out, frozen=True):
    id: UUID
    version: int
    position: int | None
    """Log position of the last event written (null when nothing changed)."""


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


class InclusionOut(Out, frozen=True):
    """RFC 9162 inclusion proof of one entry's chain hash (the leaf)."""

    leaf_index: int
    tree_size: int
    proof: list[str]


class LogEntryOut(Out, frozen=True, omit_defaults=True):
    position: int
    originator_id: UUID
    version: int
    topic: str
    state: Any
    prev_hash: str
    hash: str
    inclusion: InclusionOut | None = None
    """In a tenant's slice: proof against the page's checkpoint."""


class LogHeadOut(Out, frozen=True):
    position: int
    hash: str
    events: int


class CheckpointOut(Out, frozen=True):
    """A signed tree head of the whole log (its DSSE envelope is the proof)."""

    size: int
    root_hash: str
    last_position: int
    envelope: dict[str, Any]


class LogPage(Out, frozen=True, omit_defaults=True):
    entries: list[LogEntryOut]
    head: LogHeadOut
    """The global log's head, whoever reads (like a CT tree head)."""
    next_after: int | None
    tenant: str | None = None
    """Whose slice this page is (absent: the whole log)."""
    checkpoint: CheckpointOut | None = None
    """The signed checkpoint every entry of a slice is proven against."""


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


class CoverageOut(Out, frozen=True):
    tenant: str
    coverage: float
    """Share of data files under the tenant's data root that a dataset registers."""
    files_found: int
    files_registered: int
    unregistered: list[str]
    active_datasets: int
    retired_datasets: int
    classified_share: float
    """Share of active datasets that declare classified columns."""
    contract_share: float
    """Share of active datasets whose contract is active."""
    missing_locations: list[str]
    """Registered locations with no file behind them."""


class PolicyModuleIn(In):
    name: str
    source: str


class PolicyCreate(In):
    name: str
    modules: list[PolicyModuleIn]


class PolicyModuleOut(Out, frozen=True):
    name: str
    source: str


class PolicyOut(Out, frozen=True):
    digest: str
    name: str
    engine: str
    modules: list[PolicyModuleOut]
    position: int | None = None


class PolicyPublished(Out, frozen=True):
    digest: str
    position: int | None


class ExportCreate(In):
    dataset_id: UUID
    preset: str
    purpose: str
    destination_region: str


class DeniedByOut(Out, frozen=True):
    """Which policy gave which reasons (the decision's reasons are their union)."""

    platform: list[str]
    tenant: list[str]


class ReviewOut(Out, frozen=True):
    approved: bool
    reviewer: str
    reason: str


class DecisionOut(Out, frozen=True):
    allow: bool
    reasons: list[str]
    policy_digest: str
    input_digest: str
    platform_policy_digest: str | None = None
    """The platform floor that judged first (None on decisions made before it)."""
    denied_by: DeniedByOut | None = None
    limit: str | None = None
    """The evaluation limit the tenant's policy hit, when it denied for that."""
    review: ReviewOut | None = None


class ReviewCreate(In):
    approve: bool
    reason: str


class DeliveryOut(Out, frozen=True):
    file: str
    content_sha256: str
    bytes: int
    rows: int


class ProgressOut(Out, frozen=True):
    rows: int
    bytes: int


class ExportOut(Out, frozen=True):
    id: UUID
    dataset_id: UUID
    dataset_version: int
    status: str
    preset: str
    purpose: str
    destination_region: str
    requester: str
    decision: DecisionOut | None
    delivery: DeliveryOut | None = None
    progress: ProgressOut | None = None
    failure: str | None = None
    """stage:reason of a failed export."""
    failure_detail: str | None = None
    """What the failing stage reported (column names, counts; never values)."""
    proof: str | None = None
    """Where the signed proof bundle is, once issued."""
    position: int | None = None


class ExportPage(Out, frozen=True):
    items: list[ExportOut]
    next: str | None


class KeyOut(Out, frozen=True):
    keyid: str
    public_key_pem: str
    created_at: str
    active: bool


class KeysOut(Out, frozen=True):
    keys: list[KeyOut]
