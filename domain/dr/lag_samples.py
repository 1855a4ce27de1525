"""A region's replication state, sampled at a low rate: one aggregate per hour.

The watcher of the DR pair records a sample every few seconds and at once when
the lag crosses the alert threshold; an hour's aggregate keeps its versions
bounded (120 samples at the default 30 s), so loading it to append one stays
cheap, and the DR state read model folds the samples into the latest state and
the stale-read rates.
"""

# ruff: noqa: ARG002 - an @event method's arguments are its event's fields
from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

HOUR_MS = 3_600_000
CAUSES = frozenset({"interval", "above", "below"})
"""Why a sample was taken: the interval, or the lag crossing the threshold
upwards (above) or back down (below)."""


class LagSamples(Aggregate):
    """The samples of one region in one UTC hour."""

    class Opened(Aggregate.Created):
        region: str
        hour: int
        """Hours since the epoch (UTC)."""

    @event(Opened)
    def __init__(self, *, region: str, hour: int) -> None:
        self.region = region
        self.hour = hour
        self.samples = 0

    @staticmethod
    def create_id(region: str, hour: int) -> UUID:
        return uuid5(NAMESPACE_URL, f"/dr/lag-samples/{region}/{hour}")

    @staticmethod
    def hour_of(at_ms: int) -> int:
        """The hour (since the epoch, UTC) an instant falls in."""
        return at_ms // HOUR_MS

    class LagSampled(Aggregate.Event):
        region: str
        role: str
        epoch: int
        lag_ms: int | None
        lag_bytes: int | None
        read_only: bool
        stale_reads: int
        """Reads answered with a non-zero x-ig-stale-read, since the watching
        process started (a cumulative counter: rates come from differences)."""
        secondary_reads: int
        """Reads answered by a standby since the watching process started."""
        cause: str = "interval"

    def sample(
        self,
        *,
        role: str,
        epoch: int,
        lag_ms: int | None,
        lag_bytes: int | None,
        read_only: bool,
        stale_reads: int,
        secondary_reads: int,
        cause: str = "interval",
    ) -> None:
        """Record what the region said about itself (role, epoch, lag)."""
        if cause not in CAUSES:
            msg = f"unknown sample cause {cause!r}"
            raise ValueError(msg)
        self._sample(
            region=self.region,
            role=role,
            epoch=epoch,
            lag_ms=lag_ms,
            lag_bytes=lag_bytes,
            read_only=read_only,
            stale_reads=max(stale_reads, 0),
            secondary_reads=max(secondary_reads, 0),
            cause=cause,
        )

    @event(LagSampled)
    def _sample(
        self,
        *,
        region: str,
        role: str,
        epoch: int,
        lag_ms: int | None,
        lag_bytes: int | None,
        read_only: bool,
        stale_reads: int,
        secondary_reads: int,
        cause: str,
    ) -> None:
        self.samples += 1
