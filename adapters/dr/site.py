"""A running DR pair with its link relay and heartbeat (what `dr up` starts).

Tests, the drill and the CLI's daemon all go through :func:`create_site` or
:func:`attach_site`, so they run the very code `conductor dr up` runs. A site
made here changes roles in this process (adapters.dr.roles updates the pair it
holds); an attached site (the daemon's) follows dr.json instead, because the
role changes are made by other processes.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from adapters.dr.health import Heartbeat, wait_fresh
from adapters.dr.pair import PairState, RegionPair
from adapters.dr.region_log import bootstrap_log
from adapters.dr.relay import LinkRelay

if TYPE_CHECKING:
    from pathlib import Path

log = structlog.get_logger("conductor.dr")
FOLLOW_S = 0.1
"""How often an attached site looks at dr.json."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class StateFollower:
    """Keeps an attached site's picture of the pair equal to dr.json.

    Another process (the operator's, a test's) that promotes a region rewrites
    dr.json; this thread reloads it on change into ``pair.state`` (which the
    heartbeat reads every beat) and points the relay at the new primary, so
    the old primary, rewound as a standby, replicates from it.
    """

    def __init__(self, pair: RegionPair, relay: LinkRelay) -> None:
        self._pair = pair
        self._relay = relay
        self._path = pair.root / "dr.json"
        self._seen = self._path.read_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="dr-state-follower", daemon=True
        )

    def start(self) -> StateFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)

    def follow(self) -> None:
        """Reload dr.json if it changed; move the relay to its primary."""
        # The file is small and replaced atomically: compare its bytes (an
        # mtime can miss two writes within one clock tick).
        raw = self._path.read_bytes()
        if raw == self._seen:
            return
        state = PairState(**json.loads(raw))
        self._seen = raw
        before = self._pair.state
        self._pair.state = state
        self._relay.retarget(state.ports[state.primary])
        if (before.primary, before.epoch) != (state.primary, state.epoch):
            log.info("dr_state_followed", primary=state.primary, epoch=state.epoch)

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(FOLLOW_S):
            try:
                self.follow()
                failing = False
            except (OSError, ValueError, TypeError) as error:  # `dr down` under way
                if not failing:  # once, not ten lines a second
                    log.warning("dr_state_unreadable", error=type(error).__name__)
                failing = True


@dataclass
class Site:
    """The pair, the relay carrying its replication link, and the heartbeat."""

    pair: RegionPair
    relay: LinkRelay
    heartbeat: Heartbeat
    follower: StateFollower | None = None

    def close(self, *, destroy: bool) -> None:
        """Stop the heartbeat and the relay; stop and remove the clusters too."""
        if self.follower is not None:
            self.follower.stop()
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
        bootstrap_log(pair)  # the event log's tables, replicated to the standby
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
    """Relay and heartbeat for a pair that `dr up` made earlier (the daemon),
    following the role changes other processes record in dr.json."""
    pair = RegionPair.load(root)
    relay = LinkRelay(
        pair.state.ports[pair.state.primary],
        delay_ms=pair.state.link_delay_ms,
        port=pair.state.relay_port,
    )
    follower = StateFollower(pair, relay).start()
    return Site(
        pair=pair, relay=relay, heartbeat=Heartbeat(pair).start(), follower=follower
    )
