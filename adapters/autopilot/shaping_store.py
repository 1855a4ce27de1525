"""Per-tenant token buckets whose state lives in the event log's database.

Every API process takes from the same row, so a tenant's rate holds across
processes. Times are float seconds given by the caller (the autopilot runs on
a virtual clock): the store never reads a clock. A refill never moves a
bucket's clock backwards, so a caller whose clock lags another's gets no
tokens twice for the same interval.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters.sql.pg_schema import schema_lock
from adapters.sql.sqlite_writer import SQLiteWriter

if TYPE_CHECKING:
    from eventsourcing.postgres import PostgresDatastore
    from eventsourcing.sqlite import SQLiteDatastore

    from adapters.ledger.store import Ledger

EPSILON = 1e-9
"""Slack on "enough tokens?", so waiting exactly retry_after_s always suffices."""

TABLE = (
    "CREATE TABLE IF NOT EXISTS traffic_shaping (tenant TEXT PRIMARY KEY, "
    "rate DOUBLE PRECISION NOT NULL, burst DOUBLE PRECISION NOT NULL, "
    "reason TEXT NOT NULL, engaged_at DOUBLE PRECISION NOT NULL, "
    "tokens DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL)"
)
# Re-engaging adjusts a rule: the bucket keeps its (refilled) tokens, capped at
# the new burst, so a controller that re-issues its decision every tick does
# not hand out a fresh burst each time. engaged_at stays the first engagement.
ENGAGE = (
    "INSERT INTO traffic_shaping AS s (tenant, rate, burst, reason, engaged_at, "
    "tokens, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant) DO "
    "UPDATE SET tokens = {min}(excluded.burst, s.tokens + "
    "{max}(0, excluded.updated_at - s.updated_at) * s.rate), "
    "updated_at = {max}(s.updated_at, excluded.updated_at), "
    "rate = excluded.rate, burst = excluded.burst, reason = excluded.reason"
)
LEVEL = "LEAST(burst, tokens + GREATEST(0, %(now)s - updated_at) * rate)"
# One statement, one round trip: FOR UPDATE reads the newest row version
# (waiting for a concurrent take to commit), the UPDATE writes from it.
PG_TAKE = (
    f"WITH b AS (SELECT tenant, updated_at, {LEVEL} AS level FROM traffic_shaping "
    "WHERE tenant = %(tenant)s FOR UPDATE) "
    "UPDATE traffic_shaping AS s SET tokens = CASE WHEN b.level >= %(need)s "
    "THEN GREATEST(0, b.level - %(cost)s) ELSE b.level END, "
    "updated_at = GREATEST(b.updated_at, %(now)s) FROM b WHERE s.tenant = b.tenant "
    "RETURNING b.level, s.rate, s.burst, s.reason"
)


@dataclass(frozen=True, slots=True)
class ShapingRule:
    """A shaped tenant: refill ``rate`` tokens/s up to ``burst``."""

    rate: float
    burst: float
    reason: str
    engaged_at: float


@dataclass(frozen=True, slots=True)
class Throttle:
    """The outcome of one take; retry_after_s is 0 when allowed."""

    allowed: bool
    tokens: float
    rate: float
    burst: float
    retry_after_s: float
    reason: str


def refill(
    tokens: float, updated_at: float, *, rate: float, burst: float, now: float
) -> tuple[float, float]:
    """(tokens, clock) of a bucket brought forward to ``now``."""
    return min(burst, tokens + max(0.0, now - updated_at) * rate), max(updated_at, now)


def retry_after(tokens: float, *, rate: float, burst: float, cost: float) -> float:
    """Seconds until ``cost`` tokens are there (inf if the burst cannot hold it)."""
    if tokens >= cost - EPSILON:
        return 0.0
    if cost > burst + EPSILON:
        return math.inf
    return (cost - tokens) / rate


def throttle(
    level: float, *, rate: float, burst: float, reason: str, cost: float
) -> Throttle:
    """Take ``cost`` from a refilled ``level``; a denial takes nothing."""
    if level >= cost - EPSILON:
        tokens, allowed, wait = max(0.0, level - cost), True, 0.0
    else:
        tokens, allowed = level, False
        wait = retry_after(level, rate=rate, burst=burst, cost=cost)
    return Throttle(
        allowed=allowed,
        tokens=tokens,
        rate=rate,
        burst=burst,
        retry_after_s=wait,
        reason=reason,
    )


def _check(rate: float, burst: float) -> None:
    if not (rate > 0 and math.isfinite(rate)):
        msg = f"rate must be a positive number of tokens/s, not {rate}"
        raise ValueError(msg)
    if not (burst >= 1 and math.isfinite(burst)):
        msg = f"burst must hold at least one request, not {burst}"
        raise ValueError(msg)


class ShapingStore(ABC):
    """Shaping rules and their buckets. take() on an unshaped tenant is None."""

    @abstractmethod
    def engage(
        self, tenant: str, *, rate: float, burst: float, reason: str, now: float
    ) -> None:
        """Shape ``tenant`` (a new bucket starts full; see ENGAGE for updates)."""

    @abstractmethod
    def release(self, tenant: str) -> None:
        """Stop shaping ``tenant`` (no-op if it is not shaped)."""

    @abstractmethod
    def rules(self) -> dict[str, ShapingRule]:
        """Every shaped tenant's rule."""

    @abstractmethod
    def take(self, tenant: str, *, now: float, cost: float = 1.0) -> Throttle | None:
        """Refill to ``now`` and take ``cost`` tokens if there are enough."""

    @abstractmethod
    def close(self) -> None:
        """Release connections of the store's own (the datastore is shared)."""


