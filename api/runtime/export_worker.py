"""Background runs of allowed exports, with progress visible to the API."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from uuid import UUID

    from api.metrics import Metrics
    from application.autopilot.metering import Meter
    from application.exports.pipeline import ExportPipeline

log = structlog.get_logger("conductor.exports")


class ExportWorker:
    """A small thread pool running ExportPipeline.run, one export per thread."""

    def __init__(
        self, pipeline: ExportPipeline, metrics: Metrics, *, threads: int = 2
    ) -> None:
        self.pipeline = pipeline
        self.metrics = metrics
        self.meter: Meter | None = None
        """Set by the composition root when metering is on."""
        self.on_finished: Callable[[UUID, str], None] | None = None
        """Called with each run's final status (the export-without-proof guard)."""
        self._pool = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="export"
        )
        self._progress: dict[UUID, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def start(self, export_id: UUID) -> None:
        """Queue an allowed export (a second start of a running one is ignored)."""
        with self._lock:
            if export_id in self._progress:
                return
            self._progress[export_id] = (0, 0)
        self._pool.submit(self._run, export_id)

    def resume(self, export_ids: Iterable[UUID]) -> None:
        """Queue exports left half-done by a previous process."""
        for export_id in export_ids:
            self.start(export_id)

    def progress(self, export_id: UUID) -> tuple[int, int] | None:
        """(rows, bytes) written so far, while the export runs in this process."""
        with self._lock:
            return self._progress.get(export_id)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _charge(self, export_id: UUID) -> None:
        """Meter the bytes delivered (units per GB, from the price table)."""
        assert self.meter is not None
        try:
            export = self.pipeline.exports.load_export(export_id)
            self.meter.charge_export(
                export.tenant, export.bytes, int(time.time() * 1000)
            )
        except Exception:
            log.warning("export_not_metered", export_id=str(export_id), exc_info=True)

    def _run(self, export_id: UUID) -> None:
        def progress(read: int, total: int) -> None:  # bytes of the source file
            with self._lock:
                self._progress[export_id] = (read, total)

        log.info("export_started", export_id=str(export_id))
        started = time.perf_counter()
        try:
            status = self.pipeline.run(export_id, progress)
        except Exception:
            log.exception("export_crashed", export_id=str(export_id))
            self.metrics.export_proof_failures.labels("crashed").inc()
            status = "crashed"
        else:
            if status != "proven":
                self.metrics.export_proof_failures.labels(status).inc()
        finally:
            with self._lock:
                self._progress.pop(export_id, None)
        elapsed = time.perf_counter() - started
        if self.meter is not None and status in {"proven", "delivered"}:
            self._charge(export_id)
        if self.on_finished is not None:
            try:
                self.on_finished(export_id, status)
            except Exception:
                log.warning(
                    "export_guard_failed", export_id=str(export_id), exc_info=True
                )
        self.metrics.exports_finished.labels(status).inc()
        self.metrics.export_seconds.observe(elapsed)
        log.info(
            "export_finished",
            export_id=str(export_id),
            status=status,
            seconds=round(elapsed, 3),
        )
