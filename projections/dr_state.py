"""The DR state read model: each region's latest sample and its stale-read rates.

LagSamples.LagSampled events (a few a minute) fold into one row per region
(role, epoch, lag, read-only flag, when sampled) and one delta row per
sample: the stale and secondary reads served since the previous sample, from
the samples' cumulative counters. The view sums the deltas of the last 5 m,
1 h and 1 d (as of the region's newest sample) into its stale-read rates.
A region's reads count while it is the standby: only a standby answers
secondary reads.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from domain.dr.lag_samples import LagSamples

if TYPE_CHECKING:
    from collections.abc import Sequence

RATE_WINDOWS: dict[str, int] = {"5m": 300_000, "1h": 3_600_000, "1d": 86_400_000}
"""Stale-read rate windows (ms), as of each region's newest sample."""


@dataclass
class RegionState:
    """A region as its newest sample saw it (and the counters it carried)."""

    region: str
    role: str
    epoch: int
    lag_ms: int | None
    lag_bytes: int | None
    read_only: bool
    sampled_at_ms: int
    cause: str
    stale_reads: int
    """The cumulative counters of the newest sample (for the next delta)."""
    secondary_reads: int
    samples: int = 0
    position: int = 0
    stale_rate: dict[str, float | None] = field(default_factory=dict)
    """Window -> stale reads / secondary reads (None: no secondary reads)."""


@dataclass(frozen=True)
class ReadsDelta:
    """Reads a region served as the standby between two samples."""

    region: str
    at_ms: int
    position: int
    stale: int
    secondary: int


@dataclass
class DrStateChanges:
    """One batch folded: the regions' new rows and their samples' deltas."""

    regions: dict[str, RegionState] = field(default_factory=dict)
    deltas: list[ReadsDelta] = field(default_factory=list)


def delta(previous: int, current: int) -> int:
    """Counter increase between samples; a smaller value means the watching
    process restarted (its counters began again at 0)."""
    return current - previous if current >= previous else current


class DrStateView(TrackingRecorder):
    """What the DR state projection writes and GET /v1/dr/state reads."""

    @abstractmethod
    def load_regions(self, regions: Sequence[str]) -> dict[str, RegionState]:
        """Current rows for these regions."""

    @abstractmethod
    def apply(self, changes: DrStateChanges, tracking: Tracking) -> None:
        """Add the deltas, drop those older than a day, upsert the regions with
        their rates summed from the deltas, track: one transaction."""

    @abstractmethod
    def regions(self) -> list[RegionState]:
        """Every region sampled, by name."""

    @abstractmethod
    def reset(self) -> None:
        """Drop every row and the tracking position."""

    def close(self) -> None:
        """Release connections of the view's own."""


class DrStateProjection(Projection[DrStateView]):
    name = "dr-state"
    topics = (get_topic(LagSamples.LagSampled),)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.process_batch([(domain_event, tracking)], tracking)

    def process_batch(
        self, items: Sequence[tuple[Any, Tracking]], tracking: Tracking
    ) -> None:
        changes = DrStateChanges()
        regions = sorted(
            {e.region for e, _ in items if isinstance(e, LagSamples.LagSampled)}
        )
        if regions:
            changes.regions = self.view.load_regions(regions)
        for event, each in items:
            self.apply(event, each, changes)
        self.view.apply(changes, tracking)

    @singledispatchmethod
    def apply(self, event: Any, tracking: Tracking, changes: DrStateChanges) -> None:
        """Other events leave the DR state unchanged."""

    @apply.register
    def _(
        self, event: LagSamples.LagSampled, tracking: Tracking, changes: DrStateChanges
    ) -> None:
        fold_sample(event, tracking, changes)


def fold_sample(
    event: LagSamples.LagSampled, tracking: Tracking, changes: DrStateChanges
) -> None:
    """Fold one sample into its region's row; a standby's sample after a
    standby's sample adds the reads served in between."""
    at_ms = int(event.timestamp.timestamp() * 1000)
    previous = changes.regions.get(event.region)
    if (
        previous is not None
        and previous.role == "standby"
        and previous.sampled_at_ms <= at_ms
    ):
        changes.deltas.append(
            ReadsDelta(
                region=event.region,
                at_ms=at_ms,
                position=tracking.notification_id,
                stale=delta(previous.stale_reads, event.stale_reads),
                secondary=delta(previous.secondary_reads, event.secondary_reads),
            )
        )
    changes.regions[event.region] = RegionState(
        region=event.region,
        role=event.role,
        epoch=event.epoch,
        lag_ms=event.lag_ms,
        lag_bytes=event.lag_bytes,
        read_only=event.read_only,
        sampled_at_ms=at_ms,
        cause=event.cause,
        stale_reads=event.stale_reads,
        secondary_reads=event.secondary_reads,
        samples=(previous.samples if previous else 0) + 1,
        position=tracking.notification_id,
    )
