"""The Neo4j lineage adapter against a real server (NEO4J_URI), same answers as SQL."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytest
from litestar.testing import TestClient

from api.app import create_app
from tests.conftest import bearer, dataset_body

if TYPE_CHECKING:
    from api.settings import Settings

NEO4J_URI = os.environ.get("NEO4J_URI", "")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.neo4j,
    pytest.mark.skipif(
        not NEO4J_URI,
        reason="NEO4J_URI is not set: Neo4j cannot be installed on this machine; "
        "the embedded SQL lineage is tested instead "
        "(test_datasets_api.py::TestLineage)",
    ),
]


@pytest.fixture
def graph_client(settings: Settings) -> Any:
    import msgspec  # noqa: PLC0415

    configured = msgspec.structs.replace(
        settings,
        neo4j_uri=NEO4J_URI,
        neo4j_user=os.environ.get("NEO4J_USER", "neo4j"),
        neo4j_password=os.environ.get("NEO4J_PASSWORD", ""),
    )
    with TestClient(create_app(configured)) as client:
        services = client.app.state.conductor
        services.catalog.lineage.reset()
        yield client, services


def test_neo4j_lineage_matches_the_sql_lineage(graph_client: Any) -> None:
    """The same walk, up and down, from the graph store and from SQL."""
    client, services = graph_client
    h = bearer("acme")
    raw = client.post("/v1/datasets", json=dataset_body("raw"), headers=h).json()["id"]
    clean = client.post(
        "/v1/datasets", json=dataset_body("clean", upstream=[raw]), headers=h
    ).json()["id"]
    report = client.post("/v1/datasets", json=dataset_body("report"), headers=h).json()
    done = client.post(
        f"/v1/datasets/{report['id']}/lineage", json={"upstream": [clean]}, headers=h
    ).json()
    wait = {**h, "x-ig-min-position": str(done["position"])}
    graph = client.get(
        f"/v1/datasets/{report['id']}/lineage?depth=5", headers=wait
    ).json()
    assert [n["name"] for n in graph["nodes"]] == ["report", "clean", "raw"]
    services.core.runners["catalog"].wait(done["position"], 5)
    sql = services.catalog.view.lineage("acme", UUID(report["id"]), "up", 5)
    assert [n.name for n in sql.nodes] == [n["name"] for n in graph["nodes"]]


def test_neo4j_keeps_the_tip_a_follower_checks(graph_client: Any) -> None:
    """apply with a chain hash keeps (position, hash); without, the last one."""
    from eventsourcing.persistence import Tracking  # noqa: PLC0415

    from projections.lineage import LineageChanges  # noqa: PLC0415

    _, services = graph_client
    view = services.catalog.lineage
    view.reset()
    assert view.tip("ledger") is None
    view.apply(LineageChanges(), Tracking("ledger", 3), tip_hash="ab" * 32)
    view.apply(LineageChanges(), Tracking("ledger", 5))
    assert view.tip("ledger") == (3, "ab" * 32)
    assert view.max_tracking_id("ledger") == 5
    view.reset()
    assert view.tip("ledger") is None


def test_a_reset_deletes_only_its_own_namespace(graph_client: Any) -> None:
    """Two deployments share the database: one's rebuild leaves the other's nodes."""
    from eventsourcing.persistence import Tracking  # noqa: PLC0415

    from adapters.catalog.lineage_neo4j import Neo4jLineageView  # noqa: PLC0415
    from projections.lineage import LineageChanges  # noqa: PLC0415

    _, services = graph_client
    ours = services.catalog.lineage
    theirs = Neo4jLineageView(ours.driver, database=ours.database, namespace="other")
    theirs.reset()
    node = {"tenant": "acme", "name": "shared", "status": "active"}
    same_id = UUID(int=7)
    changes = LineageChanges(nodes={same_id: node})
    ours.apply(changes, Tracking("ledger", 1))
    theirs.apply(changes, Tracking("ledger", 1))  # same id, other namespace
    ours.reset()
    assert ours.max_tracking_id("ledger") is None
    assert theirs.max_tracking_id("ledger") == 1
    walk = theirs.lineage("acme", same_id, "up", 1)
    assert [n.name for n in walk.nodes] == ["shared"]
    theirs.reset()
