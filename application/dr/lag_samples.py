"""Low-rate samples of the DR pair's state: when to take one, and recording it."""

from __future__ import annotations

from dataclasses import dataclass

from application.base import LedgerApplication
from domain.dr.lag_samples import LagSamples


@dataclass
class SampleClock:
    """Says when to sample: every interval_s, and at once when the lag crosses
    threshold_ms either way (the lag alert's threshold)."""

    interval_s: float
    threshold_ms: int
    last_at: float | None = None
    above: bool | None = None

    def due(self, lag_ms: int | None, now: float) -> str | None:
        """The cause of a sample due now ('interval', 'above', 'below'), or None.

        ``lag_ms`` is the standby's staleness (None: no standby answered, which
        crosses nothing). The first call is always due.
        """
        cause: str | None = None
        if lag_ms is not None:
            above = lag_ms > self.threshold_ms
            if self.above is not None and above != self.above:
                cause = "above" if above else "below"
            self.above = above
        if cause is None and (
            self.last_at is None or now - self.last_at >= self.interval_s
        ):
            cause = "interval"
        if cause is not None:
            self.last_at = now
        return cause


@dataclass(frozen=True)
class RegionSample:
    """What one region said about itself, and the reads this process served."""

    region: str
    role: str
    epoch: int
    lag_ms: int | None
    lag_bytes: int | None
    read_only: bool
    stale_reads: int
    secondary_reads: int


class LagSampleLog(LedgerApplication):
    """Records LagSamples.LagSampled in the shared log."""

    name = "ledger"

    def record_samples(
        self, samples: tuple[RegionSample, ...], *, at_ms: int, cause: str
    ) -> int | None:
        """Record one sample per region (one save); return the log position."""
        aggregates = []
        hour = LagSamples.hour_of(at_ms)
        for each in samples:
            aggregate = self._hour(each.region, hour)
            aggregate.sample(
                role=each.role,
                epoch=each.epoch,
                lag_ms=each.lag_ms,
                lag_bytes=each.lag_bytes,
                read_only=each.read_only,
                stale_reads=each.stale_reads,
                secondary_reads=each.secondary_reads,
                cause=cause,
            )
            aggregates.append(aggregate)
        if not aggregates:
            return None
        recordings = self.save(*aggregates)
        return recordings[-1].notification.id if recordings else None

    def _hour(self, region: str, hour: int) -> LagSamples:
        found = self._load(LagSamples.create_id(region, hour))
        if isinstance(found, LagSamples):
            return found
        return LagSamples(region=region, hour=hour)
