"""Hostile requests: every one is refused with the right problem and changes nothing.

Each row of ``CASES`` is one hostile request. It runs against a fresh world on
real SQLite and on real PostgreSQL, and must get its exact status as RFC 9457
problem+json (type, title, and for validation failures ``errors`` naming the
offending camelCase field and a rule). The event log (length and head hash) and
the catalog read model of both tenants must be the same after it as before.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import jwt
import pytest

from api.auth import SCOPES
from api.paging import encode_cursor
from projections.catalog import CatalogQuery
from tests.conftest import SECRET, bearer, dataset_body

if TYPE_CHECKING:
    from collections.abc import Callable

    from httpx import Response
    from litestar.testing import TestClient

pytestmark = pytest.mark.integration

PROBLEM_JSON = "application/problem+json"
SQL_INJECTION = "x'; DROP TABLE stored_events;--"
NO_BODY = object()


@dataclass(frozen=True)
class World:
    """Ids of the shared state every case starts from."""

    acme: str
    """acme's "orders" (version 2: registered, then linked to ``upstream``)."""
    upstream: str
    """acme's "customers", which feeds "orders"."""
    globex: str
    """globex's "payroll-secret": acme must never see it."""

    def format(self, text: str) -> str:
        return text.format(acme=self.acme, upstream=self.upstream, globex=self.globex)


GLOBEX_NAME = "payroll-secret"


@dataclass(frozen=True)
class Case:
    """One hostile request and the problem it must get."""

    id: str
    method: str
    path: str
    status: int
    type: str
    json: Any = NO_BODY
    content: bytes | None = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    auth: str = "acme"
    names: str | None = None
    """The camelCase field ``errors`` must name (None: no field errors expected)."""
    rule: str | None = None
    """The rule that error must carry (None: any non-empty rule)."""
    setup: Callable[[TestClient[Any], World], None] | None = None
    check: Callable[[TestClient[Any], World, Case, Response], None] | None = None


# -- tokens ---------------------------------------------------------------------

OTHER_SECRET = "not-the-server-secret-" + "z" * 40


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "mallory",
        "tenant": "acme",
        "scopes": sorted(SCOPES),
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _raw(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def auth_headers(kind: str) -> dict[str, str]:
    """The Authorization header a case asks for."""
    now = int(time.time())
    tokens: dict[str, Callable[[], dict[str, str]]] = {
        "acme": lambda: bearer("acme"),
        "none": dict,
        "expired": lambda: _raw(
            jwt.encode(
                _claims(iat=now - 7200, exp=now - 3600), SECRET, algorithm="HS256"
            )
        ),
        "forged": lambda: _raw(jwt.encode(_claims(), OTHER_SECRET, algorithm="HS256")),
        "alg-none": lambda: _raw(jwt.encode(_claims(), "", algorithm="none")),
        "no-tenant": lambda: _raw(
            jwt.encode(
                {k: v for k, v in _claims().items() if k != "tenant"},
                SECRET,
                algorithm="HS256",
            )
        ),
        "bad-tenant": lambda: _raw(
            jwt.encode(_claims(tenant="../globex"), SECRET, algorithm="HS256")
        ),
        "read-only": lambda: bearer("acme", "catalog.read"),
        "no-audit": lambda: bearer("acme", "catalog.read", "catalog.write"),
    }
    return tokens[kind]()


# -- checks beyond status/type/field --------------------------------------------


def hides_other_tenant(
    client: TestClient[Any], world: World, case: Case, response: Response
) -> None:
    """The answer about globex's dataset is the one an id that never existed gets."""
    assert GLOBEX_NAME not in response.text
    assert "globex" not in response.text
    ghost = str(uuid.uuid4())
    twin = send(client, replace(world, globex=ghost), case)
    assert twin.status_code == response.status_code
    expected = json.loads(twin.text.replace(ghost, world.globex))
    assert response.json() == expected


def names_the_cycle(
    _client: TestClient[Any], world: World, _case: Case, response: Response
) -> None:
    assert response.json()["cycle"] == [world.upstream, world.acme, world.upstream]


def tells_current_version(
    _client: TestClient[Any], _world: World, _case: Case, response: Response
) -> None:
    assert response.json()["currentVersion"] == 2


def names_existing_dataset(
    _client: TestClient[Any], world: World, _case: Case, response: Response
) -> None:
    assert response.json()["datasetId"] == world.acme


def finds_nothing(
    _client: TestClient[Any], _world: World, _case: Case, response: Response
) -> None:
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["items"] == []
    assert body["total"] == 0


def register_with_key(client: TestClient[Any], _world: World) -> None:
    """Use Idempotency-Key "k-reuse" once (replays are fine on a second setup)."""
    response = client.post(
        "/v1/datasets",
        json=dataset_body("keyed"),
        headers={**bearer("acme"), "Idempotency-Key": "k-reuse"},
    )
    assert response.status_code in {200, 201}, response.text


def _without(key: str) -> dict[str, Any]:
    body = dataset_body("nameless")
    del body[key]
    return body


def _with_raw_name(raw_json_string: str, encoding: str = "utf-8") -> bytes:
    """A registration whose name is the given JSON string literal, verbatim."""
    text = json.dumps(dataset_body("PLACEHOLDER"))
    return text.replace('"PLACEHOLDER"', raw_json_string).encode(encoding)


def _cursor(key: Any, row: Any) -> str:
    """A cursor as the API encodes them, for the default acme search."""
    return encode_cursor(CatalogQuery(tenant="acme"), (key, row))


def _self_id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"/tenants/acme/datasets/{name}"))


