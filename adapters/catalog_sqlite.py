"""The catalog view on SQLite: rows, FTS5 index, facet tables, lineage edges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder

from adapters.catalog_sql import (
    FACET_LIMIT,
    ROW_COLUMNS,
    row_from,
    row_params,
    search_terms,
    search_text,
    unmatchable,
)
from projections.catalog import (
    CatalogPage,
    CatalogQuery,
    CatalogRow,
    CatalogStats,
    CatalogView,
    LineageGraphView,
    LineageNode,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import Tracking
    from eventsourcing.sqlite import SQLiteCursor

_SELECT = ", ".join(f"d.{c}" for c in ROW_COLUMNS)
_UPSERT = (
    f"INSERT INTO catalog_datasets ({', '.join(ROW_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in ROW_COLUMNS)}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c}=excluded.{c}" for c in ROW_COLUMNS if c != "id")
)
# bm25 weights: name, description, tags, column names.
_SCORE = "bm25(catalog_fts, 10.0, 2.0, 5.0, 3.0)"


class SQLiteCatalogView(SQLiteTrackingRecorder, CatalogView):
    """Catalog read model in the same SQLite file as the event log."""

    tracking_table = "catalog_tracking"

    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        # One tracking table per view: the library's shared "tracking" table
        # keys rows by application name only, so two views would collide.
        t = self.tracking_table
        self.insert_tracking_statement = self.insert_tracking_statement.replace(
            "INSERT INTO tracking", f"INSERT INTO {t}"
        ).replace("WHERE tracking.", f"WHERE {t}.")
        self.select_max_tracking_id_statement = (
            self.select_max_tracking_id_statement.replace("FROM tracking", f"FROM {t}")
        )

    def construct_create_table_statements(self) -> list[str]:
        return [
            *(
                s.replace("EXISTS tracking (", f"EXISTS {self.tracking_table} (")
                for s in super().construct_create_table_statements()
            ),
            "CREATE TABLE IF NOT EXISTS catalog_datasets ("
            "rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL, "
            "name TEXT NOT NULL, description TEXT NOT NULL, license TEXT NOT NULL, "
            "purposes TEXT NOT NULL, retention TEXT NOT NULL, region TEXT NOT NULL, "
            "contract_version TEXT NOT NULL, contract_status TEXT NOT NULL, "
            "tags TEXT NOT NULL, owner TEXT NOT NULL, location TEXT NOT NULL, "
            "columns TEXT NOT NULL, upstream TEXT NOT NULL, status TEXT NOT NULL, "
            "version INTEGER NOT NULL, created_at TEXT NOT NULL, "
            "updated_at TEXT NOT NULL, position INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS catalog_by_name "
            "ON catalog_datasets (tenant, status, name, rid)",
            "CREATE INDEX IF NOT EXISTS catalog_by_license "
            "ON catalog_datasets (tenant, status, license, region)",
            "CREATE INDEX IF NOT EXISTS catalog_by_region "
            "ON catalog_datasets (tenant, status, region, license)",
            "CREATE TABLE IF NOT EXISTS catalog_purposes (rid INTEGER NOT NULL, "
            "tenant TEXT NOT NULL, purpose TEXT NOT NULL, PRIMARY KEY (rid, purpose))",
            "CREATE INDEX IF NOT EXISTS catalog_purposes_by_value "
            "ON catalog_purposes (tenant, purpose, rid)",
            "CREATE TABLE IF NOT EXISTS catalog_tags (rid INTEGER NOT NULL, "
            "tenant TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (rid, tag))",
            "CREATE INDEX IF NOT EXISTS catalog_tags_by_value "
            "ON catalog_tags (tenant, tag, rid)",
            "CREATE TABLE IF NOT EXISTS catalog_lineage (tenant TEXT NOT NULL, "
            "downstream TEXT NOT NULL, upstream TEXT NOT NULL, "
            "PRIMARY KEY (downstream, upstream))",
            "CREATE INDEX IF NOT EXISTS catalog_lineage_up "
            "ON catalog_lineage (upstream, downstream)",
            "CREATE VIRTUAL TABLE IF NOT EXISTS catalog_fts USING fts5("
            "name, description, tags, columns, "
            "tokenize='unicode61 remove_diacritics 2', prefix='2 3')",
        ]

    # -- writes -----------------------------------------------------------------

    def load_rows(self, ids: Sequence[UUID]) -> dict[UUID, CatalogRow]:
        with self.datastore.transaction(commit=False) as c:
            return self._load_rows(c, [i.hex for i in ids])

    def _load_rows(self, c: SQLiteCursor, hex_ids: list[str]) -> dict[UUID, CatalogRow]:
        marks = ",".join("?" * len(hex_ids))
        c.execute(
            f"SELECT {_SELECT} FROM catalog_datasets d WHERE d.id IN ({marks})",
            hex_ids,
        )
        rows = (row_from(r) for r in c.fetchall())
        return {r.id: r for r in rows}

    def write_batch(self, rows: Sequence[CatalogRow], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as c:
            if rows:
                self._write_rows(c, rows)
            self._insert_tracking(c, tracking)

    def _write_rows(self, c: SQLiteCursor, rows: Sequence[CatalogRow]) -> None:
        c.executemany(_UPSERT, [row_params(r) for r in rows])
        hex_ids = [r.id.hex for r in rows]
        marks = ",".join("?" * len(hex_ids))
        c.execute(
            f"SELECT id, rid FROM catalog_datasets WHERE id IN ({marks})",
            hex_ids,
        )
        rid = {r[0]: r[1] for r in c.fetchall()}
        rids = [rid[h] for h in hex_ids]
        rid_marks = ",".join("?" * len(rids))
        for table in ("catalog_fts", "catalog_purposes", "catalog_tags"):
            key = "rowid" if table == "catalog_fts" else "rid"
            c.execute(f"DELETE FROM {table} WHERE {key} IN ({rid_marks})", rids)
        c.execute(
            f"DELETE FROM catalog_lineage WHERE downstream IN ({marks})",
            hex_ids,
        )
        c.executemany(
            "INSERT INTO catalog_fts (rowid, name, description, tags, columns) "
            "VALUES (?,?,?,?,?)",
            [(rid[r.id.hex], *search_text(r)) for r in rows],
        )
        c.executemany(
            "INSERT INTO catalog_purposes VALUES (?,?,?)",
            [(rid[r.id.hex], r.tenant, p) for r in rows for p in r.purposes],
        )
        c.executemany(
            "INSERT INTO catalog_tags VALUES (?,?,?)",
            [(rid[r.id.hex], r.tenant, t) for r in rows for t in r.tags],
        )
        c.executemany(
            "INSERT INTO catalog_lineage VALUES (?,?,?)",
            [(r.tenant, r.id.hex, u.hex) for r in rows for u in r.upstream],
        )

    def reset(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            for table in (
                "catalog_datasets",
                "catalog_purposes",
                "catalog_tags",
                "catalog_lineage",
                "catalog_fts",
            ):
                c.execute(f"DELETE FROM {table}")
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
        terms = search_terms(query.q)
        if (query.q.strip() and not terms) or unmatchable(query):
            return CatalogPage(items=[], total=0, facets={}, next_after=None)
        scope = _scope(query, terms)
        filters = _filters(query)
        with self.datastore.transaction(commit=False) as c:
            facets = {
                name: self._facet(c, name, scope, filters)
                for name in ("license", "purpose", "region")
            }
            if query.license is not None:
                total = facets["license"].get(query.license, 0)
            else:
                total = sum(facets["license"].values())
            items, next_after = self._page(c, query, terms, scope, filters)
        return CatalogPage(
            items=items, total=total, facets=facets, next_after=next_after
        )

    @staticmethod
    def _facet(
        c: SQLiteCursor,
        name: str,
        scope: _Scope,
        filters: dict[str, tuple[str, Any]],
    ) -> dict[str, int]:
        """Counts per value of one facet, under every filter but its own."""
        others = [f for key, f in filters.items() if key != name]
        where = scope.where + "".join(f" AND {sql}" for sql, _ in others)
        args = [*scope.params, *(arg for _, arg in others)]
        if name == "purpose":
            sql = (
                f"SELECT p.purpose, count(*) AS n {scope.source} "
                f"JOIN catalog_purposes p ON p.rid=d.rid WHERE {where} "
                f"GROUP BY p.purpose ORDER BY n DESC, p.purpose LIMIT {FACET_LIMIT}"
            )
        else:
            sql = (
                f"SELECT d.{name}, count(*) AS n {scope.source} WHERE {where} "
                f"GROUP BY d.{name} ORDER BY n DESC, d.{name} LIMIT {FACET_LIMIT}"
            )
        c.execute(sql, args)
        return {r[0]: r[1] for r in c.fetchall()}

    @staticmethod
    def _page(
        c: SQLiteCursor,
        query: CatalogQuery,
        terms: list[str],
        scope: _Scope,
        filters: dict[str, tuple[str, Any]],
    ) -> tuple[list[CatalogRow], tuple[Any, int] | None]:
        where = scope.where + "".join(f" AND {sql}" for sql, _ in filters.values())
        args = [*scope.params, *(arg for _, arg in filters.values())]
        key = _SCORE if terms else "d.name"
        if query.after is not None:
            where += f" AND ({key}, d.rid) > (?, ?)"
            args += [query.after[0], query.after[1]]
        c.execute(
            f"SELECT {_SELECT}, {key} AS sort_key, d.rid AS rid {scope.source} "
            f"WHERE {where} ORDER BY sort_key, d.rid LIMIT ?",
            [*args, query.limit + 1],
        )
        records = c.fetchall()
        more = len(records) > query.limit
        records = records[: query.limit]
        items = [row_from(r) for r in records]
        if more and records:
            last = records[-1]
            return items, (last["sort_key"], int(last["rid"]))
        return items, None

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


@dataclass(frozen=True)
class _Scope:
    """FROM and WHERE of a search before facet filters: tenant, status, text."""

    source: str
    where: str
    params: list[Any]


def _scope(query: CatalogQuery, terms: list[str]) -> _Scope:
    where = "d.tenant = ?"
    params: list[Any] = [query.tenant]
    source = "FROM catalog_datasets d"
    if terms:
        source = "FROM catalog_fts JOIN catalog_datasets d ON d.rid = catalog_fts.rowid"
        where += " AND catalog_fts MATCH ?"
        params.append(" ".join('"' + t.replace('"', '""') + '"*' for t in terms))
    if query.status != "any":
        where += " AND d.status = ?"
        params.append(query.status)
    return _Scope(source, where, params)


def _filters(query: CatalogQuery) -> dict[str, tuple[str, Any]]:
    filters: dict[str, tuple[str, Any]] = {}
    if query.license is not None:
        filters["license"] = ("d.license = ?", query.license)
    if query.region is not None:
        filters["region"] = ("d.region = ?", query.region)
    if query.purpose is not None:
        filters["purpose"] = (
            "EXISTS (SELECT 1 FROM catalog_purposes fp "
            "WHERE fp.rid = d.rid AND fp.purpose = ?)",
            query.purpose,
        )
    if query.tag is not None:
        filters["tag"] = (
            "EXISTS (SELECT 1 FROM catalog_tags ft "
            "WHERE ft.rid = d.rid AND ft.tag = ?)",
            query.tag,
        )
    return filters


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
