"""Burn rates: cost against the budget's linear pace, SLO error budgets by window.

The multi-window, multi-burn-rate rules are the Google SRE workbook's (as
Sloth and Pyrra generate them): page when the error budget burns 14.4x over
1 h and 5 m, or 6x over 6 h and 30 m; ticket when 1x over 3 d and 6 h.
A window holding fewer than ``min_events`` served requests cannot breach: the
workbook's low-traffic caveat (ADR 0015), two bad requests of twenty are not
an outage.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from domain.autopilot.usage import Counts

if TYPE_CHECKING:
    from collections.abc import Mapping

WINDOWS: dict[str, int] = {
    "5m": 300,
    "30m": 1800,
    "1h": 3600,
    "6h": 6 * 3600,
    "3d": 3 * 86400,
}
PAGE_RULES = (("1h", "5m", 14.4), ("6h", "30m", 6.0))
MIN_EVENTS = 100
"""Served requests a window needs before its burn rate can breach (ADR 0015)."""
TICKET_RULES = (("3d", "6h", 1.0),)


def slo_burns(counts: Counts, target: Mapping[str, Any]) -> dict[str, float]:
    """Error-budget burn of availability and latency for one window's counts.

    Burn 1 spends the budget exactly over the SLO period. Throttled requests
    (429) are the client's and count for neither.
    """
    served = counts.requests - counts.throttled
    if served <= 0:
        return {"availability": 0.0, "latency": 0.0}
    availability = float(target["availability"])
    bad = counts.errors / served
    slow = counts.slower_than(int(target["latency_p95_ms"])) / served
    return {
        "availability": bad / (1.0 - availability),
        "latency": slow / 0.05,  # a p95 target leaves 5 % of requests slower
    }


@dataclass(frozen=True)
class SloAlert:
    """Which rule fired and the burns it compared."""

    severity: str  # page | ticket
    route_class: str
    sli: str
    long_window: str
    short_window: str
    threshold: float
    long_burn: float
    short_burn: float


def _served(counts: Counts) -> int:
    return counts.requests - counts.throttled


def slo_alerts(
    windows: Mapping[str, Mapping[str, Counts]],
    slo: Mapping[str, Mapping[str, Any]],
    *,
    min_events: int = MIN_EVENTS,
) -> tuple[dict[str, dict[str, dict[str, float]]], list[SloAlert]]:
    """Burns per window, class and SLI; the page and ticket rules that hold.

    ``windows`` maps window name -> route class -> counts. A rule holds only
    when both of its windows served at least ``min_events`` requests.
    """
    served = {
        name: {rc: _served(c) for rc, c in windows.get(name, {}).items()}
        for name in WINDOWS
    }
    burns: dict[str, dict[str, dict[str, float]]] = {}
    for name in WINDOWS:
        per_class = windows.get(name, {})
        burns[name] = {
            route_class: slo_burns(per_class.get(route_class, Counts()), target)
            for route_class, target in slo.items()
        }
    alerts: list[SloAlert] = []
    for severity, rules in (("page", PAGE_RULES), ("ticket", TICKET_RULES)):
        for route_class in slo:
            for sli in ("availability", "latency"):
                for long_w, short_w, threshold in rules:
                    long_burn = burns[long_w][route_class][sli]
                    short_burn = burns[short_w][route_class][sli]
                    enough = min(
                        served[long_w].get(route_class, 0),
                        served[short_w].get(route_class, 0),
                    )
                    if (
                        enough >= min_events
                        and long_burn >= threshold
                        and short_burn >= threshold
                    ):
                        alerts.append(
                            SloAlert(
                                severity,
                                route_class,
                                sli,
                                long_w,
                                short_w,
                                threshold,
                                long_burn,
                                short_burn,
                            )
                        )
                        break
    return burns, alerts


def period_bounds(period: str, now_s: float) -> tuple[float, float]:
    """The UTC calendar period containing ``now_s``: start and end (epoch s)."""
    now = datetime.fromtimestamp(now_s, UTC)
    if period == "hour":
        start = now.replace(minute=0, second=0, microsecond=0)
        end = start + timedelta(hours=1)
    elif period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=1)
    elif period == "week":
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif period == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        days = calendar.monthrange(start.year, start.month)[1]
        end = start + timedelta(days=days)
    else:
        msg = f"unknown period {period!r}"
        raise ValueError(msg)
    return start.timestamp(), end.timestamp()


@dataclass(frozen=True)
class CostBurn:
    """Spending against the linear pace that exactly uses the cap by period end."""

    pace_units_per_s: float
    spent_units: float
    remaining_units: float
    remaining_s: float
    burn: dict[str, float]
    """Window -> spend over the window / pace over the window."""
    period_burn: float
    """Period to date: spent / (pace x elapsed)."""
    projected_units: float
    """Spent plus the last hour's rate held until the period ends."""

    @property
    def safe_units_per_s(self) -> float:
        """The rate that keeps the rest of the period inside the budget."""
        return max(self.remaining_units, 0.0) / max(self.remaining_s, 1.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "paceUnitsPerS": round(self.pace_units_per_s, 6),
            "spentUnits": round(self.spent_units, 6),
            "remainingUnits": round(self.remaining_units, 6),
            "remainingS": round(self.remaining_s, 3),
            "burn": {k: round(v, 4) for k, v in self.burn.items()},
            "periodBurn": round(self.period_burn, 4),
            "projectedUnits": round(self.projected_units, 3),
            "safeUnitsPerS": round(self.safe_units_per_s, 6),
        }


def cost_burn(
    *,
    cap_units: float,
    period: str,
    now_s: float,
    spent_in_period: float,
    units_by_window: Mapping[str, float],
    since_s: float,
) -> CostBurn:
    """Cost burn per window over the whole window (as the SLO burns are: a young
    budget's first burst is not extrapolated), and the period to date since
    ``since_s`` (the budget's start, or the period's)."""
    start, end = period_bounds(period, now_s)
    pace = cap_units / (end - start)
    burn = {
        name: units_by_window.get(name, 0.0) / (pace * seconds)
        for name, seconds in WINDOWS.items()
    }
    elapsed = max(now_s - max(start, since_s), 1.0)
    rate_1h = units_by_window.get("1h", 0.0) / WINDOWS["1h"]
    return CostBurn(
        pace_units_per_s=pace,
        spent_units=spent_in_period,
        remaining_units=cap_units - spent_in_period,
        remaining_s=end - now_s,
        burn=burn,
        period_burn=spent_in_period / (pace * elapsed),
        projected_units=spent_in_period + rate_1h * (end - now_s),
    )
