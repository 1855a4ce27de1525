"""The lineage projection in Neo4j (official driver): (:Dataset)-[:DERIVED_FROM]->.

Tracking lives in the graph too (a :ConductorTracking node updated in the
same transaction as the edges), so the view is exactly-once like the SQL ones.

The database may be shared: every node this view writes carries its
namespace (``ns``, CONDUCTOR_NEO4J_NAMESPACE), every statement matches on it,
and a reset deletes only its own namespace's nodes, never another
deployment's (or another application's) ``:Dataset`` nodes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Tracking

from projections.catalog import LineageGraphView, LineageNode
from projections.lineage import LineageChanges, LineageView

if TYPE_CHECKING:
    from neo4j import Driver, ManagedTransaction

VIEW = "lineage"
SCHEMA = (
    # The key used to be the id alone, which two deployments sharing a
    # database would collide on (ids are uuid5 of tenant and name).
    "DROP CONSTRAINT conductor_dataset_id IF EXISTS",
    "CREATE CONSTRAINT conductor_dataset_ns_id IF NOT EXISTS "
    "FOR (d:Dataset) REQUIRE (d.ns, d.id) IS UNIQUE",
    "CREATE INDEX conductor_dataset_ns_tenant IF NOT EXISTS "
    "FOR (d:Dataset) ON (d.ns, d.tenant)",
    "CREATE INDEX conductor_tracking_ns IF NOT EXISTS "
    "FOR (t:ConductorTracking) ON (t.ns, t.view, t.app)",
)
"""Created on start (idempotent): the namespaced key and the tenant index."""


class Neo4jLineageView(LineageView):
    """Lineage nodes and edges in Neo4j."""

    def __init__(
        self,
        driver: Driver,
        *,
        database: str | None = None,
        namespace: str = "conductor",
    ) -> None:
        if not namespace:
            msg = "the Neo4j namespace must not be empty"
            raise ValueError(msg)
        self.driver = driver
        self.database = database
        self.namespace = namespace

    def create_schema(self) -> None:
        """The namespaced key and the tenant index (idempotent)."""
        with self.driver.session(database=self.database) as session:
            for statement in SCHEMA:
                session.run(statement).consume()

    def max_tracking_id(self, application_name: str) -> int | None:
        with self.driver.session(database=self.database) as session:
            record = session.run(
                "MATCH (t:ConductorTracking {ns: $ns, view: $view, app: $app}) "
                "RETURN t.position AS position",
                ns=self.namespace,
                view=VIEW,
                app=application_name,
            ).single()
        return None if record is None else int(record["position"])

    def insert_tracking(self, tracking: Tracking) -> None:
        self.apply(LineageChanges(), tracking)

    def tip(self, application_name: str) -> tuple[int, str] | None:
        with self.driver.session(database=self.database) as session:
            record = session.run(
                "MATCH (t:ConductorTracking {ns: $ns, view: $view, app: $app}) "
                "WHERE t.hash IS NOT NULL RETURN t.tip AS tip, t.hash AS hash",
                ns=self.namespace,
                view=VIEW,
                app=application_name,
            ).single()
        return None if record is None else (int(record["tip"]), str(record["hash"]))

    def apply(
        self, changes: LineageChanges, tracking: Tracking, tip_hash: str | None = None
    ) -> None:
        ns = self.namespace

        def work(tx: ManagedTransaction) -> None:
            current = tx.run(
                "MATCH (t:ConductorTracking {ns: $ns, view: $view, app: $app}) "
                "RETURN t.position AS position",
                ns=ns,
                view=VIEW,
                app=tracking.application_name,
            ).single()
            if current is not None and current["position"] >= tracking.notification_id:
                msg = f"lineage view is already at {current['position']}"
                raise IntegrityError(msg)
            if changes.nodes:
                tx.run(
                    "UNWIND $nodes AS n MERGE (d:Dataset {ns: $ns, id: n.id}) "
                    "SET d += n.props",
                    ns=ns,
                    nodes=[
                        {"id": str(k), "props": v} for k, v in changes.nodes.items()
                    ],
                ).consume()
            if changes.upstream:
                tx.run(
                    "UNWIND $rows AS r MERGE (d:Dataset {ns: $ns, id: r.id}) "
                    "WITH d, r OPTIONAL MATCH (d)-[old:DERIVED_FROM]->() DELETE old "
                    "WITH DISTINCT d, r UNWIND r.upstream AS up "
                    "MERGE (u:Dataset {ns: $ns, id: up}) "
                    "MERGE (d)-[:DERIVED_FROM]->(u)",
                    ns=ns,
                    rows=[
                        {"id": str(k), "upstream": [str(u) for u in v]}
                        for k, v in changes.upstream.items()
                    ],
                ).consume()
            tx.run(
                "MERGE (t:ConductorTracking {ns: $ns, view: $view, app: $app}) "
                "SET t.position = $position, "
                "t.tip = CASE WHEN $hash IS NULL THEN t.tip ELSE $position END, "
                "t.hash = coalesce($hash, t.hash)",
                ns=ns,
                view=VIEW,
                app=tracking.application_name,
                position=tracking.notification_id,
                hash=tip_hash,
            ).consume()

        with self.driver.session(database=self.database) as session:
            session.execute_write(work)

    def lineage(
        self, tenant: str, root: UUID, direction: Literal["up", "down"], depth: int
    ) -> LineageGraphView:
        hops = int(depth)  # variable-length bounds cannot be parameters in Cypher
        pattern = (
            f"(r)-[:DERIVED_FROM*0..{hops}]->(n:Dataset)"
            if direction == "up"
            else f"(r)<-[:DERIVED_FROM*0..{hops}]-(n:Dataset)"
        )
        with self.driver.session(database=self.database) as session:
            found = session.run(
                f"MATCH (r:Dataset {{ns: $ns, id: $root, tenant: $tenant}}) "
                f"MATCH p = {pattern} "
                "WHERE n.ns = $ns AND n.tenant = $tenant "
                "WITH n, min(length(p)) AS depth "
                "RETURN n.id AS id, n.name AS name, n.status AS status, depth "
                "ORDER BY depth, name",
                ns=self.namespace,
                root=str(root),
                tenant=tenant,
            ).data()
            ids = [r["id"] for r in found]
            edges = session.run(
                "MATCH (a:Dataset {ns: $ns})-[:DERIVED_FROM]->(b:Dataset {ns: $ns}) "
                "WHERE a.id IN $ids AND b.id IN $ids "
                "RETURN a.id AS down, b.id AS up ORDER BY down, up",
                ns=self.namespace,
                ids=ids,
            ).data()
        return LineageGraphView(
            nodes=[
                LineageNode(UUID(r["id"]), r["name"], r["status"], int(r["depth"]))
                for r in found
            ],
            edges=[(UUID(e["down"]), UUID(e["up"])) for e in edges],
        )

    def reset(self) -> None:
        """Forget this namespace's nodes and tracking (nobody else's)."""
        with self.driver.session(database=self.database) as session:
            session.run(
                "MATCH (d:Dataset {ns: $ns}) DETACH DELETE d", ns=self.namespace
            ).consume()
            session.run(
                "MATCH (t:ConductorTracking {ns: $ns, view: $view}) DELETE t",
                ns=self.namespace,
                view=VIEW,
            ).consume()

    def close(self) -> None:
        self.driver.close()


def connect(
    uri: str,
    user: str,
    password: str,
    database: str | None,
    *,
    namespace: str = "conductor",
) -> Neo4jLineageView:
    """A view over a new driver (verifying connectivity now, not on first use)."""
    from neo4j import GraphDatabase  # noqa: PLC0415 - optional at run time

    driver = GraphDatabase.driver(uri, auth=(user, password))
    driver.verify_connectivity()
    view = Neo4jLineageView(driver, database=database or None, namespace=namespace)
    view.create_schema()
    return view
