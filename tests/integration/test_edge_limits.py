"""Input limits at the edge: hostile shapes get a 400/401 problem, never a 500.

Through real HTTP on a fresh world (SQLite and PostgreSQL): bodies nested too
deep, arrays too long, repeated keys; numbers in headers and query strings
spelled with non-ASCII digits; absurd numbers in a budget; JWTs that are not
in their one canonical base64url spelling. Every refusal leaves the log as it
was, and none is logged as a server error.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

import jwt
import pytest
import structlog
from structlog.testing import capture_logs

import api.app
from api.auth import SCOPES
from api.middleware.body_limits import MAX_DEPTH, MAX_ITEMS
from tests.conftest import SECRET, bearer, dataset_body
from tests.integration.test_bad_input import BAD, Case, assert_problem, snapshot

if TYPE_CHECKING:
    from collections.abc import Iterator

    from httpx import Response
    from litestar.testing import TestClient

pytestmark = pytest.mark.integration

UNAUTHORIZED = "/problems/unauthorized"
JSON = {"content-type": "application/json"}


@pytest.fixture
def orders(client: TestClient[Any]) -> str:
    """acme's registered "orders" dataset (its id), with the catalog caught up."""
    response = client.post("/v1/datasets", json=dataset_body(), headers=bearer())
    assert response.status_code == 201, response.text
    snapshot(client)
    return str(response.json()["id"])


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The app's log lines about failed requests, while the test runs."""
    # An earlier app's configure_logging caches the module's logger on first
    # use; a fresh one binds inside capture_logs.
    monkeypatch.setattr(api.app, "_log", structlog.get_logger("conductor.http"))
    with capture_logs() as captured:
        yield captured


def refused(
    response: Response,
    *,
    status: int = 400,
    names: str | None = None,
    rule: str | None = None,
) -> None:
    """The response is the problem expected (via test_bad_input's checks)."""
    kind = BAD if status == 400 else UNAUTHORIZED
    assert_problem(Case("edge", "", "", status, kind, names=names, rule=rule), response)


def post_raw(client: TestClient[Any], path: str, body: bytes) -> Response:
    return client.post(path, content=body, headers={**bearer(), **JSON})


def _nested(levels: int) -> bytes:
    return ("[" * levels + "]" * levels).encode()


def _registration_with(field: str, raw_value: str) -> bytes:
    """A valid registration whose ``field`` is the given raw JSON, verbatim."""
    text = json.dumps(dataset_body("edge", **{field: "PLACEHOLDER"}))
    return text.replace('"PLACEHOLDER"', raw_value).encode()


# -- JSON structure ---------------------------------------------------------------


def test_a_body_100000_arrays_deep_is_a_400_max_depth_and_no_server_error(
    client: TestClient[Any], orders: str, logs: list[Any]
) -> None:
    """msgspec would recurse into it (RecursionError, a 500): refused before."""
    before = snapshot(client)
    response = post_raw(client, "/v1/datasets", b"[" * 100_000)
    refused(response, names="body", rule="max-depth")
    assert str(MAX_DEPTH) in response.json()["errors"][0]["message"]
    assert snapshot(client, min_position=before.head_position) == before
    assert orders
    assert [line for line in logs if line["log_level"] == "error"] == []


def test_65_levels_inside_a_valid_field_are_refused_and_64_are_not(
    client: TestClient[Any], orders: str
) -> None:
    """The limit is exactly 64: 64 levels reach the schema (which wants a string)."""
    before = snapshot(client)
    too_deep = _registration_with("description", _nested(MAX_DEPTH).decode())
    refused(post_raw(client, "/v1/datasets", too_deep), rule="max-depth")
    deepest = _registration_with("description", _nested(MAX_DEPTH - 1).decode())
    response = post_raw(client, "/v1/datasets", deepest)
    refused(response, names="description", rule="type")
    assert snapshot(client, min_position=before.head_position) == before
    assert orders


def test_an_array_of_more_than_10000_elements_is_refused_naming_the_field(
    client: TestClient[Any], orders: str
) -> None:
    """10 001 tags: a 400 ``max-array-length`` on ``tags``; 10 000 pass the edge."""
    before = snapshot(client)
    too_many = dataset_body("wide", tags=["t"] * (MAX_ITEMS + 1))
    response = client.post("/v1/datasets", json=too_many, headers=bearer())
    refused(response, names="tags", rule="max-array-length")
    at_limit = dataset_body("wide", tags=["t"] * MAX_ITEMS)
    response = client.post("/v1/datasets", json=at_limit, headers=bearer())
    assert response.status_code == 422, response.text  # the domain's 64-tag rule
    assert {e["field"] for e in response.json()["errors"]} == {"tags"}
    assert snapshot(client, min_position=before.head_position) == before
    assert orders


def test_an_object_of_more_than_10000_members_is_refused(
    client: TestClient[Any], orders: str
) -> None:
    """An ER record's ``fields`` with 10 001 keys: ``max-object-members``."""
    fields = {f"f{i}": "x" for i in range(MAX_ITEMS + 1)}
    body = {"entitySet": "people", "records": [{"id": "r1", "fields": fields}]}
    response = client.post("/v1/er/resolve", json=body, headers=bearer())
    refused(response, names="records[0].fields", rule="max-object-members")
    assert orders