BAD = "/problems/bad-request"
RULE = "/problems/validation"
DS = "/v1/datasets"
ONE = "/v1/datasets/{acme}"
GLOBEX = "/v1/datasets/{globex}"
NEVER = "00000000-0000-4000-8000-000000000001"

CASES: list[Case] = [
    # -- body shape and typing: 400 ------------------------------------------
    Case(
        "purposes-as-string",
        "POST",
        DS,
        400,
        BAD,
        json=dataset_body("x", purposes="investigation"),
        names="purposes",
        rule="type",
    ),
    Case(
        "name-as-number",
        "POST",
        DS,
        400,
        BAD,
        json={**dataset_body(), "name": 12345},
        names="name",
        rule="type",
    ),
    Case(
        "columns-item-as-string",
        "POST",
        DS,
        400,
        BAD,
        json=dataset_body("x", columns=["email"]),
        names="columns[0]",
        rule="type",
    ),
    Case(
        "unknown-top-level-field",
        "POST",
        DS,
        400,
        BAD,
        json=dataset_body("x", colour="red"),
        names="colour",
        rule="unknown-field",
    ),
    Case(
        "unknown-nested-column-field",
        "POST",
        DS,
        400,
        BAD,
        json=dataset_body(
            "x",
            columns=[{"name": "a", "classification": "public", "sensitivity": "high"}],
        ),
        names="columns[0].sensitivity",
        rule="unknown-field",
    ),
    Case(
        "missing-required-contractVersion",
        "POST",
        DS,
        400,
        BAD,
        json=_without("contractVersion"),
        names="contractVersion",
        rule="required",
    ),
    Case(
        "body-of-2-MiB",
        "POST",
        DS,
        413,
        "/problems/payload-too-large",
        content=json.dumps(dataset_body("big", description="a" * (2 << 20))).encode(),
    ),
    Case(
        "broken-json-truncated",
        "POST",
        DS,
        400,
        BAD,
        content=b'{"name": ',
        names="body",
        rule="json",
    ),
    Case(
        "broken-json-trailing-comma",
        "POST",
        DS,
        400,
        BAD,
        content=b'{"name": "x",}',
        names="body",
        rule="json",
    ),
    Case(
        "empty-body", "POST", DS, 400, BAD, content=b"", names="body", rule="required"
    ),
    Case(
        "body-sent-as-text-plain",
        "POST",
        DS,
        415,
        "/problems/unsupported-media-type",
        content=json.dumps(dataset_body("plain")).encode(),
        headers={"content-type": "text/plain"},
        names="Content-Type",
        rule="json",
    ),
    Case(
        "json-array-instead-of-object",
        "POST",
        DS,
        400,
        BAD,
        json=[dataset_body("x")],
        names="body",
        rule="type",
    ),
    Case(
        "invalid-utf8-bytes",
        "POST",
        DS,
        400,
        BAD,
        content=_with_raw_name('"caf\xe9"', encoding="latin-1"),
        names="body",
        rule="json",
    ),
    Case(
        "lone-surrogate-escape",
        "POST",
        DS,
        400,
        BAD,
        content=_with_raw_name('"a\\ud800b"'),
        names="body",
        rule="json",
    ),
    Case(
        "lineage-upstream-not-a-uuid",
        "POST",
        ONE + "/lineage",
        400,
        BAD,
        json={"upstream": ["not-a-uuid"]},
        names="upstream[0]",
        rule="type",
    ),
    # -- field rules: 422 -------------------------------------------------------
    Case(
        "name-of-10k-characters",
        "POST",
        DS,
        422,
        RULE,
        json=dataset_body("n" * 10_000),
        names="name",
        rule="max-length",
    ),
    Case(
        "description-of-5000-characters",
        "POST",
        DS,
        422,
        RULE,
        json=dataset_body("x", description="d" * 5000),
        names="description",
        rule="max-length",
    ),
    Case(
        "nul-in-name",
        "POST",
        DS,
        422,
        RULE,
        json=dataset_body("a\u0000b"),
        names="name",
        rule="no-control-characters",
    ),
    Case(
        "escape-in-license",
        "POST",
        DS,
        422,
        RULE,
        json=dataset_body("x", license="MIT\u001b[31m"),
        names="license",
        rule="no-control-characters",
    ),
    Case(
        "sql-injection-as-name",
        "POST",
        DS,
        422,
        RULE,
        json=dataset_body(SQL_INJECTION),
        names="name",
        rule="pattern",
    ),
    Case(
        "retention-P0D",
        "POST",
        DS,
        422,
        RULE,
        json=dataset_body("x", retention="P0D"),
        names="retention",
        rule="iso8601-duration",
    ),
    Case(
        "retention-1-year",
        "POST",
        DS,
        422,
        RULE,
        json=dataset_body("x", retention="1 year"),
        names="retention",
        rule="iso8601-duration",
    ),
    Case(
        "unknown-region",
        "POST",
        DS,
        422,
        RULE,
        json=dataset_body("x", region="MARS"),
        names="region",
        rule="allowed-region",
    ),
    Case(
        "duplicate-purposes",
        "POST",
        DS,
        422,
        RULE,
        json=dataset_body("x", purposes=["billing", "billing"]),
        names="purposes[1]",
        rule="unique",
    ),
    Case(
        "empty-purposes",
        "POST",
        DS,
        422,
        RULE,
        json=dataset_body("x", purposes=[]),
        names="purposes",
        rule="non-empty",
    ),
    Case(
        "bad-classification",
        "POST",
        DS,
        422,
        RULE,
        json=dataset_body("x", columns=[{"name": "a", "classification": "secrets"}]),
        names="columns[0].classification",
        rule="allowed-classification",
    ),
    Case(
        "empty-contractVersion",
        "POST",
        DS,
        422,
        RULE,
        json=dataset_body("x", contractVersion=" "),
        names="contractVersion",
        rule="required",
    ),
    Case(
        "location-dot-dot",
        "POST",
        DS,
        422,
        RULE,
        json=dataset_body("x", location="../etc/passwd"),
        names="location",
        rule="relative-path",
    ),
    Case(
        "location-absolute",
        "POST",
        DS,
        422,
        RULE,
        json=dataset_body("x", location="/abs.csv"),
        names="location",
        rule="relative-path",
    ),
    Case(
        "location-exe",
        "POST",
        DS,
        422,
        RULE,
        json=dataset_body("x", location="data.exe"),
        names="location",
        rule="allowed-suffix",
    ),
    Case(
        "register-with-itself-upstream",
        "POST",
        DS,
        422,
        RULE,
        json=dataset_body("selfish", upstream=[_self_id("selfish")]),
        names="upstream[0]",
        rule="not-self",
    ),
    Case(
        "name-taken-with-different-body",
        "POST",
        DS,
        409,
        "/problems/dataset-name-taken",
        json=dataset_body("orders", description="something else"),
        check=names_existing_dataset,
    ),
    # -- authentication and scopes ---------------------------------------------
    Case("missing-token", "GET", DS, 401, "/problems/unauthorized", auth="none"),
    Case("expired-token", "GET", DS, 401, "/problems/unauthorized", auth="expired"),
    Case(
        "forged-token",
        "POST",
        DS,
        401,
        "/problems/unauthorized",
        auth="forged",
        json=dataset_body("forged"),
    ),
    Case(
        "unsigned-alg-none-token",
        "POST",
        DS,
        401,
        "/problems/unauthorized",
        auth="alg-none",
        json=dataset_body("unsigned"),
    ),
    Case(
        "token-without-tenant",
        "GET",
        DS,
        401,
        "/problems/unauthorized",
        auth="no-tenant",
    ),
    Case(
        "token-with-bad-tenant",
        "GET",
        DS,
        401,
        "/problems/unauthorized",
        auth="bad-tenant",
    ),
    Case(
        "token-lacking-catalog-write",
        "POST",
        DS,
        403,
        "/problems/forbidden",
        auth="read-only",
        json=dataset_body("sneaky"),
    ),
    Case(
        "token-lacking-audit-read",
        "GET",
        "/v1/log",
        403,
        "/problems/forbidden",
        auth="no-audit",
    ),
    # -- another tenant's dataset: 404, indistinguishable from no dataset -------
    Case(
        "other-tenant-get",
        "GET",
        GLOBEX,
        404,
        "/problems/not-found",
        check=hides_other_tenant,
    ),
    Case(
        "other-tenant-patch",
        "PATCH",
        GLOBEX,
        404,
        "/problems/not-found",
        json={"description": "mine now"},
        headers={"If-Match": '"1"'},
        check=hides_other_tenant,
    ),
    Case(
        "other-tenant-delete",
        "DELETE",
        GLOBEX,
        404,
        "/problems/not-found",
        check=hides_other_tenant,
    ),
    Case(
        "other-tenant-lineage",
        "POST",
        GLOBEX + "/lineage",
        404,
        "/problems/not-found",
        json=lambda w: {"upstream": [w.acme]},
        check=hides_other_tenant,
    ),
    Case(
        "other-tenant-as-upstream",
        "POST",
        ONE + "/lineage",
        422,
        RULE,
        json=lambda w: {"upstream": [w.globex]},
        names="upstream[0]",
        rule="exists",
        check=hides_other_tenant,
    ),
    # -- preconditions ----------------------------------------------------------
    Case(
        "stale-if-match",
        "PATCH",
        ONE,
        412,
        "/problems/precondition-failed",
        json={"description": "late"},
        headers={"If-Match": '"1"'},
        check=tells_current_version,
    ),
    Case(
        "missing-if-match",
        "PATCH",
        ONE,
        428,
        "/problems/precondition-required",
        json={"description": "blind"},
        names="If-Match",
        rule="required",
    ),
    Case(
        "malformed-if-match",
        "PATCH",
        ONE,
        400,
        BAD,
        json={"description": "odd"},
        headers={"If-Match": "abc"},
        names="If-Match",
        rule="etag",
    ),
    # -- lineage ----------------------------------------------------------------
    Case(
        "lineage-cycle",
        "POST",
        "/v1/datasets/{upstream}/lineage",
        409,
        "/problems/lineage-cycle",
        json=lambda w: {"upstream": [w.acme]},
        check=names_the_cycle,
    ),
    Case(
        "lineage-to-unknown-id",
        "POST",
        ONE + "/lineage",
        422,
        RULE,
        json={"upstream": [NEVER]},
        names="upstream[0]",
        rule="exists",
    ),
    Case(
        "self-lineage",
        "POST",
        ONE + "/lineage",
        422,
        RULE,
        json=lambda w: {"upstream": [w.acme]},
        names="upstream[0]",
        rule="not-self",
    ),
    # -- idempotency keys -------------------------------------------------------
    Case(
        "idempotency-key-with-space",
        "POST",
        DS,
        400,
        BAD,
        json=dataset_body("spaced"),
        headers={"Idempotency-Key": "two words"},
        names="Idempotency-Key",
        rule="pattern",
    ),
    Case(
        "idempotency-key-reused-with-other-body",
        "POST",
        DS,
        422,
        "/problems/idempotency-key-reused",
        json=dataset_body("not-keyed"),
        headers={"Idempotency-Key": "k-reuse"},
        names="Idempotency-Key",
        rule="same-request",
        setup=register_with_key,
    ),
    # -- queries, cursors, path ids, headers ------------------------------------
    Case(
        "sql-injection-as-search-query",
        "GET",
        DS,
        200,
        "",
        params={"q": SQL_INJECTION},
        check=finds_nothing,
    ),
    Case(
        "nul-in-license-filter",
        "GET",
        DS,
        200,
        "",
        params={"license": "MIT\u0000"},
        check=finds_nothing,
    ),
    Case(
        "bad-after-cursor",
        "GET",
        DS,
        400,
        BAD,
        params={"after": "not-a-cursor"},
        names="after",
        rule="cursor",
    ),
    Case(
        "forged-cursor-with-row-id-beyond-64-bits",
        "GET",
        DS,
        400,
        BAD,
        params={"after": _cursor("orders", 10**30)},
        names="after",
        rule="cursor",
    ),
    Case(
        "forged-cursor-with-numeric-key-for-a-name-ordered-search",
        "GET",
        DS,
        400,
        BAD,
        params={"after": _cursor(1.5, 1)},
        names="after",
        rule="cursor",
    ),
    Case(
        "limit-0", "GET", DS, 400, BAD, params={"limit": 0}, names="limit", rule="range"
    ),
    Case(
        "limit-1000",
        "GET",
        DS,
        400,
        BAD,
        params={"limit": 1000},
        names="limit",
        rule="range",
    ),
    Case(
        "non-uuid-path-id", "GET", "/v1/datasets/not-a-uuid", 404, "/problems/not-found"
    ),
    Case(
        "min-position-abc",
        "GET",
        DS,
        400,
        BAD,
        headers={"x-ig-min-position": "abc"},
        names="x-ig-min-position",
        rule="integer",
    ),
    Case(
        "log-after-negative",
        "GET",
        "/v1/log",
        400,
        BAD,
        params={"after": -1},
        names="after",
        rule="range",
    ),
    Case(
        "log-after-beyond-64-bits",
        "GET",
        "/v1/log",
        400,
        BAD,
        params={"after": str(10**22)},
        names="after",
        rule="range",
    ),
    # -- edge limits: structure, numbers, token spelling (test_edge_limits) -----
    Case(
        "body-nested-100000-arrays-deep",
        "POST",
        DS,
        400,
        BAD,
        content=b"[" * 100_000,
        names="body",
        rule="max-depth",
    ),
    Case(
        "repeated-key-name",
        "POST",
        DS,
        400,
        BAD,
        content=_with_raw_name('"first", "name": "second"'),
        names="name",
        rule="duplicate-key",
    ),
    Case(
        "tags-array-of-10001",
        "POST",
        DS,
        400,
        BAD,
        json=dataset_body("wide", tags=["t"] * 10_001),
        names="tags",
        rule="max-array-length",
    ),
    Case(
        "budget-cost-cap-1e308",
        "PUT",
        "/v1/tenants/acme/budget",
        400,
        BAD,
        json={"period": "day", "costCapUnits": 1e308},
        names="costCapUnits",
        rule="range",
    ),
    Case(
        "jwt-with-padding",
        "GET",
        DS,
        401,
        "/problems/unauthorized",
        headers={"Authorization": bearer("acme")["Authorization"] + "="},
    ),
]


