"""A token limited by ABAC attribute claims is refused where they are not enforced.

GraphQL's @auth enforces `regions` and `purposes` (docs/graphql.md#abac); the
REST routes check scopes and tenant only, so they refuse such a token rather
than quietly treat it as unlimited.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from api.auth import TENANT_SCOPES, issue_token
from tests.conftest import SECRET, bearer

if TYPE_CHECKING:
    from litestar.testing import TestClient

pytestmark = pytest.mark.integration


def log_head(client: TestClient[Any]) -> Any:
    operator = bearer("ops", "audit.platform")
    return client.get("/v1/log?limit=1", headers=operator).json()["head"]


def limited(**claims: list[str]) -> dict[str, str]:
    token = issue_token(
        SECRET,
        tenant="acme",
        scopes=sorted(TENANT_SCOPES),
        ttl=timedelta(minutes=5),
        **claims,
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "claims",
    [{"regions": ["EU"]}, {"purposes": ["fraud"]}, {"regions": [], "purposes": []}],
    ids=["regions", "purposes", "both-empty"],
)
def test_rest_refuses_attribute_limited_tokens(
    client: TestClient[Any], claims: dict[str, list[str]]
) -> None:
    head = log_head(client)
    assert head["position"] >= 0
    for method, path in (("GET", "/v1/datasets"), ("POST", "/v1/exports")):
        answer = client.request(method, path, headers=limited(**claims), json={})
        assert answer.status_code == 403, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        detail = answer.json()["detail"]
        for name in claims:
            assert name in detail
        assert "/graphql" in detail
    assert log_head(client) == head


def test_an_unlimited_token_still_reads(client: TestClient[Any]) -> None:
    assert client.get("/v1/datasets", headers=limited()).status_code == 200
