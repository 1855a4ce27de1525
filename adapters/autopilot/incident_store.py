"""The incident outbox on SQLite and PostgreSQL (one table, same layout).

A partial unique index allows one unresolved incident per (tenant, guard), so
dedup holds across processes and restarts. Changes run under a lock: SELECT
... FOR UPDATE on PostgreSQL, BEGIN IMMEDIATE (one writer) on SQLite. Claims
lease rows in one UPDATE ... RETURNING (FOR UPDATE SKIP LOCKED on PostgreSQL),
so two deliverers never send the same row. Times are the caller's floats.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import msgspec
from eventsourcing.persistence import IntegrityError

from adapters.sql.pg_schema import schema_lock
from adapters.sql.sqlite_writer import SQLiteWriter
from application.autopilot.incident_records import UNRESOLVED, Incident

if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from contextlib import AbstractContextManager

    from adapters.ledger.store import Ledger

COLUMNS = (
    "id", "tenant", "guard", "state", "title", "body", "labels", "evidence",
    "resolve_evidence", "external_id", "attempts", "next_attempt_at", "last_error",
    "unrecorded", "lease_until", "lease_token", "opened_at", "resolved_at",
)  # fmt: skip
TYPES = {
    "attempts": "BIGINT NOT NULL",
    "next_attempt_at": "DOUBLE PRECISION",
    "lease_until": "DOUBLE PRECISION",
    "opened_at": "DOUBLE PRECISION NOT NULL",
    "resolved_at": "DOUBLE PRECISION",
}
NULLABLE = {
    "resolve_evidence",
    "external_id",
    "last_error",
    "unrecorded",
    "lease_token",
}
_UNRESOLVED = ", ".join(f"'{s}'" for s in UNRESOLVED)
TABLES = (
    "CREATE TABLE IF NOT EXISTS incidents ("
    + ", ".join(
        f"{c} "
        + TYPES.get(c, "TEXT" if c in NULLABLE else "TEXT NOT NULL")
        + (" PRIMARY KEY" if c == "id" else "")
        for c in COLUMNS
    )
    + ")",
    "CREATE UNIQUE INDEX IF NOT EXISTS incidents_one_unresolved "
    f"ON incidents (tenant, guard) WHERE state IN ({_UNRESOLVED})",
    "CREATE INDEX IF NOT EXISTS incidents_due ON incidents (next_attempt_at) "
    "WHERE next_attempt_at IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS incidents_by_tenant ON incidents (tenant, opened_at)",
)
_RETRIES = 3
"""Tries of a change that lost an insert race (PostgreSQL cannot lock a row
that does not exist yet; the unique index stops the second insert)."""


def _json(value: Any) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


def _params(incident: Incident) -> tuple[Any, ...]:
    values = {
        **{c: getattr(incident, c) for c in COLUMNS},
        "labels": _json(incident.labels),
        "evidence": _json(incident.evidence),
        "resolve_evidence": _json(incident.resolve_evidence),
    }
    return tuple(values[c] for c in COLUMNS)


def _incident(record: Any) -> Incident:
    values = {c: record[c] for c in COLUMNS}
    resolve_evidence = values.pop("resolve_evidence")
    return Incident(
        **{
            **values,
            "labels": tuple(msgspec.json.decode(values["labels"])),
            "evidence": msgspec.json.decode(values["evidence"]),
            "resolve_evidence": None
            if resolve_evidence is None
            else msgspec.json.decode(resolve_evidence),
            "attempts": int(values["attempts"]),
        }
    )


class SqlIncidentStore(ABC):
    """The queries; subclasses say how to read, write, lock and mark parameters."""

    mark = "?"
    lock = ""
    """Appended to a SELECT that picks rows to change."""
    skip_locked = ""

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Any]:
        """A read-only transaction yielding a cursor."""

    @abstractmethod
    def _writing(self) -> AbstractContextManager[Any]:
        """A write transaction yielding a cursor."""

    def close(self) -> None:
        """Release what the store holds of its own (the ledger closes the rest)."""
        return

    def _sql(self, text: str) -> str:
        return text.replace("?", self.mark)

    def _create(self) -> None:
        with self._writing() as c:
            for statement in TABLES:
                c.execute(statement)

    def _write(self, c: Any, before: Incident | None, after: Incident) -> None:
        if before is None:
            c.execute(
                self._sql(
                    f"INSERT INTO incidents ({', '.join(COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(COLUMNS))})"
                ),
                _params(after),
            )
            return
        c.execute(
            self._sql(
                "UPDATE incidents SET "
                + ", ".join(f"{col} = ?" for col in COLUMNS[1:])
                + " WHERE id = ?"
            ),
            (*_params(after)[1:], before.id),
        )

    def _change(
        self,
        where: str,
        args: tuple[Any, ...],
        change: Callable[[Incident | None], Incident | None],
    ) -> Incident | None:
        with self._writing() as c:
            c.execute(
                self._sql(f"SELECT * FROM incidents WHERE {where}{self.lock}"), args
            )
            found = c.fetchone()
            before = None if found is None else _incident(found)
            after = change(before)
            if after is None:
                return before
            self._write(c, before, after)
            return after

    def change_current(
        self,
        tenant: str,
        guard: str,
        change: Callable[[Incident | None], Incident | None],
    ) -> Incident | None:
        """Write what change() makes of (tenant, guard)'s unresolved incident."""
        where = f"tenant = ? AND guard = ? AND state IN ({_UNRESOLVED})"
        for attempt in range(_RETRIES):
            try:
                return self._change(where, (tenant, guard), change)
            except IntegrityError:
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError  # pragma: no cover - the loop returns or raises

    def change_leased(
        self, incident_id: str, token: str, change: Callable[[Incident], Incident]
    ) -> Incident | None:
        """Write change(row) if ``token`` still holds the row's lease, else None."""
        changed: list[Incident] = []

        def guarded(row: Incident | None) -> Incident | None:
            if row is None or row.lease_token != token:
                return None
            changed.append(change(row))
            return changed[0]

        self._change("id = ?", (incident_id,), guarded)
        return changed[0] if changed else None

    def claim(
        self, *, now: float, lease_until: float, token: str, limit: int
    ) -> list[Incident]:
        """Lease up to ``limit`` due rows that no live lease holds, oldest due first."""
        with self._writing() as c:
            c.execute(
                self._sql(
                    "UPDATE incidents SET lease_until = ?, lease_token = ? "
                    "WHERE id IN (SELECT id FROM incidents "
                    "WHERE next_attempt_at <= ? "
                    "AND (lease_until IS NULL OR lease_until <= ?) "
                    f"ORDER BY next_attempt_at, id LIMIT ?{self.skip_locked}) "
                    "RETURNING *"
                ),
                (lease_until, token, now, now, limit),
            )
            rows = [_incident(r) for r in c.fetchall()]
        return sorted(rows, key=lambda r: (r.next_attempt_at or 0.0, r.id))

    def find(
        self,
        *,
        tenant: str | None = None,
        states: Collection[str] | None = None,
        guard: str | None = None,
    ) -> list[Incident]:
        """Incidents, newest first."""
        where, args = ["1 = 1"], []
        if tenant is not None:
            where.append("tenant = ?")
            args.append(tenant)
        if guard is not None:
            where.append("guard = ?")
            args.append(guard)
        if states is not None:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(states)
        with self._reading() as c:
            c.execute(
                self._sql(
                    f"SELECT * FROM incidents WHERE {' AND '.join(where)} "
                    "ORDER BY opened_at DESC, id DESC"
                ),
                args,
            )
            return [_incident(r) for r in c.fetchall()]

    def get(self, incident_id: str) -> Incident | None:
        with self._reading() as c:
            c.execute(self._sql("SELECT * FROM incidents WHERE id = ?"), (incident_id,))
            found = c.fetchone()
        return None if found is None else _incident(found)


