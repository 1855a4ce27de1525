"""The console's catalog in a real browser, as a person uses it.

Every flow runs against a real `conductor serve` (SQLite and PostgreSQL) in
Debian's chromium; each asserts what is on the screen and, where it matters,
that the JSON API agrees.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.conftest import REPO_ROOT, dataset_body
from tests.console.conftest import ConsoleServer, api
from tests.console.helpers import axe_check, screenshot, sign_in

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Page

pytestmark = pytest.mark.integration
DOCS_SHOTS = REPO_ROOT / "docs" / "console"
LICENSES = ("CC-BY-4.0", "Restricted-TOS", "Proprietary")
REGIONS = ("EU", "US")


def seed(server: ConsoleServer, tenant: str, count: int) -> list[dict[str, Any]]:
    """``count`` "sales" datasets over three licenses and two regions, through the
    API; returns their bodies with ids once the catalog has caught up."""
    bodies = []
    with api(server, server.token(tenant)) as http:
        position = 0
        for i in range(count):
            body = dataset_body(
                f"sales-{i:03d}",
                license=LICENSES[i % 3],
                region=REGIONS[i % 2],
                description=f"Sales ledger number {i}",
            )
            reply = http.post("/v1/datasets/", json=body)
            assert reply.status_code == 201, reply.text
            position = reply.json()["position"]
            bodies.append({**body, "id": reply.json()["id"]})
        wait = http.get("/v1/datasets/", headers={"x-ig-min-position": str(position)})
        assert wait.status_code == 200
    return bodies


def api_total(server: ConsoleServer, tenant: str, **query: str) -> int:
    with api(server, server.token(tenant)) as http:
        reply = http.get("/v1/datasets/", params=query)
        assert reply.status_code == 200, reply.text
        return int(reply.json()["total"])


def result_names(page: Page) -> list[str]:
    return page.locator("#results a[data-dataset-id]").all_inner_texts()


def keep_for_docs(shot: Path, name: str) -> None:
    """CONDUCTOR_CONSOLE_DOCS=1 refreshes the README's screenshots."""
    if os.environ.get("CONDUCTOR_CONSOLE_DOCS") == "1":
        DOCS_SHOTS.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS_SHOTS / f"{name}.png")


def csrf_of(page: Page) -> str:
    value = page.locator("form[action='/console/sign-out'] input[name=csrf_token]")
    return str(value.get_attribute("value"))


class TestSession:
    def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_clears_it(
        self, console_server: ConsoleServer, page: Page, tenant: str, tmp_path: Path
    ) -> None:
        """A page needs a session; signing in shows the tenant; signing out ends it."""
        page.goto(f"{console_server.base}/console/datasets?q=x")
        assert "/console/sign-in" in page.url
        axe_check(page)
        screenshot(page, tmp_path, "sign-in")
        page.get_by_label("Token").fill("not-a-token")
        page.get_by_role("button", name="Sign in").click()
        assert page.get_by_role("alert").inner_text().startswith("That token was")
        page.get_by_label("Token").fill(console_server.token(tenant))
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r".*/console/datasets\?q=x$"))
        assert tenant in page.locator("header .who").inner_text()
        (cookie,) = [
            c for c in page.context.cookies() if c["name"] == "conductor_console"
        ]
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/console"
        assert page.evaluate("document.cookie") == ""  # not readable by scripts
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(re.compile(r".*/console/sign-in\?signed_out=true$"))
        assert "You are signed out" in page.inner_text("main")
        assert not [
            c for c in page.context.cookies() if c["name"] == "conductor_console"
        ]
        page.goto(f"{console_server.base}/console/datasets")
        assert "/console/sign-in" in page.url

    def test_a_link_with_the_token_in_the_fragment_fills_the_form(
        self, console_server: ConsoleServer, page: Page, tenant: str
    ) -> None:
        """The printed demo link (#token=...) signs in without the token in a URL
        the server sees."""
        token = console_server.token(tenant)
        page.goto(f"{console_server.base}/console/sign-in#token={token}")
        assert page.get_by_label("Token").input_value() == token
        assert "#" not in page.url
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r".*/console/datasets$"))

    def test_a_form_without_its_csrf_token_is_refused(
        self, console_server: ConsoleServer, page: Page, tenant: str
    ) -> None:
        """No or a wrong CSRF token: 403 and nothing registered."""
        sign_in(page, console_server.base, console_server.token(tenant))
        form = {
            "name": "forged",
            "license": "CC-BY-4.0",
            "purposes": "analytics",
            "retention": "P1Y",
            "region": "EU",
            "contract_version": "1",
            "contract_status": "active",
        }
        url = f"{console_server.base}/console/datasets/new"
        missing = page.request.post(url, form=form, max_redirects=0)
        assert missing.status == 403
        assert "CSRF" in missing.text()
        wrong = page.request.post(
            url, form={**form, "csrf_token": "0" * 64}, max_redirects=0
        )
        assert wrong.status == 403
        signed_out = page.request.post(
            f"{console_server.base}/console/sign-out", form={}, max_redirects=0
        )
        assert signed_out.status == 403
        assert api_total(console_server, tenant, q="forged") == 0
        good = page.request.post(
            url, form={**form, "csrf_token": csrf_of(page)}, max_redirects=0
        )
        assert good.status == 303  # the same form with its token goes through
        assert api_total(console_server, tenant, q="forged") == 1


