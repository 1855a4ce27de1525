"""Burn rates and the SRE workbook's multi-window rules, on hand-made counts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from application.autopilot.burn import (
    WINDOWS,
    cost_burn,
    period_bounds,
    slo_alerts,
    slo_burns,
)
from domain.autopilot.budget import LATENCY_BOUNDS_MS
from domain.autopilot.usage import Counts

TARGET = {"availability": Decimal("0.999"), "latency_p95_ms": 250}
SLO = {"query": TARGET}


def counts(requests: int, errors: int = 0, slow: int = 0, throttled: int = 0) -> Counts:
    c = Counts(requests=requests, errors=errors, throttled=throttled)
    c.hist[0] = requests - throttled - slow
    c.hist[LATENCY_BOUNDS_MS.index(250) + 1] = slow
    return c


def test_burn_is_the_bad_share_over_the_error_budget() -> None:
    burns = slo_burns(counts(10_000, errors=20, slow=1000), TARGET)
    assert burns["availability"] == pytest.approx(0.002 / 0.001)
    assert burns["latency"] == pytest.approx(0.1 / 0.05)


def test_throttled_requests_count_neither_as_served_nor_as_bad() -> None:
    burns = slo_burns(counts(1000, errors=9, throttled=100), TARGET)
    assert burns["availability"] == pytest.approx((9 / 900) / 0.001)


def _alerts(**by_window: Counts) -> list[str]:
    data = {name: {"query": by_window.get(f"w{name}", Counts())} for name in WINDOWS}
    _, alerts = slo_alerts(data, SLO)
    return [f"{a.severity}:{a.sli}:{a.long_window}/{a.short_window}" for a in alerts]


def test_page_needs_both_the_long_and_the_short_window() -> None:
    hot = counts(1000, errors=15)  # 15x
    assert _alerts(w1h=hot, w5m=hot) == ["page:availability:1h/5m"]
    assert _alerts(w1h=hot) == []  # the short window says it is over
    assert _alerts(w5m=hot) == []  # a blip the long window does not confirm


def test_slow_burn_pages_on_6h_and_30m_and_tickets_on_3d_and_6h() -> None:
    six = counts(1000, errors=7)  # 7x
    assert _alerts(w6h=six, w30m=six) == ["page:availability:6h/30m"]
    one = counts(1000, errors=2)  # 2x
    assert _alerts(w3d=one, w6h=one) == ["ticket:availability:3d/6h"]


def test_latency_pages_too() -> None:
    slow = counts(1000, slow=800)  # 80 % slow: 16x a 5 % budget
    assert _alerts(w1h=slow, w5m=slow) == ["page:latency:1h/5m"]


def test_periods_are_utc_calendar_periods() -> None:
    now = datetime(2026, 2, 14, 13, 30, tzinfo=UTC).timestamp()
    start, end = period_bounds("month", now)
    assert datetime.fromtimestamp(start, UTC) == datetime(2026, 2, 1, tzinfo=UTC)
    assert datetime.fromtimestamp(end, UTC) == datetime(2026, 3, 1, tzinfo=UTC)
    start, end = period_bounds("week", now)
    assert datetime.fromtimestamp(start, UTC) == datetime(2026, 2, 9, tzinfo=UTC)
    start, end = period_bounds("hour", now)
    assert end - start == 3600


def test_cost_burn_against_the_linear_pace() -> None:
    day = datetime(2026, 1, 5, tzinfo=UTC).timestamp()
    now = day + 6 * 3600
    cost = cost_burn(
        cap_units=86_400.0,  # pace: 1 unit/s
        period="day",
        now_s=now,
        spent_in_period=6 * 3600 * 2.0,
        units_by_window={"1h": 7200.0, "5m": 600.0},
        since_s=day,
    )
    assert cost.pace_units_per_s == pytest.approx(1.0)
    assert cost.burn["1h"] == pytest.approx(2.0)
    assert cost.burn["5m"] == pytest.approx(2.0)
    assert cost.period_burn == pytest.approx(2.0)
    assert cost.projected_units == pytest.approx(43_200 + 2.0 * 18 * 3600)
    assert cost.safe_units_per_s == pytest.approx((86_400 - 43_200) / (18 * 3600))


def test_a_young_budget_is_judged_over_whole_windows() -> None:
    """A first burst is not extrapolated: 600 units in a budget's first 10 min
    is 600 units over the hour, not 3,600."""
    day = datetime(2026, 1, 5, tzinfo=UTC).timestamp()
    cost = cost_burn(
        cap_units=86_400.0,
        period="day",
        now_s=day + 600,
        spent_in_period=600.0,
        units_by_window={"5m": 300.0, "1h": 600.0, "3d": 600.0},
        since_s=day,
    )
    assert cost.burn["5m"] == pytest.approx(1.0)
    assert cost.burn["1h"] == pytest.approx(600 / 3600)
    assert cost.period_burn == pytest.approx(1.0)
    assert cost.projected_units == pytest.approx(600 + 600 / 3600 * (86_400 - 600))
