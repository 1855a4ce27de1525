"""The catalog view on SQLite: rows, lineage edges, the search index's feed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

import msgspec

from adapters.catalog.index import INDEX_COLUMNS, CatalogIndex
from adapters.catalog.sql import (
    ACTIVE_EDGES,
    OBSOLETE,
    OBSOLETE_INDEXES,
    ROW_COLUMNS,
    Changes,
    edges_of,
    row_from,
    search,
)
from adapters.sql.sqlite_view import SQLiteViewRecorder
from projections.catalog import (
    CatalogPage,
    CatalogQuery,
    CatalogRecord,
    CatalogRow,
    CatalogStats,
    CatalogView,
    LineageGraphView,
    LineageNode,
)
from projections.runner import APPLICATION_NAME

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventsourcing.persistence import Tracking
    from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore

_astuple = msgspec.structs.astuple
_SELECT = ", ".join(f"d.{c}" for c in ROW_COLUMNS)
_UPSERT = (
    f"INSERT INTO catalog_datasets ({', '.join(ROW_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ROW_COLUMNS))}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c}=excluded.{c}" for c in ROW_COLUMNS if c != "id")
)


_MARKER = (
    "SELECT (SELECT coalesce(max(n), 0) FROM catalog_epoch), coalesce(("
    "SELECT max(notification_id) FROM catalog_tracking WHERE application_name = ?"
    "), 0)"
)
"""The view's reset epoch and tracking position: what the index follows."""


