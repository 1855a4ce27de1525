"""The ER read model on SQLite and PostgreSQL (plain SQL both speak)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from adapters.sql.plain_view import PostgresSqlView, SQLiteSqlView, SqlView
from projections.er import ErView, JobRow, ResolutionRow

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from eventsourcing.persistence import Tracking

JOBS = "er_jobs_view"
JOB_COLUMNS = (
    "id", "tenant", "entity_set", "status", "records", "embedded", "forced",
    "run_after", "attempt", "failure", "vectors_sha256", "created", "position",
)  # fmt: skip
LOCATIONS = "er_job_locations"
"""Each job's data-root file, for catalog coverage only (no list shows it); a
table of its own, so views built before it need no migration: their jobs have
no row here until `conductor projections rebuild er`."""
RESOLUTIONS = "er_resolutions_view"
RESOLUTION_COLUMNS = (
    "id", "tenant", "entity_set", "records", "candidate_pairs", "proposed",
    "decided", "merged", "gate_digest", "created", "position",
)  # fmt: skip
INTEGERS = {
    "records", "embedded", "forced", "attempt", "created", "position",
    "candidate_pairs", "proposed", "decided", "merged",
}  # fmt: skip


def _table(name: str, columns: Sequence[str]) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {name} ("
        + ", ".join(
            f"{c} {'BIGINT' if c in INTEGERS else 'TEXT'} NOT NULL"
            + (" PRIMARY KEY" if c == "id" else "")
            for c in columns
        )
        + ")"
    )


TABLES = (
    _table(JOBS, JOB_COLUMNS),
    f"CREATE TABLE IF NOT EXISTS {LOCATIONS} (id TEXT NOT NULL PRIMARY KEY, "
    "tenant TEXT NOT NULL, location TEXT NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS er_job_locations_by_tenant "
    f"ON {LOCATIONS} (tenant, location)",
    _table(RESOLUTIONS, RESOLUTION_COLUMNS),
    # The lists: a tenant's rows newest first, optionally of one entity set.
    f"CREATE INDEX IF NOT EXISTS er_jobs_by_tenant ON {JOBS} (tenant, created)",
    "CREATE INDEX IF NOT EXISTS er_jobs_by_set "
    f"ON {JOBS} (tenant, entity_set, created)",
    "CREATE INDEX IF NOT EXISTS er_resolutions_by_tenant "
    f"ON {RESOLUTIONS} (tenant, created)",
    "CREATE INDEX IF NOT EXISTS er_resolutions_by_set "
    f"ON {RESOLUTIONS} (tenant, entity_set, created)",
)


def _job_params(row: JobRow) -> tuple[Any, ...]:
    return (
        str(row.id),
        row.tenant,
        row.entity_set,
        row.status,
        row.records,
        row.embedded,
        int(row.forced),
        row.run_after.isoformat(),
        row.attempt,
        row.failure,
        row.vectors_sha256,
        row.created,
        row.position,
    )


def _job(record: Any) -> JobRow:
    return JobRow(
        id=UUID(record["id"]),
        tenant=record["tenant"],
        entity_set=record["entity_set"],
        status=record["status"],
        records=int(record["records"]),
        embedded=int(record["embedded"]),
        forced=bool(record["forced"]),
        run_after=datetime.fromisoformat(record["run_after"]),
        attempt=int(record["attempt"]),
        failure=record["failure"],
        vectors_sha256=record["vectors_sha256"],
        created=int(record["created"]),
        position=int(record["position"]),
    )


def _resolution_params(row: ResolutionRow) -> tuple[Any, ...]:
    return (
        str(row.id),
        row.tenant,
        row.entity_set,
        row.records,
        row.candidate_pairs,
        row.proposed,
        row.decided,
        row.merged,
        row.gate_digest,
        row.created,
        row.position,
    )


def _resolution(record: Any) -> ResolutionRow:
    return ResolutionRow(
        id=UUID(record["id"]),
        tenant=record["tenant"],
        entity_set=record["entity_set"],
        records=int(record["records"]),
        candidate_pairs=int(record["candidate_pairs"]),
        proposed=int(record["proposed"]),
        decided=int(record["decided"]),
        merged=int(record["merged"]),
        gate_digest=record["gate_digest"],
        created=int(record["created"]),
        position=int(record["position"]),
    )


def _upsert(table: str, columns: Sequence[str]) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))}) ON CONFLICT (id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id")
    )


def _page(
    tenant: str, filters: dict[str, str | None], before: int | None
) -> tuple[str, list[Any]]:
    """The WHERE clause of a list: always the tenant's rows only."""
    where: list[str] = ["tenant = ?"]
    args: list[Any] = [tenant]
    for column, value in filters.items():
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if before is not None:
        where.append("created < ?")
        args.append(before)
    return " AND ".join(where), args