class SQLiteIncidentStore(SqlIncidentStore):
    """Incidents in the event log's SQLite file, written through its own writer."""

    def __init__(self, ledger: Ledger) -> None:
        self._datastore: Any = ledger.factory.datastore  # type: ignore[attr-defined]
        self._writer = SQLiteWriter(self._datastore)
        self._create()

    def _reading(self) -> AbstractContextManager[Any]:
        return self._datastore.transaction(commit=False)  # type: ignore[no-any-return]

    def _writing(self) -> AbstractContextManager[Any]:
        return self._writer.transaction()

    def close(self) -> None:
        self._writer.close()


class PostgresIncidentStore(SqlIncidentStore):
    """Incidents in the event log's PostgreSQL database."""

    mark = "%s"
    lock = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, ledger: Ledger) -> None:
        self._datastore: Any = ledger.factory.datastore  # type: ignore[attr-defined]
        with schema_lock(self._datastore):
            self._create()

    def _reading(self) -> AbstractContextManager[Any]:
        return self._datastore.transaction(commit=False)  # type: ignore[no-any-return]

    def _writing(self) -> AbstractContextManager[Any]:
        return self._datastore.transaction(commit=True)  # type: ignore[no-any-return]


def incident_store(ledger: Ledger) -> SqlIncidentStore:
    """The incident store for the ledger's backend, in the same database."""
    if ledger.backend == "postgres":
        return PostgresIncidentStore(ledger)
    return SQLiteIncidentStore(ledger)
