"""The burn read model on SQLite and PostgreSQL (plain SQL both speak).

Per batch: one statement each for the buckets, the budgets, the tenants' and
the windows' rows (and one that drops buckets no window or period needs);
the burns themselves are application/autopilot/tenant_burn.py's ``measure``
over this view's own buckets, read inside the same transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from adapters.autopilot.usage_view import HIST, SUMMED, _budget, _budget_params
from adapters.sql.plain_view import PostgresSqlView, SQLiteSqlView, SqlView
from application.autopilot.burn import MIN_EVENTS, WINDOWS
from application.autopilot.tenant_burn import measure
from domain.autopilot.budget import budget_id
from domain.autopilot.usage import BudgetRow, Counts
from projections.burn import BurnChanges, BurnRow, BurnView

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from eventsourcing.persistence import Tracking

    from adapters.ledger.store import Ledger
    from application.autopilot.tenant_burn import TenantBurn

KEEP_MINUTES = 32 * 24 * 60
"""Buckets a tenant keeps behind its newest event: a month's period and the
3 d window fit (older ones can no longer change any burn)."""
BUDGET_COLUMNS = (
    "id", "tenant", "period", "cost_cap_units", "slo", "set_at_ms",
    "cap_units_per_s", "shaping",
)  # fmt: skip
SUMS = ", ".join(f"SUM({c}) AS {c}" for c in (*SUMMED, "units"))


def _tables(real: str) -> list[str]:
    return [
        "CREATE TABLE IF NOT EXISTS burn_minutes ("
        "tenant TEXT NOT NULL, minute BIGINT NOT NULL, route_class TEXT NOT NULL, "
        + "".join(f"{c} BIGINT NOT NULL, " for c in SUMMED)
        + f"units {real} NOT NULL, PRIMARY KEY (tenant, minute, route_class))",
        "CREATE TABLE IF NOT EXISTS burn_budgets ("
        "id TEXT PRIMARY KEY, tenant TEXT NOT NULL, period TEXT NOT NULL, "
        "cost_cap_units TEXT NOT NULL, slo TEXT NOT NULL, set_at_ms BIGINT NOT NULL, "
        "cap_units_per_s TEXT, shaping TEXT, as_of_ms BIGINT NOT NULL, "
        "position BIGINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS burn_budgets_by_tenant ON burn_budgets (tenant)",
        "CREATE TABLE IF NOT EXISTS burn_tenants ("
        "tenant TEXT PRIMARY KEY, as_of_ms BIGINT NOT NULL, cost TEXT NOT NULL, "
        "alerts TEXT NOT NULL, page BIGINT NOT NULL, ticket BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS burn_windows ("
        "tenant TEXT NOT NULL, window_name TEXT NOT NULL, "
        f"cost_burn {real} NOT NULL, slo TEXT NOT NULL, requests TEXT NOT NULL, "
        "PRIMARY KEY (tenant, window_name))",
    ]


def _counts(record: Any) -> Counts:
    return Counts(
        requests=int(record["requests"] or 0),
        errors=int(record["errors"] or 0),
        throttled=int(record["throttled"] or 0),
        units=float(record["units"] or 0),
        hist=[int(record[h] or 0) for h in HIST],
    )


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


class _Buckets:
    """measure()'s read side over this view's buckets, on an open cursor."""

    def __init__(self, view: SqlView, cursor: Any) -> None:
        self._sql = view._sql  # noqa: SLF001 - the view lends its placeholders
        self._c = cursor

    def window(
        self, tenant: str, first_minute: int, last_minute: int
    ) -> dict[str, Counts]:
        self._c.execute(
            self._sql(
                f"SELECT route_class, {SUMS} FROM burn_minutes "
                "WHERE tenant = ? AND minute >= ? AND minute <= ? "
                "GROUP BY route_class"
            ),
            (tenant, first_minute, last_minute),
        )
        return {r["route_class"]: _counts(r) for r in self._c.fetchall()}

    def budgets(self) -> list[BudgetRow]:  # pragma: no cover - measure needs none
        return []

    def active_tenants(  # pragma: no cover - measure needs none
        self, first_minute: int, last_minute: int
    ) -> dict[str, Counts]:
        del first_minute, last_minute
        return {}


def _tenant_params(burn: TenantBurn, as_of_ms: int) -> tuple[Any, ...]:
    evidence = burn.evidence()
    cost = {k: v for k, v in evidence["cost"].items() if k != "burn"}
    return (
        burn.tenant,
        as_of_ms,
        _json(cost),
        _json(evidence["alerts"]),
        int(burn.page),
        int(burn.ticket),
    )


def _window_params(burn: TenantBurn) -> list[tuple[Any, ...]]:
    evidence = burn.evidence()
    return [
        (
            burn.tenant,
            window,
            evidence["cost"]["burn"][window],
            _json(evidence["sloBurn"][window]),
            _json({rc: c.to_json() for rc, c in burn.windows[window].items()}),
        )
        for window in WINDOWS
    ]


class _BurnSQL(SqlView, BurnView):
    """The queries (the backend bases supply the transactions)."""

    min_events: int = MIN_EVENTS
    """Requests a window needs before its burn can breach (the controller's)."""

    def load_budgets(self, ids: Sequence[UUID]) -> dict[UUID, BudgetRow]:
        marks = ",".join("?" * len(ids))
        with self._reading() as c:
            c.execute(
                self._sql(f"SELECT * FROM burn_budgets WHERE id IN ({marks})"),
                [str(i) for i in ids],
            )
            return {r.id: r for r in map(_budget, c.fetchall())}

    def apply(self, changes: BurnChanges, tracking: Tracking) -> None:
        columns = ("tenant", "minute", "route_class", *SUMMED, "units")
        add = self._sql(
            f"INSERT INTO burn_minutes ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))}) "
            "ON CONFLICT (tenant, minute, route_class) DO UPDATE SET "
            + ", ".join(f"{c} = burn_minutes.{c} + excluded.{c}" for c in SUMMED)
            + ", units = burn_minutes.units + excluded.units"
        )
        upsert = self._sql(
            f"INSERT INTO burn_budgets ({', '.join(BUDGET_COLUMNS)}, as_of_ms, "
            f"position) VALUES ({', '.join('?' * (len(BUDGET_COLUMNS) + 2))}) "
            "ON CONFLICT (id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in BUDGET_COLUMNS[1:])
            + ", position = excluded.position, as_of_ms = CASE WHEN "
            "excluded.as_of_ms > burn_budgets.as_of_ms THEN excluded.as_of_ms "
            "ELSE burn_budgets.as_of_ms END"
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
                    upsert,
                    [
                        (
                            *_budget_params(row),
                            changes.as_of_ms.get(key, 0),
                            changes.positions.get(key, tracking.notification_id),
                        )
                        for key, row in changes.budgets.items()
                    ],
                )
            if changes.as_of_ms:
                self._burn(c, list(changes.as_of_ms))
            self._insert_tracking(c, tracking)  # type: ignore[attr-defined]

    def _burn(self, c: Any, ids: Sequence[UUID]) -> None:
        """Recompute the burns of these budgets as of their newest time."""
        marks = ",".join("?" * len(ids))
        c.execute(
            self._sql(f"SELECT * FROM burn_budgets WHERE id IN ({marks})"),
            [str(i) for i in ids],
        )
        clocked = [(_budget(r), int(r["as_of_ms"])) for r in c.fetchall()]
        burns = [
            (
                measure(
                    _Buckets(self, c), row, as_of / 1000, min_events=self.min_events
                ),
                as_of,
            )
            for row, as_of in clocked
            if row.period and as_of > 0
        ]
        c.executemany(
            self._sql("DELETE FROM burn_minutes WHERE tenant = ? AND minute < ?"),
            [(row.tenant, as_of // 60_000 - KEEP_MINUTES) for row, as_of in clocked],
        )
        if not burns:
            return
        c.executemany(
            self._sql(
                "INSERT INTO burn_tenants "
                "(tenant, as_of_ms, cost, alerts, page, ticket) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant) DO UPDATE SET "
                "as_of_ms = excluded.as_of_ms, cost = excluded.cost, "
                "alerts = excluded.alerts, page = excluded.page, "
                "ticket = excluded.ticket"
            ),
            [_tenant_params(burn, as_of) for burn, as_of in burns],
        )
        c.executemany(
            self._sql(
                "INSERT INTO burn_windows "
                "(tenant, window_name, cost_burn, slo, requests) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, window_name) "
                "DO UPDATE SET cost_burn = excluded.cost_burn, slo = excluded.slo, "
                "requests = excluded.requests"
            ),
            [params for burn, _ in burns for params in _window_params(burn)],
        )

    def burn(self, tenant: str) -> BurnRow | None:
        with self._reading() as c:
            c.execute(
                self._sql(
                    "SELECT b.*, t.as_of_ms AS burn_as_of_ms, t.cost, t.alerts, "
                    "t.page, t.ticket FROM burn_budgets b "
                    "JOIN burn_tenants t ON t.tenant = b.tenant "
                    "WHERE b.tenant = ? AND b.id = ?"
                ),
                (tenant, str(budget_id(tenant))),
            )
            found = c.fetchone()
            if found is None or not found["period"]:
                return None
            c.execute(
                self._sql("SELECT * FROM burn_windows WHERE tenant = ?"), (tenant,)
            )
            windows = {r["window_name"]: r for r in c.fetchall()}
        return _burn_row(found, windows)

    view_rows = ("burn_minutes", "burn_budgets", "burn_tenants", "burn_windows")


def _burn_row(found: Any, windows: dict[str, Any]) -> BurnRow:
    row = _budget(found)
    cost = msgspec.json.decode(found["cost"])
    present = [w for w in WINDOWS if w in windows]
    cost["burn"] = {w: float(windows[w]["cost_burn"]) for w in present}
    return BurnRow(
        tenant=row.tenant,
        as_of_ms=int(found["burn_as_of_ms"]),
        position=int(found["position"]),
        cost=cost,
        slo={w: msgspec.json.decode(windows[w]["slo"]) for w in present},
        requests={w: msgspec.json.decode(windows[w]["requests"]) for w in present},
        alerts=msgspec.json.decode(found["alerts"]),
        page=bool(found["page"]),
        ticket=bool(found["ticket"]),
        cap_units_per_s=row.cap_units_per_s,
        shaping=row.shaping or {},
    )


class SQLiteBurnView(SQLiteSqlView, _BurnSQL):
    """Burn read model in the event log's SQLite file."""

    tracking_table = "burn_tracking"

    def view_tables(self) -> list[str]:
        return _tables("REAL")


class PostgresBurnView(PostgresSqlView, _BurnSQL):
    """Burn read model in the event log's PostgreSQL database."""

    tracking_table = "burn_tracking"

    def view_tables(self) -> list[str]:
        return _tables("DOUBLE PRECISION")


def burn_view(ledger: Ledger, *, min_events: int = MIN_EVENTS) -> BurnView:
    """The burn view for the ledger's backend, in the same database.

    ``min_events`` is CONDUCTOR_AUTOPILOT_MIN_EVENTS, so the read model's
    breaches are the ones the controller acts on.
    """
    view = ledger.factory.tracking_recorder(
        PostgresBurnView if ledger.backend == "postgres" else SQLiteBurnView
    )
    assert isinstance(view, _BurnSQL)
    view.min_events = min_events
    return view
