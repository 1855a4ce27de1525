"""DataLoader: a page of datasets with their lineage, exports and history costs
a constant number of queries, counted on the real catalog and exports views and
the real event log (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import bearer
from tests.graphql.support import exportable, gql, log_head

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.testing import TestClient

    from api.settings import Settings

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
    client: TestClient[Any],
    first: int,
    head: int,
    query: str = PAGE,
) -> tuple[Counter[str], Any]:
    """The read methods of the views and the log called while answering one page."""
    conductor = client.app.state.conductor
    watched = [
        (conductor.catalog.view, ("load_rows", "active_edges", "downstream", "search")),
        (conductor.exports.view, ("load_rows", "list_exports", "exports_of")),
        (conductor.catalog.registry.event_log, ("entries_for", "entries_for_many")),
        (conductor.catalog.registry, ("get_dataset",)),
    ]
    calls: Counter[str] = Counter()
    for target, names in watched:
        for name in names:
            setattr(target, name, _counted(calls, name, getattr(target, name)))
    try:
        answer = gql(client, query, {"first": first, "p": head})
    finally:
        for target, names in watched:
            for name in names:
                delattr(target, name)  # the class's methods again
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
        assert calls["downstream"] <= 2
        assert calls["active_edges"] == 0  # not the whole tenant's links
    # Without batching there would be one query per dataset per field.
    assert sum(large.values()) < 10


HISTORY_AND_EXPORTS = """
query($first: Int!, $p: Int) {
  datasetsConnection(first: $first, minPosition: $p) {
    edges { node {
      id
      name
      history { position version topic hash prevHash }
      exports(first: 5) { id status datasetId }
      denied: exports(status: "denied", first: 5) { id }
    } }
  }
}
"""


def test_a_page_with_exports_and_history_is_a_constant_number_of_queries(
    client: TestClient[Any], settings: Settings
) -> None:
    """30 datasets, two with exports (one allowed, one denied): a page of 5 and
    a page of 30 with every dataset's history and exports each read the log
    once and the exports view once per distinct arguments, never per dataset;
    each dataset gets its own history (as REST's) and its own exports."""
    allowed = exportable(client, settings, "a-allowed")
    denied = exportable(client, settings, "a-denied")
    for n in range(28):
        _register(client, f"b{n:02}")
    requested: dict[str, str] = {}
    for dataset_id, purpose in ((allowed, "investigation"), (denied, "marketing")):
        answer = gql(
            client,
            "mutation($d: ID!, $p: String!) { requestGovernedExport(datasetId: $d, "
            'preset: "tokenize_strict", purpose: $p) }',
            {"d": dataset_id, "p": purpose},
        )
        if answer.get("errors"):  # denied: the export is recorded all the same
            requested[dataset_id] = answer["errors"][0]["extensions"]["exportId"]
        else:
            requested[dataset_id] = answer["data"]["requestGovernedExport"]
    _settle(client, requested[allowed])
    head = log_head(client)["position"]
    caught_up = client.get(
        "/v1/exports?limit=1",
        headers={**bearer("acme"), "x-ig-min-position": str(head)},
    )
    assert caught_up.status_code == 200, caught_up.text
    small, answer5 = _queries(client, 5, head, HISTORY_AND_EXPORTS)
    large, answer30 = _queries(client, 30, head, HISTORY_AND_EXPORTS)
    assert "errors" not in answer30, answer30
    nodes = {
        e["node"]["id"]: e["node"]
        for e in answer30["data"]["datasetsConnection"]["edges"]
    }
    assert len(nodes) == 30
    assert len(answer5["data"]["datasetsConnection"]["edges"]) == 5
    for calls in (small, large):
        assert calls["entries_for_many"] == 1
        assert calls["exports_of"] == 2  # two argument sets: all, and denied
        assert calls["entries_for"] == calls["list_exports"] == 0
        assert calls["get_dataset"] == 0
    assert small == large
    for dataset_id, node in nodes.items():
        rest = client.get(
            f"/v1/datasets/{dataset_id}/history", headers=bearer("acme")
        ).json()
        assert [(h["position"], h["hash"], h["prevHash"]) for h in node["history"]] == [
            (e["position"], e["hash"], e["prevHash"]) for e in rest["entries"]
        ], node["name"]
        assert node["history"][0]["version"] == 1
        assert {x["datasetId"] for x in node["exports"]} <= {dataset_id}
    assert [x["id"] for x in nodes[allowed]["exports"]] == [requested[allowed]]
    assert nodes[allowed]["denied"] == []
    assert [x["id"] for x in nodes[denied]["exports"]] == [requested[denied]]
    assert [x["status"] for x in nodes[denied]["exports"]] == ["denied"]
    assert [x["id"] for x in nodes[denied]["denied"]] == [requested[denied]]
    assert sum(len(n["exports"]) for n in nodes.values()) == 2


def _settle(client: TestClient[Any], export_id: str, timeout: float = 30.0) -> None:
    """Wait until the export stops moving (its worker and projections would
    otherwise read the views while the page is counted)."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/exports/{export_id}", headers=bearer("acme")).json()
        if body["status"] in {"proven", "failed", "denied"}:
            return
        assert time.monotonic() < deadline, f"export stuck at {body['status']}"
        time.sleep(0.05)


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
