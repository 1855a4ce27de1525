"""The replica-lag alert of a region: it fires, then clears, then may fire again."""

# ruff: noqa: ARG002 - an @event method's arguments are its event's fields
from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import ConflictError
from domain.topics import keep_stored_topics


class LagAlertStateError(ConflictError):
    """Firing a firing alert, or clearing a clear one."""

    def __init__(self, region: str, *, firing: bool) -> None:
        self.region = region
        super().__init__(
            f"the lag alert of region {region} is {'firing' if firing else 'clear'}"
        )


class LagAlert(Aggregate):
    """Lag above a threshold for a duration fires it; lag back under clears it."""

    class Opened(Aggregate.Created):
        region: str

    @event(Opened)
    def __init__(self, *, region: str) -> None:
        self.region = region
        self.firing = False
        self.fired = 0

    @staticmethod
    def create_id(region: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/dr/lag-alerts/{region}")

    class Fired(Aggregate.Event):
        lag_ms: int
        threshold_ms: int
        above_for_ms: int

    def fire(self, *, lag_ms: int, threshold_ms: int, above_for_ms: int) -> None:
        """Raise the alert (lag_ms stayed above threshold_ms for above_for_ms)."""
        if self.firing:
            raise LagAlertStateError(self.region, firing=True)
        self._fire(lag_ms=lag_ms, threshold_ms=threshold_ms, above_for_ms=above_for_ms)

    @event(Fired)
    def _fire(self, *, lag_ms: int, threshold_ms: int, above_for_ms: int) -> None:
        self.firing = True
        self.fired += 1

    class Cleared(Aggregate.Event):
        lag_ms: int

    def clear(self, *, lag_ms: int) -> None:
        """Lower the alert: the lag is back under the threshold."""
        if not self.firing:
            raise LagAlertStateError(self.region, firing=False)
        self._clear(lag_ms=lag_ms)

    @event(Cleared)
    def _clear(self, *, lag_ms: int) -> None:
        self.firing = False


keep_stored_topics(__name__, stored_as="domain.lag_alert")
