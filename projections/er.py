"""The ER read model: every embedding job and resolution, by tenant.

Rows hold ids, counts, digests and statuses only: never a record's values
(the events carry none) nor a record's id. A job's file location (a path in
the tenant's data root, as its Requested event holds it) is kept apart from
the rows, for catalog coverage only: no list or row shows it.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID  # noqa: TC003 - the row dataclasses need it at runtime

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from domain.er.resolution import EmbeddingJob, Resolution

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

JOB_EVENTS = (
    EmbeddingJob.Requested,
    EmbeddingJob.Started,
    EmbeddingJob.Resumed,
    EmbeddingJob.Completed,
    EmbeddingJob.Failed,
)
RESOLUTION_EVENTS = (
    Resolution.Requested,
    Resolution.MergeProposed,
    Resolution.MergeDecided,
)
Row = TypeVar("Row")


@dataclass(frozen=True, slots=True)
class JobRow:
    id: UUID
    tenant: str
    entity_set: str
    status: str
    records: int
    embedded: int
    """Records embedded by the completed run (0 before it completes)."""
    forced: bool
    run_after: datetime
    attempt: int
    failure: str
    vectors_sha256: str
    created: int
    """Log position of the request: the lists' order and cursor."""
    position: int
    """Log position of the job's last event."""


@dataclass(frozen=True, slots=True)
class ResolutionRow:
    id: UUID
    tenant: str
    entity_set: str
    records: int
    candidate_pairs: int
    proposed: int
    decided: int
    merged: int
    gate_digest: str
    created: int
    """Log position of the request: the lists' order and cursor."""
    position: int
    """Log position of the resolution's last event."""


@dataclass(slots=True)
class ErRows:
    """The rows one batch touches, by id: loaded, changed in memory, written."""

    jobs: dict[UUID, JobRow]
    resolutions: dict[UUID, ResolutionRow]
    locations: dict[UUID, tuple[str, str]] = field(default_factory=dict)
    """New jobs' (tenant, data-root location), for coverage (not in the rows)."""


class ErView(TrackingRecorder):
    """What the ER projection writes and the API lists."""

    @abstractmethod
    def load_jobs(self, ids: Sequence[UUID]) -> dict[UUID, JobRow]:
        """Current job rows for these ids."""

    @abstractmethod
    def load_resolutions(self, ids: Sequence[UUID]) -> dict[UUID, ResolutionRow]:
        """Current resolution rows for these ids."""

    @abstractmethod
    def write_batch(
        self,
        jobs: Sequence[JobRow],
        resolutions: Sequence[ResolutionRow],
        tracking: Tracking,
        locations: Mapping[UUID, tuple[str, str]] | None = None,
    ) -> None:
        """Upsert rows, keep new jobs' (tenant, location) and record tracking,
        in one transaction."""

    @abstractmethod
    def list_jobs(
        self,
        tenant: str,
        *,
        status: str | None,
        entity_set: str | None,
        before: int | None,
        limit: int,
    ) -> Sequence[JobRow]:
        """The tenant's jobs, newest first; ``before``: a ``created`` position."""

    @abstractmethod
    def list_resolutions(
        self,
        tenant: str,
        *,
        entity_set: str | None,
        before: int | None,
        limit: int,
    ) -> Sequence[ResolutionRow]:
        """The tenant's resolutions, newest first; ``before`` as for jobs."""

    @abstractmethod
    def job_locations(self, tenant: str) -> Sequence[str]:
        """The data-root files the tenant's embedding jobs read (distinct)."""

    @abstractmethod
    def reset(self) -> None:
        """Drop every row and the tracking position."""

    def close(self) -> None:
        """Release connections of the view's own."""


def _ids(
    items: Sequence[tuple[Any, Tracking]], kinds: tuple[type[Any], ...]
) -> list[UUID]:
    return list(
        dict.fromkeys(e.originator_id for e, _ in items if isinstance(e, kinds))
    )


def _changed(rows: dict[UUID, Row], before: dict[UUID, Row]) -> list[Row]:
    return [row for key, row in rows.items() if before.get(key) is not row]


