"""Role changes of a DR pair: fence, promote, rewind back, switch over.

Fencing is real, not advisory: the old primary is stopped (or already dead)
and gets ``standby.signal`` plus a ``primary_conninfo`` naming the new
primary, so whoever restarts it gets a hot standby that refuses every write
with SQLSTATE 25006. The epoch in ``dr_epoch`` is bumped on the new primary
before it takes writes, and every writer checks it in its transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
import structlog

from adapters.sql.pgcluster import PgCluster, find_bindir

if TYPE_CHECKING:
    from adapters.dr.pair import RegionPair
    from adapters.dr.relay import LinkRelay

log = structlog.get_logger("conductor.dr")


@dataclass(frozen=True)
class Promotion:
    """The outcome of promoting a standby."""

    region: str
    epoch: int
    lsn: str


def fence(pair: RegionPair, region: str, *, graceful: bool) -> None:
    """Stop region (gracefully: its WAL reaches the standby first) and demote it."""
    cluster = pair.cluster(region)
    if cluster.is_running():
        if graceful:
            cluster.stop("fast")
        else:
            cluster.kill()
    signal_file = cluster.data_dir / "standby.signal"
    signal_file.touch()
    PgCluster.give_to_server(signal_file)
    log.info("region_fenced", region=region, epoch=pair.state.epoch)


def promote(pair: RegionPair, region: str, relay: LinkRelay | None) -> Promotion:
    """Fence the old primary, promote region, bump the epoch; return the result."""
    old = pair.state.primary
    pair.state.primary = region
    pair.state.sync_active = False  # no standby now: sync commits would hang
    fence(pair, old, graceful=False)  # a no-op stop if it is already dead
    pair.cluster(old).init()  # its conf now says: standby of the new primary
    pair.cluster(region).init()  # and the new one: primary, async for now
    with pair.connect(region) as conn:
        conn.execute("SELECT pg_promote(wait => true, wait_seconds => 30)")
        conn.execute("SELECT pg_reload_conf()")
        conn.execute("SET synchronous_commit = local")
        row = conn.execute(
            "UPDATE dr_epoch SET epoch = epoch + 1 WHERE id = 1 "
            "RETURNING epoch, pg_current_wal_lsn()::text"
        ).fetchone()
    assert row is not None
    pair.state.epoch = int(row[0])
    pair.save()
    if relay is not None:
        relay.retarget(pair.state.ports[region])
    log.info("region_promoted", region=region, epoch=pair.state.epoch, lsn=row[1])
    return Promotion(region=region, epoch=pair.state.epoch, lsn=str(row[1]))


def rewind_as_standby(pair: RegionPair, region: str, timeout: float = 60.0) -> None:
    """pg_rewind the fenced region from the primary and start it as its standby."""
    primary = pair.state.primary
    with pair.connect(primary) as conn:
        conn.execute("CHECKPOINT")  # pg_rewind reads the timeline from the control file
    cluster = pair.cluster(region)
    if cluster.is_running():
        cluster.stop("fast")
    (cluster.data_dir / "standby.signal").unlink(missing_ok=True)
    result = cluster.run_tool(
        [
            str(find_bindir() / "pg_rewind"),
            "--target-pgdata",
            str(cluster.data_dir),
            "--source-server",
            pair.conninfo(primary, who="replication"),
        ],
        timeout=timeout,
    )
    if result.returncode != 0:
        msg = f"pg_rewind of {region} failed: {result.stderr.strip()[-2000:]}"
        raise RuntimeError(msg)
    fence(pair, region, graceful=True)  # standby.signal back
    cluster.init()
    cluster.start()
    pair.wait_streaming(timeout)
    wait_caught_up(pair, timeout)
    if pair.state.sync:
        pair.state.sync_active = True
        pair.cluster(primary).init()
        with pair.connect(primary) as conn:
            conn.execute("SELECT pg_reload_conf()")
    pair.save()
    log.info("region_rewound", region=region, primary=primary)


def wait_caught_up(pair: RegionPair, timeout: float = 60.0) -> None:
    """Wait until the standby has replayed everything the primary has written."""
    deadline = time.monotonic() + timeout
    with pair.connect(pair.state.primary) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    target = row[0]
    while time.monotonic() < deadline:
        try:
            with pair.connect(pair.state.standby) as conn:
                done = conn.execute(
                    "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s) >= 0",
                    (target,),
                ).fetchone()
            if done and done[0]:
                return
        except psycopg.OperationalError:
            pass
        time.sleep(0.05)
    msg = f"standby {pair.state.standby} did not reach {target} in {timeout}s"
    raise RuntimeError(msg)


def switchover(pair: RegionPair, region: str, relay: LinkRelay | None) -> Promotion:
    """Graceful handover to region; the old primary becomes its standby."""
    old = pair.state.primary
    wait_caught_up(pair)
    fence(pair, old, graceful=True)  # a clean shutdown streams its last WAL
    promotion = promote(pair, region, relay)
    rewind_as_standby(pair, old)
    return promotion