class TestSearch:
    def test_text_and_two_facets_page_forward_and_back_then_open_a_result(
        self, console_server: ConsoleServer, page: Page, tenant: str, tmp_path: Path
    ) -> None:
        """Search, narrow by license and region, page, go back, open a dataset."""
        seed(console_server, tenant, 66)
        sign_in(page, console_server.base, console_server.token(tenant))
        page.get_by_label("Search").fill("sales")
        page.wait_for_url(re.compile(r".*[?&]q=sales"))
        expect_total = api_total(console_server, tenant, q="sales")
        assert page.locator("#total").inner_text() == str(expect_total) == "66"
        page.click("[data-facet=license] a[data-facet-value='Restricted-TOS']")
        page.wait_for_url(re.compile(r".*license=Restricted-TOS"))
        page.click("[data-facet=region] a[data-facet-value='EU']")
        page.wait_for_url(re.compile(r".*region=EU"))
        query = parse_qs(urlparse(page.url).query)
        assert query["q"] == ["sales"]
        assert query["license"] == ["Restricted-TOS"]
        assert query["region"] == ["EU"]
        total = api_total(
            console_server, tenant, q="sales", license="Restricted-TOS", region="EU"
        )
        assert total == 11  # i % 3 == 1 and i % 2 == 0 for i < 66
        assert page.locator("#total").inner_text() == "11"
        facet = page.locator("[data-facet=license] a[aria-current=true]")
        assert facet.inner_text().endswith("Restricted-TOS")
        axe_check(page)
        keep_for_docs(screenshot(page, tmp_path, "catalog"), "catalog")
        # Page through all 66 unfiltered results: 20 a page, back and forward.
        page.goto(f"{console_server.base}/console/datasets?q=sales")
        first = result_names(page)
        assert len(first) == 20
        page.click("#next")
        page.wait_for_url(re.compile(r".*after="))
        second = result_names(page)
        assert len(second) == 20
        assert not set(first) & set(second)
        page.click("#next")
        page.wait_for_function("document.querySelector('#prev') !== null")
        page.wait_for_url(re.compile(r".*trail=.*%2C"))
        third = result_names(page)
        assert len(third) == 20
        page.click("#prev")
        page.wait_for_function(
            "names => document.querySelector('#results a').innerText === names",
            arg=second[0],
        )
        assert result_names(page) == second
        page.go_back()  # the browser's back button: the third page again
        page.wait_for_function(
            "names => document.querySelector('#results a').innerText === names",
            arg=third[0],
        )
        assert result_names(page) == third
        page.go_back()
        page.go_back()
        page.wait_for_function(
            "names => document.querySelector('#results a').innerText === names",
            arg=first[0],
        )
        assert result_names(page) == first
        # Shareable: the URL alone, in a fresh tab, gives the same page.
        page.goto(page.url)
        assert result_names(page) == first
        link = page.locator("#results a[data-dataset-id]").first
        dataset_id = link.get_attribute("data-dataset-id")
        name = link.inner_text()
        link.click()
        page.wait_for_url(re.compile(rf".*/console/datasets/{dataset_id}$"))
        assert page.locator("#dataset-name").inner_text() == name

    def test_a_tag_facet_shows_counts_and_clicking_it_narrows_the_result(
        self, console_server: ConsoleServer, page: Page, tenant: str
    ) -> None:
        """Tag and contract-status facets carry exact counts; a click filters."""
        with api(console_server, console_server.token(tenant)) as http:
            position = 0
            for i in range(5):
                tags = ["sales", "pii"] if i < 2 else ["sales"]
                body = dataset_body(f"tagged-{i}", tags=tags)
                reply = http.post("/v1/datasets/", json=body)
                assert reply.status_code == 201, reply.text
                position = reply.json()["position"]
            http.get("/v1/datasets/", headers={"x-ig-min-position": str(position)})
        sign_in(page, console_server.base, console_server.token(tenant))
        page.goto(f"{console_server.base}/console/datasets")
        counts = page.locator("[data-facet=tag] li .count").all_inner_texts()
        assert counts == ["5", "2"]  # sales, then pii
        contract = page.locator("[data-facet=contractStatus] li .count")
        assert contract.all_inner_texts() == ["5"]
        page.click("[data-facet=tag] a[data-facet-value='pii']")
        page.wait_for_url(re.compile(r".*[?&]tag=pii"))
        assert page.locator("#total").inner_text() == "2"
        assert sorted(result_names(page)) == ["tagged-0", "tagged-1"]
        assert api_total(console_server, tenant, tag="pii") == 2
        chosen = page.locator("[data-facet=tag] a[aria-current=true]")
        assert chosen.inner_text().endswith("pii")

    def test_sort_by_name_orders_a_text_search_and_stays_in_the_url(
        self, console_server: ConsoleServer, page: Page, tenant: str
    ) -> None:
        """Relevance puts the strongest match first; sort=name, the alphabet."""
        with api(console_server, console_server.token(tenant)) as http:
            position = 0
            for name, description in (
                ("alpha-ledger", "monthly totals"),
                ("beta-ledger", "ledger ledger ledger entries"),
                ("gamma-ledger", "ledger archive"),
            ):
                body = dataset_body(name, description=description)
                reply = http.post("/v1/datasets/", json=body)
                assert reply.status_code == 201, reply.text
                position = reply.json()["position"]
            http.get("/v1/datasets/", headers={"x-ig-min-position": str(position)})
        sign_in(page, console_server.base, console_server.token(tenant))
        page.goto(f"{console_server.base}/console/datasets?q=ledger")
        by_relevance = result_names(page)
        assert sorted(by_relevance) == ["alpha-ledger", "beta-ledger", "gamma-ledger"]
        assert by_relevance[0] == "beta-ledger"  # "ledger" four times
        page.select_option("#sort", "name")
        page.wait_for_url(re.compile(r".*[?&]sort=name"))
        page.wait_for_function(
            "document.querySelector('#results a') &&"
            " document.querySelector('#results a').textContent === 'alpha-ledger'"
        )
        assert result_names(page) == ["alpha-ledger", "beta-ledger", "gamma-ledger"]
        assert "Sorted by name" in page.locator("#catalog").inner_text()
        page.go_back()
        page.wait_for_url(re.compile(r".*q=ledger$"))

    def test_keyboard_only_search_updates_as_you_type(
        self, console_server: ConsoleServer, page: Page, tenant: str
    ) -> None:
        """Tab to the search box, type, Tab to a result, Enter: no mouse."""
        bodies = seed(console_server, tenant, 3)
        sign_in(page, console_server.base, console_server.token(tenant))
        for _ in range(30):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "q":
                break
        assert page.evaluate("document.activeElement.id") == "q"
        page.keyboard.type("sales-002", delay=40)
        page.wait_for_url(re.compile(r".*q=sales-002"))
        page.wait_for_function("document.querySelector('#total').innerText === '1'")
        assert page.evaluate("document.activeElement.id") == "q"  # focus kept
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.dataset.datasetId || ''"):
                break
        assert page.evaluate("document.activeElement.innerText") == "sales-002"
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(rf".*/console/datasets/{bodies[2]['id']}$"))


