"""The wired object graph the API, the CLI and the scripts share."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog

from adapters.audit.tenancy_view import PostgresTenancyView, SQLiteTenancyView
from adapters.autopilot.shaping_store import shaping_store
from adapters.autopilot.usage_view import usage_view
from adapters.catalog.datafiles import LocalDataFiles
from adapters.catalog.sqlite import SQLiteCatalogView
from adapters.exports.dlp.transformer import DlpTransformer
from adapters.exports.rego import TieredRegoEngine
from adapters.exports.rego_sandbox import Limits, RegoSandbox
from adapters.exports.secrets import FileSecrets
from adapters.exports.view import PostgresExportsView, SQLiteExportsView
from adapters.ledger.checkpoints import LedgerCheckpoints
from adapters.ledger.store import Ledger, open_ledger
from adapters.signing.keystore import KeyStore
from api.metrics import Metrics
from api.middleware.shaping import ShapingGate
from api.runtime.dr import (
    DrRuntime,
    dr_ledger,
    dr_runtime,
    on_primary_switch,
    uses_dr_ledger,
)
from api.runtime.er import ErRuntime
from api.runtime.export_worker import ExportWorker
from application.autopilot.actions import AutopilotConfig
from application.autopilot.autopilot import Autopilot
from application.autopilot.budgets import Budgets
from application.autopilot.metering import Meter, PriceTable
from application.catalog.datasets import Datasets
from application.dr.lag_alerts import LagAlerts
from application.exports.exports import Exports
from application.exports.pipeline import ExportPipeline
from application.ops.switches import Switches
from projections.catalog import CatalogProjection, CatalogView, SearchCache
from projections.coverage import CatalogQueries
from projections.exports import ExportsProjection, ExportsView
from projections.lineage import LineageProjection, LineageView
from projections.runner import BatchRunner
from projections.tenancy import TenancyProjection, TenancyView
from projections.usage import UsageProjection, UsageView

if TYPE_CHECKING:
    from uuid import UUID

    from api.settings import Settings

log = structlog.get_logger("conductor")


def _view(ledger: Ledger, sqlite: type[Any], postgres: type[Any]) -> Any:
    """A view of the ledger's backend, in the same database (tables created)."""
    return ledger.factory.tracking_recorder(
        postgres if ledger.backend == "postgres" else sqlite
    )


def catalog_view(ledger: Ledger) -> CatalogView:
    """The catalog view for the ledger's backend, in the same database."""
    from adapters.catalog.postgres import PostgresCatalogView  # noqa: PLC0415

    view = _view(ledger, SQLiteCatalogView, PostgresCatalogView)
    assert isinstance(view, CatalogView)
    return view


