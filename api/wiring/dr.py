"""DR's wiring: the lag alerts in the log, the DR state read model, the router."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.dr.state_view import dr_state_view
from api.runtime.dr import DrRuntime, dr_runtime
from application.dr.lag_alerts import LagAlerts

if TYPE_CHECKING:
    from api.wiring.core import Core
    from projections.dr_state import DrStateView


class DrBundle:
    """The replica-lag alerts in the log, and the DR router when a pair is set."""

    def __init__(
        self, *, runtime: DrRuntime | None, lag_alerts: LagAlerts, state: DrStateView
    ) -> None:
        self.runtime = runtime
        """The DR router and lag alert, when CONDUCTOR_DR_ROOT names a pair."""
        self.lag_alerts = lag_alerts
        self.state = state
        """The DR state read model (the regions' LagSampled, folded)."""


def wire_dr(core: Core) -> DrBundle:
    """The lag alerts in the log; the router when CONDUCTOR_DR_ROOT is set."""
    settings = core.settings
    return DrBundle(
        runtime=dr_runtime(settings, core.metrics, core.ledger)
        if settings.dr_root
        else None,
        lag_alerts=LagAlerts(core.ledger),
        state=dr_state_view(core.ledger),
    )
