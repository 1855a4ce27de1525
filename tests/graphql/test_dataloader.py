"""DataLoader: a page of datasets with their lineage costs a constant number of
read-model queries, counted on the real catalog view (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from tests.graphql.support import gql, log_head

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.testing import TestClient

pytestmark = pytest.mark.integration

PAGE = """
query($first: Int!, $p: Int) {
  datasetsConnection(first: $first, minPosition: $p) {
    edges { node {
      name
      upstream { name }
      downstream { name }
      lineage(depth: 2) { nodes { depth dataset { name } } }
    } }
  }
}
"""


def _counted(
    calls: Counter[str], name: str, method: Callable[..., Any]
) -> Callable[..., Any]:
    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return method(*args, **kwargs)

    return counting


def _queries(
    client: TestClient[Any], first: int, head: int
) -> tuple[Counter[str], Any]:
    """The view's query methods called while answering one page."""
    view = client.app.state.conductor.catalog.view
    calls: Counter[str] = Counter()
    originals = {n: getattr(view, n) for n in ("load_rows", "active_edges", "search")}
    for name, method in originals.items():
        setattr(view, name, _counted(calls, name, method))
    try:
        answer = gql(client, PAGE, {"first": first, "p": head})
    finally:
        for name in originals:
            delattr(view, name)  # the class's methods again
    return calls, answer


def test_a_page_with_lineage_is_a_constant_number_of_queries(
    client: TestClient[Any],
) -> None:
    """100 datasets in chains of three (a <- b <- c): a page of 10 and a page
    of 100 cost a few queries each, bounded by the lineage depth, never by the
    page: one search, rows and edges queries per lineage level."""
    for n in range(34):
        a = _register(client, f"a{n:02}")
        b = _register(client, f"b{n:02}", [a])
        if n < 32:
            _register(client, f"c{n:02}", [b])
    head = log_head(client)["position"]
    small, answer10 = _queries(client, 10, head)
    large, answer100 = _queries(client, 100, head)
    assert "errors" not in answer100, answer100
    edges = answer100["data"]["datasetsConnection"]["edges"]
    assert len(edges) == 100
    by_name = {e["node"]["name"]: e["node"] for e in edges}
    assert by_name["c00"]["upstream"] == [{"name": "b00"}]
    assert by_name["b00"]["downstream"] == [{"name": "c00"}]
    assert [n["dataset"]["name"] for n in by_name["c00"]["lineage"]["nodes"]] == [
        "b00",
        "a00",
    ]
    assert len(answer10["data"]["datasetsConnection"]["edges"]) == 10
    for calls in (small, large):
        assert calls["search"] == 1
        assert calls["load_rows"] <= 4
        assert calls["active_edges"] <= 2
    assert large["search"] == 1
    assert large["load_rows"] <= 4
    assert large["active_edges"] <= 2
    # Without batching there would be one query per dataset per field.
    assert sum(large.values()) < 10


def _register(client: TestClient[Any], name: str, upstream: list[str] = []) -> str:  # noqa: B006
    answer = gql(
        client,
        "mutation($input: DatasetInput!) { registerDatasetAccepted(input: $input) "
        "{ id } }",
        {
            "input": {
                "name": name,
                "license": "CC-BY-4.0",
                "purpose": ["investigation"],
                "retention": "P1Y",
                "region": "EU",
                "contractVersion": "v1",
                "upstream": upstream,
            }
        },
    )
    assert "errors" not in answer, answer
    return str(answer["data"]["registerDatasetAccepted"]["id"])
