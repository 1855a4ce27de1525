"""The composition root: one ``wire_<capability>()`` per capability.

Each returns a small typed bundle; controllers take their own bundle by
dependency injection (``core``, ``catalog``, ``exports``, ``er``, ``dr``,
``autopilot``), the CLI and the scripts take the whole ``Conductor``. The
scheduler is built here too, so the jobs take only the objects they use.
Bundles are plain classes on purpose: litestar would validate a dataclass
dependency field by field.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from eventsourcing.persistence import TrackingRecorder
from litestar.di import Provide

from adapters.audit.tenancy_view import PostgresTenancyView, SQLiteTenancyView
from adapters.autopilot.incident_store import incident_store
from adapters.autopilot.shaping_store import shaping_store
from adapters.autopilot.usage_view import usage_view
from adapters.autopilot.webhook import WebhookSink
from adapters.catalog.datafiles import LocalDataFiles
from adapters.catalog.postgres import PostgresCatalogView
from adapters.catalog.sqlite import SQLiteCatalogView
from adapters.exports.dlp.transformer import DlpTransformer
from adapters.exports.rego import TieredRegoEngine
from adapters.exports.rego_sandbox import Limits, RegoSandbox
from adapters.exports.view import PostgresExportsView, SQLiteExportsView
from adapters.ledger.checkpoints import LedgerCheckpoints
from adapters.ledger.store import Ledger, open_ledger
from adapters.signing.keystore import KeyStore
from adapters.signing.secrets import FileSecrets
from api.metrics import Metrics
from api.middleware.shaping import ShapingGate
from api.runtime import jobs
from api.runtime.dr import (
    DrRuntime,
    dr_ledger,
    dr_runtime,
    on_primary_switch,
    uses_dr_ledger,
)
from api.runtime.er import ErRuntime, offpeak_trigger
from api.runtime.export_worker import ExportWorker
from application.autopilot.actions import AutopilotConfig
from application.autopilot.autopilot import Autopilot
from application.autopilot.budgets import Budgets
from application.autopilot.incidents import Incidents
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
    from collections.abc import Callable
    from uuid import UUID

    from eventsourcing.persistence import Mapper

    from api.settings import Settings

log = structlog.get_logger("conductor")

View = TypeVar("View", bound=TrackingRecorder)


def _view(ledger: Ledger, sqlite: type[View], postgres: type[View]) -> View:
    """A view of the ledger's backend, in the same database (tables created)."""
    wanted = postgres if ledger.backend == "postgres" else sqlite
    view = ledger.factory.tracking_recorder(wanted)
    assert isinstance(view, wanted)
    return view


def catalog_view(ledger: Ledger) -> CatalogView:
    """The catalog view for the ledger's backend, in the same database."""
    view = _view(ledger, SQLiteCatalogView, PostgresCatalogView)
    assert isinstance(view, CatalogView)
    return view


# ------------------------------------------------------------------- bundles


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


class CatalogBundle:
    """The dataset registry (write side) and the catalog read models."""

    def __init__(
        self,
        *,
        registry: Datasets,
        view: CatalogView,
        queries: CatalogQueries,
        lineage: LineageView | None,
    ) -> None:
        self.registry = registry
        self.view = view
        self.search = SearchCache(view)
        self.queries = queries
        self.lineage = lineage
        """The graph lineage view, when a graph database is configured."""


class ExportsBundle:
    """The export gate, its read model and the background runs."""

    def __init__(
        self, *, app: Exports, view: ExportsView, worker: ExportWorker
    ) -> None:
        self.app = app
        self.view = view
        self.worker = worker

    def start(self, export_id: UUID) -> None:
        """Run an allowed export in the background."""
        self.worker.start(export_id)

    def progress(self, export_id: UUID) -> tuple[int, int] | None:
        return self.worker.progress(export_id)


class DrBundle:
    """The replica-lag alerts in the log, and the DR router when a pair is set."""

    def __init__(self, *, runtime: DrRuntime | None, lag_alerts: LagAlerts) -> None:
        self.runtime = runtime
        """The DR router and lag alert, when CONDUCTOR_DR_ROOT names a pair."""
        self.lag_alerts = lag_alerts


