"""The console's exports in a real browser: request, decision, progress,
downloads, the verify panel (and `conductor verify` agreeing), the presets.

Every flow runs against a real `conductor serve` (SQLite and PostgreSQL) in
Debian's chromium; each asserts what is on the screen and, where it matters,
that the JSON API says the same.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import dataset_body
from tests.console.conftest import ConsoleServer, api
from tests.console.helpers import axe_check, screenshot, sign_in
from tests.console.test_catalog_console import csrf_of, keep_for_docs
from tests.integration.server import cli

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Page

pytestmark = pytest.mark.integration
COLUMNS = [
    {"name": "email", "classification": "pii.email"},
    {"name": "name", "classification": "pii.name"},
    {"name": "amount", "classification": "public"},
]
ROWS = 40


def register(
    server: ConsoleServer, tenant: str, name: str, **over: Any
) -> dict[str, Any]:
    """A dataset whose file is in the tenant's data root; returns its body + id."""
    assert server.var is not None
    root = server.var / "data" / tenant
    root.mkdir(parents=True, exist_ok=True)
    lines = ["email,name,amount"] + [
        f"user{i}@example.com,Person {i},{i * 3}" for i in range(ROWS)
    ]
    (root / f"{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    body = dataset_body(name, location=f"{name}.csv", columns=COLUMNS, **over)
    with api(server, server.token(tenant)) as http:
        reply = http.post("/v1/datasets/", json=body)
        assert reply.status_code == 201, reply.text
        position = reply.json()["position"]
        http.get("/v1/datasets/", headers={"x-ig-min-position": str(position)})
    return {**body, "id": reply.json()["id"]}


def request_in_page(page: Page, base: str, dataset_id: str, preset: str) -> str:
    """Fill the export form from the dataset's page; returns the export's id."""
    page.goto(f"{base}/console/datasets/{dataset_id}")
    page.locator("#request-export").click()
    page.wait_for_url(re.compile(r".*/console/exports/new\?dataset=.*"))
    page.get_by_label(preset, exact=True).check()
    page.get_by_label("Purpose").fill("investigation")
    page.get_by_label("Destination region").select_option("EU")
    page.get_by_role("button", name="Request the export").click()
    page.wait_for_url(re.compile(r".*/console/exports/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


def export_count(server: ConsoleServer, tenant: str) -> int:
    with api(server, server.token(tenant)) as http:
        reply = http.get("/v1/exports/", params={"limit": 200})
        assert reply.status_code == 200, reply.text
        return len(reply.json()["items"])


class TestDecision:
    def test_an_embargoed_dataset_is_denied_with_license_embargoed_explained(
        self, console_server: ConsoleServer, page: Page, tenant: str, tmp_path: Path
    ) -> None:
        """The decision shows at once: denied, each reason in words and code."""
        d = register(console_server, tenant, "embargoed", license="Embargoed")
        sign_in(page, console_server.base, console_server.token(tenant))
        page.goto(f"{console_server.base}/console/exports/new?dataset={d['id']}")
        axe_check(page)
        screenshot(page, tmp_path, "export-form")
        export_id = request_in_page(page, console_server.base, d["id"], "mask")

        assert page.locator("#status").get_attribute("data-status") == "denied"
        reason = page.locator("#reasons li[data-code=license_embargoed]")
        assert "license is Embargoed" in reason.inner_text()
        assert "license_embargoed" in reason.inner_text()
        assert "platform policy" in reason.inner_text()
        assert page.locator("#download-file").count() == 0
        axe_check(page)
        screenshot(page, tmp_path, "export-denied")
        with api(console_server, console_server.token(tenant)) as http:
            body = http.get(f"/v1/exports/{export_id}").json()
        assert body["status"] == "denied"
        assert body["decision"]["reasons"] == ["license_embargoed"]

    def test_an_allowed_export_finishes_and_both_verifiers_agree(
        self, console_server: ConsoleServer, page: Page, tenant: str, tmp_path: Path
    ) -> None:
        """Watch it run to proven, download both files, verify in the page and
        with `conductor verify` (a real process): the same verdict."""
        d = register(console_server, tenant, "customers")
        sign_in(page, console_server.base, console_server.token(tenant))
        export_id = request_in_page(
            page, console_server.base, d["id"], "tokenize_strict"
        )
        assert page.locator("#decision").get_attribute("data-allow") == "true"
        page.wait_for_selector("#status[data-status=proven]", timeout=60_000)
        with api(console_server, console_server.token(tenant)) as http:
            body = http.get(f"/v1/exports/{export_id}").json()
            keys = http.get("/v1/keys").json()
        assert body["status"] == "proven"
        assert page.locator("#rows").inner_text() == f"{body['delivery']['rows']:,}"
        assert page.locator("#bytes").inner_text() == f"{body['delivery']['bytes']:,}"
        assert page.locator("#sha256").inner_text() == body["delivery"]["contentSha256"]

        bundle = tmp_path / "bundle"
        bundle.mkdir()
        for link in ("#download-file", "#download-proof"):
            with page.expect_download() as caught:
                page.locator(link).click()
            download = caught.value
            download.save_as(bundle / download.suggested_filename)
        assert sorted(p.name for p in bundle.iterdir()) == sorted(
            [body["delivery"]["file"], "proof.dsse.json"]
        )

        page.get_by_role("button", name="Verify the proof").click()
        page.wait_for_selector("#verify-result")
        checks = page.locator("#checks tbody tr")
        assert checks.count() == 4
        verdicts = {
            row.get_attribute("data-check"): row.get_attribute("data-ok")
            for row in checks.all()
        }
        assert verdicts == {
            "signature": "true",
            "manifest": "true",
            "file": "true",
            "inclusion": "true",
        }
        assert page.locator("#verify-result").get_attribute("data-ok") == "true"
        axe_check(page)
        shot = screenshot(page, tmp_path, "export-detail")
        keep_for_docs(shot, "export-detail")

        keys_file = tmp_path / "keys.json"
        keys_file.write_text(json.dumps(keys))
        assert console_server.var is not None
        done = cli(
            console_server.url,
            console_server.var,
            "verify",
            str(bundle),
            "--keys",
            str(keys_file),
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("ok:")

        # Tampered, the CLI refuses the downloaded copy (the page checks the
        # server's, which is intact): the two share the verdict on one bundle.
        exported = bundle / body["delivery"]["file"]
        exported.write_bytes(exported.read_bytes() + b"x")
        tampered = cli(
            console_server.url,
            console_server.var,
            "verify",
            str(bundle),
            "--keys",
            str(keys_file),
        )
        assert tampered.returncode == 1
        assert "sha256 does not match the manifest" in tampered.stdout

        # The server's own copy tampered: the page's panel fails the file digest
        # (and only it), with the line `conductor verify` prints for that copy.
        served = console_server.var / "exports" / export_id
        (served / body["delivery"]["file"]).write_bytes(exported.read_bytes())
        page.get_by_role("button", name="Verify the proof").click()
        page.wait_for_selector("#verify-result[data-ok=false]")
        failed = page.locator("#checks tbody tr[data-ok=false]")
        assert failed.evaluate_all("rows => rows.map(r => r.dataset.check)") == ["file"]
        on_server = cli(console_server.url, console_server.var, "verify", str(served))
        assert on_server.returncode == 1
        line = on_server.stdout.strip().splitlines()[0]
        assert line in failed.inner_text()

    def test_a_double_submitted_form_records_one_export(
        self, console_server: ConsoleServer, page: Page, tenant: str
    ) -> None:
        """The form's idempotency key: the second POST replays the first."""
        d = register(console_server, tenant, "orders", license="Embargoed")
        sign_in(page, console_server.base, console_server.token(tenant))
        page.goto(f"{console_server.base}/console/exports/new?dataset={d['id']}")
        form = page.locator("#export-form")
        fields = {
            "csrf_token": csrf_of(page),
            "dataset": d["id"],
            "key": str(form.locator("input[name=key]").get_attribute("value")),
            "preset": "mask",
            "purpose": "investigation",
            "destination_region": "EU",
        }
        landed = []
        for _ in range(2):
            reply = page.request.post(
                f"{console_server.base}/console/exports/new",
                form=fields,
                max_redirects=0,
            )
            assert reply.status == 303
            landed.append(reply.headers["location"])
        assert landed[0] == landed[1]
        assert export_count(console_server, tenant) == 1


class TestRefusals:
    def test_another_tenant_opening_the_export_by_url_gets_404(
        self, console_server: ConsoleServer, page: Page, tenant: str
    ) -> None:
        """Every export route answers another tenant 404, and shows nothing."""
        d = register(console_server, tenant, "orders", license="Embargoed")
        with api(console_server, console_server.token(tenant)) as http:
            reply = http.post(
                "/v1/exports/",
                json={
                    "datasetId": d["id"],
                    "preset": "mask",
                    "purpose": "investigation",
                    "destinationRegion": "EU",
                },
            )
        assert reply.status_code == 403
        export_id = reply.json()["exportId"]
        sign_in(page, console_server.base, console_server.token(tenant + "x"))
        page.goto(f"{console_server.base}/console/exports/{export_id}")
        assert page.get_by_role("heading", name="Not found").is_visible()
        for tail in ("", "/live", "/verify", "/files/proof.dsse.json"):
            seen = page.request.get(
                f"{console_server.base}/console/exports/{export_id}{tail}"
            )
            assert seen.status == 404, tail
            assert "embargoed" not in seen.text().lower()
        form = page.request.get(
            f"{console_server.base}/console/exports/new?dataset={d['id']}"
        )
        assert form.status == 404
        page.goto(f"{console_server.base}/console/exports")
        assert page.locator(f"[data-export-id='{export_id}']").count() == 0

    def test_the_export_form_without_its_csrf_token_is_refused(
        self, console_server: ConsoleServer, page: Page, tenant: str
    ) -> None:
        """A POST without the token is a 403 and records nothing."""
        d = register(console_server, tenant, "orders")
        sign_in(page, console_server.base, console_server.token(tenant))
        fields = {
            "dataset": d["id"],
            "preset": "mask",
            "purpose": "investigation",
            "destination_region": "EU",
        }
        refused = page.request.post(
            f"{console_server.base}/console/exports/new", form=fields
        )
        assert refused.status == 403
        assert "CSRF" in refused.text()
        wrong = page.request.post(
            f"{console_server.base}/console/exports/new",
            form={**fields, "csrf_token": "0" * 64},
        )
        assert wrong.status == 403
        assert export_count(console_server, tenant) == 0

    def test_a_token_without_export_scope_has_no_button_and_a_forced_post_fails(
        self, console_server: ConsoleServer, page: Page, tenant: str
    ) -> None:
        """catalog.read alone: no request button, the form and its POST are 403."""
        d = register(console_server, tenant, "orders")
        token = console_server.token(tenant, "catalog.read")
        sign_in(page, console_server.base, token)
        page.goto(f"{console_server.base}/console/datasets/{d['id']}")
        assert page.locator("#dataset-name").inner_text() == "orders"
        assert page.locator("#request-export").count() == 0
        assert page.get_by_role("link", name="Exports").count() == 0
        form = page.request.get(
            f"{console_server.base}/console/exports/new?dataset={d['id']}"
        )
        assert form.status == 403
        forced = page.request.post(
            f"{console_server.base}/console/exports/new",
            form={
                "csrf_token": csrf_of(page),
                "dataset": d["id"],
                "preset": "mask",
                "purpose": "investigation",
                "destination_region": "EU",
            },
        )
        assert forced.status == 403
        assert export_count(console_server, tenant) == 0

    def test_a_bad_purpose_comes_back_beside_its_field(
        self, console_server: ConsoleServer, page: Page, tenant: str
    ) -> None:
        """The request's own field rules answer beside the field, nothing recorded."""
        d = register(console_server, tenant, "orders")
        sign_in(page, console_server.base, console_server.token(tenant))
        page.goto(f"{console_server.base}/console/exports/new?dataset={d['id']}")
        page.get_by_label("Purpose").fill("")
        page.get_by_role("button", name="Request the export").click()
        error = page.locator("[data-error-for=purpose]")
        assert "1-64 characters" in error.inner_text()
        assert page.get_by_label("Purpose").get_attribute("aria-invalid") == "true"
        assert export_count(console_server, tenant) == 0


class TestListAndPresets:
    def test_the_list_pages_by_cursor_and_filters_by_status(
        self, console_server: ConsoleServer, page: Page, tenant: str, tmp_path: Path
    ) -> None:
        """26 exports: 25 on the first page, the rest after "Next page"."""
        d = register(console_server, tenant, "orders", license="Embargoed")
        request = {
            "datasetId": d["id"],
            "preset": "mask",
            "purpose": "investigation",
            "destinationRegion": "EU",
        }
        with api(console_server, console_server.token(tenant)) as http:
            for _ in range(26):
                denied = http.post("/v1/exports/", json=request)
                assert denied.status_code == 403
            listed = http.get(
                "/v1/exports/",
                params={"limit": 200},
                headers={"x-ig-min-position": str(denied.json()["position"])},
            )
            ids = [e["id"] for e in listed.json()["items"]]
            assert len(ids) == 26
        sign_in(page, console_server.base, console_server.token(tenant))
        page.goto(f"{console_server.base}/console/exports?status=denied")
        first = page.locator("#exports tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.exportId)"
        )
        assert first == ids[:25]
        assert "license_embargoed" in page.locator("#exports tbody").inner_text()
        axe_check(page)
        screenshot(page, tmp_path, "exports-list")
        page.locator("#next-page").click()
        rest = page.locator("#exports tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.exportId)"
        )
        assert rest == ids[25:]
        assert page.locator("#next-page").count() == 0
        page.goto(f"{console_server.base}/console/exports?status=proven")
        assert page.locator("#no-exports").is_visible()

    def test_the_presets_table_is_the_api_s_decision_table(
        self, console_server: ConsoleServer, page: Page, tenant: str, tmp_path: Path
    ) -> None:
        """Every cell names the action GET /v1/exports/presets gives."""
        with api(console_server, console_server.token(tenant)) as http:
            presets = http.get("/v1/exports/presets").json()["presets"]
        sign_in(page, console_server.base, console_server.token(tenant))
        page.goto(f"{console_server.base}/console/presets")
        cells = page.locator("#presets td").evaluate_all(
            "cells => cells.map(c => [c.dataset.preset, "
            "c.parentElement.dataset.classification, c.dataset.action])"
        )
        expected = [
            [p["name"], label, p["classifications"][label]["action"]]
            for label in presets[0]["classifications"]
            for p in presets
        ]
        assert cells == expected
        assert len(cells) >= 4 * 9
        header = page.locator("#presets th[data-preset=none]").inner_text()
        assert "always denied" in header
        axe_check(page)
        screenshot(page, tmp_path, "presets")