@pytest.mark.parametrize(
    ("body", "path"),
    [
        pytest.param(b'{"name": "a", "name": "b"}', "name", id="top-level"),
        pytest.param(
            _registration_with(
                "columns",
                '[{"name": "a", "classification": "public"},'
                ' {"name": "b", "classification": "public", "classification": "x"}]',
            ),
            "columns[1].classification",
            id="nested-in-an-array",
        ),
        pytest.param(
            _registration_with("region", '"EU", "n\\u0061me": "other"'),
            "name",
            id="spelled-with-an-escape",
        ),
    ],
)
def test_a_repeated_key_is_refused_naming_its_path(
    client: TestClient[Any], orders: str, body: bytes, path: str
) -> None:
    """msgspec would keep the last value silently: a 400 ``duplicate-key``."""
    before = snapshot(client)
    response = post_raw(client, "/v1/datasets", body)
    refused(response, names=path, rule="duplicate-key")
    assert snapshot(client, min_position=before.head_position) == before
    assert orders


def _body_routes(client: TestClient[Any]) -> list[tuple[str, str]]:
    return [
        (method, route.path)
        for route in client.app.routes
        for method in sorted(
            set(getattr(route, "methods", ())) & {"POST", "PUT", "PATCH"}
        )
    ]


def _concrete(path: str, dataset: str) -> str:
    values = {"uuid": dataset, "str": "acme", "int": "1", "path": "x"}
    return re.sub(r"\{\w+:(\w+)\}", lambda m: values[m.group(1)], path)


def test_every_route_with_a_body_checks_depth_before_decoding(
    client: TestClient[Any], orders: str
) -> None:
    """All POST/PUT/PATCH routes of the app answer 400 max-depth, none a 5xx."""
    routes = _body_routes(client)
    assert len(routes) >= 10, routes
    before = snapshot(client)
    for method, template in routes:
        response = client.request(
            method,
            _concrete(template, orders),
            content=b"[" * 5000,
            headers={**bearer(), **JSON, "If-Match": '"1"'},
        )
        if template.startswith("/console/"):
            # the console's forms: refused by the CSRF check before any body
            # is read (a page, not a problem document)
            assert response.status_code == 403, (method, template, response.text)
            assert "CSRF token" in response.text
            continue
        assert response.status_code == 400, (method, template, response.text)
        assert response.json()["errors"][0]["rule"] == "max-depth", response.text
    assert snapshot(client, min_position=before.head_position) == before


# -- numbers in headers and query strings -----------------------------------------


def raw_request(
    client: TestClient[Any],
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
) -> tuple[int, dict[str, Any]]:
    """One request straight into the ASGI app, header bytes exactly as given.

    httpx re-encodes header values as UTF-8, so a latin-1 byte such as 0xB2
    ("²", which str.isdigit() accepts and int() refuses) cannot pass through
    the test client; an HTTP server hands such bytes to the app as they are.
    """
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver.local"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver.local", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    async def call() -> None:
        await client.app(scope, receive, send)  # type: ignore[arg-type]

    client.blocking_portal.call(call)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"].endswith("body"))
    return status, json.loads(content)


def _auth() -> list[tuple[bytes, bytes]]:
    return [(b"authorization", bearer()["Authorization"].encode())]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("²".encode("latin-1"), id="superscript-two"),
        pytest.param("¹0".encode("latin-1"), id="superscript-one-then-zero"),
        pytest.param("٣".encode(), id="arabic-indic-three"),
        pytest.param(b"1" * 19, id="nineteen-digits"),
        pytest.param(b"+1", id="plus-sign"),
    ],
)
def test_x_ig_min_position_takes_ascii_digits_only(
    client: TestClient[Any], orders: str, value: bytes
) -> None:
    """A 400 naming the header, where "²" used to reach int() (a 500)."""
    status, problem = raw_request(
        client,
        "GET",
        "/v1/datasets",
        [*_auth(), (b"x-ig-min-position", value)],
    )
    assert status == 400, problem
    assert problem["errors"][0]["field"] == "x-ig-min-position"
    assert problem["errors"][0]["rule"] == "integer"
    assert orders


