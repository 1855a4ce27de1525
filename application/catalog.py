"""Catalog queries: search, lineage and coverage over the catalog read model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from application.ports import DataFiles
    from projections.catalog import CatalogView


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
    """Read-side use cases that need more than the view itself."""

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
