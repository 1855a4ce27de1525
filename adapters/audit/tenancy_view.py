"""The tenancy read model on SQLite and PostgreSQL (plain SQL both speak)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from adapters.sql.plain_view import PostgresSqlView, SQLiteSqlView, SqlView
from projections.tenancy import PUBLIC, TenancyChanges, TenancyView

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import Tracking

TABLES = [
    # The primary key serves the slice query: one index range per audience.
    "CREATE TABLE IF NOT EXISTS tenancy_slice (audience TEXT NOT NULL, "
    "position BIGINT NOT NULL, PRIMARY KEY (audience, position))",
    "CREATE TABLE IF NOT EXISTS tenancy_owners ("
    "originator_id TEXT PRIMARY KEY, tenant TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tenancy_policies ("
    "digest TEXT PRIMARY KEY, position BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tenancy_bindings (digest TEXT NOT NULL, "
    "tenant TEXT NOT NULL, PRIMARY KEY (digest, tenant))",
]
# Each audience's rows come off its own index range, at most ``limit`` of
# them, and are merged: an IN over both would sort the whole slice first.
_SLICE = (
    "SELECT position FROM (SELECT position FROM tenancy_slice WHERE audience = ? "
    "AND position > ? AND position <= ? ORDER BY position LIMIT ?) AS own "
    "UNION SELECT position FROM (SELECT position FROM tenancy_slice "
    "WHERE audience = ? AND position > ? AND position <= ? ORDER BY position "
    "LIMIT ?) AS shared ORDER BY position LIMIT ?"
)


class _TenancySQL(SqlView, TenancyView):
    """The queries (the backend bases supply the transactions)."""

    def slice(self, tenant: str, *, after: int, until: int, limit: int) -> list[int]:
        window = (after, until, limit)
        with self._reading() as c:
            c.execute(self._sql(_SLICE), (tenant, *window, PUBLIC, *window, limit))
            return [int(r["position"]) for r in c.fetchall()]

    def visible(self, tenant: str, position: int) -> bool:
        with self._reading() as c:
            c.execute(
                self._sql(
                    "SELECT 1 AS seen FROM tenancy_slice "
                    "WHERE audience IN (?, ?) AND position = ?"
                ),
                (tenant, PUBLIC, position),
            )
            return c.fetchone() is not None

    def owners(self, ids: Sequence[UUID]) -> dict[UUID, str]:
        rows = self._select_in("originator_id, tenant", "tenancy_owners", ids)
        return {UUID(r["originator_id"]): str(r["tenant"]) for r in rows}

    def policies(self, digests: Sequence[str]) -> dict[str, int]:
        rows = self._select_in("digest, position", "tenancy_policies", digests)
        return {str(r["digest"]): int(r["position"]) for r in rows}

    def binders(self, digests: Sequence[str]) -> set[tuple[str, str]]:
        rows = self._select_in("digest, tenant", "tenancy_bindings", digests)
        return {(str(r["digest"]), str(r["tenant"])) for r in rows}

    def _select_in(self, columns: str, table: str, keys: Sequence[Any]) -> list[Any]:
        key = columns.partition(",")[0]
        marks = ",".join("?" * len(keys))
        with self._reading() as c:
            c.execute(
                self._sql(f"SELECT {columns} FROM {table} WHERE {key} IN ({marks})"),
                [str(k) for k in keys],
            )
            return list(c.fetchall())

    def apply(self, changes: TenancyChanges, tracking: Tracking) -> None:
        writes = [
            ("tenancy_slice (audience, position)", sorted(changes.rows)),
            (
                "tenancy_owners (originator_id, tenant)",
                [(str(k), v) for k, v in changes.owners.items()],
            ),
            ("tenancy_policies (digest, position)", sorted(changes.policies.items())),
            ("tenancy_bindings (digest, tenant)", sorted(changes.bindings)),
        ]
        with self._writing() as c:
            for target, rows in writes:
                if rows:
                    # A batch redone after a lost commit finds its rows there.
                    c.executemany(
                        self._sql(
                            f"INSERT INTO {target} VALUES (?, ?) ON CONFLICT DO NOTHING"
                        ),
                        rows,
                    )
            self._insert_tracking(c, tracking)  # type: ignore[attr-defined]

    view_rows = (
        "tenancy_slice",
        "tenancy_owners",
        "tenancy_policies",
        "tenancy_bindings",
    )


class SQLiteTenancyView(SQLiteSqlView, _TenancySQL):
    """Tenancy read model in the event log's SQLite file."""

    tracking_table = "tenancy_tracking"

    def view_tables(self) -> list[str]:
        return list(TABLES)


class PostgresTenancyView(PostgresSqlView, _TenancySQL):
    """Tenancy read model in the event log's PostgreSQL database."""

    tracking_table = "tenancy_tracking"

    def view_tables(self) -> list[str]:
        return list(TABLES)
