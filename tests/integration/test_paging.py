"""One paging convention: ?after=&limit=, `next` in the body, Link rel="next"."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import bearer, dataset_body
from tests.integration.pages import walk

if TYPE_CHECKING:
    from litestar.testing import TestClient

pytestmark = pytest.mark.integration

TENANT = bearer("acme", "catalog.read", "catalog.write", "audit.read", "budget.admin")
OPERATOR = bearer("ops", "audit.platform")


def _walk(client: TestClient[Any], url: str, headers: dict[str, str]) -> list[Any]:
    return walk(client, url, headers)


def _register(client: TestClient[Any], count: int) -> int:
    position = 0
    for n in range(count):
        done = client.post(
            "/v1/datasets", json=dataset_body(f"paged-{n}"), headers=TENANT
        )
        assert done.status_code == 201, done.text
        position = done.json()["position"]
    return position


def test_dataset_search_pages_by_link_keeping_the_query(
    client: TestClient[Any],
) -> None:
    """Every page keeps the filters; the pages together are the whole result."""
    position = _register(client, 5)
    first = "/v1/datasets?q=paged&region=EU&limit=2"
    pages = _walk(client, first, {**TENANT, "x-ig-min-position": str(position)})
    names = [item["name"] for page in pages for item in page["items"]]
    assert sorted(names) == [f"paged-{n}" for n in range(5)]
    assert len(names) == len(set(names))
    assert [len(p["items"]) for p in pages] == [2, 2, 1]


def test_the_log_pages_by_position_in_its_cursor(client: TestClient[Any]) -> None:
    """The log's `next` is the last position (so after=<position> still works)."""
    _register(client, 3)
    pages = _walk(client, "/v1/log?limit=2", OPERATOR)
    positions = [e["position"] for page in pages for e in page["entries"]]
    assert positions == sorted(positions)
    assert len(positions) == len(set(positions)) >= 3
    for page in pages[:-1]:
        assert page["next"] == str(page["nextAfter"])
        assert page["next"] == str(page["entries"][-1]["position"])


def test_a_tenants_log_slice_pages_the_same_way(client: TestClient[Any]) -> None:
    _register(client, 3)
    pages = _walk(client, "/v1/log?limit=1", TENANT)
    assert sum(len(p["entries"]) for p in pages) >= 3
    assert all(p["tenant"] == "acme" for p in pages)


def test_incidents_page_newest_first(client: TestClient[Any]) -> None:
    budget = {"period": "month", "costCapUnits": 100}
    put = client.put("/v1/tenants/acme/budget", json=budget, headers=TENANT)
    assert put.status_code == 201, put.text
    incidents = client.app.state.conductor.autopilot.incidents
    for n in range(3):
        incidents.breach(
            "acme",
            f"guard-{n}",
            title=f"guard {n}",
            body="breached",
            labels=[],
            evidence={"n": n},
            now=time.time() + n,
        )
    pages = _walk(client, "/v1/incidents?limit=2", TENANT)
    guards = [i["guard"] for page in pages for i in page["items"]]
    assert sorted(guards) == ["guard-0", "guard-1", "guard-2"]
    assert [len(p["items"]) for p in pages] == [2, 1]


def _policy(rule: str) -> dict[str, Any]:
    source = (
        "package conductor.export\nimport rego.v1\n"
        f'{rule} if input.request.purpose == "{rule}"\n'
        f'deny contains "{rule}" if {rule}\n'
        "default allow := false\nallow if count(deny) == 0\n"
        'decision := {"allow": allow, "deny": sort(deny)}\n'
    )
    return {"name": "export", "modules": [{"name": "gate.rego", "source": source}]}


def test_policies_list_the_tenants_bindings_newest_first(
    client: TestClient[Any],
) -> None:
    """Each publication rebinds the gate; the list pages through the history."""
    approver = bearer("acme", "export.approve")
    digests = []
    for n in range(3):
        done = client.post("/v1/policies", json=_policy(f"rule_{n}"), headers=approver)
        assert done.status_code == 201, done.text
        digests.append(done.json()["digest"])
    pages = _walk(client, "/v1/policies?limit=2", approver)
    items = [item for page in pages for item in page["items"]]
    assert [i["digest"] for i in items] == digests[::-1]
    assert [i["active"] for i in items] == [True, False, False]
    assert all(i["boundAt"] >= i["publishedAt"] for i in items)
    assert pages[0]["platformDigest"] not in digests
    other = client.get("/v1/policies", headers=bearer("globex", "export.approve"))
    assert other.status_code == 200, other.text
    assert other.json()["items"] == []


@pytest.mark.parametrize(
    "url",
    [
        "/v1/policies?after=not-a-cursor",
        "/v1/datasets?after=not-a-cursor",
        "/v1/exports?after=not-a-cursor",
        "/v1/incidents?after=bm90LWFuLWlk",
    ],
)
def test_a_cursor_not_handed_out_is_a_400_naming_after(
    client: TestClient[Any], url: str
) -> None:
    answer = client.get(url, headers=bearer("acme"))
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["errors"][0]["field"] == "after"


@pytest.mark.parametrize(
    ("url", "ceiling"),
    [
        ("/v1/datasets", 200),
        ("/v1/exports", 200),
        ("/v1/log", 1000),
        ("/v1/incidents", 200),
        ("/v1/policies", 200),
    ],
)
def test_every_list_refuses_a_limit_over_its_ceiling(
    client: TestClient[Any], url: str, ceiling: int
) -> None:
    """The ceiling is enforced and documented in the OpenAPI document."""
    over = client.get(f"{url}?limit={ceiling + 1}", headers=bearer("acme"))
    assert over.status_code == 400, over.text
    assert "limit" in over.text
    at = client.get(f"{url}?limit={ceiling}", headers=bearer("acme"))
    assert at.status_code == 200, at.text
    schema = client.get("/schema/openapi.json").json()
    params = schema["paths"][f"{url}/" if f"{url}/" in schema["paths"] else url]
    limit = next(p for p in params["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == ceiling
    assert f"at most {ceiling}" in limit["description"]