class Services:
    """Everything a request or a command needs, built once per process.

    A plain class on purpose: litestar would try to validate a dataclass
    dependency field by field.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        ledger: Ledger,
        datasets: Datasets,
        exports: Exports,
        catalog: CatalogView,
        exports_view: ExportsView,
        queries: CatalogQueries,
        runners: dict[str, BatchRunner],
        metrics: Metrics,
        keys: KeyStore,
        checkpoints: LedgerCheckpoints,
        worker: ExportWorker,
        lineage: LineageView | None = None,
        er: ErRuntime | None = None,
        dr: DrRuntime | None = None,
        budgets: Budgets | None = None,
        usage: UsageView | None = None,
        meter: Meter | None = None,
        shaping: ShapingGate | None = None,
        autopilot: Autopilot | None = None,
        incidents: Any = None,
        switches: Switches | None = None,
        tenancy: TenancyView | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.datasets = datasets
        self.exports = exports
        self.catalog = catalog
        self.exports_view = exports_view
        self.queries = queries
        self.runners = runners
        self.metrics = metrics
        self.lineage = lineage
        """The graph lineage view, when a graph database is configured."""
        self.search = SearchCache(catalog)
        self.keys = keys
        self.checkpoints = checkpoints
        self.worker = worker
        self.er = er
        """ER assist (application, vector store, ANN indexes, job worker)."""
        self.dr = dr
        """The DR router and lag alert, when CONDUCTOR_DR_ROOT names a pair."""
        self.budgets = budgets
        self.usage = usage
        """The usage read model (budgets, per-minute metering buckets)."""
        self.meter = meter
        """This process's meter (None: metering off)."""
        self.shaping = shaping
        """The token-bucket gate (None: shaping off)."""
        self.autopilot = autopilot
        self.incidents = incidents
        """Guard-breach issues (application.autopilot.incidents.Incidents)."""
        self.switches = switches or Switches(ledger)
        """The backout switches (read through a short cache)."""
        self.tenancy = tenancy
        """Who may see each log position (a tenant's slice of the log)."""
        self._meter_jobs: Any = None
        self._lag_alerts: LagAlerts | None = None
        self._closed = threading.Event()
        self._scheduler: Any = None
        self.started_at = datetime.now(UTC)
        """When this process opened the log (the first checkpoint's clock)."""

    def start(self) -> None:
        """Follow the log in the background and start the periodic jobs."""
        from api.runtime.jobs import meter_scheduler, scheduler  # noqa: PLC0415

        if self.meter is not None:  # every API process meters its own requests
            self._meter_jobs = meter_scheduler(self)
            self._meter_jobs.start()
        if not self.settings.projections:
            return  # another process (`conductor project`) keeps the views
        for runner in self.runners.values():
            runner.start()
        self.worker.resume(row.id for row in self.exports_view.pending())
        self._scheduler = scheduler(self)
        self._scheduler.start()
        if self.er is not None:
            self.er.run_due()  # jobs whose window came while no process ran
        if self.dr is not None:
            self.dr.start()  # the replica-lag alert (one process, like the jobs)

    def start_export(self, export_id: UUID) -> None:
        """Run an allowed export in the background."""
        self.worker.start(export_id)

    def export_progress(self, export_id: UUID) -> tuple[int, int] | None:
        return self.worker.progress(export_id)

    def lag_alerts(self) -> LagAlerts:
        """The replica-lag alerts in the log (made once, on first use)."""
        if self._lag_alerts is None:
            self._lag_alerts = LagAlerts(self.ledger)
        return self._lag_alerts

    def _flush_meter(self) -> None:
        """On shutdown: the last interval's metering goes to the log too."""
        if self.meter is None:
            return
        try:
            self.meter.flush(int(datetime.now(UTC).timestamp() * 1000))
        except Exception:
            log.warning("metering_lost_at_shutdown", exc_info=True)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for jobs in (self._scheduler, self._meter_jobs):
            if jobs is not None:
                jobs.shutdown(wait=False)
        self.worker.close()  # exports and ER jobs finish (and are metered) first
        close_engine = getattr(self.exports.engine, "close", None)
        if close_engine is not None:
            close_engine()  # the policy sandbox's worker processes
        if self.er is not None:
            self.er.close()
        self._flush_meter()
        for runner in self.runners.values():
            runner.stop()
        for part in (
            self.dr,
            self.lineage,
            self.shaping.store if self.shaping is not None else None,
            self.incidents,
            self.usage,
            self.catalog,
            self.exports_view,
            self.tenancy,
            self.ledger,
        ):
            if part is not None:
                part.close()


