"""The primary's heartbeat, and what each region says about itself.

The primary updates one row every 250 ms; a standby's staleness is the age of
the newest heartbeat it has replayed, less one interval (a fresh replica's
heartbeat is up to one interval old). ``now() - pg_last_xact_replay_timestamp()``
would grow while the primary is idle, so it is not used.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
import structlog

if TYPE_CHECKING:
    from adapters.dr.pair import RegionPair

log = structlog.get_logger("conductor.dr")

HEARTBEAT_S = 0.25
STALENESS_SQL = (
    "SELECT greatest(0, floor(extract(epoch FROM clock_timestamp() - at) * 1000)"
    f" - {int(HEARTBEAT_S * 1000)})::bigint, pg_is_in_recovery()"
    " FROM dr_heartbeat WHERE id = 1"
)


class Heartbeat:
    """A thread writing the heartbeat row on whichever region is primary.

    It follows ``pair.state``: when the primary or the epoch changes it
    reconnects to the new primary at the next beat.
    """

    def __init__(self, pair: RegionPair, interval: float = HEARTBEAT_S) -> None:
        self._pair = pair
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dr-heartbeat")
        self._thread.daemon = True
        self.beats = 0

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout=5)

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        writing_to: tuple[str, int] | None = None
        while not self._stop.wait(self._interval):
            # Read the pair's state every beat: a promotion moves the primary
            # and bumps the epoch (in this process, or, in the daemon, in
            # dr.json as followed by adapters.dr.site.StateFollower).
            state = self._pair.state
            where = (state.primary, state.epoch)
            if conn is not None and where != writing_to:
                log.info("heartbeat_moved", region=where[0], epoch=where[1])
                _close(conn)
                conn = None
            try:
                if conn is None or conn.closed:
                    conn = self._pair.connect(where[0])
                    conn.execute("SET synchronous_commit = local")
                    writing_to = where
                conn.execute(
                    "UPDATE dr_heartbeat SET at = clock_timestamp(), "
                    "beats = beats + 1 WHERE id = 1"
                )
                self.beats += 1
            except psycopg.Error:
                _close(conn)
                conn = None  # the primary is gone or moved: reconnect next beat
        _close(conn)


def _close(conn: psycopg.Connection[Any] | None) -> None:
    if conn is not None:
        with contextlib.suppress(psycopg.Error):
            conn.close()


def wait_fresh(pair: RegionPair, timeout: float = 30.0) -> None:
    """Wait until the standby has replayed a current heartbeat (staleness 0)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if region_status(pair, pair.state.standby).lag_ms == 0:
            return
        time.sleep(0.05)
    msg = f"standby {pair.state.standby} did not replay a heartbeat in {timeout}s"
    raise RuntimeError(msg)


@dataclass(frozen=True)
class RegionStatus:
    """One region as `conductor dr status` shows it."""

    region: str
    up: bool
    role: str
    lsn: str | None = None
    lag_ms: int | None = None
    lag_bytes: int | None = None
    epoch: int | None = None


def region_status(pair: RegionPair, region: str) -> RegionStatus:
    """Ask region for its role, LSN, staleness and epoch (down if unreachable)."""
    try:
        with pair.connect(region) as conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() "
                "THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text, "
                "(SELECT epoch FROM dr_epoch WHERE id = 1)"
            ).fetchone()
            stale = conn.execute(STALENESS_SQL).fetchone()
            lag_bytes = conn.execute(
                "SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn))"
                "::bigint FROM pg_stat_replication WHERE NOT pg_is_in_recovery()"
            ).fetchone()
    except psycopg.OperationalError:
        return RegionStatus(region=region, up=False, role="down")
    assert row is not None
    assert stale is not None
    standby = bool(row[0])
    return RegionStatus(
        region=region,
        up=True,
        role="standby" if standby else "primary",
        lsn=row[1],
        lag_ms=int(stale[0]) if standby else 0,
        lag_bytes=None if standby or lag_bytes is None else lag_bytes[0],
        epoch=int(row[2]),
    )