class AutopilotBundle:
    """Budgets, metering, shaping, the controller and its incidents."""

    def __init__(
        self,
        *,
        budgets: Budgets,
        usage: UsageView,
        meter: Meter | None,
        shaping: ShapingGate | None,
        controller: Autopilot,
        incidents: Incidents,
    ) -> None:
        self.budgets = budgets
        self.usage = usage
        """The usage read model (budgets, per-minute metering buckets)."""
        self.meter = meter
        """This process's meter (None: metering off)."""
        self.shaping = shaping
        """The token-bucket gate (None: shaping off)."""
        self.controller = controller
        self.incidents = incidents
        """Guard-breach issues, kept in the database, sent to the webhook."""


class Jobs:
    """The periodic jobs, each bound to the narrow objects it uses."""

    def __init__(self, wired: Conductor) -> None:
        core, autopilot = wired.core, wired.autopilot
        self._core = core
        self.refresh_coverage = partial(
            jobs.refresh_coverage,
            wired.catalog.view,
            wired.catalog.queries,
            core.metrics,
            autopilot.controller,
        )
        self.flush_meter = partial(jobs.flush_meter, autopilot.meter)
        self.platform_guards = partial(
            jobs.platform_guards, autopilot.controller, wired.dr.lag_alerts, wired.er
        )
        self._tick = partial(
            jobs.run_autopilot,
            autopilot.controller,
            autopilot.usage,
            core.metrics,
            core.ledger,
            guards=self.platform_guards,
        )
        self.purge_usage = partial(jobs.purge_usage, autopilot.usage)
        self.deliver_incidents = partial(jobs.deliver_incidents, autopilot.incidents)
        self.purge_idempotency_keys = partial(jobs.purge_idempotency_keys, core.ledger)
        self._sign = partial(
            jobs.sign_checkpoint, core.checkpoints, wired.exports.app, core.keys
        )
        self.run_due_er_jobs = partial(jobs.run_due_er_jobs, wired.er)
        self.export_finished: Callable[[UUID, str], None] = partial(
            jobs.export_finished, autopilot.controller, wired.exports.app
        )

    def run_autopilot(self) -> None:
        """One controller tick, after the usage view caught up with the log."""
        self._tick(
            self._core.runners.get("usage"),
            wait_s=self._core.settings.autopilot_interval_s,
        )

    def sign_checkpoint(self) -> None:
        """Sign a tree head when the settings' N events or T seconds are due."""
        settings = self._core.settings
        self._sign(
            started_at=self._core.started_at,
            every_events=settings.checkpoint_every_events,
            interval_s=settings.checkpoint_interval_s,
        )


def _background() -> BackgroundScheduler:
    return BackgroundScheduler(
        timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1}
    )


def meter_scheduler(wired: Conductor) -> BackgroundScheduler:
    """Every API process: flush the meter every few seconds (not started)."""
    scheduled = _background()
    scheduled.add_job(
        wired.jobs.flush_meter,
        "interval",
        id="meter",
        seconds=wired.core.settings.meter_flush_s,
    )
    return scheduled


def scheduler(wired: Conductor) -> BackgroundScheduler:
    """The process's scheduler with Conductor's periodic jobs (not started)."""
    settings, run = wired.core.settings, wired.jobs
    scheduled = _background()
    every = partial(scheduled.add_job, trigger="interval")
    every(run.refresh_coverage, id="coverage", seconds=settings.coverage_interval_s)
    every(run.purge_idempotency_keys, id="idempotency", hours=1)
    every(run.purge_usage, id="usage-purge", hours=1)
    every(run.sign_checkpoint, id="checkpoint", seconds=1)
    if settings.autopilot:
        every(run.run_autopilot, id="autopilot", seconds=settings.autopilot_interval_s)
    if settings.issue_webhook_url:
        every(
            run.deliver_incidents,
            id="incidents",
            seconds=settings.incident_delivery_interval_s,
        )
    scheduled.add_job(run.run_due_er_jobs, offpeak_trigger(settings), id="er-offpeak")
    # Due jobs whose run was lost (its lease expired), or whose window came
    # while no process ran, start without waiting for a restart.
    every(run.run_due_er_jobs, id="er-due", seconds=settings.er_job_lease_s)
    return scheduled


# ---------------------------------------------------------------------- root


