"""Group commit: concurrent saves share one transaction (and one fsync).

Each caller queues its job and then takes the write lock. Whoever holds the
lock writes every queued job in one transaction, so while one transaction is
in flight the next callers pile up and go together. No extra thread: a caller
whose job was written by another simply returns. If a combined write fails
(say one job conflicts on a version), each job is retried alone so only the
offending one fails.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventsourcing.persistence import StoredEvent


@dataclass(eq=False)
class Job:
    """One caller's insert: its events, its extra kwargs, and the outcome."""

    events: Sequence[StoredEvent]
    kwargs: dict[str, Any]
    ids: list[int] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False


class GroupCommitter:
    """Coalesce concurrent inserts; ``write(jobs)`` must be all-or-nothing."""

    def __init__(
        self,
        write: Callable[[Sequence[Job]], None],
        *,
        max_batch: int = 512,
        on_commit: Callable[[int, int], None] | None = None,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._pending: list[Job] = []
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.batches = 0
        self.jobs = 0

    def submit(self, events: Sequence[StoredEvent], **kwargs: Any) -> list[int]:
        """Insert ``events`` (with others waiting) and return their positions."""
        job = Job(events=events, kwargs=kwargs)
        with self._pending_lock:
            self._pending.append(job)
        while not job.done:
            with self._write_lock:
                if job.done:
                    break
                with self._pending_lock:
                    batch = self._pending[: self._max_batch]
                    del self._pending[: self._max_batch]
                self._run(batch)
        if job.error is not None:
            raise job.error
        return job.ids

    def _run(self, batch: list[Job]) -> None:
        try:
            self._write(batch)
        except BaseException as error:
            if len(batch) == 1:
                batch[0].error = error
            else:
                for job in batch:
                    job.ids = []
                    try:
                        self._write([job])
                    except BaseException as single_error:
                        job.error = single_error
        self.batches += 1
        self.jobs += len(batch)
        committed = [j for j in batch if j.ids and j.error is None]
        for job in batch:
            job.done = True
        if committed and self._on_commit is not None:
            self._on_commit(
                max(j.ids[-1] for j in committed), sum(len(j.ids) for j in committed)
            )


class GroupCommitInserts(ABC):
    """Mixin for the chained recorders: inserts go through a GroupCommitter and
    in-process listeners hear about every commit. Subclasses write the jobs."""

    idempotency_ttl_s: float = 24 * 3600.0

    def _start_group_commit(self) -> None:
        self._listeners: list[Callable[[int, int], None]] = []
        self.committer = GroupCommitter(self._write_jobs, on_commit=self._committed)

    @abstractmethod
    def _write_jobs(self, jobs: Sequence[Job]) -> None:
        """Write every job's events (and chain and idempotency rows) at once."""

    def add_listener(self, listener: Callable[[int, int], None]) -> None:
        """Call ``listener(last_position, events)`` after each commit here."""
        self._listeners.append(listener)

    def _committed(self, position: int, events: int) -> None:
        for listener in self._listeners:
            listener(position, events)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        return self.committer.submit(stored_events, **kwargs)
