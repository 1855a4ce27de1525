"""The autopilot's settings and the record of what it did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AutopilotConfig:
    interval_s: float = 10.0
    min_dwell_s: float = 600.0
    """Least time between cap changes, and quiet time before a release."""
    raise_below: float = 0.8
    """Lift a cap when demand falls under this share of the safe rate."""
    lower_step: float = 0.95
    """Lower a cap again only when the safe rate fell under this share of it."""
    heavy_share: float = 1.5
    """A tenant is heavy when its 5 m rate exceeds this x its neighbours' mean."""
    release_demand: float = 1.2
    """Release SLO shaping when attempts stay under this x the shaped rate."""
    burst_s: float = 10.0
    """A bucket holds this many seconds of its rate."""
    floor_rps: float = 1.0
    min_events: int = 100
    """Served requests a burn window needs before it can page (ADR 0015)."""
    capacity_rps: float = 100.0
    """Requests/s the shared service sustains, summed over every tenant."""
    min_capacity_share: float = 0.1
    """Shape a tenant for an SLO page only when its 5 m rate is at least this
    share of the capacity, and it has neighbours: otherwise throttling it
    protects no one, and the page stays an incident (ADR 0015)."""


@dataclass(frozen=True)
class Action:
    """One thing the autopilot did (also an event in the log)."""

    at_s: float
    tenant: str
    kind: str
    reason: str
    position: int | None
    numbers: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "at": round(self.at_s, 3),
            "tenant": self.tenant,
            "kind": self.kind,
            "reason": self.reason,
            "position": self.position,
            "numbers": self.numbers,
        }