class TestDatasetPages:
    def test_bad_retention_shows_beside_the_field_then_the_fix_is_found(
        self, console_server: ConsoleServer, page: Page, tenant: str, tmp_path: Path
    ) -> None:
        """The registry's own rule, shown at the field; fixed, it is in search,
        with its history (positions, hashes) and lineage on its page."""
        (upstream,) = seed(console_server, tenant, 1)
        sign_in(page, console_server.base, console_server.token(tenant))
        page.click("#register")
        page.get_by_label("Name").fill("invoices")
        page.get_by_label("License").fill("CC-BY-4.0")
        page.get_by_label("Purposes").fill("analytics, billing")
        page.get_by_label("Retention").fill("forever")
        page.get_by_label("Region").select_option("EU")
        page.get_by_label("Contract version").fill("2.1")
        page.get_by_label("Tags").fill("finance")
        page.get_by_label("Columns").fill("email: pii.email\namount: public")
        page.get_by_label("Upstream datasets").fill(upstream["id"])
        page.click("#save")
        error = page.locator("[data-error-for=retention]")
        assert "ISO-8601 duration" in error.inner_text()
        assert page.get_by_label("Retention").get_attribute("aria-invalid") == "true"
        assert page.get_by_label("Name").input_value() == "invoices"  # kept
        axe_check(page)
        screenshot(page, tmp_path, "register-error")
        assert api_total(console_server, tenant, q="invoices") == 0
        page.get_by_label("Retention").fill("P90D")
        page.click("#save")
        page.wait_for_url(re.compile(r".*/console/datasets/[0-9a-f-]{36}\?saved="))
        assert page.locator("#dataset-name").inner_text() == "invoices"
        history = page.locator("#history tbody tr")
        assert history.count() == 1
        assert re.fullmatch(r"[0-9a-f]{64}", history.locator("td").nth(3).inner_text())
        lineage = page.locator(f"#lineage [data-lineage-id='{upstream['id']}']")
        assert lineage.count() == 1
        assert "pii.email" in page.locator("#columns").inner_text()
        page.wait_for_selector("#coverage-panel")
        axe_check(page)
        keep_for_docs(screenshot(page, tmp_path, "dataset"), "dataset")
        page.goto(f"{console_server.base}/console/datasets")
        page.get_by_label("Search").fill("invoices")
        page.wait_for_function("document.querySelector('#total').innerText === '1'")
        assert result_names(page) == ["invoices"]

    def test_amend_shows_a_concurrent_change_instead_of_losing_it(
        self, console_server: ConsoleServer, page: Page, tenant: str, tmp_path: Path
    ) -> None:
        """If-Match: a change made meanwhile is shown; the user's values stay."""
        (body,) = seed(console_server, tenant, 1)
        sign_in(page, console_server.base, console_server.token(tenant))
        page.goto(f"{console_server.base}/console/datasets/{body['id']}")
        page.click("#amend")
        page.get_by_label("Owner").fill("console-user")
        with api(console_server, console_server.token(tenant)) as http:
            changed = http.patch(
                f"/v1/datasets/{body['id']}",
                json={"owner": "someone-else"},
                headers={"If-Match": '"1"'},
            )
            assert changed.status_code == 200
        page.click("#save")
        conflict = page.locator("#conflict")
        assert "now version 2" in conflict.inner_text()
        assert "someone-else" in conflict.inner_text()
        assert page.get_by_label("Owner").input_value() == "console-user"
        axe_check(page)
        screenshot(page, tmp_path, "amend-conflict")
        page.click("#save")  # on top of version 2, knowingly
        page.wait_for_url(re.compile(r".*\?saved=amended$"))
        with api(console_server, console_server.token(tenant)) as http:
            now = http.get(f"/v1/datasets/{body['id']}").json()
        assert now["owner"] == "console-user"
        assert now["version"] == 3


