"""The DR state read model on SQLite and PostgreSQL (plain SQL both speak)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.sql.plain_view import PostgresSqlView, SQLiteSqlView, SqlView
from projections.dr_state import RATE_WINDOWS, DrStateChanges, DrStateView, RegionState

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import Tracking

    from adapters.ledger.store import Ledger

COLUMNS = (
    "region", "role", "epoch", "lag_ms", "lag_bytes", "read_only", "sampled_at_ms",
    "cause", "stale_reads", "secondary_reads", "samples", "position",
)  # fmt: skip
RATES = tuple(f"rate_{w}" for w in RATE_WINDOWS)
NULLABLE = {"lag_ms", "lag_bytes"}
TEXT = {"region", "role", "cause"}
DAY_MS = max(RATE_WINDOWS.values())
RATE = (
    "(SELECT SUM(stale) * 1.0 / NULLIF(SUM(secondary), 0) FROM dr_state_reads "
    "WHERE region = ? AND at_ms > ?)"
)
"""One window's stale-read rate (NULL: no secondary reads in it)."""


def _tables(real: str) -> list[str]:
    columns = ", ".join(
        f"{c} {'TEXT' if c in TEXT else 'BIGINT'}"
        + ("" if c in NULLABLE else " NOT NULL")
        + (" PRIMARY KEY" if c == "region" else "")
        for c in COLUMNS
    )
    return [
        f"CREATE TABLE IF NOT EXISTS dr_state_regions ({columns}, "
        + ", ".join(f"{r} {real}" for r in RATES)
        + ")",
        "CREATE TABLE IF NOT EXISTS dr_state_reads ("
        "region TEXT NOT NULL, at_ms BIGINT NOT NULL, position BIGINT NOT NULL, "
        "stale BIGINT NOT NULL, secondary BIGINT NOT NULL, "
        "PRIMARY KEY (region, position))",
        "CREATE INDEX IF NOT EXISTS dr_state_reads_by_time "
        "ON dr_state_reads (region, at_ms)",
    ]


def _params(row: RegionState) -> tuple[Any, ...]:
    values = (
        row.region, row.role, row.epoch, row.lag_ms, row.lag_bytes,
        int(row.read_only), row.sampled_at_ms, row.cause, row.stale_reads,
        row.secondary_reads, row.samples, row.position,
    )  # fmt: skip
    windows = ((row.region, row.sampled_at_ms - span) for span in RATE_WINDOWS.values())
    return values + tuple(arg for pair in windows for arg in pair)


def _row(record: Any) -> RegionState:
    return RegionState(
        region=record["region"],
        role=record["role"],
        epoch=int(record["epoch"]),
        lag_ms=None if record["lag_ms"] is None else int(record["lag_ms"]),
        lag_bytes=None if record["lag_bytes"] is None else int(record["lag_bytes"]),
        read_only=bool(record["read_only"]),
        sampled_at_ms=int(record["sampled_at_ms"]),
        cause=record["cause"],
        stale_reads=int(record["stale_reads"]),
        secondary_reads=int(record["secondary_reads"]),
        samples=int(record["samples"]),
        position=int(record["position"]),
        stale_rate={
            window: None if record[rate] is None else float(record[rate])
            for window, rate in zip(RATE_WINDOWS, RATES, strict=True)
        },
    )


class _DrStateSQL(SqlView, DrStateView):
    """The queries (the backend bases supply the transactions)."""

    def load_regions(self, regions: Sequence[str]) -> dict[str, RegionState]:
        marks = ",".join("?" * len(regions))
        with self._reading() as c:
            c.execute(
                self._sql(f"SELECT * FROM dr_state_regions WHERE region IN ({marks})"),
                list(regions),
            )
            return {r.region: r for r in map(_row, c.fetchall())}

    def apply(self, changes: DrStateChanges, tracking: Tracking) -> None:
        add = self._sql(
            "INSERT INTO dr_state_reads (region, at_ms, position, stale, secondary) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (region, position) DO NOTHING"
        )
        old = self._sql("DELETE FROM dr_state_reads WHERE region = ? AND at_ms <= ?")
        upsert = self._sql(
            f"INSERT INTO dr_state_regions ({', '.join(COLUMNS + RATES)}) "
            f"VALUES ({', '.join('?' * len(COLUMNS))}, "
            + ", ".join(RATE for _ in RATES)
            + ") ON CONFLICT (region) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in (*COLUMNS[1:], *RATES))
        )
        rows = list(changes.regions.values())
        with self._writing() as c:
            if changes.deltas:
                c.executemany(
                    add,
                    [
                        (d.region, d.at_ms, d.position, d.stale, d.secondary)
                        for d in changes.deltas
                    ],
                )
            if rows:
                c.executemany(old, [(r.region, r.sampled_at_ms - DAY_MS) for r in rows])
                c.executemany(upsert, [_params(r) for r in rows])
            self._insert_tracking(c, tracking)  # type: ignore[attr-defined]

    def regions(self) -> list[RegionState]:
        with self._reading() as c:
            c.execute("SELECT * FROM dr_state_regions ORDER BY region")
            return [_row(r) for r in c.fetchall()]

    view_rows = ("dr_state_regions", "dr_state_reads")


class SQLiteDrStateView(SQLiteSqlView, _DrStateSQL):
    """DR state read model in the event log's SQLite file."""

    tracking_table = "dr_state_tracking"

    def view_tables(self) -> list[str]:
        return _tables("REAL")


class PostgresDrStateView(PostgresSqlView, _DrStateSQL):
    """DR state read model in the event log's PostgreSQL database."""

    tracking_table = "dr_state_tracking"

    def view_tables(self) -> list[str]:
        return _tables("DOUBLE PRECISION")


def dr_state_view(ledger: Ledger) -> DrStateView:
    """The DR state view for the ledger's backend, in the same database."""
    view = ledger.factory.tracking_recorder(
        PostgresDrStateView if ledger.backend == "postgres" else SQLiteDrStateView
    )
    assert isinstance(view, DrStateView)
    return view