class SQLiteCatalogView(SQLiteViewRecorder, CatalogView):
    """Catalog read model in the same SQLite file as the event log."""

    tracking_table = "catalog_tracking"

    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.index = CatalogIndex()

    def view_tables(self) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS catalog_datasets ("
            "rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL, "
            "name TEXT NOT NULL, description TEXT NOT NULL, license TEXT NOT NULL, "
            "purposes TEXT NOT NULL, retention TEXT NOT NULL, region TEXT NOT NULL, "
            "contract_version TEXT NOT NULL, contract_status TEXT NOT NULL, "
            "tags TEXT NOT NULL, owner TEXT NOT NULL, location TEXT NOT NULL, "
            "columns TEXT NOT NULL, upstream TEXT NOT NULL, status TEXT NOT NULL, "
            "version INTEGER NOT NULL, created_at TEXT NOT NULL, "
            "updated_at TEXT NOT NULL, position INTEGER NOT NULL)",
            # Per tenant and status, in rid order: a batch appends to it (the
            # name order it replaced took a random page per new row).
            "CREATE INDEX IF NOT EXISTS catalog_by_tenant "
            "ON catalog_datasets (tenant, status)",
            # The search index follows the rows by position (index.py).
            "CREATE INDEX IF NOT EXISTS catalog_by_position "
            "ON catalog_datasets (position)",
            "CREATE TABLE IF NOT EXISTS catalog_epoch (id INTEGER PRIMARY KEY "
            "CHECK (id = 1), n INTEGER NOT NULL)",
            *(f"DROP TABLE IF EXISTS {t}" for t in OBSOLETE),
            *(f"DROP INDEX IF EXISTS {i}" for i in OBSOLETE_INDEXES),
            "CREATE TABLE IF NOT EXISTS catalog_lineage (tenant TEXT NOT NULL, "
            "downstream TEXT NOT NULL, upstream TEXT NOT NULL, "
            "PRIMARY KEY (downstream, upstream))",
            "CREATE INDEX IF NOT EXISTS catalog_lineage_up "
            "ON catalog_lineage (upstream, downstream)",
        ]

    # -- writes -----------------------------------------------------------------

    def load_rows(self, ids: Sequence[UUID]) -> dict[UUID, CatalogRow]:
        with self.datastore.transaction(commit=False) as c:
            rows = (row_from(r) for r in self._select_ids(c, [i.hex for i in ids]))
            return {r.id: r for r in rows}

    def load_records(self, keys: Sequence[str]) -> dict[str, CatalogRecord]:
        with self.datastore.transaction(commit=False) as c:
            return {r[0]: CatalogRecord(*r) for r in self._select_ids(c, list(keys))}

    def _select_ids(self, c: SQLiteCursor, hex_ids: list[str]) -> list[Any]:
        marks = ",".join("?" * len(hex_ids))
        c.execute(
            f"SELECT {_SELECT} FROM catalog_datasets d WHERE d.id IN ({marks})",
            hex_ids,
        )
        found: list[Any] = c.fetchall()
        return found

    def write_batch(
        self,
        added: Sequence[CatalogRecord],
        updated: Sequence[CatalogRecord],
        tracking: Tracking,
    ) -> None:
        with self.writer.transaction() as c:
            rows = [*added, *updated]
            if rows:
                c.executemany(_UPSERT, [_astuple(r) for r in rows])
            if updated:
                ids = [r.id for r in updated]
                c.execute(
                    "DELETE FROM catalog_lineage WHERE downstream IN "
                    f"({','.join('?' * len(ids))})",
                    ids,
                )
            edges = edges_of(rows)
            if edges:
                c.executemany("INSERT INTO catalog_lineage VALUES (?,?,?)", edges)
            self._insert_tracking(c, tracking)

    def close(self) -> None:
        self.writer.close()

    def reset(self) -> None:
        with self.writer.transaction() as c:
            for table in ("catalog_datasets", "catalog_lineage"):
                c.execute(f"DELETE FROM {table}")
            # A new epoch: search indexes built from the old rows start over.
            c.execute(
                "INSERT INTO catalog_epoch VALUES (1, 1) "
                "ON CONFLICT (id) DO UPDATE SET n = n + 1"
            )
            # Keep the library's "__migration__" marker row, or the next open
            # would try to migrate a legacy multi-row tracking table.
            c.execute(
                f"DELETE FROM {self.tracking_table} WHERE application_name != ?",
                (self.table_migration_identifier,),
            )

    # -- reads ------------------------------------------------------------------

    def get(self, tenant: str, dataset_id: UUID) -> CatalogRow | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT {_SELECT} FROM catalog_datasets d WHERE d.id=? AND d.tenant=?",
                (dataset_id.hex, tenant),
            )
            record = c.fetchone()
        return row_from(record) if record else None

    def tenants(self) -> list[str]:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT DISTINCT tenant FROM catalog_datasets ORDER BY tenant")
            return [r[0] for r in c.fetchall()]

    def rows(self, *, after: UUID | None, limit: int) -> list[CatalogRow]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT {_SELECT} FROM catalog_datasets d "
                "WHERE d.id>? ORDER BY d.id LIMIT ?",
                (after.hex if after else "", limit),
            )
            return [row_from(r) for r in c.fetchall()]

    def search(self, query: CatalogQuery) -> CatalogPage:
        return search(self.index, query, self._changes, self._fetch)

    def _changes(self, since: Callable[[int], int]) -> Changes:
        with self.datastore.transaction(commit=False) as c:
            c.execute(_MARKER, (APPLICATION_NAME,))
            epoch, position = c.fetchone()
            after = since(epoch)
            records: list[Any] = []
            if position > after:
                c.execute(
                    f"SELECT {INDEX_COLUMNS} FROM catalog_datasets WHERE position > ?",
                    (after,),
                )
                records = c.fetchall()
        return epoch, position, after, records

    def _fetch(self, rids: list[int]) -> list[Any]:
        if not rids:
            return []
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT {_SELECT}, d.rid AS rid FROM catalog_datasets d "
                f"WHERE d.rid IN ({','.join('?' * len(rids))})",
                rids,
            )
            found: list[Any] = c.fetchall()
        return found

    def invalidate(self, *_: object) -> None:
        self.index.invalidate()

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
                "WITH RECURSIVE walk(node, depth) AS (SELECT ?, 0 UNION "
                f"SELECT l.{far}, w.depth + 1 FROM catalog_lineage l "
                f"JOIN walk w ON l.{near} = w.node "
                "WHERE w.depth < ? AND l.tenant = ?) "
                "SELECT w.node AS node, min(w.depth) AS depth, d.name, d.status "
                "FROM walk w JOIN catalog_datasets d ON d.id = w.node "
                "WHERE d.tenant = ? GROUP BY w.node ORDER BY depth, d.name",
                (root.hex, depth, tenant, tenant),
            )
            found = c.fetchall()
            ids = [r["node"] for r in found]
            marks = ",".join("?" * len(ids))
            c.execute(
                "SELECT downstream, upstream FROM catalog_lineage "
                f"WHERE downstream IN ({marks}) AND upstream IN ({marks}) "
                "ORDER BY downstream, upstream",
                [*ids, *ids],
            )
            edges = [(r[0], r[1]) for r in c.fetchall()]
        return _lineage_view(found, edges)

    def active_edges(self, tenant: str) -> list[tuple[UUID, UUID]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(ACTIVE_EDGES.replace("%s", "?"), (tenant,))
            return [(UUID(down), UUID(up)) for down, up in c.fetchall()]

    def downstream(self, tenant: str, ids: Sequence[UUID]) -> dict[UUID, list[UUID]]:
        below: dict[UUID, list[UUID]] = {}
        if not ids:
            return below
        with self.datastore.transaction(commit=False) as c:
            # CROSS JOIN fixes the order (SQLite's planner, without statistics,
            # would scan the tenant's datasets first): the links by their
            # upstream index, then each downstream row by id.
            c.execute(
                "SELECT l.upstream, l.downstream FROM catalog_lineage l "
                "CROSS JOIN catalog_datasets d ON d.id = l.downstream "
                f"WHERE l.upstream IN ({','.join('?' * len(ids))}) "
                "AND d.tenant = ? AND d.status = 'active'",
                [*(i.hex for i in ids), tenant],
            )
            for up, down in c.fetchall():
                below.setdefault(UUID(up), []).append(UUID(down))
        return below

    def stats(self, tenant: str) -> CatalogStats:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT sum(status='active'), sum(status='retired'), "
                "sum(status='active' AND columns!='[]'), "
                "sum(status='active' AND contract_status='active') "
                "FROM catalog_datasets WHERE tenant=?",
                (tenant,),
            )
            active, retired, with_columns, with_contract = c.fetchone()
            c.execute(
                "SELECT location FROM catalog_datasets WHERE tenant=? "
                "AND status='active' AND location!=''",
                (tenant,),
            )
            locations = tuple(r[0] for r in c.fetchall())
        return CatalogStats(
            active=active or 0,
            retired=retired or 0,
            with_columns=with_columns or 0,
            with_contract=with_contract or 0,
            locations=locations,
        )


def _lineage_view(
    found: Sequence[Any], edges: Sequence[tuple[str, str]]
) -> LineageGraphView:
    return LineageGraphView(
        nodes=[
            LineageNode(UUID(r["node"]), r["name"], r["status"], int(r["depth"]))
            for r in found
        ],
        edges=[(UUID(a), UUID(b)) for a, b in edges],
    )