class Conductor:
    """Everything a request or a command needs, built once per process."""

    def __init__(
        self,
        *,
        core: Core,
        catalog: CatalogBundle,
        exports: ExportsBundle,
        er: ErRuntime,
        dr: DrBundle,
        autopilot: AutopilotBundle,
    ) -> None:
        self.core = core
        self.catalog = catalog
        self.exports = exports
        self.er = er
        """ER assist (application, vector store, ANN indexes, job worker)."""
        self.dr = dr
        self.autopilot = autopilot
        self.jobs = Jobs(self)
        self._meter_jobs: BackgroundScheduler | None = None
        self._scheduler: BackgroundScheduler | None = None
        self._closed = threading.Event()

    def providers(self) -> dict[str, Provide]:
        """Each bundle as a litestar dependency, by the name controllers use."""
        bundles: dict[str, object] = {
            "core": self.core,
            "catalog": self.catalog,
            "exports": self.exports,
            "er": self.er,
            "dr": self.dr,
            "autopilot": self.autopilot,
        }
        return {
            name: Provide(_given(bundle), sync_to_thread=False)
            for name, bundle in bundles.items()
        }

    def start(self) -> None:
        """Follow the log in the background and start the periodic jobs."""
        if self.autopilot.meter is not None:  # every API process meters itself
            self._meter_jobs = meter_scheduler(self)
            self._meter_jobs.start()
        if not self.core.settings.projections:
            return  # another process (`conductor project`) keeps the views
        for runner in self.core.runners.values():
            runner.start()
        self.exports.worker.resume(row.id for row in self.exports.view.pending())
        self._scheduler = scheduler(self)
        self._scheduler.start()
        self.er.run_due()  # jobs whose window came while no process ran
        if self.dr.runtime is not None:
            self.dr.runtime.start()  # the replica-lag alert (one process)

    def _flush_meter(self) -> None:
        """On shutdown: the last interval's metering goes to the log too."""
        meter = self.autopilot.meter
        if meter is None:
            return
        try:
            meter.flush(int(time.time() * 1000))
        except Exception:
            log.warning("metering_lost_at_shutdown", exc_info=True)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for scheduled in (self._scheduler, self._meter_jobs):
            if scheduled is not None:
                scheduled.shutdown(wait=False)
        self.exports.worker.close()  # exports and ER jobs finish (metered) first
        engine = self.exports.app.engine
        if isinstance(engine, TieredRegoEngine):
            engine.close()  # the policy sandbox's worker processes
        self.er.close()
        self._flush_meter()
        for runner in self.core.runners.values():
            runner.stop()
        if self.dr.runtime is not None:
            self.dr.runtime.close()
        if self.catalog.lineage is not None:
            self.catalog.lineage.close()
        if self.autopilot.shaping is not None:
            self.autopilot.shaping.store.close()
        self.autopilot.incidents.close()
        self.autopilot.usage.close()
        self.catalog.view.close()
        self.exports.view.close()
        self.core.tenancy.close()
        self.core.ledger.close()


def _given(bundle: object) -> Callable[[], object]:
    """A provider with no parameters (litestar reads them as query parameters)."""

    def provide() -> object:
        return bundle

    return provide


# ----------------------------------------------------------------- wiring


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
        tenancy=_view(ledger, SQLiteTenancyView, PostgresTenancyView),
    )


def wire_catalog(core: Core, files: LocalDataFiles) -> CatalogBundle:
    """The registry, the catalog view and, with NEO4J_URI, the graph lineage."""
    settings = core.settings
    view = catalog_view(core.ledger)
    lineage: LineageView | None = None
    if settings.neo4j_uri:
        from adapters.catalog.lineage_neo4j import connect  # noqa: PLC0415 - optional

        lineage = connect(
            settings.neo4j_uri,
            settings.neo4j_user,
            settings.neo4j_password,
            settings.neo4j_database,
        )
    return CatalogBundle(
        registry=Datasets(core.ledger, regions=frozenset(settings.regions)),
        view=view,
        queries=CatalogQueries(view, files),
        lineage=lineage,
    )


