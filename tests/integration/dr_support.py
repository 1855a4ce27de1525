"""What the DR integration tests share: a pair per module, an app against it."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from litestar.testing import TestClient

from adapters.dr.site import Site, create_site
from api.app import create_app
from api.settings import Settings
from tests.conftest import REPO_ROOT, SECRET

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import pytest

TTL_MS = 2000  # generous: a loaded machine delays the 250 ms heartbeat


def pair_site(factory: pytest.TempPathFactory, name: str) -> Iterator[Site]:
    """A sync pair (the code `conductor dr up` runs), destroyed afterwards."""
    root = factory.mktemp(name)
    os.chmod(root, 0o755)  # noqa: PTH101 - postgres must traverse it
    made = create_site(root / "pair", sync=True)
    try:
        yield made
    finally:
        made.close(destroy=True)


def pair_api(
    site: Site,
    factory: pytest.TempPathFactory,
    name: str,
    *,
    log_on_pair: bool,
    **over: Any,
) -> Iterator[TestClient[Any]]:
    """The app in region B of the pair, its event log on the pair or in a
    SQLite file of its own; ``over`` changes the settings."""
    var = factory.mktemp(name)
    settings = Settings(
        **{
            "var": str(var),
            "database_url": "" if log_on_pair else f"sqlite:///{var / 'conductor.db'}",
            "jwt_secret": SECRET,
            "dr_root": str(site.pair.root),
            "dr_region": "B",
            "stale_read_ttl_ms": TTL_MS,
            "checkpoint_interval_s": 3600.0,
            **over,
        }
    )
    with TestClient(create_app(settings)) as client:
        yield client


def dr_cli(var: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`conductor dr ARGS` as a real process with ``var`` as CONDUCTOR_VAR."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "dr", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "CONDUCTOR_VAR": str(var), "CONDUCTOR_JWT_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
