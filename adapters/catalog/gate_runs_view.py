"""The gate runs read model on SQLite and PostgreSQL (plain SQL both speak)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from adapters.sql.plain_view import PostgresSqlView, SQLiteSqlView, SqlView
from projections.gate_runs import GateRunsView, RepoUse

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import Tracking

COLUMNS = ("tenant", "repo", "run_id", "commit_sha", "position", "datasets", "failing")
TABLES = [
    "CREATE TABLE IF NOT EXISTS gate_runs_view ("
    "tenant TEXT NOT NULL, repo TEXT NOT NULL, run_id TEXT NOT NULL, "
    "commit_sha TEXT NOT NULL, position BIGINT NOT NULL, datasets TEXT NOT NULL, "
    "failing TEXT NOT NULL, PRIMARY KEY (tenant, repo))",
]
UPSERT = (
    f"INSERT INTO gate_runs_view ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(COLUMNS))}) ON CONFLICT (tenant, repo) "
    "DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[2:])
    + " WHERE excluded.position > gate_runs_view.position"
)
"""A replayed or older run never replaces a newer one (exactly-once anyway)."""


def _params(use: RepoUse) -> tuple[Any, ...]:
    return (
        use.tenant,
        use.repo,
        str(use.run_id),
        use.commit,
        use.position,
        msgspec.json.encode(use.datasets).decode(),
        msgspec.json.encode(use.failing).decode(),
    )


def _use(record: Any) -> RepoUse:
    return RepoUse(
        tenant=record["tenant"],
        repo=record["repo"],
        run_id=UUID(record["run_id"]),
        commit=record["commit_sha"],
        position=int(record["position"]),
        datasets=tuple(msgspec.json.decode(record["datasets"])),
        failing=tuple(msgspec.json.decode(record["failing"])),
    )


class _GateRunsSQL(SqlView, GateRunsView):
    """The queries (the backend bases supply the transactions)."""

    def write_batch(self, uses: Sequence[RepoUse], tracking: Tracking) -> None:
        with self._writing() as c:
            if uses:
                c.executemany(self._sql(UPSERT), [_params(u) for u in uses])
            self._insert_tracking(c, tracking)  # type: ignore[attr-defined]

    def repo_uses(self, tenant: str) -> list[RepoUse]:
        with self._reading() as c:
            c.execute(
                self._sql(
                    "SELECT * FROM gate_runs_view WHERE tenant = ? ORDER BY repo"
                ),
                (tenant,),
            )
            return [_use(r) for r in c.fetchall()]

    def tenants(self) -> list[str]:
        with self._reading() as c:
            c.execute("SELECT DISTINCT tenant FROM gate_runs_view ORDER BY tenant")
            return [r["tenant"] for r in c.fetchall()]

    view_rows = ("gate_runs_view",)


class SQLiteGateRunsView(SQLiteSqlView, _GateRunsSQL):
    """Gate runs read model in the event log's SQLite file."""

    tracking_table = "gate_runs_tracking"

    def view_tables(self) -> list[str]:
        return list(TABLES)


class PostgresGateRunsView(PostgresSqlView, _GateRunsSQL):
    """Gate runs read model in the event log's PostgreSQL database."""

    tracking_table = "gate_runs_tracking"

    def view_tables(self) -> list[str]:
        return list(TABLES)
