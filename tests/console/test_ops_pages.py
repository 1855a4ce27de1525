"""The console's DR and budget dashboards in a real browser, against the API.

The DR samples are recorded in the server's own log by the application that
records them in production (LagSampleLog, from this process, on the same
database); the budget's usage is the server's own metering of real requests.
Each test compares the page's figures with what the JSON API answers.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest

from adapters.dr.evidence import EVIDENCE_TYPE, sign_evidence
from adapters.ledger.store import open_ledger
from adapters.signing.keystore import KeyStore
from application.dr.lag_samples import LagSampleLog, RegionSample
from tests.console.conftest import ConsoleServer, api
from tests.console.helpers import axe_check, screenshot, sign_in
from tests.console.test_catalog_console import keep_for_docs

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Page

pytestmark = pytest.mark.integration


def record_samples(server: ConsoleServer, lags: list[int]) -> int:
    """One sample of A (primary) and B (standby) per lag; the last position."""
    ledger = open_ledger(server.url, pool_size=1)
    try:
        log = LagSampleLog(ledger)
        position = 0
        for i, lag in enumerate(lags):
            found = log.record_samples(
                (
                    RegionSample(
                        region="A",
                        role="primary",
                        epoch=4,
                        lag_ms=None,
                        lag_bytes=None,
                        read_only=False,
                        stale_reads=0,
                        secondary_reads=0,
                    ),
                    RegionSample(
                        region="B",
                        role="standby",
                        epoch=4,
                        lag_ms=lag,
                        lag_bytes=lag * 10,
                        read_only=True,
                        stale_reads=i,
                        secondary_reads=10 * i,
                    ),
                ),
                at_ms=int(time.time() * 1000),
                cause="interval",
            )
            assert found is not None
            position = found
        return position
    finally:
        ledger.close()


def sign_drill(server: ConsoleServer, rto_ms: int) -> Path:
    """A drill's evidence document, signed by the server's own key store."""
    assert server.var is not None
    folder = server.var / "dr-evidence"
    folder.mkdir(exist_ok=True)
    document: dict[str, Any] = {
        "type": EVIDENCE_TYPE,
        "drill_id": "0b6f4c1e-0000-4000-8000-000000000001",
        "mode": "failover",
        "replication": "sync",
        "finished_at": "2026-12-03T17:00:00+00:00",
        "rto_ms": rto_ms,
        "rpo_commands": 0,
        "rpo_ms": 0,
        "targets": {"rto_ms": 5000, "rpo_commands": 0},
        "met": {"rto": rto_ms <= 5000, "rpo": True},
    }
    path = folder / "dr-evidence-0b6f4c1e.json"
    signed = sign_evidence(document, KeyStore(server.var / "keys"))
    path.write_text(json.dumps(signed), encoding="utf-8")
    return path


def rate(value: float | None) -> str:
    return "no reads" if value is None else f"{100 * value:.2f} %"


class TestDr:
    def test_the_dr_page_shows_the_api_s_figures_and_refreshes_in_place(
        self, console_server: ConsoleServer, page: Page, tenant: str, tmp_path: Path
    ) -> None:
        """Regions as GET /v1/dr/state gives them; new samples appear without a
        reload; no pair configured is said plainly."""
        position = record_samples(console_server, [120, 340, 90, 410, 260])
        token = console_server.token(tenant)
        with api(console_server, token) as http:
            reply = http.get(
                "/v1/dr/state", headers={"x-ig-min-position": str(position)}
            )
        assert reply.status_code == 200, reply.text
        state = reply.json()
        sign_in(page, console_server.base, token)
        page.goto(f"{console_server.base}/console/dr")
        assert "No DR pair is configured" in page.locator("#no-pair").inner_text()
        for region in state["regions"]:
            row = page.locator(f"#regions tr[data-region={region['region']}]")

            def cell(name: str, row: Any = row) -> str:
                return str(row.locator(f"[data-field={name}]").inner_text())

            assert cell("role") == region["role"]
            assert cell("epoch") == str(region["epoch"])
            lag = region["lagMs"]
            assert cell("lagMs") == ("—" if lag is None else str(lag))
            assert cell("readOnly") == ("yes" if region["readOnly"] else "no")
            for window, value in region["staleReadRate"].items():
                assert cell(f"stale-{window}") == rate(value)
        assert [r["region"] for r in state["regions"]] == ["A", "B"]
        chart = page.locator("#lag-chart")
        page.wait_for_selector("#lag-chart[data-points]")
        points = int(chart.get_attribute("data-points") or 0)
        assert points >= 5
        assert page.locator("#lag-chart canvas").count() >= 1
        assert page.locator("#no-drill").is_visible()
        axe_check(page)

        # A new sample: the table (htmx) and the chart (fetch) catch up in place.
        page.evaluate("window.__same_page = true")
        record_samples(console_server, [777])
        page.wait_for_function(
            "() => document.querySelector("
            "'#regions tr[data-region=B] [data-field=lagMs]').textContent === '777'",
            timeout=20_000,
        )
        page.wait_for_function(
            f"() => Number(document.querySelector('#lag-chart')"
            f".dataset.points) > {points}",
            timeout=20_000,
        )
        assert page.evaluate("window.__same_page") is True  # no reload happened

        evidence = sign_drill(console_server, 1830)
        page.reload()
        assert page.locator("#rto").inner_text().startswith("1830 ms")
        assert "verifies" in page.locator("#drill").inner_text()
        with page.expect_download() as caught:
            page.locator("#evidence").click()
        saved = tmp_path / "evidence.json"
        caught.value.save_as(saved)
        assert json.loads(saved.read_text()) == json.loads(evidence.read_text())
        axe_check(page)
        shot = screenshot(page, tmp_path, "dr")
        keep_for_docs(shot, "dr")

        edited = json.loads(evidence.read_text())
        edited["rto_ms"] = 10
        evidence.write_text(json.dumps(edited), encoding="utf-8")
        page.reload()
        assert page.locator("#rto").inner_text().startswith("10 ms")
        assert "does not verify" in page.locator("#drill").inner_text()

    def test_the_dr_page_needs_dr_operate_like_the_api(
        self, console_server: ConsoleServer, page: Page, tenant: str
    ) -> None:
        """Without dr.operate: no DR link, and the page and its data are 403."""
        sign_in(page, console_server.base, console_server.token(tenant, "catalog.read"))
        assert page.get_by_role("link", name="DR").count() == 0
        for tail in ("", "/data", "/regions"):
            seen = page.request.get(f"{console_server.base}/console/dr{tail}")
            assert seen.status == 403, tail


def burn_when_ready(http: Any, tenant: str) -> dict[str, Any]:
    """The burn once the server's meter and the burn read model have usage."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = http.get(f"/v1/tenants/{tenant}/burn")
        if reply.status_code == 200 and reply.json()["cost"]["spentUnits"] > 0:
            return dict(reply.json())
        http.get("/v1/datasets/")  # metered usage
        time.sleep(0.5)
    pytest.fail("no burn within 60 s")


