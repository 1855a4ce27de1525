"""The catalog view on SQLite: rows, FTS5 index, facet tables, lineage edges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from adapters.catalog.sql import (
    ACTIVE_EDGES,
    ALL,
    CELL_COLUMNS,
    FACET_TABLES,
    ROW_COLUMNS,
    crosstabs_from_rows,
    facet_deltas,
    facets_from,
    fts_match,
    page_from,
    row_from,
    row_params,
    search_terms,
    search_text,
    unmatchable,
)
from adapters.sql.sqlite_view import SQLiteViewRecorder
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


class SQLiteCatalogView(SQLiteViewRecorder, CatalogView):
    """Catalog read model in the same SQLite file as the event log."""

    tracking_table = "catalog_tracking"

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
            "CREATE INDEX IF NOT EXISTS catalog_by_name "
            "ON catalog_datasets (tenant, status, name, rid)",
            "CREATE INDEX IF NOT EXISTS catalog_by_license "
            "ON catalog_datasets (tenant, status, license, name, rid)",
            "CREATE INDEX IF NOT EXISTS catalog_by_region "
            "ON catalog_datasets (tenant, status, region, name, rid)",
            # Facet cross-tabs per tenant, kept up to date by write_batch.
            "CREATE TABLE IF NOT EXISTS catalog_facet_lr (tenant TEXT NOT NULL, "
            "status TEXT NOT NULL, tag TEXT NOT NULL, license TEXT NOT NULL, "
            "region TEXT NOT NULL, n INTEGER NOT NULL, "
            "PRIMARY KEY (tenant, status, tag, license, region)) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS catalog_facet_lrp (tenant TEXT NOT NULL, "
            "status TEXT NOT NULL, tag TEXT NOT NULL, license TEXT NOT NULL, "
            "region TEXT NOT NULL, purpose TEXT NOT NULL, n INTEGER NOT NULL, "
            "PRIMARY KEY (tenant, status, tag, license, region, purpose)) "
            "WITHOUT ROWID",
            # One row per (dataset, purpose) and per (dataset, tag), carrying the
            # columns a listing filters and sorts on, so a tag or purpose can
            # drive a listing in name order without touching the wide rows.
            "CREATE TABLE IF NOT EXISTS catalog_purposes (rid INTEGER NOT NULL, "
            "tenant TEXT NOT NULL, purpose TEXT NOT NULL, status TEXT NOT NULL, "
            "name TEXT NOT NULL, license TEXT NOT NULL, region TEXT NOT NULL, "
            "PRIMARY KEY (rid, purpose))",
            "CREATE INDEX IF NOT EXISTS catalog_purposes_by_value "
            "ON catalog_purposes (tenant, purpose, status, name, rid)",
            "CREATE TABLE IF NOT EXISTS catalog_tags (rid INTEGER NOT NULL, "
            "tenant TEXT NOT NULL, tag TEXT NOT NULL, status TEXT NOT NULL, "
            "name TEXT NOT NULL, license TEXT NOT NULL, region TEXT NOT NULL, "
            "PRIMARY KEY (rid, tag))",
            "CREATE INDEX IF NOT EXISTS catalog_tags_by_value "
            "ON catalog_tags (tenant, tag, status, name, rid)",
            "CREATE TABLE IF NOT EXISTS catalog_lineage (tenant TEXT NOT NULL, "
            "downstream TEXT NOT NULL, upstream TEXT NOT NULL, "
            "PRIMARY KEY (downstream, upstream))",
            "CREATE INDEX IF NOT EXISTS catalog_lineage_up "
            "ON catalog_lineage (upstream, downstream)",
            "CREATE VIRTUAL TABLE IF NOT EXISTS catalog_fts USING fts5("
            "name, description, tags, columns, "
            "tokenize='unicode61 remove_diacritics 2')",
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
        with self.writer.transaction() as c:
            if rows:
                marks = ",".join("?" * len(rows))
                c.execute(
                    f"SELECT {CELL_COLUMNS} FROM catalog_datasets "
                    f"WHERE id IN ({marks})",
                    [r.id.hex for r in rows],
                )
                old = [tuple(r) for r in c.fetchall()]
                self._write_rows(c, rows)
                lr, lrp = facet_deltas(old, rows)
                c.executemany(
                    "INSERT INTO catalog_facet_lr VALUES (?,?,?,?,?,?) "
                    "ON CONFLICT DO UPDATE SET n = n + excluded.n",
                    lr,
                )
                c.executemany(
                    "INSERT INTO catalog_facet_lrp VALUES (?,?,?,?,?,?,?) "
                    "ON CONFLICT DO UPDATE SET n = n + excluded.n",
                    lrp,
                )
                for table in FACET_TABLES:
                    c.execute(f"DELETE FROM {table} WHERE n = 0")
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
            "INSERT INTO catalog_purposes VALUES (?,?,?,?,?,?,?)",
            [
                (rid[r.id.hex], r.tenant, p, r.status, r.name, r.license, r.region)
                for r in rows
                for p in r.purposes
            ],
        )
        c.executemany(
            "INSERT INTO catalog_tags VALUES (?,?,?,?,?,?,?)",
            [
                (rid[r.id.hex], r.tenant, t, r.status, r.name, r.license, r.region)
                for r in rows
                for t in r.tags
            ],
        )
        c.executemany(
            "INSERT INTO catalog_lineage VALUES (?,?,?)",
            [(r.tenant, r.id.hex, u.hex) for r in rows for u in r.upstream],
        )

    def close(self) -> None:
        self.writer.close()

    def reset(self) -> None:
        with self.writer.transaction() as c:
            for table in (
                *FACET_TABLES,
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
        with self.datastore.transaction(commit=False) as c:
            lr, lrp = self._crosstabs(c, query, terms)
            facets, total = facets_from(lr, lrp, query)
            scope = _scope(query, terms, _driver(query, terms, lr, lrp))
            items, next_after = self._page(c, query, terms, scope)
        return CatalogPage(
            items=items, total=total, facets=facets, next_after=next_after
        )

    @staticmethod
    def _crosstabs(
        c: SQLiteCursor, query: CatalogQuery, terms: list[str]
    ) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, str, int]]]:
        """(license, region) and (license, region, purpose) counts of the scope."""
        if not terms:
            where, args = "tenant = ? AND tag = ?", [query.tenant, query.tag or ALL]
            if query.status != "any":
                where += " AND status = ?"
                args.append(query.status)
            c.execute(
                "SELECT license, region, sum(n) FROM catalog_facet_lr "
                f"WHERE {where} GROUP BY license, region",
                args,
            )
            lr = [tuple(r) for r in c.fetchall()]
            c.execute(
                "SELECT license, region, purpose, sum(n) FROM catalog_facet_lrp "
                f"WHERE {where} GROUP BY license, region, purpose",
                args,
            )
            return lr, [tuple(r) for r in c.fetchall()]
        scope = _scope(query, terms, "name")
        c.execute(
            f"SELECT d.license, d.region, d.purposes, count(*) {scope.source} "
            f"WHERE {scope.where} GROUP BY d.license, d.region, d.purposes",
            scope.params,
        )
        return crosstabs_from_rows(c.fetchall())

    @staticmethod
    def _page(
        c: SQLiteCursor, query: CatalogQuery, terms: list[str], scope: _Scope
    ) -> tuple[list[CatalogRow], tuple[Any, int] | None]:
        filters = _filters(query, skip_purpose=scope.driver == "purpose")
        where = scope.where + "".join(f" AND {sql}" for sql, _ in filters)
        args = [*scope.params, *(arg for _, arg in filters)]
        key = _SCORE if terms else "d.name"
        if query.after is not None:
            where += f" AND ({key}, d.rid) > (?, ?)"
            args += [query.after[0], query.after[1]]
        # Rank and sort only (key, rid) pairs; fetch the wide rows of the page after.
        c.execute(
            f"SELECT {_SELECT}, k.sort_key AS sort_key, k.rid AS rid FROM ("
            f"SELECT {key} AS sort_key, d.rid AS rid {scope.source} "
            f"WHERE {where} ORDER BY sort_key, d.rid LIMIT ?) AS k "
            "CROSS JOIN catalog_datasets d ON d.rid = k.rid "
            "ORDER BY k.sort_key, k.rid",
            [*args, query.limit + 1],
        )
        return page_from(c.fetchall(), query.limit)

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
    """FROM and WHERE of a search before facet filters: tenant, status, text, tag."""

    source: str
    where: str
    params: list[Any]
    driver: Driver


Driver = Literal["name", "tag", "purpose"]
DRIVER_MAX = 5000
"""Up to this many rows, a tag or purpose index drives a listing and the page
is sorted; beyond it, walking the name index and checking each row is cheaper."""


def _driver(
    query: CatalogQuery,
    terms: list[str],
    lr: list[tuple[str, str, int]],
    lrp: list[tuple[str, str, str, int]],
) -> Driver:
    """Which index should produce the rows of a listing (no text) page."""
    if terms:
        return "name"
    sizes: list[tuple[int, Driver]] = []
    if query.tag is not None:
        sizes.append((sum(n for *_, n in lr), "tag"))
    if query.purpose is not None:
        sizes.append((sum(n for *_, p, n in lrp if p == query.purpose), "purpose"))
    size, driver = min(sizes, default=(0, "name"))
    return driver if driver != "name" and size <= DRIVER_MAX else "name"


def _scope(query: CatalogQuery, terms: list[str], driver: Driver) -> _Scope:
    """Tenant, status, text and tag: what every facet count is restricted to.

    The tag is not a facet, so it narrows the scope. ``driver`` names the index
    that produces the rows (see DRIVER_MAX).
    """
    # The tag and purpose tables carry tenant, status, name, license, region
    # and rid under the same names, so they stand in for "d" as drivers.
    where = "d.tenant = ?"
    params: list[Any] = [query.tenant]
    source = "FROM catalog_datasets d"
    if driver == "tag":
        source = "FROM catalog_tags d"
        where += " AND d.tag = ?"
        params.append(query.tag)
    elif query.tag is not None:
        where += f" AND {_TAG_FILTER}"
        params.append(query.tag)
    if driver == "purpose":
        source = "FROM catalog_purposes d"
        where += " AND d.purpose = ?"
        params.append(query.purpose)
    if terms:
        # CROSS JOIN keeps the full-text match as the outer loop: left to
        # itself SQLite may drive from an index on d and re-run MATCH per row.
        source = (
            "FROM catalog_fts CROSS JOIN catalog_datasets d "
            "ON d.rid = catalog_fts.rowid"
        )
        where += " AND catalog_fts MATCH ?"
        params.append(fts_match(terms))
    if query.status != "any":
        where += " AND d.status = ?"
        params.append(query.status)
    return _Scope(source, where, params, driver)


_TAG_FILTER = (
    "EXISTS (SELECT 1 FROM catalog_tags ft WHERE ft.rid = d.rid AND ft.tag = ?)"
)


def _filters(query: CatalogQuery, *, skip_purpose: bool) -> list[tuple[str, Any]]:
    filters: list[tuple[str, Any]] = []
    if query.license is not None:
        filters.append(("d.license = ?", query.license))
    if query.region is not None:
        filters.append(("d.region = ?", query.region))
    if query.purpose is not None and not skip_purpose:
        filters.append(
            (
                "EXISTS (SELECT 1 FROM catalog_purposes fp "
                "WHERE fp.rid = d.rid AND fp.purpose = ?)",
                query.purpose,
            )
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