class ErProjection(Projection[ErView]):
    name = "er"
    topics = tuple(get_topic(cls) for cls in (*JOB_EVENTS, *RESOLUTION_EVENTS))

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.process_batch([(domain_event, tracking)], tracking)

    def process_batch(
        self, items: Sequence[tuple[Any, Tracking]], tracking: Tracking
    ) -> None:
        jobs, resolutions = _ids(items, JOB_EVENTS), _ids(items, RESOLUTION_EVENTS)
        rows = ErRows(
            jobs=self.view.load_jobs(jobs) if jobs else {},
            resolutions=self.view.load_resolutions(resolutions) if resolutions else {},
        )
        before = ErRows(jobs=dict(rows.jobs), resolutions=dict(rows.resolutions))
        for event, event_tracking in items:
            self.apply(event, event_tracking, rows)
        self.view.write_batch(
            _changed(rows.jobs, before.jobs),
            _changed(rows.resolutions, before.resolutions),
            tracking,
            rows.locations,
        )

    @singledispatchmethod
    def apply(self, event: Any, tracking: Tracking, rows: ErRows) -> None:
        """Other events leave the rows unchanged."""

    @apply.register
    def _(
        self, event: EmbeddingJob.Requested, tracking: Tracking, rows: ErRows
    ) -> None:
        rows.jobs[event.originator_id] = JobRow(
            id=event.originator_id,
            tenant=event.tenant,
            entity_set=event.entity_set,
            status="scheduled",
            records=event.records,
            embedded=0,
            forced=event.forced,
            run_after=event.run_after,
            attempt=0,
            failure="",
            vectors_sha256="",
            created=tracking.notification_id,
            position=tracking.notification_id,
        )
        rows.locations[event.originator_id] = (event.tenant, event.location)

    @apply.register
    def _(self, event: EmbeddingJob.Started, tracking: Tracking, rows: ErRows) -> None:
        _job(rows, event, tracking, status="running", attempt=1)

    @apply.register
    def _(self, event: EmbeddingJob.Resumed, tracking: Tracking, rows: ErRows) -> None:
        _job(rows, event, tracking, attempt=event.attempt)

    @apply.register
    def _(
        self, event: EmbeddingJob.Completed, tracking: Tracking, rows: ErRows
    ) -> None:
        _job(
            rows,
            event,
            tracking,
            status="completed",
            embedded=event.records,
            vectors_sha256=event.vectors_sha256,
        )

    @apply.register
    def _(self, event: EmbeddingJob.Failed, tracking: Tracking, rows: ErRows) -> None:
        _job(rows, event, tracking, status="failed", failure=event.reason)

    @apply.register
    def _(self, event: Resolution.Requested, tracking: Tracking, rows: ErRows) -> None:
        rows.resolutions[event.originator_id] = ResolutionRow(
            id=event.originator_id,
            tenant=event.tenant,
            entity_set=event.entity_set,
            records=event.records,
            candidate_pairs=event.candidate_pairs,
            proposed=0,
            decided=0,
            merged=0,
            gate_digest=event.gate_digest,
            created=tracking.notification_id,
            position=tracking.notification_id,
        )

    @apply.register
    def _(
        self, event: Resolution.MergeProposed, tracking: Tracking, rows: ErRows
    ) -> None:
        row = rows.resolutions.get(event.originator_id)
        if row is not None:
            _resolution(rows, event, tracking, proposed=row.proposed + 1)

    @apply.register
    def _(
        self, event: Resolution.MergeDecided, tracking: Tracking, rows: ErRows
    ) -> None:
        row = rows.resolutions.get(event.originator_id)
        if row is not None:
            _resolution(
                rows,
                event,
                tracking,
                decided=row.decided + 1,
                merged=row.merged + int(event.merged),
            )


def _job(rows: ErRows, event: Any, tracking: Tracking, **changes: Any) -> None:
    row = rows.jobs.get(event.originator_id)
    if row is not None:
        rows.jobs[event.originator_id] = replace(
            row, position=tracking.notification_id, **changes
        )


def _resolution(rows: ErRows, event: Any, tracking: Tracking, **changes: Any) -> None:
    row = rows.resolutions.get(event.originator_id)
    if row is not None:
        rows.resolutions[event.originator_id] = replace(
            row, position=tracking.notification_id, **changes
        )
