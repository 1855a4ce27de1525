"""Another tenant's ids are absent: every route that takes one answers as if
it never existed, and says nothing of the tenant that owns it.

globex owns a dataset (with lineage), an export and its proof, a policy, an
ER record set and job, a budget and an incident; acme asks for each through
every route that takes an id, a digest, a position or a tenant, and gets
what an id nobody has gets, byte for byte (the id aside), with the log
untouched. The route table is read from the app, so a new id-taking route
without a case here fails the suite.
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from litestar.routes import HTTPRoute

from adapters.dr.lineage_follower import follow_lineage
from api.app import create_app
from api.auth import TENANT_SCOPES
from api.console.session import CSRF_FIELD, SESSION_COOKIE, csrf_for
from api.settings import Settings
from domain.catalog.dataset import Dataset
from tests.conftest import SECRET, bearer, dataset_body
from tests.integration.dr_support import pair_api, pair_site
from tests.integration.test_exports import COLUMNS, customers_csv, write_source

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from httpx import Response
    from litestar.testing import TestClient

    from adapters.dr.site import Site

pytestmark = pytest.mark.integration

MARK = "globexonly"
"""In every name globex gives its things: it must never reach acme."""
ACME = bearer("acme", *sorted(TENANT_SCOPES))
"""Every scope a tenant's token can have (none reaching across tenants)."""
GLOBEX = bearer("globex", *sorted(TENANT_SCOPES))
OPERATOR = bearer("ops", "audit.platform")
GHOST_UUID = "00000000-0000-4000-8000-000000000000"
ACMES = str(Dataset.create_id("acme", "orders"))
"""acme's own dataset (the world fixture registers it), for request bodies."""
ID_PARAMETERS = frozenset(
    {"dataset_id", "export_id", "digest", "position", "tenant", "record_id"}
    | {"job_id", "key", "entity_set"}
)
"""Handler parameters (path or query) that name something a tenant owns (an
entity set is a tenant's name: globex's "people" is not acme's)."""
NOT_TENANT_DATA = frozenset(
    {
        "/schema/{path:str}",
        "/v1/switches/{name:str}",
        "/console/static/{file_path:path}",
        "/graphql/static/{file_path:path}",
        "/console/dr/evidence/{name:str}",
    }
)
"""Id-looking routes that serve no tenant's data: the OpenAPI documents, the
platform's backout switches (platform.operate, named by switch), the console's
and GraphiQL's vendored assets, and the platform's last drill evidence
(dr.operate, named by its file)."""


@dataclass(frozen=True)
class World:
    dataset: str
    export: str
    digest: str
    position: int
    job: str
    record: str
    incident_guard: str
    gate_run: str


def _post(client: TestClient[Any], path: str, body: Any, tenant: str) -> Any:
    response = client.post(
        path, json=body, headers={"acme": ACME, "globex": GLOBEX}[tenant]
    )
    assert response.status_code in {200, 201, 202}, response.text
    return response.json()


def _settle(client: TestClient[Any], export_id: str) -> None:
    deadline = time.monotonic() + 30
    while client.get(f"/v1/exports/{export_id}", headers=GLOBEX).json()[
        "status"
    ] not in {"proven", "failed", "denied"}:
        assert time.monotonic() < deadline, "globex's export never settled"
        time.sleep(0.05)


def _globex_data(client: TestClient[Any], settings: Settings) -> dict[str, str]:
    """globex's datasets (one feeding the other) and a proven export."""
    write_source(settings, f"{MARK}.csv", customers_csv(), tenant="globex")
    upstream = _post(client, "/v1/datasets", dataset_body(f"{MARK}-raw"), "globex")[
        "id"
    ]
    body = dataset_body(
        f"{MARK}-payroll",
        description=f"{MARK} salaries",
        location=f"{MARK}.csv",
        columns=COLUMNS,
        upstream=[upstream],
    )
    dataset = _post(client, "/v1/datasets", body, "globex")["id"]
    request = {
        "datasetId": dataset,
        "preset": "tokenize_strict",
        "purpose": "investigation",
        "destinationRegion": "EU",
    }
    export = _post(client, "/v1/exports", request, "globex")["id"]
    _settle(client, export)
    return {"dataset": dataset, "upstream": upstream, "export": export}


