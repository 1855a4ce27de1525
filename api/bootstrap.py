"""The composition root: the ``Conductor`` that joins every capability's wiring.

``api/wiring/<capability>.py`` holds one ``wire_<capability>()`` each,
returning a small typed bundle; controllers take their own bundle by
dependency injection (``core``, ``catalog``, ``exports``, ``er``, ``dr``,
``autopilot``), the CLI and the scripts take the whole ``Conductor``. The
scheduler is built here too (``api/wiring/jobs.py``), so the jobs take only
the objects they use. Bundles are plain classes on purpose: litestar would
validate a dataclass dependency field by field.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import structlog
from litestar.di import Provide

from adapters.catalog.datafiles import LocalDataFiles
from adapters.exports.rego import TieredRegoEngine
from api.runtime.dr import on_primary_switch
from api.wiring.autopilot import AutopilotBundle, wire_autopilot
from api.wiring.catalog import CatalogBundle, wire_catalog
from api.wiring.core import Core, wire_core
from api.wiring.dr import DrBundle, wire_dr
from api.wiring.er import wire_er
from api.wiring.exports import ExportsBundle, wire_exports
from api.wiring.jobs import Jobs, meter_scheduler, scheduler
from projections.burn import BurnProjection
from projections.catalog import CatalogProjection
from projections.dr_state import DrStateProjection
from projections.er import ErProjection
from projections.exports import ExportsProjection
from projections.gate_runs import GateRunsProjection
from projections.lineage import LineageProjection
from projections.runner import BatchRunner
from projections.tenancy import TenancyProjection
from projections.usage import UsageProjection

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from apscheduler.schedulers.background import BackgroundScheduler
    from eventsourcing.persistence import Mapper

    from api.runtime.er import ErRuntime
    from api.settings import Settings

log = structlog.get_logger("conductor")


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
        self.autopilot.burn.close()
        self.dr.state.close()
        self.catalog.view.close()
        self.catalog.gate_view.close()
        self.exports.view.close()
        self.er.view.close()
        self.core.tenancy.close()
        self.core.ledger.close()


def _given(bundle: object) -> Callable[[], object]:
    """A provider with no parameters (litestar reads them as query parameters)."""

    def provide() -> object:
        return bundle

    return provide


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
        er=wire_er(
            core,
            charge=autopilot.meter.charge_embeddings if autopilot.meter else None,
            shaped=autopilot.shaping.reason if autopilot.shaping else None,
        ),
        dr=wire_dr(core),
        autopilot=autopilot,
    )
    # Coverage counts the datasets ER jobs and exports read as active.
    catalog.queries.job_locations = wired.er.view.job_locations
    catalog.queries.exported_datasets = wired.exports.view.exported_datasets
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
        | ErProjection
        | UsageProjection
        | TenancyProjection
        | LineageProjection
        | DrStateProjection
        | BurnProjection
        | GateRunsProjection,
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
    runners["er"] = runner(ErProjection(view=wired.er.view))
    runners["usage"] = runner(UsageProjection(view=wired.autopilot.usage))
    runners["burn"] = runner(BurnProjection(view=wired.autopilot.burn))
    runners["tenancy"] = runner(TenancyProjection(view=core.tenancy))
    runners["dr-state"] = runner(DrStateProjection(view=wired.dr.state))
    runners["gate-runs"] = runner(GateRunsProjection(view=wired.catalog.gate_view))
    if wired.catalog.lineage is not None:
        runners["lineage"] = runner(LineageProjection(view=wired.catalog.lineage))
    for each in runners.values():
        core.ledger.chained.add_listener(each.wake)
    core.metrics.watch_projections(lambda: list(runners.values()))
    # On a DR pair: a lossy failover reuses positions (drop cached pages) and a
    # runner that failed during the switch should retry now, not after backoff.
    on_primary_switch(
        core.ledger,
        wired.catalog.search.clear,
        wired.catalog.view.invalidate,
        *(r.resume for r in runners.values()),
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
