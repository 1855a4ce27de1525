"""The console's session rules over HTTP through the real app (no browser needed)."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.auth import issue_token
from tests.conftest import SECRET, bearer, dataset_body

if TYPE_CHECKING:
    from collections.abc import Iterator

    from api.settings import Settings

pytestmark = pytest.mark.integration
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def token_of(tenant: str, *scopes: str) -> str:
    return bearer(tenant, *scopes)["Authorization"].removeprefix("Bearer ")


def sign_in(client: TestClient[Any], token: str) -> str:
    """Sign in through the form; returns the session's CSRF token."""
    page = client.get("/console/sign-in")
    csrf = _CSRF.search(page.text)
    assert csrf is not None
    reply = client.post(
        "/console/sign-in",
        data={"token": token, "csrf_token": csrf.group(1)},
        follow_redirects=False,
    )
    assert reply.status_code == 303, reply.text
    home = client.get("/console/datasets")
    found = _CSRF.search(home.text)
    assert found is not None
    return found.group(1)


@pytest.fixture
def https_client(settings: Settings) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(settings), base_url="https://console.test") as client:
        yield client


class TestSession:
    def test_the_cookie_is_secure_over_tls_and_strict(
        self, https_client: TestClient[Any]
    ) -> None:
        """Over https the session cookie is Secure, HttpOnly, SameSite=Strict."""
        page = https_client.get("/console/sign-in")
        csrf = _CSRF.search(page.text)
        assert csrf is not None
        reply = https_client.post(
            "/console/sign-in",
            data={"token": token_of("acme"), "csrf_token": csrf.group(1)},
            follow_redirects=False,
        )
        cookie = reply.headers["set-cookie"].split(", conductor_console_pre")[0]
        assert cookie.startswith("conductor_console=")
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "secure", "samesite=strict", "path=/console"} <= flags

    def test_the_cookie_is_no_bearer_token_for_the_api(
        self, client: TestClient[Any]
    ) -> None:
        """A signed-in browser still gets 401 from /v1: the API reads headers only."""
        sign_in(client, token_of("acme"))
        assert client.get("/v1/datasets").status_code == 401

    def test_sign_in_only_follows_console_paths(self, client: TestClient[Any]) -> None:
        """?next= cannot send a signed-in user to another site."""
        page = client.get("/console/sign-in", params={"next": "//evil.test/x"})
        csrf = _CSRF.search(page.text)
        assert csrf is not None
        assert 'name="next" value="/console/datasets"' in page.text
        reply = client.post(
            "/console/sign-in",
            data={
                "token": token_of("acme"),
                "csrf_token": csrf.group(1),
                "next": "https://evil.test/",
            },
            follow_redirects=False,
        )
        assert reply.headers["location"] == "/console/datasets"

    def test_an_expired_or_forged_session_goes_back_to_sign_in(
        self, client: TestClient[Any]
    ) -> None:
        """A cookie the verifier refuses is no session; htmx gets HX-Redirect."""
        client.cookies.set("conductor_console", token_of("acme") + "x", path="/console")
        reply = client.get("/console/datasets?q=a", follow_redirects=False)
        assert reply.status_code == 303
        assert (
            reply.headers["location"]
            == "/console/sign-in?next=%2Fconsole%2Fdatasets%3Fq%3Da"
        )
        htmx = client.get(
            "/console/datasets", headers={"HX-Request": "true"}, follow_redirects=False
        )
        assert htmx.headers["HX-Redirect"].startswith("/console/sign-in")

    def test_a_csrf_token_is_bound_to_its_session(
        self, client: TestClient[Any], settings: Settings
    ) -> None:
        """Tenant B's CSRF token does not pass with tenant A's session."""
        other = TestClient(create_app(settings))
        with other:
            theirs = sign_in(other, token_of("beta"))
        mine = sign_in(client, token_of("acme"))
        assert theirs != mine
        body = {**_form("stolen"), "csrf_token": theirs}
        assert client.post("/console/datasets/new", data=body).status_code == 403
        body["csrf_token"] = mine
        reply = client.post("/console/datasets/new", data=body, follow_redirects=False)
        assert reply.status_code == 303