def _globex_er(client: TestClient[Any], settings: Settings) -> str:
    """globex's ER record set and a queued (off-peak) embedding job."""
    person = {"given_name": "gina", "surname": MARK, "postcode": "2600"}
    _post(
        client,
        "/v1/er/resolve",
        {"entitySet": "people", "records": [{"id": f"{MARK}-r0", "fields": person}]},
        "globex",
    )
    folder = settings.data_root_path / "globex"
    (folder / "people.csv").write_text("rec_id,surname\ng1,x\ng2,y\n")
    job = {"entitySet": "people", "location": "people.csv"}
    return str(_post(client, "/v1/er/jobs", job, "globex")["id"])


@pytest.fixture
def world(client: TestClient[Any], settings: Settings) -> World:
    """Everything globex owns, and one acme dataset; views caught up."""
    own = _post(client, "/v1/datasets", dataset_body("orders"), "acme")
    assert own["id"] == ACMES
    data = _globex_data(client, settings)
    rule = f"{MARK}_rule"
    source = (
        "package conductor.export\nimport rego.v1\n"
        f'{rule} if input.request.purpose == "{MARK}"\n'
        f'deny contains "{rule}" if {rule}\n'
        "default allow := false\nallow if count(deny) == 0\n"
        'decision := {"allow": allow, "deny": sort(deny)}\n'
    )
    module = {"name": "export", "modules": [{"name": "g.rego", "source": source}]}
    digest = _post(client, "/v1/policies", module, "globex")["digest"]
    job = _globex_er(client, settings)
    budget = {"period": "month", "costCapUnits": 100}
    put = client.put("/v1/tenants/globex/budget", json=budget, headers=GLOBEX)
    assert put.status_code == 201, put.text
    client.app.state.conductor.autopilot.incidents.breach(
        "globex",
        f"{MARK}.page",
        title=f"{MARK} burn",
        body=f"{MARK} spent",
        labels=[MARK],
        evidence={"spend": "1"},
        now=time.time(),
    )
    run = {
        "repo": f"{MARK}/repo",
        "commit": "0" * 40,
        "findingsDigest": "sha256:" + "0" * 64,
        "findings": 0,
        "datasets": [MARK],
    }
    gate_run = _post(client, "/v1/catalog/gate-runs", run, "globex")["id"]
    positions = {
        e["originatorId"]: e["position"]
        for e in client.get("/v1/log?limit=1000", headers=OPERATOR).json()["entries"]
    }
    return World(
        dataset=data["dataset"],
        export=data["export"],
        digest=digest,
        position=positions[data["dataset"]],
        job=job,
        record=f"{MARK}-r0",
        incident_guard=f"{MARK}.page",
        gate_run=gate_run,
    )


@dataclass(frozen=True)
class Case:
    """How acme asks a route about an id: ``send(client, id)``."""

    send: Callable[[TestClient[Any], str], Response]
    theirs: Callable[[World], str]
    absent: str
    status: int = 404


def _get(path: str, **params: Any) -> Callable[[TestClient[Any], str], Response]:
    def send(client: TestClient[Any], value: str) -> Response:
        query = {k: v.format(id=value) for k, v in params.items()}
        return client.get(path.format(id=value), params=query, headers=ACME)

    return send


def _listed(path: str, **params: str) -> Callable[[TestClient[Any], str], Response]:
    """A GET of a read-model list, once the view has every event so far."""

    def send(client: TestClient[Any], value: str) -> Response:
        query = {k: v.format(id=value) for k, v in params.items()}
        fresh = {**ACME, "x-ig-min-position": str(head(client)["position"])}
        return client.get(path, params=query, headers=fresh)

    return send


def _send(
    method: str, path: str, body: Callable[[str], Any], **headers: str
) -> Callable[[TestClient[Any], str], Response]:
    def send(client: TestClient[Any], value: str) -> Response:
        return client.request(
            method,
            path.format(id=value),
            json=body(value),
            headers={**ACME, **headers},
        )

    return send


ACME_SESSION = ACME["Authorization"].removeprefix("Bearer ")
"""acme signed in to the console: its session cookie holds the same token."""