class TestScopesAndTenants:
    def test_another_tenants_dataset_is_not_found_by_url(
        self, console_server: ConsoleServer, page: Page, tenant: str, tmp_path: Path
    ) -> None:
        """Tenant B, even with catalog.write, gets 404 for A's ids."""
        (body,) = seed(console_server, tenant, 1)
        sign_in(page, console_server.base, console_server.token(tenant + "b"))
        csrf = csrf_of(page)
        base = f"{console_server.base}/console/datasets/{body['id']}"
        for url in (base, f"{base}/edit", f"{base}/coverage"):
            reply = page.goto(url)
            assert reply is not None
            assert reply.status == 404, url
            assert body["name"] not in page.content()
        axe_check(page)
        screenshot(page, tmp_path, "not-found")
        forced = page.request.post(
            f"{base}/edit",
            form={"csrf_token": csrf, "version": "1", "owner": "x"},
            max_redirects=0,
        )
        assert forced.status == 404
        page.goto(f"{console_server.base}/console/datasets?q=sales")
        assert page.locator("#total").inner_text() == "0"

    def test_a_read_only_token_sees_no_register_button_and_a_forced_post_fails(
        self, console_server: ConsoleServer, page: Page, tenant: str
    ) -> None:
        """catalog.read only: no register/amend; POSTs answer 403; nothing written."""
        (body,) = seed(console_server, tenant, 1)
        sign_in(page, console_server.base, console_server.token(tenant, "catalog.read"))
        assert page.locator("#register").count() == 0
        nav = page.locator("header nav").inner_text()
        assert "Datasets" in nav
        assert "DR" not in nav
        assert "Budgets" not in nav
        page.goto(f"{console_server.base}/console/datasets/{body['id']}")
        assert page.locator("#amend").count() == 0
        assert page.locator("#request-export").count() == 0
        reply = page.goto(f"{console_server.base}/console/datasets/new")
        assert reply is not None
        assert reply.status == 403
        page.goto(f"{console_server.base}/console/datasets")
        forced = page.request.post(
            f"{console_server.base}/console/datasets/new",
            form={
                "csrf_token": csrf_of(page),
                "name": "sneaky",
                "license": "CC-BY-4.0",
                "purposes": "analytics",
                "retention": "P1Y",
                "region": "EU",
                "contract_version": "1",
            },
            max_redirects=0,
        )
        assert forced.status == 403
        assert api_total(console_server, tenant, q="sneaky") == 0
        with_no_catalog = console_server.token(tenant, "export.request")
        sign_in_page = page.context.new_page()
        sign_in_page.goto(f"{console_server.base}/console/sign-in")
        sign_in_page.get_by_label("Token").fill(with_no_catalog)
        sign_in_page.get_by_role("button", name="Sign in").click()
        sign_in_page.wait_for_load_state()
        assert "Not allowed" in sign_in_page.inner_text("main")


class TestOpenAPI:
    def test_swagger_ui_renders_the_operations_with_no_network(
        self, console_server: ConsoleServer, page: Page
    ) -> None:
        """/schema loads nothing from outside this host (every such request aborted)."""
        outside: list[str] = []

        def only_local(route: Any) -> None:
            host = urlparse(route.request.url).hostname
            if host in {"127.0.0.1", "localhost"}:
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_local)
        page.goto(f"{console_server.base}/schema/swagger")
        page.wait_for_selector(".opblock", timeout=30_000)
        operations = page.locator(".opblock-summary-path").all_inner_texts()
        paths = {o.replace("\u200b", "") for o in operations}
        assert "/v1/datasets/{dataset_id}/history" in paths
        assert len(operations) > 20
        assert outside == []