class _ErSQL(SqlView, ErView):
    """The queries (the backend bases supply the transactions)."""

    def load_jobs(self, ids: Sequence[UUID]) -> dict[UUID, JobRow]:
        return {r.id: r for r in map(_job, self._load(JOBS, ids))}

    def job_locations(self, tenant: str) -> list[str]:
        with self._reading() as c:
            c.execute(
                self._sql(
                    f"SELECT DISTINCT location FROM {LOCATIONS} WHERE tenant = ? "
                    "ORDER BY location"
                ),
                (tenant,),
            )
            return [r["location"] for r in c.fetchall()]

    def load_resolutions(self, ids: Sequence[UUID]) -> dict[UUID, ResolutionRow]:
        return {r.id: r for r in map(_resolution, self._load(RESOLUTIONS, ids))}

    def _load(self, table: str, ids: Sequence[UUID]) -> list[Any]:
        marks = ",".join("?" * len(ids))
        with self._reading() as c:
            c.execute(
                self._sql(f"SELECT * FROM {table} WHERE id IN ({marks})"),
                [str(i) for i in ids],
            )
            return list(c.fetchall())

    def write_batch(
        self,
        jobs: Sequence[JobRow],
        resolutions: Sequence[ResolutionRow],
        tracking: Tracking,
        locations: Mapping[UUID, tuple[str, str]] | None = None,
    ) -> None:
        with self._writing() as c:
            if jobs:
                c.executemany(
                    self._sql(_upsert(JOBS, JOB_COLUMNS)),
                    [_job_params(r) for r in jobs],
                )
            if locations:
                c.executemany(
                    self._sql(
                        f"INSERT INTO {LOCATIONS} VALUES (?, ?, ?) "
                        "ON CONFLICT (id) DO NOTHING"
                    ),
                    [(str(i), *where) for i, where in locations.items()],
                )
            if resolutions:
                c.executemany(
                    self._sql(_upsert(RESOLUTIONS, RESOLUTION_COLUMNS)),
                    [_resolution_params(r) for r in resolutions],
                )
            self._insert_tracking(c, tracking)  # type: ignore[attr-defined]

    def list_jobs(
        self,
        tenant: str,
        *,
        status: str | None,
        entity_set: str | None,
        before: int | None,
        limit: int,
    ) -> list[JobRow]:
        filters = {"status": status, "entity_set": entity_set}
        return [_job(r) for r in self._list(JOBS, tenant, filters, before, limit)]

    def list_resolutions(
        self,
        tenant: str,
        *,
        entity_set: str | None,
        before: int | None,
        limit: int,
    ) -> list[ResolutionRow]:
        filters = {"entity_set": entity_set}
        rows = self._list(RESOLUTIONS, tenant, filters, before, limit)
        return [_resolution(r) for r in rows]

    def _list(
        self,
        table: str,
        tenant: str,
        filters: dict[str, str | None],
        before: int | None,
        limit: int,
    ) -> list[Any]:
        where, args = _page(tenant, filters, before)
        with self._reading() as c:
            c.execute(
                self._sql(
                    f"SELECT * FROM {table} WHERE {where} ORDER BY created DESC LIMIT ?"
                ),
                [*args, limit],
            )
            return list(c.fetchall())

    view_rows = (JOBS, LOCATIONS, RESOLUTIONS)


class SQLiteErView(SQLiteSqlView, _ErSQL):
    """ER read model in the event log's SQLite file."""

    tracking_table = "er_tracking"

    def view_tables(self) -> list[str]:
        return list(TABLES)


class PostgresErView(PostgresSqlView, _ErSQL):
    """ER read model in the event log's PostgreSQL database."""

    tracking_table = "er_tracking"

    def view_tables(self) -> list[str]:
        return list(TABLES)