def _console(
    method: str, path: str, form: dict[str, str] | None = None
) -> Callable[[TestClient[Any], str], Response]:
    """A console page as acme's signed-in session (a POST with its CSRF token)."""

    def send(client: TestClient[Any], value: str) -> Response:
        data = None
        if method == "POST":
            csrf = csrf_for(SECRET, "session", ACME_SESSION)
            data = {**(form or {}), CSRF_FIELD: csrf}
        return client.request(
            method,
            path.format(id=value),
            data=data,
            headers={"cookie": f"{SESSION_COOKIE}={ACME_SESSION}"},
        )

    return send


def _dataset(world: World) -> str:
    return world.dataset


DATASET = "/v1/datasets/{dataset_id:uuid}"
CONSOLE_DATASET = "/console/datasets/{dataset_id:uuid}"
CONSOLE_EXPORT = "/console/exports/{export_id:uuid}"
CASES: dict[tuple[str, str], Case] = {
    ("GET", CONSOLE_DATASET): Case(
        _console("GET", "/console/datasets/{id}"), _dataset, GHOST_UUID
    ),
    ("GET", f"{CONSOLE_DATASET}/coverage"): Case(
        _console("GET", "/console/datasets/{id}/coverage"), _dataset, GHOST_UUID
    ),
    ("GET", f"{CONSOLE_DATASET}/edit"): Case(
        _console("GET", "/console/datasets/{id}/edit"), _dataset, GHOST_UUID
    ),
    ("POST", f"{CONSOLE_DATASET}/edit"): Case(
        _console(
            "POST",
            "/console/datasets/{id}/edit",
            {"description": "mine now", "version": "1"},
        ),
        _dataset,
        GHOST_UUID,
    ),
    ("GET", CONSOLE_EXPORT): Case(
        _console("GET", "/console/exports/{id}"), lambda w: w.export, GHOST_UUID
    ),
    ("GET", f"{CONSOLE_EXPORT}/live"): Case(
        _console("GET", "/console/exports/{id}/live"), lambda w: w.export, GHOST_UUID
    ),
    ("GET", f"{CONSOLE_EXPORT}/verify"): Case(
        _console("GET", "/console/exports/{id}/verify"),
        lambda w: w.export,
        GHOST_UUID,
    ),
    ("GET", f"{CONSOLE_EXPORT}/files/{{name:str}}"): Case(
        _console("GET", "/console/exports/{id}/files/proof.dsse.json"),
        lambda w: w.export,
        GHOST_UUID,
    ),
    ("GET", "/v1/catalog/gate-runs/{run_id:uuid}"): Case(
        _get("/v1/catalog/gate-runs/{id}"), lambda w: w.gate_run, GHOST_UUID
    ),
    ("GET", DATASET): Case(_get("/v1/datasets/{id}"), _dataset, GHOST_UUID),
    ("PATCH", DATASET): Case(
        _send(
            "PATCH",
            "/v1/datasets/{id}",
            lambda _: {"owner": "x"},
            **{"If-Match": '"1"'},
        ),
        _dataset,
        GHOST_UUID,
    ),
    ("DELETE", DATASET): Case(
        lambda c, v: c.delete(f"/v1/datasets/{v}", headers=ACME), _dataset, GHOST_UUID
    ),
    ("GET", f"{DATASET}/history"): Case(
        _get("/v1/datasets/{id}/history"), _dataset, GHOST_UUID
    ),
    ("GET", f"{DATASET}/lineage"): Case(
        _get("/v1/datasets/{id}/lineage", direction="down"), _dataset, GHOST_UUID
    ),
    ("POST", f"{DATASET}/lineage"): Case(
        _send("POST", "/v1/datasets/{id}/lineage", lambda _: {"upstream": [ACMES]}),
        _dataset,
        GHOST_UUID,
    ),
    ("GET", "/v1/exports/{export_id:uuid}"): Case(
        _get("/v1/exports/{id}"), lambda w: w.export, GHOST_UUID
    ),
    ("GET", "/v1/exports/{export_id:uuid}/proof"): Case(
        _get("/v1/exports/{id}/proof"), lambda w: w.export, GHOST_UUID
    ),
    ("POST", "/v1/exports/{export_id:uuid}/review"): Case(
        _send(
            "POST",
            "/v1/exports/{id}/review",
            lambda _: {"approve": True, "reason": "looks fine"},
        ),
        lambda w: w.export,
        GHOST_UUID,
    ),
    ("GET", "/v1/exports"): Case(
        _get("/v1/exports", datasetId="{id}"), _dataset, GHOST_UUID, status=200
    ),
    ("POST", "/v1/exports"): Case(
        _send(
            "POST",
            "/v1/exports",
            lambda v: {
                "datasetId": v,
                "preset": "tokenize_strict",
                "purpose": "investigation",
                "destinationRegion": "EU",
            },
        ),
        _dataset,
        GHOST_UUID,
    ),
    ("GET", "/v1/policies/{digest:str}"): Case(
        _get("/v1/policies/{id}"), lambda w: w.digest, "ab" * 32
    ),
    ("GET", "/v1/ledger/inclusion"): Case(
        _get("/v1/ledger/inclusion", position="{id}", size="1"),
        lambda w: str(w.position),
        str(2**40),
    ),
    ("GET", "/v1/er/jobs/{job_id:uuid}"): Case(
        _get("/v1/er/jobs/{id}"), lambda w: w.job, GHOST_UUID
    ),
    ("GET", "/v1/er/jobs"): Case(
        _listed("/v1/er/jobs", entitySet="{id}"), lambda _: "people", "nobody", 200
    ),
    ("GET", "/v1/er/resolutions"): Case(
        _listed("/v1/er/resolutions", entitySet="{id}"),
        lambda _: "people",
        "nobody",
        200,
    ),
    ("GET", "/v1/er/candidates/{record_id:str}"): Case(
        _get("/v1/er/candidates/{id}", entitySet="people"),
        lambda w: w.record,
        "nobody-r0",
    ),
    ("GET", "/v1/tenants/{tenant:str}/budget"): Case(
        _get("/v1/tenants/{id}/budget"), lambda _: "globex", "nobody"
    ),
    ("PUT", "/v1/tenants/{tenant:str}/budget"): Case(
        _send(
            "PUT",
            "/v1/tenants/{id}/budget",
            lambda _: {"period": "day", "costCapUnits": 1},
        ),
        lambda _: "globex",
        "nobody",
    ),
    ("GET", "/v1/tenants/{tenant:str}/burn"): Case(
        _get("/v1/tenants/{id}/burn"), lambda _: "globex", "nobody"
    ),
    ("GET", "/v1/incidents"): Case(
        _get("/v1/incidents", guard="{id}"),
        lambda w: w.incident_guard,
        "nobody.page",
        status=200,
    ),
}
DR_CASES: dict[tuple[str, str], Case] = {
    ("GET", "/v1/dr/commands/{key:str}"): Case(
        _get("/v1/dr/commands/{id}"), lambda _: f"{MARK}-command", "nobody-command"
    ),
    ("GET", "/v1/dr/lineage/{dataset_id:uuid}"): Case(
        _get("/v1/dr/lineage/{id}"), _dataset, GHOST_UUID
    ),
}
"""Answered only with CONDUCTOR_DR_ROOT naming a pair (a pair is made for them)."""