def build_services(settings: Settings) -> Services:
    """Open the log, the applications, the views and their runners."""
    ledger = (
        dr_ledger(settings)  # on the DR pair's primary, following it
        if uses_dr_ledger(settings)
        else open_ledger(settings.resolved_database_url, pool_size=settings.pool_size)
    )
    ledger.chained.idempotency_ttl_s = settings.idempotency_ttl_s
    regions = frozenset(settings.regions)
    datasets = Datasets(ledger, regions=regions)
    files = LocalDataFiles(settings.data_root_path)
    switches = Switches(ledger, refresh_s=settings.switch_refresh_s)
    exports = Exports(
        ledger,
        datasets=datasets,
        engine=policy_engine(settings),
        regions=regions,
        sources=files,
        review_required=lambda: switches.is_on("manual-export-review"),
    )
    metrics = Metrics()
    keys = KeyStore(settings.var_path / "keys")
    checkpoints = LedgerCheckpoints(ledger.chained, keys, origin=settings.origin)
    pipeline = ExportPipeline(
        exports=exports,
        transformer=DlpTransformer(workers=settings.dlp_workers),
        sources=files,
        secrets=FileSecrets(settings.var_path / "tokenization-secret"),
        signer=keys,
        checkpoints=checkpoints,
        out_dir=settings.var_path / "exports",
    )

    def runner(projection: Any) -> BatchRunner:
        return BatchRunner(
            projection=projection,
            recorder=ledger.recorder,
            mapper=datasets.mapper,
            batch_size=settings.projection_batch,
            poll_interval=settings.projection_poll_s,
            on_batch=metrics.projected,
        )

    catalog = catalog_view(ledger)
    budgets = Budgets(ledger)
    usage = usage_view(ledger)
    exports_view = _view(ledger, SQLiteExportsView, PostgresExportsView)
    tenancy = _view(ledger, SQLiteTenancyView, PostgresTenancyView)
    runners = {
        "catalog": runner(CatalogProjection(view=catalog)),
        "exports": runner(ExportsProjection(view=exports_view)),
        "usage": runner(UsageProjection(view=usage)),
        "tenancy": runner(TenancyProjection(view=tenancy)),
    }
    lineage = None
    if settings.neo4j_uri:
        from adapters.catalog.lineage_neo4j import connect  # noqa: PLC0415 - optional

        lineage = connect(
            settings.neo4j_uri,
            settings.neo4j_user,
            settings.neo4j_password,
            settings.neo4j_database,
        )
        runners["lineage"] = runner(LineageProjection(view=lineage))
    ledger.chained.add_listener(metrics.committed)
    for each in runners.values():
        ledger.chained.add_listener(each.wake)
    metrics.watch_projections(lambda: list(runners.values()))
    store = shaping_store(ledger)
    incidents = build_incidents(settings, ledger, budgets)
    meter = Meter(budgets, prices(settings)) if settings.metering else None
    worker = ExportWorker(pipeline, metrics)
    worker.meter = meter
    wired = Services(
        settings=settings,
        ledger=ledger,
        datasets=datasets,
        exports=exports,
        catalog=catalog,
        exports_view=exports_view,
        queries=CatalogQueries(catalog, files),
        runners=runners,
        metrics=metrics,
        keys=keys,
        checkpoints=checkpoints,
        worker=worker,
        lineage=lineage,
        er=ErRuntime(settings, ledger, metrics),
        dr=dr_runtime(settings, metrics, ledger) if settings.dr_root else None,
        budgets=budgets,
        usage=usage,
        meter=meter,
        shaping=ShapingGate(store, refresh_s=settings.shaping_refresh_s)
        if settings.shaping
        else None,
        autopilot=Autopilot(
            budgets,
            usage,
            store,
            incidents,
            AutopilotConfig(
                interval_s=settings.autopilot_interval_s,
                min_dwell_s=settings.autopilot_min_dwell_s,
            ),
        ),
        incidents=incidents,
        switches=switches,
        tenancy=tenancy,
    )
    honour_switches(wired, switches)
    from api.runtime.jobs import export_finished  # noqa: PLC0415 - jobs import this module

    worker.on_finished = partial(export_finished, wired)
    # On a DR pair: a lossy failover reuses positions (drop cached pages) and a
    # runner that failed during the switch should retry now, not after backoff.
    on_primary_switch(ledger, wired.search.clear, *(r.resume for r in runners.values()))
    return wired


def honour_switches(wired: Services, switches: Switches) -> None:
    """Point each backed-out mechanism at its switch (read through a cache)."""
    engine = wired.exports.engine
    kills = (
        engine.sandboxed.sandbox.kills if isinstance(engine, TieredRegoEngine) else {}
    )
    wired.metrics.watch_gate(
        lambda: {s.name: s.engaged for s in switches.states()}, lambda: dict(kills)
    )
    if wired.shaping is not None:
        wired.shaping.disabled = lambda: switches.is_on("disable-traffic-shaping")
    if wired.dr is not None:
        wired.dr.secondary_reads_off = lambda: switches.is_on("disable-secondary-reads")
    if wired.er is not None:
        wired.er.app.assist_off = lambda: switches.is_on("disable-er-assist")


def policy_engine(settings: Settings) -> TieredRegoEngine:
    """Shipped policies in process; tenants' own in the confined worker pool."""
    sandbox = RegoSandbox(
        workers=settings.policy_workers,
        limits=Limits(
            cpu_s=settings.policy_cpu_s,
            wall_s=settings.policy_wall_s,
            memory_bytes=settings.policy_memory_mb * 1024 * 1024,
            output_bytes=settings.policy_output_kb * 1024,
        ),
        per_tenant=settings.policy_per_tenant,
    )
    return TieredRegoEngine(sandbox)


def prices(settings: Settings) -> PriceTable:
    return PriceTable(
        query_call=settings.price_query_call,
        command_call=settings.price_command_call,
        export_gb=settings.price_export_gb,
        embedding_1k=settings.price_embedding_1k,
        drill_run=settings.price_drill_run,
    )


def build_incidents(settings: Settings, ledger: Ledger, budgets: Budgets) -> Any:
    """Guard-breach issues: kept in the database, sent to the webhook if set."""
    from adapters.autopilot.incident_store import incident_store  # noqa: PLC0415
    from adapters.autopilot.webhook import WebhookSink  # noqa: PLC0415
    from application.autopilot.incidents import Incidents  # noqa: PLC0415

    return Incidents(
        incident_store(ledger), WebhookSink(settings.issue_webhook_url), budgets
    )