# -- the world, the request, the snapshot ---------------------------------------


def _register(client: TestClient[Any], tenant: str, body: dict[str, Any]) -> str:
    response = client.post("/v1/datasets", json=body, headers=bearer(tenant))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
def world(client: TestClient[Any]) -> World:
    """acme: "orders" fed by "customers"; globex: "payroll-secret"; views caught up."""
    acme = _register(client, "acme", dataset_body("orders"))
    upstream = _register(client, "acme", dataset_body("customers"))
    linked = client.post(
        f"/v1/datasets/{acme}/lineage",
        json={"upstream": [upstream]},
        headers=bearer("acme"),
    )
    assert linked.status_code == 200, linked.text
    assert linked.json()["version"] == 2
    globex = _register(client, "globex", dataset_body(GLOBEX_NAME, tags=["hr"]))
    snapshot(client)  # waits until the catalog shows all of it
    return World(acme=acme, upstream=upstream, globex=globex)


def send(client: TestClient[Any], world: World, case: Case) -> Response:
    headers = {
        **auth_headers(case.auth),
        **{k: world.format(v) for k, v in case.headers.items()},
    }
    kwargs: dict[str, Any] = {}
    if case.content is not None:
        kwargs["content"] = case.content
        headers.setdefault("content-type", "application/json")
    elif case.json is not NO_BODY:
        kwargs["json"] = case.json(world) if callable(case.json) else case.json
    return client.request(
        case.method,
        world.format(case.path),
        params=case.params,
        headers=headers,
        **kwargs,
    )


