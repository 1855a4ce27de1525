"""The OpenAPI document tells the truth about errors.

The hostile requests of test_bad_input.py (every case, against its world)
and test_tenant_isolation.py (every route, with an id nobody has) are sent
for real; each status that comes back must be documented for that route
and method, as the RFC 9457 problem schema under application/problem+json,
and the body that came back must fit that schema. No response anywhere in
the document keeps litestar's own {status_code, detail, extra}.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration import test_bad_input as bad_input
from tests.integration.test_bad_input import CASES as HOSTILE
from tests.integration.test_bad_input import send
from tests.integration.test_tenant_isolation import CASES as ISOLATION

if TYPE_CHECKING:
    from httpx import Response
    from litestar.testing import TestClient

    from tests.integration.test_bad_input import World

pytestmark = pytest.mark.integration

PROBLEM_JSON = "application/problem+json"
world = bad_input.world  # its fixture: the acme and globex datasets it needs


def document(client: TestClient[Any]) -> dict[str, Any]:
    got = client.get("/schema/openapi.json")
    assert got.status_code == 200
    return got.json()  # type: ignore[no-any-return]


def template_of(doc: dict[str, Any], path: str) -> str:
    """The documented path template a concrete request path matches."""
    path = path.split("?", maxsplit=1)[0]
    for template in doc["paths"]:
        pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            return str(template)
    pytest.fail(f"no documented path matches {path}")


def _litestar_template(route: str) -> str:
    """/v1/datasets/{dataset_id:uuid} -> /v1/datasets/{dataset_id}."""
    return re.sub(r"\{([^}:]+):[^}]*\}", r"{\1}", route)


def check(
    doc: dict[str, Any], method: str, template: str, response: Response
) -> list[str]:
    """What the document gets wrong about one real error response."""
    status = response.status_code
    if status < 400:
        return []
    where = f"{method} {template} {status}"
    operation = doc["paths"].get(template, {}).get(method.lower())
    if operation is None:
        return [f"{where}: operation not documented"]
    documented = operation["responses"].get(str(status))
    if documented is None:
        return [f"{where}: status not documented"]
    content = documented.get("content", {})
    if list(content) != [PROBLEM_JSON]:
        return [f"{where}: documented as {list(content)}"]
    if content[PROBLEM_JSON]["schema"] != {"$ref": "#/components/schemas/Problem"}:
        return [f"{where}: not the Problem schema"]
    problems = []
    if not response.headers["content-type"].startswith(PROBLEM_JSON):
        problems.append(f"{where}: sent as {response.headers['content-type']}")
    schema = doc["components"]["schemas"]["Problem"]
    body = response.json()
    missing = set(schema["required"]) - set(body)
    if missing:
        problems.append(f"{where}: the body lacks {sorted(missing)}")
    return problems


def test_the_problem_schema_is_rfc_9457(client: TestClient[Any]) -> None:
    """type, title, status and detail required; errors name field and rule."""
    doc = document(client)
    schema = doc["components"]["schemas"]["Problem"]
    assert set(schema["required"]) == {"type", "title", "status", "detail"}
    field_error = doc["components"]["schemas"]["FieldError"]
    assert set(field_error["required"]) == {"field", "rule", "message"}


def test_no_response_documents_litestars_own_error_shape(
    client: TestClient[Any],
) -> None:
    """Every 4xx/5xx in the document is problem+json, never {status_code, ...}."""
    doc = document(client)
    wrong = [
        f"{method} {path} {status}"
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict)
        for status, response in operation.get("responses", {}).items()
        if int(status) >= 400 and list(response.get("content", {})) != [PROBLEM_JSON]
    ]
    assert wrong == []
    assert "status_code" not in str(doc["components"]["schemas"])


def test_every_hostile_requests_status_is_documented_for_its_route(
    client: TestClient[Any], world: World
) -> None:
    """test_bad_input's table, replayed: status, media type, schema agree."""
    doc = document(client)
    found: list[str] = []
    seen = set()
    for case in HOSTILE:
        if case.setup is not None:
            case.setup(client, world)
        response = send(client, world, case)
        template = template_of(doc, world.format(case.path))
        seen.add((case.method, template, response.status_code))
        found += check(doc, case.method, template, response)
    assert found == []
    assert len({s for _, _, s in seen if s >= 400}) >= 5  # many kinds were tried


def test_every_isolation_routes_status_is_documented(
    client: TestClient[Any],
) -> None:
    """test_tenant_isolation's routes, each asked about an id nobody has."""
    doc = document(client)
    found: list[str] = []
    for (method, route), case in sorted(ISOLATION.items()):
        if route.startswith("/console/"):  # HTML pages, not in the API document
            continue
        response = case.send(client, case.absent)
        assert response.status_code == case.status, (method, route, response.text)
        found += check(doc, method, _litestar_template(route), response)
    assert found == []
