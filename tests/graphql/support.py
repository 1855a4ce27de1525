"""Helpers for the GraphQL tests: one POST /graphql, the log head, fixtures' data."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tests.conftest import bearer, dataset_body

if TYPE_CHECKING:
    from litestar.testing import TestClient

    from api.settings import Settings

ACME = bearer("acme")
AUDIT = bearer("acme", "audit.platform")
COLUMNS = [
    {"name": "email", "classification": "pii.email"},
    {"name": "amount", "classification": "public"},
]


def gql(
    client: TestClient[Any],
    query: str,
    variables: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST /graphql; GraphQL answers 200 with data and/or errors."""
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    response = client.post("/graphql", json=body, headers=headers or ACME)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def codes(answer: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in answer.get("errors", [])]


def log_head(client: TestClient[Any]) -> dict[str, Any]:
    head: dict[str, Any] = client.get("/v1/log?limit=1", headers=AUDIT).json()["head"]
    return head


def register(
    client: TestClient[Any],
    name: str,
    headers: dict[str, str] | None = None,
    **overrides: Any,
) -> str:
    """Register through REST (the fixture data); returns the id."""
    response = client.post(
        "/v1/datasets", json=dataset_body(name, **overrides), headers=headers or ACME
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def exportable(
    client: TestClient[Any],
    settings: Settings,
    name: str,
    tenant: str = "acme",
    **overrides: Any,
) -> str:
    """A dataset whose location holds a small CSV, so an export can run."""
    root = settings.data_root_path / tenant
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{name}.csv").write_text(
        "email,amount\nalice@example.com,12\nbob@example.org,7\n", encoding="utf-8"
    )
    return register(
        client,
        name,
        bearer(tenant),
        location=f"{name}.csv",
        columns=COLUMNS,
        **overrides,
    )


def text_of(answer: dict[str, Any]) -> str:
    return json.dumps(answer)
