"""`python -m adapters.dr.daemon ROOT`: keep a pair's relay and heartbeat running.

It also runs region B's lineage follower (adapters.dr.lineage_follower) into
B's embedded store, or into Neo4j with ``--neo4j-uri`` (password from
``CONDUCTOR_NEO4J_PASSWORD``, so it is not on the command line). A follower
that cannot start is logged and left out: the relay and heartbeat matter more.

The heartbeat and the relay follow dr.json (adapters.dr.site.StateFollower):
a promotion or switchover made by another process moves the heartbeat to the
new primary and points the relay at it within about 100 ms.

`conductor dr up` starts it detached and records its pid in dr.json;
`conductor dr down` stops it with SIGTERM. It logs JSON lines to stderr
(daemon.log).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

import structlog

from adapters.dr.lineage_follower import (
    FOLLOWER_REGION,
    LineageFollower,
    Neo4jTarget,
    follow_lineage,
)
from adapters.dr.site import Site, attach_site

log = structlog.get_logger("conductor.dr")
PASSWORD_ENV = "CONDUCTOR_NEO4J_PASSWORD"  # noqa: S105 - a variable name


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m adapters.dr.daemon")
    parser.add_argument("root", type=Path)
    parser.add_argument("--lineage-region", default=FOLLOWER_REGION)
    parser.add_argument("--no-lineage", action="store_true")
    parser.add_argument("--neo4j-uri", default="")
    parser.add_argument("--neo4j-user", default="neo4j")
    parser.add_argument("--neo4j-database", default="")
    parser.add_argument(
        "--neo4j-namespace",
        default="conductor",
        help="the region's nodes go under NAMESPACE.region-<region>",
    )
    return parser.parse_args(argv)


def _follower(site: Site, args: argparse.Namespace) -> LineageFollower | None:
    if args.no_lineage:
        return None
    neo4j = (
        Neo4jTarget(
            uri=args.neo4j_uri,
            user=args.neo4j_user,
            password=os.environ.get(PASSWORD_ENV, ""),
            database=args.neo4j_database,
            namespace=args.neo4j_namespace,
        )
        if args.neo4j_uri
        else None
    )
    try:
        return follow_lineage(site.pair, args.lineage_region, neo4j=neo4j)
    except Exception:  # never lose the relay and heartbeat over lineage
        log.exception("lineage_follower_failed", region=args.lineage_region)
        return None


def _log_to_stderr() -> None:
    """JSON lines on stderr: `dr up` makes that daemon.log and drops stdout
    (structlog's default, so nothing the daemon logged used to be kept)."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


def main(argv: list[str]) -> int:
    args = _arguments(argv)
    _log_to_stderr()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    site = attach_site(args.root)
    follower = _follower(site, args)
    try:
        stop.wait()
    finally:
        if follower is not None:
            follower.close()
        site.close(destroy=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
