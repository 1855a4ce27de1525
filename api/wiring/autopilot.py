"""The autopilot's wiring: budgets, the meter, the shaping gate, the controller."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.autopilot.burn_view import burn_view
from adapters.autopilot.incident_store import incident_store
from adapters.autopilot.shaping_store import shaping_store
from adapters.autopilot.usage_view import usage_view
from adapters.autopilot.webhook import WebhookSink
from api.middleware.shaping import ShapingGate
from application.autopilot.actions import AutopilotConfig
from application.autopilot.autopilot import Autopilot
from application.autopilot.budgets import Budgets
from application.autopilot.incidents import Incidents
from application.autopilot.metering import Meter, PriceTable

if TYPE_CHECKING:
    from api.settings import Settings
    from api.wiring.core import Core
    from projections.burn import BurnView
    from projections.usage import UsageView


class AutopilotBundle:
    """Budgets, metering, shaping, the controller and its incidents."""

    def __init__(
        self,
        *,
        budgets: Budgets,
        usage: UsageView,
        burn: BurnView,
        meter: Meter | None,
        shaping: ShapingGate | None,
        controller: Autopilot,
        incidents: Incidents,
    ) -> None:
        self.budgets = budgets
        self.usage = usage
        """The usage read model (budgets, per-minute metering buckets)."""
        self.burn = burn
        """The burn read model (each tenant's burns as of its newest usage)."""
        self.meter = meter
        """This process's meter (None: metering off)."""
        self.shaping = shaping
        """The token-bucket gate (None: shaping off)."""
        self.controller = controller
        self.incidents = incidents
        """Guard-breach issues, kept in the database, sent to the webhook."""


def wire_autopilot(core: Core) -> AutopilotBundle:
    """Budgets, this process's meter, the shaping gate and the controller."""
    settings = core.settings
    budgets = Budgets(core.ledger)
    usage = usage_view(core.ledger)
    store = shaping_store(core.ledger)
    incidents = Incidents(
        incident_store(core.ledger), WebhookSink(settings.issue_webhook_url), budgets
    )
    return AutopilotBundle(
        budgets=budgets,
        usage=usage,
        burn=burn_view(core.ledger, min_events=settings.autopilot_min_events),
        meter=Meter(budgets, prices(settings)) if settings.metering else None,
        shaping=ShapingGate(store, refresh_s=settings.shaping_refresh_s)
        if settings.shaping
        else None,
        controller=Autopilot(
            budgets,
            usage,
            store,
            incidents,
            AutopilotConfig(
                interval_s=settings.autopilot_interval_s,
                min_dwell_s=settings.autopilot_min_dwell_s,
                min_events=settings.autopilot_min_events,
                capacity_rps=settings.autopilot_capacity_rps,
                min_capacity_share=settings.autopilot_min_capacity_share,
            ),
        ),
        incidents=incidents,
    )


def prices(settings: Settings) -> PriceTable:
    return PriceTable(
        query_call=settings.price_query_call,
        command_call=settings.price_command_call,
        export_gb=settings.price_export_gb,
        embedding_1k=settings.price_embedding_1k,
        drill_run=settings.price_drill_run,
    )