@dataclass(frozen=True)
class Snapshot:
    events: int
    head_position: int
    head_hash: str
    chain: tuple[tuple[int, str], ...]
    catalogs: dict[str, tuple[int, list[Any]]]


def snapshot(client: TestClient[Any], min_position: int | None = None) -> Snapshot:
    """The whole log (via GET /v1/log, as an operator reads it) and both
    tenants' catalogs at a log position."""
    log = client.get(
        "/v1/log",
        params={"after": 0, "limit": 1000},
        headers=bearer("ops", "audit.platform"),
    )
    assert log.status_code == 200, log.text
    page = log.json()
    head = page["head"]
    assert page["nextAfter"] is None  # the whole log fits in one page
    position = head["position"] if min_position is None else min_position
    catalogs = {}
    for tenant in ("acme", "globex"):
        found = client.get(
            "/v1/datasets",
            params={"status": "any", "limit": 200},
            headers={
                **bearer(tenant, "catalog.read"),
                "x-ig-min-position": str(position),
            },
        )
        assert found.status_code == 200, found.text
        body = found.json()
        catalogs[tenant] = (body["total"], body["items"])
    return Snapshot(
        events=head["events"],
        head_position=head["position"],
        head_hash=head["hash"],
        chain=tuple((e["position"], e["hash"]) for e in page["entries"]),
        catalogs=catalogs,
    )


