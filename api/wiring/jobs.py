"""The periodic jobs bound to the wired objects, and the schedulers that run them."""

from __future__ import annotations

import uuid
from functools import partial, wraps
from typing import TYPE_CHECKING, Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from api.runtime import jobs
from api.runtime.er import offpeak_trigger

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from api.bootstrap import Conductor


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
            jobs.platform_guards,
            autopilot.controller,
            wired.dr.lag_alerts,
            wired.er.evaluations,
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


log = structlog.get_logger("conductor.jobs")


def tracked(job: str, func: Callable[[], None], head: Callable[[], int | None]) -> Any:
    """Run a periodic job with ``job``, a run id and the log position it starts
    at bound to every line it logs; a failure is logged here, with them."""

    @wraps(func)
    def run() -> None:
        with structlog.contextvars.bound_contextvars(
            job=job, job_run=uuid.uuid4().hex[:16], position=head()
        ):
            try:
                func()
            except Exception:
                log.exception("job_failed")
                raise

    return run


def _background() -> BackgroundScheduler:
    return BackgroundScheduler(
        timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1}
    )


def _add(
    scheduled: BackgroundScheduler,
    wired: Conductor,
    func: Callable[[], None],
    trigger: Any,
    *,
    id: str,  # noqa: A002 - apscheduler's name for it
    **when: Any,
) -> None:
    ledger = wired.core.ledger

    def head() -> int | None:
        try:
            return ledger.head().position
        except Exception:  # the job itself will report the failure
            return None

    job = tracked(id, func, head)
    scheduled.add_job(job, trigger, id=id, **when)


def meter_scheduler(wired: Conductor) -> BackgroundScheduler:
    """Every API process: flush the meter every few seconds (not started)."""
    scheduled = _background()
    _add(
        scheduled,
        wired,
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
    every = partial(_add, scheduled, wired, trigger="interval")
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
    _add(
        scheduled,
        wired,
        run.run_due_er_jobs,
        offpeak_trigger(settings),
        id="er-offpeak",
    )
    # Due jobs whose run was lost (its lease expired), or whose window came
    # while no process ran, start without waiting for a restart.
    every(run.run_due_er_jobs, id="er-due", seconds=settings.er_job_lease_s)
    return scheduled