def head(client: TestClient[Any]) -> Any:
    return client.get("/v1/log?limit=1", headers=OPERATOR).json()["head"]


@pytest.mark.parametrize("route", sorted(CASES), ids=" ".join)
def test_another_tenants_id_is_answered_as_if_absent(
    client: TestClient[Any], world: World, route: tuple[str, str]
) -> None:
    """Same status and body as an id nobody has; nothing of globex; no event."""
    _assert_isolated(client, world, CASES[route])
    owner = client.get("/v1/datasets/" + world.dataset, headers=GLOBEX)
    assert owner.json()["version"] == 1  # untouched by acme's PATCH/DELETE/POST
    assert owner.json()["status"] == "active"


def test_the_owner_reaches_what_the_other_tenant_cannot(
    client: TestClient[Any], world: World
) -> None:
    """The cases above are 404 for a reason: globex's own token gets 200."""
    for path in (
        f"/v1/datasets/{world.dataset}",
        f"/v1/exports/{world.export}",
        f"/v1/exports/{world.export}/proof",
        f"/v1/er/jobs/{world.job}",
        "/v1/tenants/globex/budget",
    ):
        assert client.get(path, headers=GLOBEX).status_code == 200, path
    listed = client.get("/v1/incidents", headers=GLOBEX).json()["items"]
    assert [i["guard"] for i in listed] == [world.incident_guard]
    assert MARK not in client.get("/v1/incidents", headers=ACME).text


