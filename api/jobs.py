"""Background jobs (apscheduler): thin functions over the services, started by serve."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

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
    return jobs