@pytest.mark.parametrize(
    "value",
    [
        pytest.param('"²"'.encode("latin-1"), id="superscript-two"),
        pytest.param('"٣"'.encode(), id="arabic-indic-three"),
        pytest.param(b'"1"\xa0', id="latin-1-no-break-space"),
    ],
)
def test_if_match_takes_ascii_digits_only(
    client: TestClient[Any], orders: str, value: bytes
) -> None:
    """A 400 ``etag`` on If-Match, and the dataset stays at version 1."""
    before = snapshot(client)
    status, problem = raw_request(
        client,
        "PATCH",
        f"/v1/datasets/{orders}",
        [*_auth(), (b"content-type", b"application/json"), (b"if-match", value)],
        b'{"description": "changed"}',
    )
    assert status == 400, problem
    assert (problem["errors"][0]["field"], problem["errors"][0]["rule"]) == (
        "If-Match",
        "etag",
    )
    assert snapshot(client, min_position=before.head_position) == before


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/v1/datasets", "limit"),
        ("/v1/log", "after"),
        ("/v1/log", "limit"),
        ("/v1/exports", "limit"),
        ("/v1/er/candidates/r1?entitySet=people", "k"),
    ],
)
# superscript two, Arabic-Indic three, fullwidth ten, Python's digit grouping
@pytest.mark.parametrize("digits", ["²", "٣", "\uff11\uff10", "1_0", " 1"])
def test_integer_query_parameters_refuse_odd_digits_with_a_400(
    client: TestClient[Any], path: str, param: str, digits: str
) -> None:
    """Litestar's int parameters: never a 5xx, always a problem naming them."""
    joiner = "&" if "?" in path else "?"
    response = client.get(f"{path}{joiner}{param}={digits}", headers=bearer())
    refused(response, names=param)


# -- numbers in a budget ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "names", "rule"),
    [
        pytest.param(
            '{"period": "day", "costCapUnits": NaN}', "body", "json", id="nan"
        ),
        pytest.param(
            '{"period": "day", "costCapUnits": Infinity}', "body", "json", id="inf"
        ),
        pytest.param(
            '{"period": "day", "costCapUnits": 1e400}', "body", "json", id="1e400"
        ),
        pytest.param(
            '{"period": "day", "costCapUnits": 1e308}',
            "costCapUnits",
            "range",
            id="1e308",
        ),
        pytest.param(
            '{"period": "day", "costCapUnits": 10, "slo": {"query":'
            ' {"availability": 0.99, "latencyP95Ms": 1000000000000000000000000}}}',
            "slo[...].latencyP95Ms",  # msgspec does not name a dict's key
            "range",
            id="latency-10e24",
        ),
        pytest.param(
            '{"period": "day", "costCapUnits": 10, "slo": {"query":'
            ' {"availability": 0.99, "latencyP95Ms": -5}}}',
            "slo[...].latencyP95Ms",
            "range",
            id="latency-negative",
        ),
    ],
)
def test_absurd_numbers_in_a_budget_are_a_400_and_write_nothing(
    client: TestClient[Any], orders: str, raw: str, names: str, rule: str | None
) -> None:
    """NaN and Infinity are not JSON; 1e308 units or 10^24 ms are out of range."""
    before = snapshot(client)
    response = client.put(
        "/v1/tenants/acme/budget", content=raw.encode(), headers={**bearer(), **JSON}
    )
    refused(response, names=names, rule=rule)
    assert snapshot(client, min_position=before.head_position) == before
    assert orders


# -- JWTs in their canonical spelling only ------------------------------------------


def _token(**claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "edge", "tenant": "acme", "scopes": sorted(SCOPES)}
    payload |= {"iat": now, "exp": now + 600, **claims}
    return jwt.encode(payload, SECRET, algorithm="HS256")


def _with_url_unsafe_alphabet() -> str:
    """A valid token with a '-' or '_' in its signature, spelled with '+'/'/'."""
    while True:
        header, payload, signature = _token(jti=uuid.uuid4().hex).split(".")
        if "-" in signature or "_" in signature:
            swapped = signature.replace("-", "+").replace("_", "/")
            return f"{header}.{payload}.{swapped}"


def _trailing_bits_flipped() -> str:
    """The same signature bytes with a spare low bit of the last character set."""
    header, payload, signature = _token().split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    flipped = alphabet[alphabet.index(signature[-1]) ^ 1]
    forged = f"{header}.{payload}.{signature[:-1]}{flipped}"
    pad = "=" * (-len(signature) % 4)
    same = base64.urlsafe_b64decode(forged.rsplit(".", 1)[1] + pad)
    assert same == base64.urlsafe_b64decode(signature + pad)  # PyJWT would accept it
    return forged


NON_CANONICAL: dict[str, Any] = {
    "padded-signature": lambda: _token() + "=",
    "padded-header-and-payload": lambda: _token().replace(".", "==.", 2),
    "plus-and-slash": _with_url_unsafe_alphabet,
    "trailing-bits-flipped": _trailing_bits_flipped,
    "empty-signature": lambda: _token().rsplit(".", 1)[0] + ".",
    "four-segments": lambda: _token() + ".e30",
    "bang-in-payload": lambda: _token().replace(".", ".!", 1),
}


@pytest.mark.parametrize("kind", sorted(NON_CANONICAL))
def test_a_jwt_not_in_canonical_base64url_is_a_401_and_never_cached(
    client: TestClient[Any], kind: str
) -> None:
    """Each spelling is refused, twice over (a refusal is not cached as valid)."""
    token = NON_CANONICAL[kind]()
    for _ in range(2):
        response = client.get(
            "/v1/datasets", headers={"Authorization": f"Bearer {token}"}
        )
        refused(response, status=401)
    canonical = client.get("/v1/datasets", headers=bearer())
    assert canonical.status_code == 200, canonical.text