def assert_problem(case: Case, response: Response) -> None:
    """Status, media type, type/title/status members, and the named field error."""
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    problem = response.json()
    assert problem["type"] == case.type, problem
    assert isinstance(problem.get("title"), str), problem
    assert problem["title"]
    assert problem["status"] == case.status
    assert isinstance(problem.get("detail"), str), problem
    if case.names is None:
        return
    errors = problem.get("errors")
    assert isinstance(errors, list), f"no 'errors' member in {problem}"
    named = [e for e in errors if e.get("field") == case.names]
    assert named, f"no error names {case.names!r}: {errors}"
    for error in named:
        assert isinstance(error.get("rule"), str), error
        assert error["rule"]
        assert isinstance(error.get("message"), str), error
    if case.rule is not None:
        assert case.rule in {e["rule"] for e in named}, named


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_hostile_request_gets_its_problem_and_leaves_log_and_catalog_untouched(
    client: TestClient[Any], world: World, case: Case
) -> None:
    """The exact problem comes back; the log head and both catalogs stay the same."""
    if case.setup is not None:
        case.setup(client, world)
    before = snapshot(client)

    response = send(client, world, case)

    if case.status >= 400:
        assert_problem(case, response)
    else:
        assert response.status_code == case.status, response.text
    if case.check is not None:
        case.check(client, world, case, response)
    after = snapshot(client, min_position=before.head_position)
    assert (after.events, after.head_hash) == (before.events, before.head_hash)
    assert after == before


def test_the_table_covers_at_least_thirty_distinct_hostile_requests() -> None:
    """The table is big enough and its ids are unique."""
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


def test_no_request_in_the_table_ever_gets_a_5xx(
    client: TestClient[Any], world: World
) -> None:
    """Replaying the whole table against one world never produces a server error."""
    failures = []
    for case in CASES:
        if case.setup is not None:
            case.setup(client, world)
        response = send(client, world, case)
        if response.status_code >= 500:
            failures.append(f"{case.id} -> {response.status_code}")
    assert not failures, "server errors for: " + ", ".join(failures)