def _routes(settings: Settings) -> dict[tuple[str, str], set[str]]:
    """(method, path) of every route -> its handler's parameter names."""
    app = create_app(settings)
    try:
        return {
            (method, route.path): set(inspect.signature(handler.fn).parameters)
            for route in app.routes
            if isinstance(route, HTTPRoute)
            for handler in route.route_handlers
            for method in handler.http_methods - {"OPTIONS", "HEAD"}
        }
    finally:
        app.state.conductor.close()


def test_every_id_taking_route_has_an_isolation_case(tmp_path: Path) -> None:
    """A new route taking an id, digest, position or tenant needs a case here."""
    settings = Settings(
        var=str(tmp_path),
        database_url=f"sqlite:///{tmp_path / 'routes.db'}",
        jwt_secret="x" * 48,
    )
    routes = _routes(settings)
    taking = {
        route
        for route, names in routes.items()
        if route[1] not in NOT_TENANT_DATA
        and ("{" in route[1] or names & ID_PARAMETERS)
    }
    covered = set(CASES) | set(DR_CASES)
    assert taking - covered == set(), "add a Case for these routes"
    assert covered - set(routes) == set(), "these cases name no route"


def _written_since(client: TestClient[Any], before: int) -> list[str]:
    """Topics appended after ``before``."""
    reply = client.get("/v1/log", params={"after": before}, headers=OPERATOR)
    return [entry["topic"] for entry in reply.json()["entries"]]


def _assert_isolated(
    client: TestClient[Any],
    world: World,
    case: Case,
    background: tuple[str, ...] = (),
) -> None:
    """``background``: topics a timer may append meanwhile (a DR pair's lag
    samples), which are no request's doing."""
    theirs = case.theirs(world)
    before = head(client)
    hidden = case.send(client, theirs)
    absent = case.send(client, case.absent)
    written = [
        topic
        for topic in _written_since(client, before["position"])
        if not any(topic.endswith(quiet) for quiet in background)
    ]
    assert written == [], "a refused request wrote to the log"
    assert hidden.status_code == case.status, hidden.text
    assert absent.status_code == case.status, absent.text
    assert MARK not in hidden.text.replace(theirs, "")
    assert "globex" not in hidden.text.replace(theirs, "")
    if hidden.headers["content-type"].startswith("text/html"):  # a console page
        assert hidden.text == absent.text.replace(case.absent, theirs)
    else:
        assert hidden.json() == json.loads(absent.text.replace(case.absent, theirs))


# -- on a DR pair ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from pair_site(tmp_path_factory, "isolation")


@pytest.fixture(scope="module")
def dr_client(
    site: Site, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient[Any]]:
    yield from pair_api(
        site, tmp_path_factory, "isolationvar", log_on_pair=True, metering=False
    )


@pytest.mark.postgres
@pytest.mark.parametrize("route", sorted(DR_CASES), ids=" ".join)
def test_on_a_dr_pair_another_tenants_id_is_answered_as_if_absent(
    site: Site, dr_client: TestClient[Any], route: tuple[str, str]
) -> None:
    """The DR routes read the pair's router and region B's lineage store."""
    client = dr_client
    dataset = _post(client, "/v1/datasets", dataset_body(f"{MARK}-dr"), "globex")
    command = {"key": f"{MARK}-command", "payload": {"note": MARK}}
    written = client.post(
        "/v1/dr/commands", json=command, headers=bearer("globex", "dr.operate")
    )
    assert written.status_code in {200, 201}, written.text
    follower = follow_lineage(site.pair, "B")
    try:
        assert follower.wait(dataset["position"], 30), follower.status()
        world = World(
            dataset=dataset["id"],
            export="",
            digest="",
            position=dataset["position"],
            job="",
            record="",
            incident_guard="",
            gate_run="",
        )
        # The pair's lag sampler records LagSampled on its own clock.
        _assert_isolated(client, world, DR_CASES[route], background=(".LagSampled",))
        owner = DR_CASES[route].theirs(world)
        path = route[1].split("{")[0] + owner
        mine = client.get(path, headers=bearer("globex", "dr.operate"))
        assert mine.status_code == 200, mine.text  # globex's own, all the same
    finally:
        follower.close()
