"""The data root on the local filesystem: one folder per tenant."""

from __future__ import annotations

import os
from pathlib import Path

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
