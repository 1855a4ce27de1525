"""The replica-lag alert: when to fire and clear, and recording it in the log."""

from __future__ import annotations

from dataclasses import dataclass

from application.base import LedgerApplication
from domain.dr.lag_alert import LagAlert


@dataclass
class LagAlarm:
    """Fires once lag stays above threshold_ms for for_s; clears when it drops."""

    threshold_ms: int
    for_s: float
    above_since: float | None = None
    firing: bool = False

    def observe(self, lag_ms: int | None, now: float) -> str | None:
        """'fire', 'clear' or None for one lag sample (None: no standby to ask)."""
        if lag_ms is None or lag_ms <= self.threshold_ms:
            self.above_since = None
            if self.firing and lag_ms is not None:
                self.firing = False
                return "clear"
            return None
        if self.above_since is None:
            self.above_since = now
        if not self.firing and now - self.above_since >= self.for_s:
            self.firing = True
            return "fire"
        return None


class LagAlerts(LedgerApplication):
    """Records LagAlert.Fired and .Cleared in the shared log."""

    name = "ledger"

    def fire_alert(
        self, *, region: str, lag_ms: int, threshold_ms: int, above_for_ms: int
    ) -> int | None:
        """Record that region's lag alert fired; return the log position."""
        alert = self._alert(region)
        alert.fire(lag_ms=lag_ms, threshold_ms=threshold_ms, above_for_ms=above_for_ms)
        return self._saved(alert)

    def clear_alert(self, *, region: str, lag_ms: int) -> int | None:
        """Record that region's lag alert cleared; return the log position."""
        alert = self._alert(region)
        alert.clear(lag_ms=lag_ms)
        return self._saved(alert)

    def firing(self, regions: tuple[str, ...] = ("A", "B")) -> list[str]:
        """The regions whose lag alert is firing now."""
        return [
            region
            for region in regions
            if isinstance(found := self._load(LagAlert.create_id(region)), LagAlert)
            and found.firing
        ]

    def _alert(self, region: str) -> LagAlert:
        found = self._load(LagAlert.create_id(region))
        if isinstance(found, LagAlert):
            return found
        return LagAlert(region=region)

    def _saved(self, alert: LagAlert) -> int | None:
        recordings = self.save(alert)
        return recordings[-1].notification.id if recordings else None
