"""The exports read model on SQLite and PostgreSQL (plain SQL both speak)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from adapters.sql.plain_view import PostgresSqlView, SQLiteSqlView, SqlView
from projections.exports import READ_STATUSES, ExportRow, ExportsView

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import Tracking

COLUMNS = (
    "id", "tenant", "dataset_id", "dataset_version", "status", "preset", "purpose",
    "destination_region", "requester", "allow", "reasons", "policy_digest",
    "input_digest", "content_sha256", "rows", "bytes", "manifest_sha256", "key_id",
    "failure", "created_at", "updated_at", "position",
)  # fmt: skip
INTEGERS = {"dataset_version", "allow", "rows", "bytes", "position"}
TABLE = (
    "CREATE TABLE IF NOT EXISTS exports_view ("
    + ", ".join(
        f"{c} {'BIGINT' if c in INTEGERS else 'TEXT'} NOT NULL"
        + (" PRIMARY KEY" if c == "id" else "")
        for c in COLUMNS
    )
    + ")"
)
DETAIL_TABLE = (
    "CREATE TABLE IF NOT EXISTS exports_view_detail ("
    "id TEXT NOT NULL PRIMARY KEY, detail TEXT NOT NULL)"
)
"""Each decision's platform-floor and review detail, the delivered file's name
and a failure's detail, beside its row (a table of its own, so read models
built before the floor need no migration: an export without a detail row
predates the floor, which is what it says)."""
SELECT = (
    "SELECT e.*, d.detail FROM exports_view e "
    "LEFT JOIN exports_view_detail d ON d.id = e.id "
)
INDEXES = (
    "CREATE INDEX IF NOT EXISTS exports_by_tenant "
    "ON exports_view (tenant, created_at, id)",
    "CREATE INDEX IF NOT EXISTS exports_by_status ON exports_view (status)",
)


def _params(row: ExportRow) -> tuple[Any, ...]:
    return (
        str(row.id),
        row.tenant,
        str(row.dataset_id),
        row.dataset_version,
        row.status,
        row.preset,
        row.purpose,
        row.destination_region,
        row.requester,
        int(row.allow),
        msgspec.json.encode(row.reasons).decode(),
        row.policy_digest,
        row.input_digest,
        row.content_sha256,
        row.rows,
        row.bytes,
        row.manifest_sha256,
        row.key_id,
        row.failure,
        row.created_at.isoformat(),
        row.updated_at.isoformat(),
        row.position,
    )


def _detail(row: ExportRow) -> str:
    return msgspec.json.encode(
        {
            "floor": row.floor_digest,
            "floorReasons": row.floor_reasons,
            "tenantReasons": row.policy_reasons,
            "limit": row.limit,
            "review": row.review,
            "file": row.file_name,
            "failureDetail": row.failure_detail,
        }
    ).decode()


def _row(record: Any) -> ExportRow:
    detail = msgspec.json.decode(record["detail"] or "{}")
    review = detail.get("review")
    return ExportRow(
        id=UUID(record["id"]),
        tenant=record["tenant"],
        dataset_id=UUID(record["dataset_id"]),
        dataset_version=int(record["dataset_version"]),
        status=record["status"],
        preset=record["preset"],
        purpose=record["purpose"],
        destination_region=record["destination_region"],
        requester=record["requester"],
        allow=bool(record["allow"]),
        reasons=tuple(msgspec.json.decode(record["reasons"])),
        policy_digest=record["policy_digest"],
        input_digest=record["input_digest"],
        content_sha256=record["content_sha256"],
        rows=int(record["rows"]),
        bytes=int(record["bytes"]),
        manifest_sha256=record["manifest_sha256"],
        key_id=record["key_id"],
        failure=record["failure"],
        created_at=datetime.fromisoformat(record["created_at"]),
        updated_at=datetime.fromisoformat(record["updated_at"]),
        position=int(record["position"]),
        floor_digest=detail.get("floor", ""),
        floor_reasons=tuple(detail.get("floorReasons", ())),
        policy_reasons=tuple(detail.get("tenantReasons", ())),
        limit=detail.get("limit", ""),
        review=None if review is None else (bool(review[0]), review[1], review[2]),
        file_name=detail.get("file", ""),
        failure_detail=detail.get("failureDetail", ""),
    )


class _ExportsSQL(SqlView, ExportsView):
    """The queries (the backend bases supply the transactions)."""

    def load_rows(self, ids: Sequence[UUID]) -> dict[UUID, ExportRow]:
        marks = ",".join("?" * len(ids))
        with self._reading() as c:
            c.execute(
                self._sql(f"{SELECT}WHERE e.id IN ({marks})"),
                [str(i) for i in ids],
            )
            return {r.id: r for r in map(_row, c.fetchall())}

    def write_batch(self, rows: Sequence[ExportRow], tracking: Tracking) -> None:
        upsert = self._sql(
            f"INSERT INTO exports_view ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(COLUMNS))}) ON CONFLICT (id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "id")
        )
        detail = self._sql(
            "INSERT INTO exports_view_detail (id, detail) VALUES (?, ?) "
            "ON CONFLICT (id) DO UPDATE SET detail = excluded.detail"
        )
        with self._writing() as c:
            if rows:
                c.executemany(upsert, [_params(r) for r in rows])
                c.executemany(detail, [(str(r.id), _detail(r)) for r in rows])
            self._insert_tracking(c, tracking)  # type: ignore[attr-defined]

    def list_exports(
        self,
        tenant: str,
        *,
        status: str | None,
        dataset_id: UUID | None,
        after: tuple[str, str] | None,
        limit: int,
    ) -> list[ExportRow]:
        where, args = ["e.tenant = ?"], [tenant]
        if status is not None:
            where.append("e.status = ?")
            args.append(status)
        if dataset_id is not None:
            where.append("e.dataset_id = ?")
            args.append(str(dataset_id))
        if after is not None:
            where.append("(e.created_at < ? OR (e.created_at = ? AND e.id < ?))")
            args += [after[0], after[0], after[1]]
        with self._reading() as c:
            c.execute(
                self._sql(
                    f"{SELECT}WHERE {' AND '.join(where)} "
                    "ORDER BY e.created_at DESC, e.id DESC LIMIT ?"
                ),
                [*args, limit],
            )
            return [_row(r) for r in c.fetchall()]

    def exports_of(
        self,
        tenant: str,
        dataset_ids: Sequence[UUID],
        *,
        status: str | None,
        limit: int,
    ) -> dict[UUID, list[ExportRow]]:
        found: dict[UUID, list[ExportRow]] = {}
        if not dataset_ids:
            return found
        where = [
            "e.tenant = ?",
            f"e.dataset_id IN ({','.join('?' * len(dataset_ids))})",
        ]
        args: list[Any] = [tenant, *(str(i) for i in dataset_ids)]
        if status is not None:
            where.append("e.status = ?")
            args.append(status)
        with self._reading() as c:
            c.execute(
                self._sql(
                    "SELECT * FROM (SELECT e.*, d.detail, ROW_NUMBER() OVER ("
                    "PARTITION BY e.dataset_id ORDER BY e.created_at DESC, e.id DESC"
                    ") AS newest FROM exports_view e "
                    "LEFT JOIN exports_view_detail d ON d.id = e.id "
                    f"WHERE {' AND '.join(where)}) ranked WHERE newest <= ? "
                    "ORDER BY dataset_id, newest"
                ),
                [*args, limit],
            )
            for row in map(_row, c.fetchall()):
                found.setdefault(row.dataset_id, []).append(row)
        return found

    def exported_datasets(self, tenant: str) -> list[UUID]:
        with self._reading() as c:
            c.execute(
                self._sql(
                    "SELECT DISTINCT dataset_id FROM exports_view WHERE tenant = ? "
                    f"AND status IN ({', '.join(repr(s) for s in READ_STATUSES)}) "
                    "ORDER BY dataset_id"
                ),
                (tenant,),
            )
            return [UUID(r["dataset_id"]) for r in c.fetchall()]

    def pending(self) -> list[ExportRow]:
        with self._reading() as c:
            c.execute(f"{SELECT}WHERE e.status = 'allowed'")
            return [_row(r) for r in c.fetchall()]

    view_rows = ("exports_view", "exports_view_detail")


class SQLiteExportsView(SQLiteSqlView, _ExportsSQL):
    """Exports read model in the event log's SQLite file."""

    tracking_table = "exports_tracking"

    def view_tables(self) -> list[str]:
        return [TABLE, DETAIL_TABLE, *INDEXES]


class PostgresExportsView(PostgresSqlView, _ExportsSQL):
    """Exports read model in the event log's PostgreSQL database."""

    tracking_table = "exports_tracking"

    def view_tables(self) -> list[str]:
        return [TABLE, DETAIL_TABLE, *INDEXES]
