"""Background jobs (apscheduler): thin functions over the services, started by serve."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from api.er_runtime import offpeak_trigger

if TYPE_CHECKING:
    from api.services import Services

log = structlog.get_logger("conductor.jobs")


def refresh_coverage(services: Services) -> None:
    """Recompute every tenant's catalog coverage gauge."""
    for tenant in services.catalog.tenants():
        coverage = services.queries.coverage(tenant)
        services.metrics.catalog_coverage.labels(tenant).set(coverage.ratio)


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


def run_offpeak_er_jobs(services: Services) -> None:
    """In the off-peak window: start the queued ER embedding jobs that are due."""
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
    jobs.add_job(
        sign_checkpoint, "interval", args=[services], id="checkpoint", seconds=1
    )
    if services.er is not None:
        jobs.add_job(
            run_offpeak_er_jobs,
            offpeak_trigger(services.settings),
            args=[services],
            id="er-offpeak",
        )
    return jobs
