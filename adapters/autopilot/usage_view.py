"""The usage read model on SQLite and PostgreSQL (plain SQL both speak)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from adapters.sql.plain_view import PostgresSqlView, SQLiteSqlView, SqlView
from domain.autopilot.usage import BUCKETS, BudgetRow, Counts
from projections.usage import UsageChanges, UsageView

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import Tracking

    from adapters.ledger.store import Ledger

HIST = tuple(f"h{i}" for i in range(BUCKETS))
SUMMED = ("requests", "errors", "throttled", *HIST)


def _tables(real: str) -> list[str]:
    return [
        "CREATE TABLE IF NOT EXISTS usage_minutes ("
        "tenant TEXT NOT NULL, minute BIGINT NOT NULL, route_class TEXT NOT NULL, "
        + "".join(f"{c} BIGINT NOT NULL, " for c in SUMMED)
        + f"units {real} NOT NULL, PRIMARY KEY (tenant, minute, route_class))",
        "CREATE INDEX IF NOT EXISTS usage_by_minute ON usage_minutes (minute)",
        "CREATE TABLE IF NOT EXISTS budgets_view ("
        "id TEXT PRIMARY KEY, tenant TEXT NOT NULL, period TEXT NOT NULL, "
        "cost_cap_units TEXT NOT NULL, slo TEXT NOT NULL, set_at_ms BIGINT NOT NULL, "
        "cap_units_per_s TEXT, shaping TEXT)",
    ]


def _budget(record: Any) -> BudgetRow:
    cap = record["cap_units_per_s"]
    shaping = record["shaping"]
    return BudgetRow(
        id=UUID(record["id"]),
        tenant=record["tenant"],
        period=record["period"],
        cost_cap_units=float(record["cost_cap_units"]),
        slo=msgspec.json.decode(record["slo"]),
        set_at_ms=int(record["set_at_ms"]),
        cap_units_per_s=None if cap is None else float(cap),
        shaping=None if shaping is None else msgspec.json.decode(shaping),
    )


def _budget_params(row: BudgetRow) -> tuple[Any, ...]:
    return (
        str(row.id),
        row.tenant,
        row.period,
        repr(row.cost_cap_units),
        msgspec.json.encode(row.slo, enc_hook=str).decode(),
        row.set_at_ms,
        None if row.cap_units_per_s is None else repr(row.cap_units_per_s),
        None if row.shaping is None else msgspec.json.encode(row.shaping).decode(),
    )


def _counts(record: Any) -> Counts:
    return Counts(
        requests=int(record["requests"] or 0),
        errors=int(record["errors"] or 0),
        throttled=int(record["throttled"] or 0),
        units=float(record["units"] or 0),
        hist=[int(record[h] or 0) for h in HIST],
    )


class _UsageSQL(SqlView, UsageView):
    """The queries (the backend bases supply the transactions)."""

    def load_budgets(self, ids: Sequence[UUID]) -> dict[UUID, BudgetRow]:
        marks = ",".join("?" * len(ids))
        with self._reading() as c:
            c.execute(
                self._sql(f"SELECT * FROM budgets_view WHERE id IN ({marks})"),
                [str(i) for i in ids],
            )
            return {r.id: r for r in map(_budget, c.fetchall())}

    def apply(self, changes: UsageChanges, tracking: Tracking) -> None:
        columns = ("tenant", "minute", "route_class", *SUMMED, "units")
        add = self._sql(
            f"INSERT INTO usage_minutes ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))}) "
            "ON CONFLICT (tenant, minute, route_class) DO UPDATE SET "
            + ", ".join(f"{c} = usage_minutes.{c} + excluded.{c}" for c in SUMMED)
            + ", units = usage_minutes.units + excluded.units"
        )
        budget_columns = (
            "id", "tenant", "period", "cost_cap_units", "slo", "set_at_ms",
            "cap_units_per_s", "shaping",
        )  # fmt: skip
        upsert = self._sql(
            f"INSERT INTO budgets_view ({', '.join(budget_columns)}) "
            f"VALUES ({', '.join('?' * len(budget_columns))}) "
            "ON CONFLICT (id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in budget_columns[1:])
        )
        with self._writing() as c:
            if changes.buckets:
                c.executemany(
                    add,
                    [
                        (t, m, rc, n.requests, n.errors, n.throttled, *n.hist, n.units)
                        for (t, m, rc), n in changes.buckets.items()
                    ],
                )
            if changes.budgets:
                c.executemany(
                    upsert, [_budget_params(r) for r in changes.budgets.values()]
                )
            self._insert_tracking(c, tracking)  # type: ignore[attr-defined]

    def budgets(self) -> list[BudgetRow]:
        with self._reading() as c:
            c.execute("SELECT * FROM budgets_view WHERE period != '' ORDER BY tenant")
            return [_budget(r) for r in c.fetchall()]

    def window(
        self, tenant: str, first_minute: int, last_minute: int
    ) -> dict[str, Counts]:
        sums = ", ".join(f"SUM({c}) AS {c}" for c in (*SUMMED, "units"))
        with self._reading() as c:
            c.execute(
                self._sql(
                    f"SELECT route_class, {sums} FROM usage_minutes "
                    "WHERE tenant = ? AND minute >= ? AND minute <= ? "
                    "GROUP BY route_class"
                ),
                (tenant, first_minute, last_minute),
            )
            return {r["route_class"]: _counts(r) for r in c.fetchall()}

    def active_tenants(self, first_minute: int, last_minute: int) -> dict[str, Counts]:
        sums = ", ".join(f"SUM({c}) AS {c}" for c in (*SUMMED, "units"))
        with self._reading() as c:
            c.execute(
                self._sql(
                    f"SELECT tenant, {sums} FROM usage_minutes "
                    "WHERE minute >= ? AND minute <= ? GROUP BY tenant"
                ),
                (first_minute, last_minute),
            )
            return {r["tenant"]: _counts(r) for r in c.fetchall()}

    def purge(self, before_minute: int) -> int:
        with self._writing() as c:  # (the library's SQLite cursor has no rowcount)
            c.execute(
                self._sql("SELECT COUNT(*) AS n FROM usage_minutes WHERE minute < ?"),
                (before_minute,),
            )
            dropped = int(c.fetchone()["n"])
            c.execute(
                self._sql("DELETE FROM usage_minutes WHERE minute < ?"),
                (before_minute,),
            )
            return dropped

    view_rows = ("usage_minutes", "budgets_view")


class SQLiteUsageView(SQLiteSqlView, _UsageSQL):
    """Usage read model in the event log's SQLite file."""

    tracking_table = "usage_tracking"

    def view_tables(self) -> list[str]:
        return _tables("REAL")


class PostgresUsageView(PostgresSqlView, _UsageSQL):
    """Usage read model in the event log's PostgreSQL database."""

    tracking_table = "usage_tracking"

    def view_tables(self) -> list[str]:
        return _tables("DOUBLE PRECISION")


def usage_view(ledger: Ledger) -> UsageView:
    """The usage view for the ledger's backend, in the same database."""
    view = ledger.factory.tracking_recorder(
        PostgresUsageView if ledger.backend == "postgres" else SQLiteUsageView
    )
    assert isinstance(view, UsageView)
    return view