def wire_exports(
    core: Core, catalog: CatalogBundle, files: LocalDataFiles, meter: Meter | None
) -> ExportsBundle:
    """The gate (platform floor, tenant policies in the sandbox) and the runs."""
    settings, switches = core.settings, core.switches
    app = Exports(
        core.ledger,
        datasets=catalog.registry,
        engine=policy_engine(settings),
        regions=frozenset(settings.regions),
        sources=files,
        review_required=lambda: switches.is_on("manual-export-review"),
    )
    pipeline = ExportPipeline(
        exports=app,
        transformer=DlpTransformer(workers=settings.dlp_workers),
        sources=files,
        secrets=FileSecrets(settings.var_path / "tokenization-secret"),
        signer=core.keys,
        checkpoints=core.checkpoints,
        out_dir=settings.var_path / "exports",
    )
    worker = ExportWorker(pipeline, core.metrics)
    worker.meter = meter
    return ExportsBundle(
        app=app,
        view=_view(core.ledger, SQLiteExportsView, PostgresExportsView),
        worker=worker,
    )


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
            ),
        ),
        incidents=incidents,
    )


def wire_er(core: Core, autopilot: AutopilotBundle) -> ErRuntime:
    """ER assist, metered and shaped by the autopilot's meter and gate."""
    er = ErRuntime(core.settings, core.ledger, core.metrics)
    meter, shaping = autopilot.meter, autopilot.shaping
    if meter is not None:
        er.charge = meter.charge_embeddings
    if shaping is not None:
        er.shaped = shaping.reason
    return er


def wire_dr(core: Core) -> DrBundle:
    """The lag alerts in the log; the router when CONDUCTOR_DR_ROOT is set."""
    settings = core.settings
    return DrBundle(
        runtime=dr_runtime(settings, core.metrics, core.ledger)
        if settings.dr_root
        else None,
        lag_alerts=LagAlerts(core.ledger),
    )


def build_conductor(settings: Settings) -> Conductor:
    """Open the log, wire every capability, and follow the log with the views."""
    core = wire_core(settings)
    files = LocalDataFiles(settings.data_root_path)
    catalog = wire_catalog(core, files)
    autopilot = wire_autopilot(core)
    wired = Conductor(
        core=core,
        catalog=catalog,
        exports=wire_exports(core, catalog, files, autopilot.meter),
        er=wire_er(core, autopilot),
        dr=wire_dr(core),
        autopilot=autopilot,
    )
    _follow(wired, catalog.registry.mapper)
    honour_switches(wired)
    wired.exports.worker.on_finished = wired.jobs.export_finished
    return wired


def _follow(wired: Conductor, mapper: Mapper[UUID]) -> None:
    """A batched runner per read model, woken by every commit."""
    core = wired.core
    settings = core.settings

    def runner(
        projection: CatalogProjection
        | ExportsProjection
        | UsageProjection
        | TenancyProjection
        | LineageProjection,
    ) -> BatchRunner:
        return BatchRunner(
            projection=projection,
            recorder=core.ledger.recorder,
            mapper=mapper,
            batch_size=settings.projection_batch,
            poll_interval=settings.projection_poll_s,
            on_batch=core.metrics.projected,
        )

    runners = core.runners
    runners["catalog"] = runner(CatalogProjection(view=wired.catalog.view))
    runners["exports"] = runner(ExportsProjection(view=wired.exports.view))
    runners["usage"] = runner(UsageProjection(view=wired.autopilot.usage))
    runners["tenancy"] = runner(TenancyProjection(view=core.tenancy))
    if wired.catalog.lineage is not None:
        runners["lineage"] = runner(LineageProjection(view=wired.catalog.lineage))
    for each in runners.values():
        core.ledger.chained.add_listener(each.wake)
    core.metrics.watch_projections(lambda: list(runners.values()))
    # On a DR pair: a lossy failover reuses positions (drop cached pages) and a
    # runner that failed during the switch should retry now, not after backoff.
    on_primary_switch(
        core.ledger, wired.catalog.search.clear, *(r.resume for r in runners.values())
    )


def honour_switches(wired: Conductor) -> None:
    """Point each backed-out mechanism at its switch (read through a cache)."""
    switches = wired.core.switches
    engine = wired.exports.app.engine
    kills = (
        engine.sandboxed.sandbox.kills if isinstance(engine, TieredRegoEngine) else {}
    )
    wired.core.metrics.watch_gate(
        lambda: {s.name: s.engaged for s in switches.states()}, lambda: dict(kills)
    )
    if wired.autopilot.shaping is not None:
        wired.autopilot.shaping.disabled = lambda: switches.is_on(
            "disable-traffic-shaping"
        )
    if wired.dr.runtime is not None:
        wired.dr.runtime.secondary_reads_off = lambda: switches.is_on(
            "disable-secondary-reads"
        )
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