def _form(name: str) -> dict[str, str]:
    return {
        "name": name,
        "license": "CC-BY-4.0",
        "purposes": "analytics",
        "retention": "P1Y",
        "region": "EU",
        "contract_version": "1",
        "contract_status": "active",
    }


class TestTenants:
    def test_every_console_route_answers_404_for_another_tenants_dataset(
        self, client: TestClient[Any]
    ) -> None:
        """GET and POST, every scope: A's id is not found for B; nothing changes."""
        made = client.post("/v1/datasets/", json=dataset_body(), headers=bearer("acme"))
        dataset_id = made.json()["id"]
        csrf = sign_in(client, token_of("beta"))
        base = f"/console/datasets/{dataset_id}"
        for path in (base, f"{base}/edit", f"{base}/coverage"):
            reply = client.get(path)
            assert reply.status_code == 404, path
            assert "orders" not in reply.text
        amend = client.post(
            f"{base}/edit",
            data={**_form("orders"), "version": "1", "csrf_token": csrf},
        )
        assert amend.status_code == 404
        after = client.get(f"/v1/datasets/{dataset_id}", headers=bearer("acme"))
        assert after.json()["version"] == 1

    def test_a_register_form_body_that_breaks_types_is_a_field_error(
        self, client: TestClient[Any]
    ) -> None:
        """An upstream that is no UUID is refused beside that field, not a 500."""
        csrf = sign_in(client, token_of("acme"))
        reply = client.post(
            "/console/datasets/new",
            data={**_form("typed"), "upstream": "not-a-uuid", "csrf_token": csrf},
        )
        assert reply.status_code == 422
        assert 'data-error-for="upstream"' in reply.text
        search = client.get("/v1/datasets/", params={"q": "typed"}, headers=bearer())
        assert search.json()["total"] == 0


class TestHostileTenants:
    def test_a_shaped_tenants_pages_are_throttled_and_its_neighbour_is_not(
        self, client: TestClient[Any]
    ) -> None:
        """The console draws on the same bucket as the API: no way around a 429."""
        client.app.state.conductor.autopilot.shaping.store.engage(
            "acme", rate=0.01, burst=1.0, reason="test: held", now=time.time()
        )
        sign_in(client, token_of("acme"))  # the sign-in page itself is not shaped
        answers = [client.get("/console/datasets") for _ in range(5)]
        refused = [a for a in answers if a.status_code == 429]
        assert refused, [a.status_code for a in answers]
        assert int(refused[0].headers["retry-after"]) >= 1
        assert "reason=test: held" in refused[0].headers["x-ig-throttle"]
        assert "text/html" in refused[0].headers["content-type"]
        client.cookies.clear()
        sign_in(client, token_of("beta"))
        assert [client.get("/console/datasets").status_code for _ in range(5)] == [
            200
        ] * 5

    @pytest.mark.parametrize("claims", [{"regions": ["EU"]}, {"purposes": ["fraud"]}])
    def test_an_attribute_limited_token_cannot_sign_in(
        self, client: TestClient[Any], claims: dict[str, list[str]]
    ) -> None:
        """The console does not enforce ABAC claims, so it refuses such a token."""
        token = issue_token(SECRET, tenant="acme", scopes=["catalog.read"], **claims)
        page = client.get("/console/sign-in")
        csrf = _CSRF.search(page.text)
        assert csrf is not None
        reply = client.post(
            "/console/sign-in",
            data={"token": token, "csrf_token": csrf.group(1)},
            follow_redirects=False,
        )
        assert reply.status_code == 403
        assert "only /graphql enforces" in reply.text
        assert "conductor_console=" not in reply.headers.get("set-cookie", "")
