"""The region router: reads by ``x-ig-read-from``, writes only to the primary.

Reads from a standby carry its staleness (adapters.dr.health); past the TTL
they fall back to the primary, or fail when it is unreachable. Writes go to
the primary the pair's state names, inside a transaction that first checks
the epoch (``SELECT ... FOR SHARE``, which a hot standby refuses with SQLSTATE
25006), so a writer with a stale picture can neither write to a demoted node
nor to a node of an older epoch. Connections are per thread and per region,
TLS with the application's client certificate.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import structlog
from psycopg import errors

from adapters.dr.health import STALENESS_SQL

if TYPE_CHECKING:
    from collections.abc import Callable

    from adapters.dr.pair import RegionPair

log = structlog.get_logger("conductor.dr.router")

T = TypeVar("T")
READ_FROM = ("primary", "secondary", "nearest")
_DOWN_FOR_S = 0.5


class RegionError(Exception):
    """A request the regions cannot serve right now."""

    retry_after_s = 1


class ReadOnlyReplicaError(RegionError):
    """A write reached a node in recovery (SQLSTATE 25006)."""

    def __init__(self, region: str, primary: str | None) -> None:
        super().__init__(f"region {region} is a read-only replica")
        self.region = region
        self.primary = primary


class StaleEpochError(RegionError):
    """The node's epoch differs from the writer's: it is not the current primary."""

    def __init__(self, region: str, node_epoch: int, epoch: int) -> None:
        super().__init__(f"region {region} is at epoch {node_epoch}, not {epoch}")
        self.region = region
        self.node_epoch = node_epoch
        self.epoch = epoch


class RegionUnavailableError(RegionError):
    """No region can answer within the rules (down, or too stale)."""

    def __init__(self, detail: str, *, lag_ms: int | None = None) -> None:
        super().__init__(detail)
        self.lag_ms = lag_ms


class KeyReusedError(Exception):
    """The command key was used before with a different payload."""


@dataclass(frozen=True)
class Read:
    """A routed read: the row (or None), who answered and how stale it was."""

    row: tuple[Any, ...] | None
    region: str
    stale_ms: int | None


@dataclass(frozen=True)
class Written:
    key: str
    region: str
    epoch: int
    created: bool


class DrRouter:
    """Routes one API process's DR reads and writes between the two regions."""

    def __init__(
        self,
        pair: Callable[[], RegionPair],
        *,
        region: str,
        ttl_ms: int,
        on_standby_read: Callable[[str, int], None] | None = None,
    ) -> None:
        self._pair = pair
        self.region = region
        self.ttl_ms = ttl_ms
        self._on_standby_read = on_standby_read
        """Called with (region, staleness in ms) for every read a standby answers."""
        self._local = threading.local()
        self._down_until: dict[str, float] = {}

    # -- reads -----------------------------------------------------------------

    def read_command(self, tenant: str, key: str, read_from: str) -> Read:
        """The command row for (tenant, key) from the region read_from picks."""
        pair = self._pair()
        state = pair.state
        wanted = {
            "primary": state.primary,
            "secondary": state.standby,
            "nearest": self.region,
        }[read_from]
        sql = (
            "SELECT key, payload_sha256, epoch, region FROM dr_commands "
            "WHERE tenant = %s AND key = %s"
        )
        if wanted == state.primary:
            return self._read_primary(pair, sql, (tenant, key))

        def standby_read(conn: psycopg.Connection[Any]) -> Read:
            stale = conn.execute(STALENESS_SQL).fetchone()
            lag = int(stale[0]) if stale else 0
            fresh = lag <= self.ttl_ms
            row = conn.execute(sql, (tenant, key)).fetchone() if fresh else None
            return Read(row=row, region=wanted, stale_ms=lag)

        lag: int | None
        try:
            read = self._run(pair, wanted, standby_read, skip_if_down=True)
        except psycopg.OperationalError:
            lag = None  # the standby is down: the primary answers instead
        else:
            lag = read.stale_ms
            if lag is not None and lag <= self.ttl_ms:
                if self._on_standby_read is not None:
                    self._on_standby_read(wanted, lag)
                return read
        try:
            return self._read_primary(pair, sql, (tenant, key))
        except RegionUnavailableError:
            raise RegionUnavailableError(
                f"primary {state.primary} is unreachable and standby "
                f"{wanted} is {'down' if lag is None else f'{lag} ms stale'}",
                lag_ms=lag,
            ) from None

    def _read_primary(self, pair: RegionPair, sql: str, args: tuple[Any, ...]) -> Read:
        primary = pair.state.primary
        try:
            row = self._run(pair, primary, lambda c: c.execute(sql, args).fetchone())
        except psycopg.OperationalError:
            msg = f"primary {primary} is unreachable"
            raise RegionUnavailableError(msg) from None
        return Read(row=row, region=primary, stale_ms=None)

    # -- writes ----------------------------------------------------------------

    def write_command(self, tenant: str, key: str, payload_sha256: str) -> Written:
        """Record an acknowledged command on the primary of the current epoch."""
        pair = self._pair()
        primary, epoch = pair.state.primary, pair.state.epoch

        def write(conn: psycopg.Connection[Any]) -> bool:
            with conn.transaction():
                row = conn.execute(
                    "SELECT epoch FROM dr_epoch WHERE id = 1 FOR SHARE"
                ).fetchone()
                node_epoch = int(row[0]) if row else -1
                if node_epoch != epoch:
                    raise StaleEpochError(primary, node_epoch, epoch)
                created = conn.execute(
                    "INSERT INTO dr_commands (key, tenant, payload_sha256, epoch, "
                    "region) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (tenant, key) DO NOTHING RETURNING key",
                    (key, tenant, payload_sha256, epoch, primary),
                ).fetchone()
                if created is None:
                    self._check_replay(conn, tenant, key, payload_sha256)
            return created is not None

        try:
            created = self._run(pair, primary, write)
        except errors.ReadOnlySqlTransaction:
            raise ReadOnlyReplicaError(primary, self._find_primary(pair)) from None
        except psycopg.OperationalError:
            msg = f"primary {primary} is unreachable"
            raise RegionUnavailableError(msg) from None
        return Written(key=key, region=primary, epoch=epoch, created=created)

    @staticmethod
    def _check_replay(
        conn: psycopg.Connection[Any], tenant: str, key: str, payload_sha256: str
    ) -> None:
        same = conn.execute(
            "SELECT payload_sha256 = %s FROM dr_commands "
            "WHERE tenant = %s AND key = %s",
            (payload_sha256, tenant, key),
        ).fetchone()
        if not (same and same[0]):
            msg = f"command key {key!r} was used with another payload"
            raise KeyReusedError(msg)

    def _find_primary(self, pair: RegionPair) -> str | None:
        """The region that answers as a primary now, if any."""
        for region in (pair.state.standby, pair.state.primary):
            with contextlib.suppress(psycopg.Error):
                with pair.connect(region) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is not None and not row[0]:
                    return region
        return None

    # -- connections -----------------------------------------------------------

    def _run(
        self,
        pair: RegionPair,
        region: str,
        work: Callable[[Any], T],
        *,
        skip_if_down: bool = False,
    ) -> T:
        """work(connection) on region; a dead cached connection is retried once.

        skip_if_down: fail at once if region failed moments ago (for reads that
        have somewhere else to go; the primary is always tried).
        """
        if skip_if_down and time.monotonic() < self._down_until.get(region, 0.0):
            msg = f"region {region} was unreachable moments ago"
            raise psycopg.OperationalError(msg)
        conns: dict[tuple[str, int], psycopg.Connection[Any]] = getattr(
            self._local, "conns", {}
        )
        self._local.conns = conns
        slot = (region, pair.state.ports[region])
        while True:
            conn = conns.get(slot)
            cached = conn is not None and not conn.closed
            try:
                if conn is None or not cached:
                    conn = conns[slot] = pair.connect(region)
                return work(conn)
            except psycopg.OperationalError:
                conns.pop(slot, None)
                if conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
                if not cached:  # a fresh connection failed: the region is down
                    self._down_until[region] = time.monotonic() + _DOWN_FOR_S
                    raise
