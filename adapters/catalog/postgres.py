"""The catalog view on PostgreSQL: rows, tsvector + GIN, facet tables, lineage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.sql import SQL, Identifier

from adapters.catalog.sql import (
    ACTIVE_EDGES,
    ALL,
    CELL_COLUMNS,
    FACET_TABLES,
    ROW_COLUMNS,
    crosstabs_from_rows,
    facet_deltas,
    facets_from,
    page_from,
    row_from,
    row_params,
    search_terms,
    search_text,
    ts_query,
    unmatchable,
    words,
)
from adapters.sql.pg_schema import schema_lock
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
    from psycopg import Cursor
    from psycopg.rows import DictRow

_COLS = list(ROW_COLUMNS)
_SELECT = ", ".join(f"d.{c}" for c in _COLS)
_INT_COLUMNS = {"version": "int", "position": "bigint"}
# Arrays travel in binary (%b): psycopg's text-format array dumper escapes each
# element with a regex, several times slower.
_UNNEST = ", ".join(f"%b::{_INT_COLUMNS.get(c, 'text')}[]" for c in _COLS)
# One statement per batch: every column travels as an array and is unnested.
_UPSERT = (
    f"INSERT INTO catalog_datasets ({', '.join(_COLS)}, search) "
    f"SELECT {', '.join(f'u.{c}' for c in _COLS)}, "
    "setweight(to_tsvector('simple', u.s_name), 'A') || "
    "setweight(to_tsvector('simple', u.s_tags), 'B') || "
    "setweight(to_tsvector('simple', u.s_columns), 'B') || "
    "setweight(to_tsvector('simple', u.s_description), 'C') "
    f"FROM unnest({_UNNEST}, %b::text[], %b::text[], %b::text[], %b::text[]) "
    f"AS u({', '.join(_COLS)}, s_name, s_description, s_tags, s_columns) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c}=excluded.{c}" for c in [*_COLS, "search"] if c != "id")
)


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
                "position bigint NOT NULL, search tsvector NOT NULL)",
                "CREATE INDEX IF NOT EXISTS catalog_search "
                "ON catalog_datasets USING GIN (search)",
                # Listings sort by name COLLATE "C" (byte order, as SQLite does),
                # so the index must be built in that collation to serve them.
                "CREATE INDEX IF NOT EXISTS catalog_by_name "
                'ON catalog_datasets (tenant, status, (name COLLATE "C"), rid)',
                "CREATE INDEX IF NOT EXISTS catalog_by_license "
                "ON catalog_datasets (tenant, status, license, name, rid)",
                "CREATE INDEX IF NOT EXISTS catalog_by_region "
                "ON catalog_datasets (tenant, status, region, name, rid)",
                "CREATE TABLE IF NOT EXISTS catalog_facet_lr ("
                "tenant text NOT NULL, status text NOT NULL, tag text NOT NULL, "
                "license text NOT NULL, region text NOT NULL, n bigint NOT NULL, "
                "PRIMARY KEY (tenant, status, tag, license, region))",
                "CREATE TABLE IF NOT EXISTS catalog_facet_lrp ("
                "tenant text NOT NULL, status text NOT NULL, tag text NOT NULL, "
                "license text NOT NULL, region text NOT NULL, "
                "purpose text NOT NULL, n bigint NOT NULL, "
                "PRIMARY KEY (tenant, status, tag, license, region, purpose))",
                "CREATE TABLE IF NOT EXISTS catalog_purposes (rid bigint NOT NULL, "
                "tenant text NOT NULL, purpose text NOT NULL, "
                "PRIMARY KEY (rid, purpose))",
                "CREATE INDEX IF NOT EXISTS catalog_purposes_by_value "
                "ON catalog_purposes (tenant, purpose, rid)",
                "CREATE TABLE IF NOT EXISTS catalog_tags (rid bigint NOT NULL, "
                "tenant text NOT NULL, tag text NOT NULL, PRIMARY KEY (rid, tag))",
                "CREATE INDEX IF NOT EXISTS catalog_tags_by_value "
                "ON catalog_tags (tenant, tag, rid)",
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
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT {_SELECT} FROM catalog_datasets d WHERE d.id = ANY(%b)",
                ([i.hex for i in ids],),
            )
            rows = (row_from(r) for r in curs.fetchall())
            return {r.id: r for r in rows}

    def write_batch(self, rows: Sequence[CatalogRow], tracking: Tracking) -> None:
        # Pipelined: statements are sent without waiting for each answer; only
        # reading a result (old cells, new rids, the tracking check) waits.
        with (
            self.datastore.get_connection() as conn,
            conn.pipeline(),
            conn.transaction(),
            conn.cursor() as curs,
            conn.cursor() as old_curs,
        ):
            if rows:
                old_curs.execute(
                    f"SELECT {CELL_COLUMNS} FROM catalog_datasets WHERE id = ANY(%b)",
                    ([r.id.hex for r in rows],),
                )
                self._write_rows(curs, rows)  # old cells: queued before, read after
                old = [tuple(r.values()) for r in old_curs.fetchall()]
                lr, lrp = facet_deltas(old, rows)
                curs.execute(
                    "INSERT INTO catalog_facet_lr AS f SELECT * FROM unnest("
                    "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
                    "%b::bigint[]) ON CONFLICT (tenant, status, tag, license, region) "
                    "DO UPDATE SET n = f.n + excluded.n",
                    _columns(lr, 6),
                )
                curs.execute(
                    "INSERT INTO catalog_facet_lrp AS f SELECT * FROM unnest("
                    "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
                    "%b::text[], %b::bigint[]) "
                    "ON CONFLICT (tenant, status, tag, license, region, purpose) "
                    "DO UPDATE SET n = f.n + excluded.n",
                    _columns(lrp, 7),
                )
                for table in FACET_TABLES:
                    curs.execute(f"DELETE FROM {table} WHERE n = 0")
            self._insert_tracking(curs, tracking)

    def _write_rows(self, curs: Cursor[DictRow], rows: Sequence[CatalogRow]) -> None:
        values = []
        for r in rows:
            p = row_params(r)
            # PostgreSQL's parser keeps "ds-03" whole and reads "-03" as a number;
            # split text the way queries are split so both sides agree.
            values.append((*(p[c] for c in _COLS), *(words(t) for t in search_text(r))))
        curs.execute(_UPSERT, _columns(values, len(_COLS) + 4))
        hex_ids = [r.id.hex for r in rows]
        curs.execute(
            "SELECT id, rid FROM catalog_datasets WHERE id = ANY(%b)", (hex_ids,)
        )
        rid = {r["id"]: r["rid"] for r in curs.fetchall()}
        rids = [rid[h] for h in hex_ids]
        curs.execute("DELETE FROM catalog_purposes WHERE rid = ANY(%b)", (rids,))
        curs.execute("DELETE FROM catalog_tags WHERE rid = ANY(%b)", (rids,))
        curs.execute(
            "DELETE FROM catalog_lineage WHERE downstream = ANY(%b)", (hex_ids,)
        )
        purpose_rows = [(rid[r.id.hex], r.tenant, p) for r in rows for p in r.purposes]
        tag_rows = [(rid[r.id.hex], r.tenant, t) for r in rows for t in r.tags]
        edges = [(r.tenant, r.id.hex, u.hex) for r in rows for u in r.upstream]
        for table, table_rows in (
            ("catalog_purposes", purpose_rows),
            ("catalog_tags", tag_rows),
        ):
            if table_rows:
                curs.execute(
                    f"INSERT INTO {table} SELECT * FROM "
                    "unnest(%b::bigint[], %b::text[], %b::text[])",
                    _columns(table_rows, 3),
                )
        if edges:
            curs.execute(
                "INSERT INTO catalog_lineage SELECT * FROM "
                "unnest(%b::text[], %b::text[], %b::text[])",
                _columns(edges, 3),
            )

    def reset(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "TRUNCATE catalog_datasets, catalog_purposes, catalog_tags, "
                "catalog_lineage, catalog_facet_lr, catalog_facet_lrp RESTART IDENTITY"
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
        terms = search_terms(query.q)
        if (query.q.strip() and not terms) or unmatchable(query):
            return CatalogPage(items=[], total=0, facets={}, next_after=None)
        scope = _scope(query, terms)
        with self.datastore.transaction(commit=False) as curs:
            facets, total = facets_from(*_crosstabs(curs, query, terms, scope), query)
            items, next_after = _page(curs, query, terms, scope)
        return CatalogPage(
            items=items, total=total, facets=facets, next_after=next_after
        )

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


@dataclass(frozen=True)
class _Scope:
    """WHERE of a search before facet filters: tenant, status, full text."""

    where: str
    params: list[Any]
    tsquery: str | None


def _scope(query: CatalogQuery, terms: list[str]) -> _Scope:
    where = "d.tenant = %s"
    params: list[Any] = [query.tenant]
    tsquery = None
    if terms:
        tsquery = ts_query(terms)
        where += " AND d.search @@ to_tsquery('simple', %s)"
        params.append(tsquery)
    if query.status != "any":
        where += " AND d.status = %s"
        params.append(query.status)
    return _Scope(where, params, tsquery)


_TAG_FILTER = (
    "EXISTS (SELECT 1 FROM catalog_tags ft WHERE ft.rid = d.rid AND ft.tag = %s)"
)


def _filters(query: CatalogQuery) -> list[tuple[str, Any]]:
    filters: list[tuple[str, Any]] = []
    if query.license is not None:
        filters.append(("d.license = %s", query.license))
    if query.region is not None:
        filters.append(("d.region = %s", query.region))
    if query.purpose is not None:
        filters.append(
            (
                "EXISTS (SELECT 1 FROM catalog_purposes fp "
                "WHERE fp.rid = d.rid AND fp.purpose = %s)",
                query.purpose,
            )
        )
    if query.tag is not None:
        filters.append((_TAG_FILTER, query.tag))
    return filters


def _crosstabs(
    curs: Cursor[DictRow], query: CatalogQuery, terms: list[str], scope: _Scope
) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, str, int]]]:
    """(license, region) and (license, region, purpose) counts of the scope."""
    if not terms:
        where, args = "tenant = %s AND tag = %s", [query.tenant, query.tag or ALL]
        if query.status != "any":
            where += " AND status = %s"
            args.append(query.status)
        curs.execute(
            "SELECT license, region, sum(n) AS n FROM catalog_facet_lr "
            f"WHERE {where} GROUP BY license, region",
            args,
        )
        lr = [(r["license"], r["region"], int(r["n"])) for r in curs.fetchall()]
        curs.execute(
            "SELECT license, region, purpose, sum(n) AS n FROM catalog_facet_lrp "
            f"WHERE {where} GROUP BY license, region, purpose",
            args,
        )
        lrp = [
            (r["license"], r["region"], r["purpose"], int(r["n"]))
            for r in curs.fetchall()
        ]
        return lr, lrp
    where, args = scope.where, list(scope.params)
    if query.tag is not None:
        where += f" AND {_TAG_FILTER}"
        args.append(query.tag)
    curs.execute(
        "SELECT d.license, d.region, d.purposes, count(*) AS n "
        f"FROM catalog_datasets d WHERE {where} "
        "GROUP BY d.license, d.region, d.purposes",
        args,
    )
    return crosstabs_from_rows(
        (r["license"], r["region"], r["purposes"], int(r["n"])) for r in curs.fetchall()
    )


def _page(
    curs: Cursor[DictRow],
    query: CatalogQuery,
    terms: list[str],
    scope: _Scope,
) -> tuple[list[CatalogRow], tuple[Any, int] | None]:
    filters = _filters(query)
    where = scope.where + "".join(f" AND {sql}" for sql, _ in filters)
    args = [*scope.params, *(arg for _, arg in filters)]
    if terms:
        key = "(-ts_rank(d.search, to_tsquery('simple', %s)))::float8"
        key_args: list[Any] = [scope.tsquery]
    else:
        key = 'd.name COLLATE "C"'
        key_args = []
    if query.after is not None:
        where += f" AND ({key}, d.rid) > (%s, %s)"
        args += [*key_args, query.after[0], query.after[1]]
    curs.execute(
        f"SELECT {_SELECT}, {key} AS sort_key, d.rid AS rid "
        f"FROM catalog_datasets d WHERE {where} ORDER BY sort_key, d.rid LIMIT %s",
        [*key_args, *args, query.limit + 1],
    )
    return page_from(curs.fetchall(), query.limit)
