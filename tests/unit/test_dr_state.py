"""LagSampled: when the watcher takes one, and how the DR state folds them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from eventsourcing.persistence import Tracking

from application.dr.lag_samples import SampleClock
from domain.dr.lag_samples import LagSamples
from projections.dr_state import DrStateChanges, delta, fold_sample

if TYPE_CHECKING:
    from collections.abc import Iterator

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class TestSampleClock:
    def test_samples_first_then_every_interval(self) -> None:
        """The first observation samples; then one per interval, not per beat."""
        clock = SampleClock(interval_s=30, threshold_ms=5000)
        due = [clock.due(0, t * 0.25) for t in range(241)]  # 60 s of beats
        assert [t for t, cause in enumerate(due) if cause] == [0, 120, 240]
        assert {c for c in due if c} == {"interval"}

    def test_a_threshold_crossing_samples_at_once_either_way(self) -> None:
        """Crossing the alert threshold up or down is a sample of its own."""
        clock = SampleClock(interval_s=30, threshold_ms=5000)
        assert clock.due(100, 0.0) == "interval"
        assert clock.due(4000, 1.0) is None
        assert clock.due(6000, 2.0) == "above"
        assert clock.due(7000, 3.0) is None  # still above: no crossing
        assert clock.due(None, 4.0) is None  # no standby answered: crosses nothing
        assert clock.due(10, 5.0) == "below"
        assert clock.due(10, 35.0) == "interval"  # the crossing restarted the clock


def _samples(*rows: tuple[str, str, int, int]) -> Iterator[LagSamples.LagSampled]:
    """(region, role, stale_reads, secondary_reads) one minute apart."""
    aggregates: dict[str, LagSamples] = {}
    for minute, (region, role, stale, secondary) in enumerate(rows):
        aggregate = aggregates.setdefault(region, LagSamples(region=region, hour=1))
        aggregate.sample(
            role=role,
            epoch=1,
            lag_ms=0 if role == "primary" else 300,
            lag_bytes=None,
            read_only=role != "primary",
            stale_reads=stale,
            secondary_reads=secondary,
        )
        event = aggregate.collect_events()[-1]
        assert isinstance(event, LagSamples.LagSampled)
        object.__setattr__(event, "timestamp", T0 + timedelta(minutes=minute))
        yield event


class TestFold:
    def test_the_newest_sample_is_the_regions_state(self) -> None:
        """Role, epoch, lag and the read-only flag come from the newest sample."""
        changes = DrStateChanges()
        for position, event in enumerate(
            _samples(("A", "primary", 0, 0), ("A", "standby", 0, 0)), start=1
        ):
            fold_sample(event, Tracking("ledger", position), changes)
        row = changes.regions["A"]
        assert (row.role, row.read_only, row.lag_ms, row.samples) == (
            "standby",
            True,
            300,
            2,
        )
        assert row.position == 2
        assert row.sampled_at_ms == int((T0 + timedelta(minutes=1)).timestamp() * 1000)

    def test_reads_count_between_a_standbys_samples(self) -> None:
        """Deltas of the cumulative counters, only while the region is standby."""
        changes = DrStateChanges()
        rows = (
            ("B", "standby", 0, 0),
            ("B", "standby", 2, 10),  # +2 stale of +10
            ("B", "primary", 5, 30),  # promoted: reads up to here still count
            ("B", "primary", 5, 31),  # a primary's do not
        )
        for position, event in enumerate(_samples(*rows), start=1):
            fold_sample(event, Tracking("ledger", position), changes)
        assert [(d.stale, d.secondary) for d in changes.deltas] == [(2, 10), (3, 20)]

    def test_a_restarted_watcher_counts_again_from_zero(self) -> None:
        """A counter that went down began again: the new value is the delta."""
        assert delta(10, 14) == 4
        assert delta(10, 3) == 3