class TestBudgets:
    def test_the_budget_page_shows_the_api_s_budget_and_burn(
        self, console_server: ConsoleServer, page: Page, tenant: str, tmp_path: Path
    ) -> None:
        """Budget, burn per window, spend and actions match the API's figures."""
        token = console_server.token(tenant)
        with api(console_server, token) as http:
            # A budget the test's few dozen requests cannot threaten: with a
            # small one the autopilot caps the tenant mid-test (rightly) and
            # the page answers 429.
            put = http.put(
                f"/v1/tenants/{tenant}/budget",
                json={"period": "day", "costCapUnits": 1_000_000},
            )
            assert put.status_code == 201, put.text
            for _ in range(20):
                http.get("/v1/datasets/")
            burn_when_ready(http, tenant)
            budget = http.get(f"/v1/tenants/{tenant}/budget").json()
            sign_in(page, console_server.base, token)
            for _ in range(10):  # the page and the API at one read-model position
                before = http.get(f"/v1/tenants/{tenant}/burn").json()
                page.goto(f"{console_server.base}/console/budgets")
                after = http.get(f"/v1/tenants/{tenant}/burn").json()
                shown = page.locator("[data-bind='burn.position']").first.inner_text()
                if before["position"] == after["position"] == int(shown):
                    break
            else:
                pytest.fail("the burn kept moving between the API and the page")
        assert page.locator("#tenant").inner_text() == tenant
        assert page.locator("[data-field=period]").inner_text() == budget["period"]
        assert (
            page.locator("[data-field=costCapUnits]")
            .inner_text()
            .startswith(str(budget["costCapUnits"]))
        )
        for window, value in before["cost"]["burn"].items():
            cell = page.locator(f"#burn td[data-window='{window}']").inner_text()
            assert cell == f"{value:.4f}", window
        spent = page.locator("[data-field=spentUnits]").inner_text()
        assert spent == f"{before['cost']['spentUnits']:.4f}"
        assert page.locator("#as-of").inner_text() == before["asOf"]
        assert page.locator("#actions tr[data-kind='budget set']").count() == 1
        page.wait_for_selector("#burn-chart[data-points]")
        assert page.locator("#burn-chart").get_attribute("data-points") == "12"
        assert page.locator("#burn-chart canvas").count() >= 1
        assert "Open (0)" in page.locator("#incidents-h + h3").inner_text()
        axe_check(page)
        shot = screenshot(page, tmp_path, "budgets")
        keep_for_docs(shot, "budgets")

        with api(console_server, token) as http:
            data = http.get("/console/budgets/data")
        assert data.status_code in {303, 401, 403}  # a bearer token is no session

    def test_another_tenant_sees_only_its_own_budget(
        self, console_server: ConsoleServer, page: Page, tenant: str
    ) -> None:
        """The page is the signed-in tenant's: a tenant with none sees none."""
        sign_in(page, console_server.base, console_server.token(tenant))
        page.goto(f"{console_server.base}/console/budgets")
        assert page.locator("#no-budget").is_visible()
        assert page.locator("#actions").count() == 0
        data = page.request.get(f"{console_server.base}/console/budgets/data")
        assert data.json()["budget"] is None
        assert data.json()["tenant"] == tenant
