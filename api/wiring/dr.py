"""DR's wiring: the replica-lag alerts in the log, the router when a pair is set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from api.runtime.dr import DrRuntime, dr_runtime
from application.dr.lag_alerts import LagAlerts

if TYPE_CHECKING:
    from api.wiring.core import Core


class DrBundle:
    """The replica-lag alerts in the log, and the DR router when a pair is set."""

    def __init__(self, *, runtime: DrRuntime | None, lag_alerts: LagAlerts) -> None:
        self.runtime = runtime
        """The DR router and lag alert, when CONDUCTOR_DR_ROOT names a pair."""
        self.lag_alerts = lag_alerts


def wire_dr(core: Core) -> DrBundle:
    """The lag alerts in the log; the router when CONDUCTOR_DR_ROOT is set."""
    settings = core.settings
    return DrBundle(
        runtime=dr_runtime(settings, core.metrics, core.ledger)
        if settings.dr_root
        else None,
        lag_alerts=LagAlerts(core.ledger),
    )
