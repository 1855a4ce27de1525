"""Background jobs (apscheduler): thin functions over the services, started by serve."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from api.runtime.er import offpeak_trigger
from application.autopilot.budgets import PLATFORM

if TYPE_CHECKING:
    from uuid import UUID

    from api.bootstrap import Services

log = structlog.get_logger("conductor.jobs")


COVERAGE_GUARD = 0.9
"""The seed's alert: catalog coverage under 90 % opens an issue."""


def refresh_coverage(services: Services) -> None:
    """Recompute every tenant's catalog coverage gauge; guard it at 90 %."""
    for tenant in services.catalog.tenants():
        coverage = services.queries.coverage(tenant)
        services.metrics.catalog_coverage.labels(tenant).set(coverage.ratio)
        if services.autopilot is not None:
            services.autopilot.set_guard(
                tenant,
                "catalog-coverage",
                on=coverage.ratio < COVERAGE_GUARD,
                evidence={"coverage": coverage.ratio, "threshold": COVERAGE_GUARD},
                now_s=time.time(),
            )


def flush_meter(services: Services) -> None:
    """Write this process's metering to the log (one event per tenant)."""
    if services.meter is not None:
        services.meter.flush(int(time.time() * 1000))


def run_autopilot(services: Services) -> None:
    """One controller tick: measure burn, adjust caps, shape, breach guards."""
    if services.autopilot is None:
        return
    usage = services.runners.get("usage")
    if usage is not None:  # act on every flush already in the log
        head = services.ledger.head().position
        if not usage.wait(
            head, timeout=min(5.0, services.settings.autopilot_interval_s)
        ):
            log.warning("autopilot_usage_behind", head=head, at=usage.position())
    actions = services.autopilot.tick(time.time())
    platform_guards(services)
    services.metrics.autopilot_observed(services.autopilot.last_burns)
    if services.usage is not None:
        for row in services.usage.budgets():
            services.metrics.cost_cap.labels(row.tenant).set(row.cap_units_per_s or 0)
    for action in actions:
        services.metrics.autopilot_actions.labels(action.kind).inc()


ER_RECALL_GUARD = 0.10
"""The seed's alert: ER's recall delta (blocking|ANN over blocking) under +10 %."""


def export_finished(services: Services, export_id: UUID, status: str) -> None:
    """The export-without-proof guard: a run that ends without a proof breaches
    it for the tenant; the tenant's next proven export clears it."""
    if services.autopilot is None or status in {"denied", "failed"}:
        return  # refused or failed before delivery: nothing left unproven
    export = services.exports.load_export(export_id)
    services.autopilot.set_guard(
        export.tenant,
        "export-without-proof",
        on=status != "proven",
        evidence={"exportId": str(export_id), "status": status},
        now_s=time.time(),
    )


def platform_guards(services: Services) -> None:
    """Guards of the whole platform (pseudo-tenant _platform): the replica-lag
    alert and the last ER eval's recall delta."""
    autopilot = services.autopilot
    if autopilot is None:
        return
    now = time.time()
    # the lag alert is recorded by whichever process watches the DR pair
    firing = services.lag_alerts().firing()
    autopilot.set_guard(
        PLATFORM,
        "replica-lag",
        on=bool(firing),
        evidence={"firingRegions": firing},
        now_s=now,
    )
    if services.er is not None:
        last = services.er.last_eval()
        if last is not None:
            delta = float(last["recall_delta"])
            autopilot.set_guard(
                PLATFORM,
                "er-recall",
                on=delta < ER_RECALL_GUARD,
                evidence={"recallDelta": delta, "threshold": ER_RECALL_GUARD},
                now_s=now,
            )


USAGE_RETENTION_S = 32 * 86400
"""Usage buckets older than the longest period (a month) are dropped."""


