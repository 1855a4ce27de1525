"""ER assist wiring: the application, its adapters, the job worker, the window."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from apscheduler.triggers.cron import CronTrigger

from adapters.catalog.datafiles import LocalDataFiles
from adapters.er.embedder import HashingEmbedder
from adapters.er.files import CsvRecordFiles
from adapters.er.hnsw import HnswIndexes, HnswParams, HnswSearch
from adapters.er.store import SqlVectorStore
from adapters.signing.secrets import FileSecrets
from application.er.assist import LEASE_LOST, LEASED_ELSEWHERE, ErAssist
from application.er.evaluations import ErEvaluations
from application.er.inputs import ErPolicy, Ports
from application.er.rules import Blocking, Gate

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path
    from uuid import UUID

    from adapters.ledger.store import Ledger
    from api.metrics import Metrics
    from api.settings import Settings
    from projections.er import ErView

log = structlog.get_logger("conductor.er")


def offpeak_trigger(settings: Settings) -> CronTrigger:
    """Every minute of the off-peak hours (UTC): when queued jobs may start."""
    return CronTrigger(hour=settings.er_offpeak_hours, minute="*", timezone=UTC)


def next_window(trigger: CronTrigger, now: datetime) -> datetime:
    """The first off-peak minute at or after ``now``."""
    fire: datetime | None = trigger.get_next_fire_time(None, now)
    if fire is None:  # pragma: no cover - an hour field always fires again
        msg = "the off-peak trigger never fires"
        raise ValueError(msg)
    return fire


def er_policy(settings: Settings) -> ErPolicy:
    trigger = offpeak_trigger(settings)
    return ErPolicy(
        k=settings.er_k,
        blocking=Blocking.parse(settings.er_blocking),
        gate=Gate.parse(settings.er_comparisons, settings.er_merge_at),
        cap_records_per_day=settings.er_cap_records_per_day,
        max_batch=settings.er_max_batch,
        next_window=lambda now: next_window(trigger, now),
        clock=lambda: datetime.now(UTC),
        lease_s=settings.er_job_lease_s,
        max_attempts=settings.er_job_max_attempts,
    )


def hnsw_params(settings: Settings) -> HnswParams:
    return HnswParams(
        m=settings.er_hnsw_m,
        ef_construction=settings.er_hnsw_ef_construction,
        ef=settings.er_hnsw_ef,
    )


class ErWorker:
    """Runs embedding jobs on one background thread, with their progress."""

    def __init__(self, app: ErAssist, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="er-job")
        self._progress: dict[UUID, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def start(self, job_id: UUID) -> bool:
        """Queue a run of the job here; False if this process already has one."""
        with self._lock:
            if job_id in self._progress:
                return False
            self._progress[job_id] = (0, 0)
        self._pool.submit(self._run, job_id)
        return True

    def start_all(self, job_ids: Iterable[UUID]) -> list[UUID]:
        """Queue runs of the jobs; the ones not already running here."""
        return [job_id for job_id in job_ids if self.start(job_id)]

    def progress(self, job_id: UUID) -> tuple[int, int] | None:
        with self._lock:
            return self._progress.get(job_id)

    def run(self, job_id: UUID) -> str:
        """Run one job on the calling thread (the CLI's foreground run)."""
        with self._lock:
            self._progress.setdefault(job_id, (0, 0))
        return self._run(job_id)

    def _run(self, job_id: UUID) -> str:
        def progress(done: int, total: int) -> None:
            with self._lock:
                self._progress[job_id] = (done, total)

        started = time.perf_counter()
        log.info("er_job_started", job_id=str(job_id))
        try:
            status = self.app.run_job(job_id, progress)
        except Exception:
            # The job stays "running" under this run's lease; once the lease
            # expires, the next run_due resumes it (ErAssist.run_job).
            log.exception("er_job_crashed", job_id=str(job_id))
            status = "crashed"
        finally:
            with self._lock:
                done = self._progress.pop(job_id, (0, 0))[0]
        self.metrics.er_records_embedded.inc(done)
        if status == LEASED_ELSEWHERE:
            log.info("er_job_leased_elsewhere", job_id=str(job_id))
            return status
        log.log(
            logging.WARNING if status == LEASE_LOST else logging.INFO,
            "er_job_finished",
            job_id=str(job_id),
            status=status,
            records=done,
            seconds=round(time.perf_counter() - started, 3),
        )
        return status

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class ErRuntime:
    """What the API and the CLI need for ER: app, store, indexes, worker, and
    the read model of jobs and resolutions."""

    def __init__(
        self, settings: Settings, ledger: Ledger, metrics: Metrics, *, view: ErView
    ) -> None:
        self.root: Path = settings.var_path / "er"
        self.view = view
        """The jobs and resolutions read model (closed by the Conductor, after
        its runner stops)."""
        self.store = SqlVectorStore(ledger)
        embedder = HashingEmbedder(
            FileSecrets(settings.var_path / "tokenization-secret")
        )
        params = hnsw_params(settings)
        self.indexes = HnswIndexes(
            self.root / "indexes",
            self.store,
            dims=embedder.dims,
            params=params,
            on_rebuild=lambda reason: metrics.er_index_rebuilds.labels(reason).inc(),
        )
        self.app = ErAssist(
            ledger,
            ports=Ports(
                embedder=embedder,
                store=self.store,
                index=self.indexes,
                neighbours=HnswSearch(params),
                sources=LocalDataFiles(settings.data_root_path),
                files=CsvRecordFiles(embedder.fields),
                queue=self.store,
            ),
            policy=er_policy(settings),
        )
        self.worker = ErWorker(self.app, metrics)
        self.evaluations = ErEvaluations(ledger)
        """`conductor er eval` runs, recorded in the log (the recall evidence)."""
        metrics.watch_er_eval(self.evaluations.latest)
        self.charge: Callable[[str, int, int], None] | None = None
        """The meter's ``charge_embeddings`` (None: metering off)."""
        self.shaped: Callable[[str], str | None] = _not_shaped
        """Why the autopilot shapes a tenant, if it does (the shaping gate)."""

    def charge_embeddings(self, tenant: str, records: int) -> None:
        """Meter ``records`` embeddings against the tenant (when metering is on)."""
        if self.charge is not None:
            self.charge(tenant, records, int(time.time() * 1000))

    def shaping_reason(self, tenant: str) -> str | None:
        """Why the tenant is shaped (then forced jobs wait for off-peak), if it is."""
        return self.shaped(tenant)

    def run_due(self, now: datetime | None = None) -> list[UUID]:
        """Start every queued job whose window has come and that this process
        is not running yet; returns their ids. (A job another process runs is
        skipped by its lease; one whose lease expired is resumed.)"""
        return self.worker.start_all(self.app.due_jobs(now or datetime.now(UTC)))

    def close(self) -> None:
        self.worker.close()
        self.store.close()


def _not_shaped(tenant: str) -> str | None:
    del tenant
    return None
