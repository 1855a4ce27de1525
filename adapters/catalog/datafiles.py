"""The data root on the local filesystem: one folder per tenant."""

from __future__ import annotations

import os
from pathlib import Path

from application.ports import TransformRefusedError
from domain.values import LOCATION_SUFFIXES

MAX_FILES = 100_000


class LocalDataFiles:
    """Data files under ``root/<tenant>/``; symlinks leading outside are skipped."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def tenant_root(self, tenant: str) -> Path:
        return self.root / tenant

    def list_files(self, tenant: str) -> list[str]:
        base = self.tenant_root(tenant)
        if not base.is_dir():
            return []
        real_base = base.resolve()
        found: list[str] = []
        for folder, dirs, files in os.walk(base):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                if path.suffix.lower() not in LOCATION_SUFFIXES:
                    continue
                if not path.resolve().is_relative_to(real_base):
                    continue
                found.append(path.relative_to(base).as_posix())
                if len(found) >= MAX_FILES:
                    return found
        return found

    def resolve(self, tenant: str, location: str) -> Path:
        """The file behind a location, refusing anything outside the tenant's root.

        Registration already refuses '..' and absolute paths; this also catches
        symlinks that lead out, and files that are not there.
        """
        if not location:
            raise TransformRefusedError("no_location", "the dataset has no location")
        base = self.tenant_root(tenant).resolve()
        path = (base / location).resolve()
        if not path.is_relative_to(base):
            raise TransformRefusedError(
                "location_outside_data_root",
                "the location resolves outside the tenant's data root",
            )
        if not path.is_file():
            raise TransformRefusedError("source_missing", "no file at the location")
        return path