def purge_usage(services: Services) -> None:
    """Drop per-minute usage buckets no window or period can reach any more."""
    if services.usage is None:
        return
    dropped = services.usage.purge(int((time.time() - USAGE_RETENTION_S) // 60))
    if dropped:
        log.info("usage_buckets_purged", count=dropped)


def deliver_incidents(services: Services) -> None:
    """Send due issue opens/resolves to the webhook (with backoff on failure)."""
    if services.incidents is not None:
        services.incidents.deliver(time.time())


def meter_scheduler(services: Services) -> BackgroundScheduler:
    """Every API process: flush the meter every few seconds (not started)."""
    jobs = BackgroundScheduler(
        timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1}
    )
    jobs.add_job(
        flush_meter,
        "interval",
        args=[services],
        id="meter",
        seconds=services.settings.meter_flush_s,
    )
    return jobs


def purge_idempotency_keys(services: Services) -> None:
    """Drop Idempotency-Keys older than their TTL."""
    dropped = services.ledger.purge_idempotency()
    if dropped:
        log.info("idempotency_keys_purged", count=dropped)


def sign_checkpoint(services: Services) -> None:
    """Sign a tree head when N events arrived or T seconds passed since the last.

    Runs every second; between signatures it only folds new chain rows into
    the in-memory tree. With no checkpoint yet, T counts from process start,
    so a restart does not sign at once. The signing key is recorded in the
    log first, so an auditor holding only the exported log can check every
    checkpoint. (An export that needs a checkpoint signs one on demand.)
    """
    size = services.checkpoints.sync()
    latest = services.checkpoints.latest()
    signed = latest.size if latest else 0
    if size <= signed:
        return
    settings = services.settings
    since = latest.issued_at if latest else services.started_at
    age = (datetime.now(UTC) - since).total_seconds()
    if (
        size - signed < settings.checkpoint_every_events
        and age < settings.checkpoint_interval_s
    ):
        return
    services.exports.record_signing_key(services.keys)
    checkpoint = services.checkpoints.sign()
    log.info("checkpoint_signed", size=checkpoint.size, root=checkpoint.root)


def run_due_er_jobs(services: Services) -> None:
    """Start the queued ER embedding jobs that are due (their window came, or
    their run was lost and its lease expired) and not running here."""
    if services.er is not None:
        started = services.er.run_due()
        if started:
            log.info("er_jobs_started", count=len(started))


def scheduler(services: Services) -> BackgroundScheduler:
    """The process's scheduler with Conductor's periodic jobs (not started)."""
    jobs = BackgroundScheduler(
        timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1}
    )
    jobs.add_job(
        refresh_coverage,
        "interval",
        args=[services],
        id="coverage",
        seconds=services.settings.coverage_interval_s,
    )
    jobs.add_job(
        purge_idempotency_keys, "interval", args=[services], id="idempotency", hours=1
    )
    jobs.add_job(purge_usage, "interval", args=[services], id="usage-purge", hours=1)
    jobs.add_job(
        sign_checkpoint, "interval", args=[services], id="checkpoint", seconds=1
    )
    settings = services.settings
    if services.autopilot is not None and settings.autopilot:
        jobs.add_job(
            run_autopilot,
            "interval",
            args=[services],
            id="autopilot",
            seconds=settings.autopilot_interval_s,
        )
    if services.incidents is not None and settings.issue_webhook_url:
        jobs.add_job(
            deliver_incidents,
            "interval",
            args=[services],
            id="incidents",
            seconds=settings.incident_delivery_interval_s,
        )
    if services.er is not None:
        jobs.add_job(
            run_due_er_jobs,
            offpeak_trigger(services.settings),
            args=[services],
            id="er-offpeak",
        )
        # Due jobs whose run was lost (its lease expired), or whose window
        # came while no process ran, start without waiting for a restart.
        jobs.add_job(
            run_due_er_jobs,
            "interval",
            args=[services],
            id="er-due",
            seconds=services.settings.er_job_lease_s,
        )
    return jobs
