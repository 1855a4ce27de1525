"""GraphiQL renders in real chromium from Conductor's own assets: every request
to anywhere but the server is aborted (and recorded), against `conductor serve`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.server import Server

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    var = tmp_path / "var"
    (var / "data").mkdir(parents=True)
    with (tmp_path / "server.log").open("w") as log:
        running = Server(f"sqlite:///{var / 'conductor.db'}", var, log)
        try:
            yield running
        finally:
            running.stop()


def test_graphiql_renders_with_no_request_leaving_the_host(server: Server) -> None:
    """The editor, the run button and the schema (introspected) all come up."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    outside: list[str] = []
    errors: list[str] = []

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith(server.base):
            request_route.continue_()
        else:
            outside.append(url)
            request_route.abort()

    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        try:
            page = browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.route("**/*", route)
            page.goto(f"{server.base}/graphql", wait_until="networkidle")
            page.wait_for_selector(".graphiql-container", timeout=15_000)
            page.wait_for_selector(".graphiql-execute-button", timeout=15_000)
            editor = page.locator(".graphiql-query-editor")
            assert "datasets" in editor.inner_text()
        finally:
            browser.close()
    assert outside == []
    assert errors == []
