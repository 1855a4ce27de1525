"""The lineage projection in an embedded SQLite file: nodes, edges, own tracking.

The graph store for a region without a graph database (region B of a DR pair
keeps its lineage here, beside its read-only PostgreSQL standby). Walks are
recursive CTEs bounded by depth; a node reached by two paths (a diamond) is
reported once, at its shortest distance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal
from uuid import UUID

from eventsourcing.sqlite import SQLiteDatastore

from adapters.sql.sqlite_view import SQLiteViewRecorder
from projections.catalog import LineageGraphView, LineageNode
from projections.lineage import LineageChanges, LineageView

if TYPE_CHECKING:
    from pathlib import Path

    from eventsourcing.persistence import Tracking
    from eventsourcing.sqlite import SQLiteCursor

# A Retired event alone carries only the status: keep what is already known.
_UPSERT_NODE = (
    "INSERT INTO lineage_nodes (id, tenant, name, status) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET "
    "tenant = coalesce(excluded.tenant, tenant), "
    "name = coalesce(excluded.name, name), "
    "status = coalesce(excluded.status, status)"
)


class SQLiteLineageView(SQLiteViewRecorder, LineageView):
    """Lineage nodes and DERIVED_FROM edges (downstream -> upstream) in SQLite."""

    tracking_table = "lineage_tracking"

    def view_tables(self) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS lineage_nodes (id TEXT PRIMARY KEY, "
            "tenant TEXT, name TEXT, status TEXT)",
            "CREATE TABLE IF NOT EXISTS lineage_edges (downstream TEXT NOT NULL, "
            "upstream TEXT NOT NULL, PRIMARY KEY (downstream, upstream)) "
            "WITHOUT ROWID",
            "CREATE INDEX IF NOT EXISTS lineage_edges_up "
            "ON lineage_edges (upstream, downstream)",
            "CREATE TABLE IF NOT EXISTS lineage_tip (application_name TEXT "
            "PRIMARY KEY, position INTEGER NOT NULL, hash TEXT NOT NULL)",
        ]

    def insert_tracking(self, tracking: Tracking) -> None:
        self.apply(LineageChanges(), tracking)

    def apply(
        self, changes: LineageChanges, tracking: Tracking, tip_hash: str | None = None
    ) -> None:
        with self.writer.transaction() as c:
            c.executemany(
                _UPSERT_NODE,
                [
                    (k.hex, p.get("tenant"), p.get("name"), p.get("status"))
                    for k, p in changes.nodes.items()
                ],
            )
            # An event's upstream is the node's whole upstream set: replace it.
            c.executemany(
                "DELETE FROM lineage_edges WHERE downstream = ?",
                [(k.hex,) for k in changes.upstream],
            )
            c.executemany(
                "INSERT INTO lineage_edges VALUES (?, ?)",
                [(k.hex, u.hex) for k, ups in changes.upstream.items() for u in ups],
            )
            # Raises IntegrityError unless the position moves forward: a batch
            # is applied once, even by a follower restarted mid-way.
            self._insert_tracking(c, tracking)
            if tip_hash is not None:
                c.execute(
                    "INSERT INTO lineage_tip VALUES (?, ?, ?) "
                    "ON CONFLICT (application_name) DO UPDATE SET "
                    "position = excluded.position, hash = excluded.hash",
                    (tracking.application_name, tracking.notification_id, tip_hash),
                )

    def tip(self, application_name: str) -> tuple[int, str] | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT position, hash FROM lineage_tip WHERE application_name = ?",
                (application_name,),
            )
            row = c.fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def lineage(
        self, tenant: str, root: UUID, direction: Literal["up", "down"], depth: int
    ) -> LineageGraphView:
        near, far = (
            ("downstream", "upstream")
            if direction == "up"
            else ("upstream", "downstream")
        )
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "WITH RECURSIVE walk(node, depth) AS ("
                "SELECT id, 0 FROM lineage_nodes WHERE id = ? AND tenant = ? UNION "
                f"SELECT e.{far}, w.depth + 1 FROM walk w "
                f"JOIN lineage_edges e ON e.{near} = w.node "
                f"JOIN lineage_nodes n ON n.id = e.{far} AND n.tenant = ? "
                "WHERE w.depth < ?) "
                "SELECT w.node AS node, min(w.depth) AS depth, n.name AS name, "
                "n.status AS status FROM walk w JOIN lineage_nodes n ON n.id = w.node "
                "GROUP BY w.node ORDER BY depth, n.name",
                (root.hex, tenant, tenant, depth),
            )
            found = c.fetchall()
            edges = self._edges_among(c, [r["node"] for r in found])
        return LineageGraphView(
            nodes=[
                LineageNode(UUID(r["node"]), r["name"], r["status"], int(r["depth"]))
                for r in found
            ],
            edges=edges,
        )

    @staticmethod
    def _edges_among(c: SQLiteCursor, ids: list[str]) -> list[tuple[UUID, UUID]]:
        marks = ",".join("?" * len(ids))
        c.execute(
            "SELECT downstream, upstream FROM lineage_edges "
            f"WHERE downstream IN ({marks}) AND upstream IN ({marks}) "
            "ORDER BY downstream, upstream",
            [*ids, *ids],
        )
        return [(UUID(r[0]), UUID(r[1])) for r in c.fetchall()]

    def reset(self) -> None:
        with self.writer.transaction() as c:
            c.execute("DELETE FROM lineage_edges")
            c.execute("DELETE FROM lineage_nodes")
            c.execute("DELETE FROM lineage_tip")
            # Keep the library's "__migration__" row (see SQLiteCatalogView.reset).
            c.execute(
                f"DELETE FROM {self.tracking_table} WHERE application_name != ?",
                (self.table_migration_identifier,),
            )

    def close(self) -> None:
        self.writer.close()
        self.datastore.close()


def open_sqlite_lineage(path: Path) -> SQLiteLineageView:
    """The lineage view in the SQLite file at ``path`` (created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    view = SQLiteLineageView(SQLiteDatastore(str(path), lock_timeout=30))
    view.create_table()
    return view
