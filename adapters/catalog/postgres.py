"""The catalog view on PostgreSQL: rows, lineage edges, the search index's feed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

import msgspec
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.sql import SQL, Identifier

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
from adapters.sql.pg_schema import schema_lock
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

_COLS = list(ROW_COLUMNS)
_encode = msgspec.json.encode
_SELECT = ", ".join(f"d.{c}" for c in _COLS)
_INT_COLUMNS = {"version": "int", "position": "bigint"}
# One statement per batch, the rows as one JSON array of arrays: msgspec
# encodes the batch's records (array_like structs) in C, where psycopg's array
# dumpers spent ~25 µs a row in Python.
_UPSERT = (
    f"INSERT INTO catalog_datasets ({', '.join(_COLS)}) SELECT "
    + ", ".join(
        f"(e->>{i})::{_INT_COLUMNS[c]}" if c in _INT_COLUMNS else f"e->>{i}"
        for i, c in enumerate(_COLS)
    )
    + " FROM jsonb_array_elements(%s::jsonb) AS e "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c}=excluded.{c}" for c in _COLS if c != "id")
)
_COPY = f"COPY catalog_datasets ({', '.join(_COLS)}) FROM STDIN"
_astuple = msgspec.structs.astuple
_MARKER = (
    "SELECT (SELECT coalesce(max(n), 0) FROM catalog_epoch) AS epoch, coalesce(("
    "SELECT max(notification_id) FROM catalog_tracking WHERE application_name = %s"
    "), 0) AS position"
)
"""The view's reset epoch and tracking position: what the index follows."""


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Row tuples -> one list per column (what unnest() takes)."""
    return [list(column) for column in zip(*rows, strict=True)] or [[]] * width


class PostgresCatalogView(PostgresTrackingRecorder, CatalogView):
    """Catalog read model in the same PostgreSQL database as the event log."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        # Our own tracking table whatever the factory proposes: views keyed by
        # the same application name must not share one single-row table.
        kwargs["tracking_table_name"] = "catalog_tracking"
        super().__init__(datastore, **kwargs)
        self.index = CatalogIndex()
        self.sql_create_statements += [
            SQL(s).format()
            for s in (
                "CREATE TABLE IF NOT EXISTS catalog_datasets ("
                "rid bigserial PRIMARY KEY, id text NOT NULL UNIQUE, "
                "tenant text NOT NULL, name text NOT NULL, "
                "description text NOT NULL, license text NOT NULL, "
                "purposes text NOT NULL, retention text NOT NULL, "
                "region text NOT NULL, contract_version text NOT NULL, "
                "contract_status text NOT NULL, tags text NOT NULL, "
                "owner text NOT NULL, location text NOT NULL, "
                "columns text NOT NULL, upstream text NOT NULL, "
                "status text NOT NULL, version integer NOT NULL, "
                "created_at text NOT NULL, updated_at text NOT NULL, "
                "position bigint NOT NULL)",
                # Per tenant and status (see the SQLite view): a batch's new
                # rows land near each other, not on a random page each.
                "CREATE INDEX IF NOT EXISTS catalog_by_tenant "
                "ON catalog_datasets (tenant, status)",
                # The search index follows the rows by position (index.py).
                "CREATE INDEX IF NOT EXISTS catalog_by_position "
                "ON catalog_datasets (position)",
                "CREATE TABLE IF NOT EXISTS catalog_epoch (id integer PRIMARY KEY "
                "CHECK (id = 1), n bigint NOT NULL)",
                *(f"DROP TABLE IF EXISTS {t}" for t in OBSOLETE),
                *(f"DROP INDEX IF EXISTS {i}" for i in OBSOLETE_INDEXES),
                "DROP INDEX IF EXISTS catalog_search",
                "ALTER TABLE catalog_datasets DROP COLUMN IF EXISTS search",
                "CREATE TABLE IF NOT EXISTS catalog_lineage (tenant text NOT NULL, "
                "downstream text NOT NULL, upstream text NOT NULL, "
                "PRIMARY KEY (downstream, upstream))",
                "CREATE INDEX IF NOT EXISTS catalog_lineage_up "
                "ON catalog_lineage (upstream, downstream)",
            )
        ]

    def create_table(self) -> None:
        with schema_lock(self.datastore):
            super().create_table()

    # -- writes -----------------------------------------------------------------

    def load_rows(self, ids: Sequence[UUID]) -> dict[UUID, CatalogRow]:
        rows = (row_from(r) for r in self._select_ids([i.hex for i in ids]))
        return {r.id: r for r in rows}

    def load_records(self, keys: Sequence[str]) -> dict[str, CatalogRecord]:
        found = self._select_ids(list(keys))
        return {r["id"]: CatalogRecord(*r.values()) for r in found}

    def _select_ids(self, hex_ids: list[str]) -> list[Any]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT {_SELECT} FROM catalog_datasets d WHERE d.id = ANY(%b)",
                (hex_ids,),
            )
            found: list[Any] = curs.fetchall()
        return found

    def write_batch(
        self,
        added: Sequence[CatalogRecord],
        updated: Sequence[CatalogRecord],
        tracking: Tracking,
    ) -> None:
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as curs,
        ):
            if added:
                # COPY parses text rows at about half the server time of the
                # JSON upsert. A row another runner added meanwhile fails the
                # unique id: the batch rolls back and is retried, as when
                # tracking conflicts.
                with curs.copy(_COPY) as copy:
                    for row in added:
                        copy.write_row(_astuple(row))
            # Pipelined: statements are sent without waiting for each answer;
            # only the tracking check reads a result.
            with conn.pipeline():
                if updated:
                    curs.execute(_UPSERT, (_encode(updated).decode(),))
                    curs.execute(
                        "DELETE FROM catalog_lineage WHERE downstream = ANY(%b)",
                        ([r.id for r in updated],),
                    )
                edges = edges_of([*added, *updated])
                if edges:
                    curs.execute(
                        "INSERT INTO catalog_lineage SELECT * FROM "
                        "unnest(%b::text[], %b::text[], %b::text[])",
                        _columns(edges, 3),
                    )
                self._insert_tracking(curs, tracking)

    def reset(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("TRUNCATE catalog_datasets, catalog_lineage RESTART IDENTITY")
            # A new epoch: search indexes built from the old rows start over.
            curs.execute(
                "INSERT INTO catalog_epoch VALUES (1, 1) "
                "ON CONFLICT (id) DO UPDATE SET n = catalog_epoch.n + 1"
            )
            # Keep the library's "__migration__" marker row (see the SQLite view).
            curs.execute(
                SQL("DELETE FROM {0} WHERE application_name != %s").format(
                    Identifier(self.tracking_table_name)
                ),
                (self.table_migration_identifier,),
            )

    # -- reads ------------------------------------------------------------------

    def get(self, tenant: str, dataset_id: UUID) -> CatalogRow | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT {_SELECT} FROM catalog_datasets d "
                "WHERE d.id=%s AND d.tenant=%s",
                (dataset_id.hex, tenant),
            )
            record = curs.fetchone()
        return row_from(record) if record else None

    def tenants(self) -> list[str]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT DISTINCT tenant FROM catalog_datasets ORDER BY tenant")
            return [r["tenant"] for r in curs.fetchall()]

    def rows(self, *, after: UUID | None, limit: int) -> list[CatalogRow]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT {_SELECT} FROM catalog_datasets d "
                "WHERE d.id > %s ORDER BY d.id LIMIT %s",
                (after.hex if after else "", limit),
            )
            return [row_from(r) for r in curs.fetchall()]

    def search(self, query: CatalogQuery) -> CatalogPage:
        return search(self.index, query, self._changes, self._fetch)

    def _changes(self, since: Callable[[int], int]) -> Changes:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(_MARKER, (APPLICATION_NAME,))
            marker = curs.fetchone()
            assert marker is not None
            epoch, position = int(marker["epoch"]), int(marker["position"])
            after = since(epoch)
            records: list[Any] = []
            if position > after:
                curs.execute(
                    f"SELECT {INDEX_COLUMNS} FROM catalog_datasets WHERE position > %s",
                    (after,),
                )
                records = [tuple(r.values()) for r in curs.fetchall()]
        return epoch, position, after, records

    def _fetch(self, rids: list[int]) -> list[Any]:
        if not rids:
            return []
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT {_SELECT}, d.rid AS rid FROM catalog_datasets d "
                "WHERE d.rid = ANY(%b)",
                (rids,),
            )
            found: list[Any] = curs.fetchall()
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
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "WITH RECURSIVE walk(node, depth) AS (SELECT %s::text, 0 UNION "
                f"SELECT l.{far}, w.depth + 1 FROM catalog_lineage l "
                f"JOIN walk w ON l.{near} = w.node "
                "WHERE w.depth < %s AND l.tenant = %s) "
                "SELECT w.node AS node, min(w.depth) AS depth, min(d.name) AS name, "
                "min(d.status) AS status FROM walk w "
                "JOIN catalog_datasets d ON d.id = w.node WHERE d.tenant = %s "
                "GROUP BY w.node ORDER BY depth, name",
                (root.hex, depth, tenant, tenant),
            )
            found = curs.fetchall()
            ids = [r["node"] for r in found]
            curs.execute(
                "SELECT downstream, upstream FROM catalog_lineage "
                "WHERE downstream = ANY(%b) AND upstream = ANY(%b) "
                "ORDER BY downstream, upstream",
                (ids, ids),
            )
            edges = [(r["downstream"], r["upstream"]) for r in curs.fetchall()]
        return LineageGraphView(
            nodes=[
                LineageNode(UUID(r["node"]), r["name"], r["status"], int(r["depth"]))
                for r in found
            ],
            edges=[(UUID(a), UUID(b)) for a, b in edges],
        )

    def active_edges(self, tenant: str) -> list[tuple[UUID, UUID]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(ACTIVE_EDGES, (tenant,))
            return [
                (UUID(r["downstream"]), UUID(r["upstream"])) for r in curs.fetchall()
            ]

    def downstream(self, tenant: str, ids: Sequence[UUID]) -> dict[UUID, list[UUID]]:
        below: dict[UUID, list[UUID]] = {}
        if not ids:
            return below
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT l.upstream, l.downstream FROM catalog_lineage l "
                "JOIN catalog_datasets d ON d.id = l.downstream "
                "WHERE l.upstream = ANY(%b) AND d.tenant = %s "
                "AND d.status = 'active'",
                ([i.hex for i in ids], tenant),
            )
            for r in curs.fetchall():
                below.setdefault(UUID(r["upstream"]), []).append(UUID(r["downstream"]))
        return below

    def stats(self, tenant: str) -> CatalogStats:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT count(*) FILTER (WHERE status='active') AS active, "
                "count(*) FILTER (WHERE status='retired') AS retired, "
                "count(*) FILTER (WHERE status='active' AND columns!='[]') AS cols, "
                "count(*) FILTER (WHERE status='active' AND contract_status='active') "
                "AS contracted FROM catalog_datasets WHERE tenant=%s",
                (tenant,),
            )
            counts = curs.fetchone()
            curs.execute(
                "SELECT location FROM catalog_datasets WHERE tenant=%s "
                "AND status='active' AND location!=''",
                (tenant,),
            )
            locations = tuple(r["location"] for r in curs.fetchall())
        assert counts is not None
        return CatalogStats(
            active=counts["active"],
            retired=counts["retired"],
            with_columns=counts["cols"],
            with_contract=counts["contracted"],
            locations=locations,
        )