class MemoryShapingStore(ShapingStore):
    """Buckets in this process's memory: for tests and single-process runs."""

    def __init__(self) -> None:
        self._rules: dict[str, ShapingRule] = {}
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def engage(
        self, tenant: str, *, rate: float, burst: float, reason: str, now: float
    ) -> None:
        _check(rate, burst)
        with self._lock:
            old = self._rules.get(tenant)
            if old is None:
                self._rules[tenant] = ShapingRule(rate, burst, reason, now)
                self._buckets[tenant] = (burst, now)
                return
            tokens, clock = self._buckets[tenant]
            tokens, clock = refill(tokens, clock, rate=old.rate, burst=burst, now=now)
            self._rules[tenant] = ShapingRule(rate, burst, reason, old.engaged_at)
            self._buckets[tenant] = (tokens, clock)

    def release(self, tenant: str) -> None:
        with self._lock:
            self._rules.pop(tenant, None)
            self._buckets.pop(tenant, None)

    def rules(self) -> dict[str, ShapingRule]:
        with self._lock:
            return dict(self._rules)

    def close(self) -> None:
        pass

    def take(self, tenant: str, *, now: float, cost: float = 1.0) -> Throttle | None:
        with self._lock:
            rule = self._rules.get(tenant)
            if rule is None:
                return None
            level, clock = refill(
                *self._buckets[tenant], rate=rule.rate, burst=rule.burst, now=now
            )
            result = throttle(
                level, rate=rule.rate, burst=rule.burst, reason=rule.reason, cost=cost
            )
            self._buckets[tenant] = (result.tokens, clock)
            return result


