"""datasetsConnection: a cursor on every edge that continues right after it, and
the filters and sort REST GET /v1/datasets takes (contractStatus, sort)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.graphql.support import codes, gql, log_head, register

if TYPE_CHECKING:
    from litestar.testing import TestClient

pytestmark = pytest.mark.integration

CONNECTION = """
query($first: Int!, $after: String, $filter: DatasetFilter, $p: Int) {
  datasetsConnection(first: $first, after: $after, filter: $filter, minPosition: $p) {
    edges { cursor node { name } }
    pageInfo { hasNextPage endCursor }
    totalCount
  }
}
"""


def _page(
    client: TestClient[Any],
    first: int,
    after: str | None = None,
    **filters: Any,
) -> dict[str, Any]:
    answer = gql(
        client,
        CONNECTION,
        {
            "first": first,
            "after": after,
            "filter": filters or None,
            "p": log_head(client)["position"],
        },
    )
    assert "errors" not in answer, answer
    page: dict[str, Any] = answer["data"]["datasetsConnection"]
    return page


def _names(page: dict[str, Any]) -> list[str]:
    return [e["node"]["name"] for e in page["edges"]]


class TestEdgeCursors:
    @pytest.mark.parametrize(
        "filters",
        [
            pytest.param({}, id="by-name"),
            pytest.param({"q": "orders"}, id="ranked-text"),
            pytest.param({"q": "orders", "sort": "NAME"}, id="text-by-name"),
        ],
    )
    def test_after_any_edge_continues_right_after_that_edge(
        self, client: TestClient[Any], filters: dict[str, Any]
    ) -> None:
        """Every edge has a cursor of its own; ``after`` it answers exactly the
        datasets that follow that edge in the full listing, with no repeats."""
        for n in range(7):
            register(client, f"orders-{n}", description=f"orders placed {'x' * n}")
        whole = _names(_page(client, 50, **filters))
        assert len(whole) == 7
        page = _page(client, 5, **filters)
        cursors = [e["cursor"] for e in page["edges"]]
        assert len(set(cursors)) == 5
        assert all(cursors)
        for index, cursor in enumerate(cursors):
            rest = _page(client, 50, cursor, **filters)
            assert _names(rest) == whole[index + 1 :], index
            assert rest["pageInfo"]["hasNextPage"] is False
        assert page["pageInfo"]["hasNextPage"] is True
        assert page["pageInfo"]["endCursor"] == cursors[-1]

    def test_a_cursor_is_bound_to_its_filters(self, client: TestClient[Any]) -> None:
        """An edge's cursor with other filters is refused, naming ``after``."""
        for n in range(3):
            register(client, f"orders-{n}")
        cursor = _page(client, 2)["edges"][0]["cursor"]
        answer = gql(
            client,
            CONNECTION,
            {"first": 2, "after": cursor, "filter": {"region": "EU"}},
        )
        assert answer["data"] is None
        assert codes(answer) == ["bad-request"]
        assert answer["errors"][0]["extensions"]["field"] == "after"

    def test_the_last_page_has_no_end_cursor_but_its_edges_have_theirs(
        self, client: TestClient[Any]
    ) -> None:
        """hasNextPage false, endCursor null; each edge still carries one."""
        for n in range(2):
            register(client, f"orders-{n}")
        page = _page(client, 5)
        assert page["pageInfo"] == {"hasNextPage": False, "endCursor": None}
        assert [bool(e["cursor"]) for e in page["edges"]] == [True, True]
        assert _page(client, 5, page["edges"][-1]["cursor"])["edges"] == []


class TestRestFilters:
    def test_contract_status_and_sort_answer_as_rest_does(
        self, client: TestClient[Any]
    ) -> None:
        """filter {contractStatus, sort} gives REST's datasets, in REST's order."""
        register(client, "zeta-orders", contractStatus="draft", description="orders")
        register(client, "alpha-orders", contractStatus="draft", description="x")
        register(client, "mid-orders", contractStatus="active", description="orders")
        cases: list[tuple[dict[str, Any], str]] = [
            ({"contractStatus": "draft"}, "contractStatus=draft"),
            ({"q": "orders", "sort": "NAME"}, "q=orders&sort=name"),
            ({"q": "orders", "sort": "RELEVANCE"}, "q=orders&sort=relevance"),
            (
                {"q": "orders", "contractStatus": "draft", "sort": "NAME"},
                "q=orders&contractStatus=draft&sort=name",
            ),
        ]
        head = str(log_head(client)["position"])
        for filters, query in cases:
            rest = client.get(
                f"/v1/datasets?{query}",
                headers={"Authorization": _auth(), "x-ig-min-position": head},
            )
            assert rest.status_code == 200, rest.text
            expected = [d["name"] for d in rest.json()["items"]]
            assert _names(_page(client, 20, **filters)) == expected, filters
        assert _names(_page(client, 20, contractStatus="draft", sort="NAME")) == [
            "alpha-orders",
            "zeta-orders",
        ]

    def test_an_unknown_sort_is_a_validation_error(
        self, client: TestClient[Any]
    ) -> None:
        """sort is an enum: RELEVANCE or NAME."""
        answer = gql(
            client,
            CONNECTION,
            {"first": 2, "filter": {"sort": "SIZE"}},
        )
        assert answer.get("data") is None
        assert codes(answer) == ["validation"]


def _auth() -> str:
    from tests.graphql.support import ACME  # noqa: PLC0415

    return ACME["Authorization"]
