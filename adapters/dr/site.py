"""A running DR pair with its link relay and heartbeat (what `dr up` starts).

Tests, the drill and the CLI's daemon all go through :func:`open_site`, so
they run the very code `conductor dr up` runs.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.dr.health import Heartbeat, wait_fresh
from adapters.dr.pair import PairState, RegionPair
from adapters.dr.relay import LinkRelay

if TYPE_CHECKING:
    from pathlib import Path


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Site:
    """The pair, the relay carrying its replication link, and the heartbeat."""

    pair: RegionPair
    relay: LinkRelay
    heartbeat: Heartbeat

    def close(self, *, destroy: bool) -> None:
        """Stop the heartbeat and the relay; stop and remove the clusters too."""
        self.heartbeat.stop()
        try:
            if destroy:
                self.pair.down()
        finally:
            self.relay.close()


def create_site(root: Path, *, sync: bool, link_delay_ms: int = 0) -> Site:
    """Make and start a new pair under root (removed again if that fails)."""
    ports = {"A": free_port(), "B": free_port()}
    relay = LinkRelay(ports["A"], delay_ms=link_delay_ms)
    pair = RegionPair(
        root,
        PairState(
            ports=ports, relay_port=relay.port, sync=sync, link_delay_ms=link_delay_ms
        ),
    )
    heartbeat = Heartbeat(pair)
    try:
        pair.up()
        heartbeat.start()
        wait_fresh(pair)  # the bootstrap's heartbeat row is seconds old
    except BaseException:
        heartbeat.stop()
        relay.close()
        with contextlib.suppress(Exception):
            pair.down()
        raise
    return Site(pair=pair, relay=relay, heartbeat=heartbeat)


def attach_site(root: Path) -> Site:
    """Relay and heartbeat for a pair that `dr up` made earlier (the daemon)."""
    pair = RegionPair.load(root)
    relay = LinkRelay(
        pair.state.ports[pair.state.primary],
        delay_ms=pair.state.link_delay_ms,
        port=pair.state.relay_port,
    )
    return Site(pair=pair, relay=relay, heartbeat=Heartbeat(pair).start())