class _SqlShapingStore(ShapingStore):
    """engage/release/rules in SQL both backends speak."""

    mark = "?"
    functions: dict[str, str] = {"min": "min", "max": "max"}  # noqa: RUF012

    @abstractmethod
    def _reading(self) -> Any:
        """A read-only transaction yielding a cursor."""

    @abstractmethod
    def _writing(self) -> Any:
        """A write transaction yielding a cursor."""

    def _sql(self, text: str) -> str:
        return text.replace("?", self.mark)

    def engage(
        self, tenant: str, *, rate: float, burst: float, reason: str, now: float
    ) -> None:
        _check(rate, burst)
        with self._writing() as c:
            c.execute(
                self._sql(ENGAGE.format(**self.functions)),
                (tenant, rate, burst, reason, now, burst, now),
            )

    def release(self, tenant: str) -> None:
        with self._writing() as c:
            c.execute(
                self._sql("DELETE FROM traffic_shaping WHERE tenant = ?"), (tenant,)
            )

    def rules(self) -> dict[str, ShapingRule]:
        with self._reading() as c:
            c.execute(
                "SELECT tenant, rate, burst, reason, engaged_at FROM traffic_shaping"
            )
            return {
                r["tenant"]: ShapingRule(
                    float(r["rate"]), float(r["burst"]), r["reason"], r["engaged_at"]
                )
                for r in c.fetchall()
            }


class SQLiteShapingStore(_SqlShapingStore):
    """Buckets in the log's SQLite file; a take is one BEGIN IMMEDIATE."""

    def __init__(self, datastore: SQLiteDatastore) -> None:
        self._datastore = datastore
        self._writer = SQLiteWriter(datastore, synchronous="NORMAL")
        with self._writer.transaction() as c:
            c.execute(TABLE)

    def _reading(self) -> Any:
        return self._datastore.transaction(commit=False)

    def _writing(self) -> Any:
        return self._writer.transaction()

    def take(self, tenant: str, *, now: float, cost: float = 1.0) -> Throttle | None:
        # BEGIN IMMEDIATE holds the file's write lock from the read to the
        # write, so takes in other processes cannot interleave.
        with self._writer.transaction() as c:
            c.execute("SELECT * FROM traffic_shaping WHERE tenant = ?", (tenant,))
            row = c.fetchone()
            if row is None:
                return None
            rate, burst = float(row["rate"]), float(row["burst"])
            level, clock = refill(
                row["tokens"], row["updated_at"], rate=rate, burst=burst, now=now
            )
            result = throttle(
                level, rate=rate, burst=burst, reason=row["reason"], cost=cost
            )
            c.execute(
                "UPDATE traffic_shaping SET tokens = ?, updated_at = ? "
                "WHERE tenant = ?",
                (result.tokens, clock, tenant),
            )
            return result

    def close(self) -> None:
        self._writer.close()


class PostgresShapingStore(_SqlShapingStore):
    """Buckets in the log's PostgreSQL database; a take is one statement."""

    mark = "%s"
    functions = {"min": "LEAST", "max": "GREATEST"}  # noqa: RUF012

    def __init__(self, datastore: PostgresDatastore) -> None:
        self._datastore = datastore
        with schema_lock(datastore), self._writing() as c:
            c.execute(TABLE)

    def _reading(self) -> Any:
        return self._datastore.transaction(commit=False)

    def _writing(self) -> Any:
        return self._datastore.transaction(commit=True)

    def take(self, tenant: str, *, now: float, cost: float = 1.0) -> Throttle | None:
        need = cost - EPSILON  # the same test as throttle()'s, in SQL
        params = {
            "tenant": tenant,
            "now": float(now),
            "cost": float(cost),
            "need": need,
        }
        # The pool's connections autocommit: a lone statement needs no BEGIN.
        with self._datastore.get_connection() as conn:
            row = conn.execute(PG_TAKE, params).fetchone()
        if row is None:
            return None
        return throttle(
            row["level"],
            rate=row["rate"],
            burst=row["burst"],
            reason=row["reason"],
            cost=cost,
        )

    def close(self) -> None:
        pass


def shaping_store(ledger: Ledger) -> ShapingStore:
    """The store for the ledger's backend, in the same database (table created)."""
    datastore: Any = ledger.factory.datastore  # type: ignore[attr-defined]
    if ledger.backend == "postgres":
        return PostgresShapingStore(datastore)
    return SQLiteShapingStore(datastore)
