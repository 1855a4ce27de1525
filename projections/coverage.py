"""Catalog coverage: how much of a tenant's data files the registry governs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from projections.catalog import CatalogView


class DataFiles(Protocol):
    """Where tenants' data files live (the coverage scan reads it)."""

    def list_files(self, tenant: str) -> Sequence[str]:
        """Relative paths of the tenant's data files (csv, jsonl, ndjson)."""


@dataclass(frozen=True, slots=True)
class Coverage:
    """How much of a tenant's data the catalog governs."""

    tenant: str
    files_found: int
    files_registered: int
    unregistered: tuple[str, ...]
    missing_locations: tuple[str, ...]
    active: int
    retired: int
    classified: int
    contracted: int

    @property
    def ratio(self) -> float:
        """Registered files over files found (1.0 when there are none)."""
        return self.files_registered / self.files_found if self.files_found else 1.0

    @property
    def classified_share(self) -> float:
        return self.classified / self.active if self.active else 1.0

    @property
    def contract_share(self) -> float:
        return self.contracted / self.active if self.active else 1.0


class CatalogQueries:
    """Read-side queries that need more than the catalog view itself."""

    def __init__(self, view: CatalogView, files: DataFiles) -> None:
        self.view = view
        self.files = files

    def coverage(self, tenant: str, *, limit: int = 100) -> Coverage:
        """Data files registered by an active dataset, against files present."""
        stats = self.view.stats(tenant)
        found = set(self.files.list_files(tenant))
        registered = {loc for loc in stats.locations if loc in found}
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
        )
