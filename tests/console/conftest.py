"""Browser tests: Debian's chromium, driven by Playwright, against `conductor serve`.

Each backend gets one real server for the module (SQLite file, or a fresh
database on the throwaway PostgreSQL cluster); every test uses tenants of its
own, so they cannot see each other's datasets.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from api.auth import issue_token
from tests.conftest import SECRET
from tests.console.helpers import SCREEN
from tests.integration.server import Server, cli

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser, Page, Playwright

CHROMIUM = Path("/usr/bin/chromium")


class ConsoleServer:
    """A running server plus token minting for its secret."""

    def __init__(
        self, server: Server, backend: str, var: Path | None = None, url: str = ""
    ) -> None:
        self.server = server
        self.base = server.base
        self.backend = backend
        self.var = var
        """The server's CONDUCTOR_VAR (data root under var/data/<tenant>/)."""
        self.url = url
        """The server's database URL (for in-process writers, the CLI)."""

    def token(self, tenant: str, *scopes: str, sub: str = "browser") -> str:
        wanted = scopes or (
            "catalog.read",
            "catalog.write",
            "export.request",
            "export.approve",
            "audit.read",
            "dr.operate",
            "budget.admin",
        )
        return issue_token(
            SECRET, tenant=tenant, scopes=wanted, sub=sub, ttl=timedelta(hours=2)
        )


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    """One driver per module, not per session: while it runs, Playwright's sync
    API holds an asyncio loop on the main thread, so any later test elsewhere
    that calls asyncio.run (or starts its own driver) would fail."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Debian's chromium (Playwright's own download cannot work offline)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (scripts/test does "
            "it as root: apt-get install chromium); the console tests need it",
            pytrace=False,
        )
    launched = playwright_driver.chromium.launch(
        executable_path=str(CHROMIUM), args=["--no-sandbox"]
    )
    yield launched
    launched.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def console_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleServer]:
    """A real `conductor serve` on SQLite or PostgreSQL for this module's tests."""
    root = tmp_path_factory.mktemp(f"console-{request.param}")
    var = root / "var"
    (var / "data").mkdir(parents=True)
    dropped: str | None = None
    if request.param == "sqlite":
        url = f"sqlite:///{var / 'conductor.db'}"
    else:
        maintenance: str = request.getfixturevalue("postgres_server")
        name = "console_" + uuid.uuid4().hex[:10]
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = maintenance.rsplit("/", 1)[0] + "/" + name
        dropped = name
    made = cli(url, var, "init")
    assert made.returncode == 0, made.stderr
    with (root / "server.log").open("w") as log:
        server = Server(url, var, log)
        try:
            yield ConsoleServer(server, request.param, var, url)
        finally:
            server.stop()
    if dropped is not None:
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dropped}" WITH (FORCE)')


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies) at 1400x900."""
    context = browser.new_context(viewport=SCREEN)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def tenant() -> str:
    return "t" + uuid.uuid4().hex[:10]


def api(server: ConsoleServer, token: str) -> Any:
    """An httpx client on the JSON API with this token."""
    import httpx  # noqa: PLC0415

    return httpx.Client(
        base_url=server.base,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
