"""The shared part of the wiring: the log, metrics, keys, checkpoints, switches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from eventsourcing.persistence import TrackingRecorder

from adapters.audit.tenancy_view import PostgresTenancyView, SQLiteTenancyView
from adapters.ledger.checkpoints import LedgerCheckpoints
from adapters.ledger.store import Ledger, open_ledger
from adapters.signing.keystore import KeyStore
from api.metrics import Metrics
from api.runtime.dr import dr_ledger, uses_dr_ledger
from application.ops.switches import Switches

if TYPE_CHECKING:
    from api.settings import Settings
    from projections.runner import BatchRunner
    from projections.tenancy import TenancyView


View = TypeVar("View", bound=TrackingRecorder)


def view_of(ledger: Ledger, sqlite: type[View], postgres: type[View]) -> View:
    """A view of the ledger's backend, in the same database (tables created)."""
    wanted = postgres if ledger.backend == "postgres" else sqlite
    view = ledger.factory.tracking_recorder(wanted)
    assert isinstance(view, wanted)
    return view


class Core:
    """The log and what every capability shares: settings, metrics, keys,
    signed checkpoints, the projection runners, the switches, the tenancy view."""

    def __init__(
        self,
        *,
        settings: Settings,
        ledger: Ledger,
        metrics: Metrics,
        keys: KeyStore,
        checkpoints: LedgerCheckpoints,
        switches: Switches,
        tenancy: TenancyView,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.metrics = metrics
        self.keys = keys
        self.checkpoints = checkpoints
        self.switches = switches
        """The backout switches (read through a short cache)."""
        self.tenancy = tenancy
        """Who may see each log position (a tenant's slice of the log)."""
        self.runners: dict[str, BatchRunner] = {}
        """Every read model's runner, by name (catalog, exports, usage, ...)."""
        self.started_at = datetime.now(UTC)
        """When this process opened the log (the first checkpoint's clock)."""


def wire_core(settings: Settings) -> Core:
    """Open the log (on the DR pair's primary when one is named)."""
    ledger = (
        dr_ledger(settings)  # on the DR pair's primary, following it
        if uses_dr_ledger(settings)
        else open_ledger(settings.resolved_database_url, pool_size=settings.pool_size)
    )
    ledger.chained.idempotency_ttl_s = settings.idempotency_ttl_s
    metrics = Metrics()
    keys = KeyStore(settings.var_path / "keys")
    ledger.chained.add_listener(metrics.committed)
    return Core(
        settings=settings,
        ledger=ledger,
        metrics=metrics,
        keys=keys,
        checkpoints=LedgerCheckpoints(ledger.chained, keys, origin=settings.origin),
        switches=Switches(ledger, refresh_s=settings.switch_refresh_s),
        tenancy=view_of(ledger, SQLiteTenancyView, PostgresTenancyView),
    )
