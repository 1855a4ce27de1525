"""Background jobs: thin functions over the narrow objects each one uses.

The bootstrap binds them to the wired objects and schedules them
(apscheduler); the tests call them directly.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from application.autopilot.budgets import PLATFORM
from application.er.evaluations import RECALL_GAIN_TARGET, below_target

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from adapters.ledger.checkpoints import LedgerCheckpoints
    from adapters.ledger.store import Ledger
    from adapters.signing.keystore import KeyStore
    from api.metrics import Metrics
    from api.runtime.er import ErRuntime
    from application.autopilot.autopilot import Autopilot
    from application.autopilot.incidents import Incidents
    from application.autopilot.metering import Meter
    from application.dr.lag_alerts import LagAlerts
    from application.er.evaluations import ErEvaluations
    from application.exports.exports import Exports
    from projections.catalog import CatalogView
    from projections.coverage import CatalogQueries
    from projections.runner import BatchRunner
    from projections.usage import UsageView

log = structlog.get_logger("conductor.jobs")


COVERAGE_GUARD = 0.9
"""The seed's alert: catalog coverage under 90 % of active datasets opens an issue."""


def refresh_coverage(
    catalog: CatalogView,
    queries: CatalogQueries,
    metrics: Metrics,
    autopilot: Autopilot,
) -> None:
    """Recompute every tenant's catalog coverage gauge (registered active
    datasets over active ones); guard it at 90 %."""
    # a tenant whose repositories name only unregistered datasets has none
    for tenant in sorted({*catalog.tenants(), *queries.gate_tenants()}):
        coverage = queries.coverage(tenant)
        metrics.catalog_coverage.labels(tenant).set(coverage.ratio)
        autopilot.set_guard(
            tenant,
            "catalog-coverage",
            on=coverage.ratio < COVERAGE_GUARD,
            evidence={
                "coverage": coverage.ratio,
                "threshold": COVERAGE_GUARD,
                "datasetsInUse": coverage.in_use,
                "registeredInUse": coverage.registered_in_use,
            },
            now_s=time.time(),
        )


def flush_meter(meter: Meter | None) -> None:
    """Write this process's metering to the log (one event per tenant)."""
    if meter is not None:
        meter.flush(int(time.time() * 1000))


def run_autopilot(
    autopilot: Autopilot,
    usage: UsageView,
    metrics: Metrics,
    ledger: Ledger,
    usage_runner: BatchRunner | None,
    *,
    wait_s: float,
    guards: Callable[[], None],
) -> None:
    """One controller tick: measure burn, adjust caps, shape, breach guards."""
    if usage_runner is not None:  # act on every flush already in the log
        head = ledger.head().position
        if not usage_runner.wait(head, timeout=min(5.0, wait_s)):
            log.warning("autopilot_usage_behind", head=head, at=usage_runner.position())
    actions = autopilot.tick(time.time())
    guards()
    metrics.autopilot_observed(autopilot.last_burns)
    for row in usage.budgets():
        metrics.cost_cap.labels(row.tenant).set(row.cap_units_per_s or 0)
    for action in actions:
        metrics.autopilot_actions.labels(action.kind).inc()


ER_RECALL_GUARD = RECALL_GAIN_TARGET
"""The seed's alert: the ER assist's candidate-recall gain under +10 %, relative
((assist - baseline) / baseline, as `er eval` prints it), at equal precision."""


def export_finished(
    autopilot: Autopilot, exports: Exports, export_id: UUID, status: str
) -> None:
    """The export-without-proof guard: a run that ends without a proof breaches
    it for the tenant; the tenant's next proven export clears it."""
    if status in {"denied", "failed"}:
        return  # refused or failed before delivery: nothing left unproven
    export = exports.load_export(export_id)
    autopilot.set_guard(
        export.tenant,
        "export-without-proof",
        on=status != "proven",
        evidence={"exportId": str(export_id), "status": status},
        now_s=time.time(),
    )


def platform_guards(
    autopilot: Autopilot, lag_alerts: LagAlerts, evaluations: ErEvaluations
) -> None:
    """Guards of the whole platform (pseudo-tenant _platform): the replica-lag
    alert and the latest ER evaluation's relative recall gain (from the log)."""
    now = time.time()
    # the lag alert is recorded by whichever process watches the DR pair
    firing = lag_alerts.firing()
    autopilot.set_guard(
        PLATFORM,
        "replica-lag",
        on=bool(firing),
        evidence={"firingRegions": firing},
        now_s=now,
    )
    last = evaluations.latest()
    if last is not None:
        gain = last.recall_gain
        autopilot.set_guard(
            PLATFORM,
            "er-recall",
            on=below_target(last, ER_RECALL_GUARD),
            evidence={
                "recallGain": None if gain is None else float(gain),
                "threshold": float(ER_RECALL_GUARD),
                "baselineRecall": float(last.baseline.candidate_recall),
                "assistRecall": float(last.assist.candidate_recall),
                "baselinePrecision": float(last.baseline.precision),
                "assistPrecision": float(last.assist.precision),
                "recallDelta": float(last.recall_delta),
                "labelledSha256": last.labelled_sha256,
            },
            now_s=now,
        )


USAGE_RETENTION_S = 32 * 86400
"""Usage buckets older than the longest period (a month) are dropped."""


def purge_usage(usage: UsageView) -> None:
    """Drop per-minute usage buckets no window or period can reach any more."""
    dropped = usage.purge(int((time.time() - USAGE_RETENTION_S) // 60))
    if dropped:
        log.info("usage_buckets_purged", count=dropped)


def deliver_incidents(incidents: Incidents) -> None:
    """Send due issue opens/resolves to the webhook (with backoff on failure)."""
    incidents.deliver(time.time())


def purge_idempotency_keys(ledger: Ledger) -> None:
    """Drop Idempotency-Keys older than their TTL."""
    dropped = ledger.purge_idempotency()
    if dropped:
        log.info("idempotency_keys_purged", count=dropped)


def sign_checkpoint(
    checkpoints: LedgerCheckpoints,
    exports: Exports,
    keys: KeyStore,
    *,
    started_at: datetime,
    every_events: int,
    interval_s: float,
) -> None:
    """Sign a tree head when N events arrived or T seconds passed since the last.

    Runs every second; between signatures it only folds new chain rows into
    the in-memory tree. With no checkpoint yet, T counts from process start,
    so a restart does not sign at once. The signing key is recorded in the
    log first, so an auditor holding only the exported log can check every
    checkpoint. (An export that needs a checkpoint signs one on demand.)
    """
    size = checkpoints.sync()
    latest = checkpoints.latest()
    signed = latest.size if latest else 0
    if size <= signed:
        return
    since = latest.issued_at if latest else started_at
    age = (datetime.now(UTC) - since).total_seconds()
    if size - signed < every_events and age < interval_s:
        return
    exports.record_signing_key(keys)
    checkpoint = checkpoints.sign()
    log.info("checkpoint_signed", size=checkpoint.size, root=checkpoint.root)


def run_due_er_jobs(er: ErRuntime) -> None:
    """Start the queued ER embedding jobs that are due (their window came, or
    their run was lost and its lease expired) and not running here."""
    started = er.run_due()
    if started:
        log.info("er_jobs_started", count=len(started))
