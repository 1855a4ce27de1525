"""Conductor's event log in one region of a DR pair, over TLS with the client cert.

The same recorder, transcoder and tables as ``open_ledger`` (the library's
PostgreSQL recorder plus the hash chain). The library hands its connection
pool only host, port, database, user and password, so the pair's TLS
parameters are added to the pool's connection arguments before the first
connection is made. On a hot standby nothing may be created: open it with
``create_tables=False`` and only read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from eventsourcing.persistence import InfrastructureFactory

from adapters.ledger.store import Ledger, eventsourcing_env

if TYPE_CHECKING:
    from eventsourcing.postgres import PostgresFactory

    from adapters.dr.pair import RegionPair


def open_region_log(
    pair: RegionPair,
    region: str,
    *,
    create_tables: bool,
    pool_size: int = 2,
    recorder_topic: str | None = None,
    wait_s: int = 5,
) -> Ledger:
    """The event log in region's PostgreSQL (tables made only if create_tables).

    recorder_topic: another chained recorder class (the DR primary's adds the
    epoch check); wait_s: how long a caller waits for a pooled connection.
    """
    port = pair.state.ports[region]
    env = eventsourcing_env(
        f"postgresql://postgres@127.0.0.1:{port}/postgres", pool_size=pool_size
    )
    env["CREATE_TABLE"] = "y" if create_tables else "n"
    env["POSTGRES_CONNECT_TIMEOUT"] = str(wait_s)
    if recorder_topic is not None:
        env["APPLICATION_RECORDER_TOPIC"] = recorder_topic
    factory = InfrastructureFactory.construct(env=env)
    files = pair.certs("app")
    kwargs = cast("PostgresFactory", factory).datastore.pool.kwargs
    assert isinstance(kwargs, dict)  # the library passes a plain dict
    kwargs.update(
        sslmode="verify-full",
        sslrootcert=str(files.ca),
        sslcert=str(files.cert),
        sslkey=str(files.key),
        connect_timeout=2,  # libpq's own: a hung region must not hang a caller
    )
    recorder = factory.application_recorder()
    return Ledger(env=env, factory=factory, recorder=recorder)


def bootstrap_log(pair: RegionPair) -> None:
    """Create the event log's tables on the primary (they replicate to the standby).

    A standby cannot create them, and a follower reading there before anyone
    wrote would otherwise meet a missing table.
    """
    open_region_log(pair, pair.state.primary, create_tables=True, pool_size=1).close()
