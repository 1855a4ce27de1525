"""The replica-lag alert: when it fires and clears, and its aggregate."""

from __future__ import annotations

import pytest

from application.dr.lag_alerts import LagAlarm
from domain.dr.lag_alert import LagAlert, LagAlertStateError


def test_fires_only_after_lag_stays_above_the_threshold_for_the_duration() -> None:
    """5 s for 10 min, scaled down: one dip below resets the clock."""
    alarm = LagAlarm(threshold_ms=5000, for_s=600)
    assert alarm.observe(6000, now=0) is None
    assert alarm.observe(6000, now=599) is None
    assert alarm.observe(100, now=600) is None  # dipped: not firing, clock reset
    assert alarm.observe(6000, now=700) is None
    assert alarm.observe(7000, now=1300) == "fire"
    assert alarm.observe(8000, now=1400) is None  # fires once
    assert alarm.observe(None, now=1500) is None  # standby unreachable: no verdict
    assert alarm.observe(4000, now=1600) == "clear"
    assert alarm.observe(4000, now=1700) is None


def test_the_aggregate_alternates_fired_and_cleared() -> None:
    """Fire, clear, fire again; firing twice or clearing a clear alert is refused."""
    alert = LagAlert(region="B")
    assert alert.id == LagAlert.create_id("B")
    with pytest.raises(LagAlertStateError):
        alert.clear(lag_ms=0)
    alert.fire(lag_ms=6000, threshold_ms=5000, above_for_ms=600_000)
    with pytest.raises(LagAlertStateError):
        alert.fire(lag_ms=6000, threshold_ms=5000, above_for_ms=600_000)
    alert.clear(lag_ms=10)
    alert.fire(lag_ms=5100, threshold_ms=5000, above_for_ms=600_000)
    assert [type(e).__name__ for e in alert.collect_events()] == [
        "Opened",
        "Fired",
        "Cleared",
        "Fired",
    ]
    assert alert.fired == 2
