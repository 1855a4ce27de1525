"""The exports read model: status, outcome and digests of every export."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from uuid import UUID  # noqa: TC003 - singledispatch resolves the annotations

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from domain.exports.export import Export

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime


READ_STATUSES = ("allowed", "delivered", "proven")
"""An export in one of these has read (or is reading) its dataset's file."""


@dataclass(frozen=True, slots=True)
class ExportRow:
    id: UUID
    tenant: str
    dataset_id: UUID
    dataset_version: int
    status: str
    preset: str
    purpose: str
    destination_region: str
    requester: str
    allow: bool
    reasons: tuple[str, ...]
    policy_digest: str
    input_digest: str
    content_sha256: str
    rows: int
    bytes: int
    manifest_sha256: str
    key_id: str
    failure: str
    created_at: datetime
    updated_at: datetime
    position: int
    floor_digest: str = ""
    """The platform floor that judged first ("" on decisions made before it)."""
    floor_reasons: tuple[str, ...] = ()
    policy_reasons: tuple[str, ...] = ()
    limit: str = ""
    review: tuple[bool, str, str] | None = None
    """(approved, reviewer, reason) of a manual review."""
    file_name: str = ""
    """The delivered file's name ("" until delivered)."""
    failure_detail: str = ""
    """What the failing stage reported (column names, counts; never values)."""


class ExportsView(TrackingRecorder):
    """What the exports projection writes and the API lists."""

    @abstractmethod
    def load_rows(self, ids: Sequence[UUID]) -> dict[UUID, ExportRow]:
        """Current rows for these ids."""

    @abstractmethod
    def write_batch(self, rows: Sequence[ExportRow], tracking: Tracking) -> None:
        """Upsert rows and record tracking, in one transaction."""

    @abstractmethod
    def list_exports(
        self,
        tenant: str,
        *,
        status: str | None,
        dataset_id: UUID | None,
        after: tuple[str, str] | None,
        limit: int,
    ) -> Sequence[ExportRow]:
        """Newest first; ``after`` is the (created_at, id) of the last row seen."""

    def exports_of(
        self,
        tenant: str,
        dataset_ids: Sequence[UUID],
        *,
        status: str | None,
        limit: int,
    ) -> dict[UUID, list[ExportRow]]:
        """The newest ``limit`` exports of each dataset (datasets with none are
        left out). The SQL views answer in one query; this fallback lists each."""
        found = {
            dataset_id: list(
                self.list_exports(
                    tenant,
                    status=status,
                    dataset_id=dataset_id,
                    after=None,
                    limit=limit,
                )
            )
            for dataset_id in dataset_ids
        }
        return {dataset_id: rows for dataset_id, rows in found.items() if rows}

    @abstractmethod
    def exported_datasets(self, tenant: str) -> Sequence[UUID]:
        """The datasets the tenant's exports read: those running or delivered
        (status in READ_STATUSES), distinct."""

    @abstractmethod
    def pending(self) -> Sequence[ExportRow]:
        """Allowed exports not yet delivered or failed (to resume after a crash)."""

    @abstractmethod
    def reset(self) -> None:
        """Drop every row and the tracking position."""

    def close(self) -> None:
        """Release connections of the view's own."""


class ExportsProjection(Projection[ExportsView]):
    name = "exports"
    topics = tuple(
        get_topic(cls)
        for cls in (
            Export.Requested,
            Export.Decided,
            Export.Reviewed,
            Export.Delivered,
            Export.Failed,
            Export.ProofIssued,
        )
    )

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.process_batch([(domain_event, tracking)], tracking)

    def process_batch(
        self, items: Sequence[tuple[Any, Tracking]], tracking: Tracking
    ) -> None:
        ids = list(dict.fromkeys(event.originator_id for event, _ in items))
        rows = self.view.load_rows(ids) if ids else {}
        before = dict(rows)
        for event, event_tracking in items:
            self.apply(event, event_tracking, rows)
        changed = [row for key, row in rows.items() if before.get(key) is not row]
        self.view.write_batch(changed, tracking)

    @singledispatchmethod
    def apply(
        self, event: Any, tracking: Tracking, rows: dict[UUID, ExportRow]
    ) -> None:
        """Other events leave the exports unchanged."""

    @apply.register
    def _(
        self, event: Export.Requested, tracking: Tracking, rows: dict[UUID, ExportRow]
    ) -> None:
        rows[event.originator_id] = ExportRow(
            id=event.originator_id,
            tenant=event.tenant,
            dataset_id=event.dataset_id,
            dataset_version=event.dataset_version,
            status="requested",
            preset=event.preset,
            purpose=event.purpose,
            destination_region=event.destination_region,
            requester=event.requester,
            allow=False,
            reasons=(),
            policy_digest="",
            input_digest="",
            content_sha256="",
            rows=0,
            bytes=0,
            manifest_sha256="",
            key_id="",
            failure="",
            created_at=event.timestamp,
            updated_at=event.timestamp,
            position=tracking.notification_id,
        )

    @apply.register
    def _(
        self, event: Export.Decided, tracking: Tracking, rows: dict[UUID, ExportRow]
    ) -> None:
        review = bool(getattr(event, "review", False))  # absent before v2
        _update(
            rows,
            event,
            tracking,
            status="pending_review"
            if review
            else ("allowed" if event.allow else "denied"),
            allow=event.allow and not review,
            reasons=tuple(event.reasons),
            policy_digest=event.policy_digest,
            input_digest=event.input_digest,
            floor_digest=getattr(event, "floor_digest", ""),
            floor_reasons=tuple(getattr(event, "floor_reasons", ())),
            policy_reasons=tuple(getattr(event, "policy_reasons", ())),
            limit=getattr(event, "limit", ""),
        )

    @apply.register
    def _(
        self, event: Export.Reviewed, tracking: Tracking, rows: dict[UUID, ExportRow]
    ) -> None:
        _update(
            rows,
            event,
            tracking,
            status="allowed" if event.approved else "rejected",
            allow=event.approved,
            review=(event.approved, event.reviewer, event.reason),
        )

    @apply.register
    def _(
        self, event: Export.Delivered, tracking: Tracking, rows: dict[UUID, ExportRow]
    ) -> None:
        _update(
            rows,
            event,
            tracking,
            status="delivered",
            file_name=event.file_name,
            content_sha256=event.content_sha256,
            rows=event.rows,
            bytes=event.bytes,
        )

    @apply.register
    def _(
        self, event: Export.Failed, tracking: Tracking, rows: dict[UUID, ExportRow]
    ) -> None:
        _update(
            rows,
            event,
            tracking,
            status="failed",
            failure=f"{event.stage}:{event.reason}",
            failure_detail=event.detail,
        )

    @apply.register
    def _(
        self, event: Export.ProofIssued, tracking: Tracking, rows: dict[UUID, ExportRow]
    ) -> None:
        _update(
            rows,
            event,
            tracking,
            status="proven",
            manifest_sha256=event.manifest_sha256,
            key_id=event.key_id,
        )


def _update(
    table: dict[UUID, ExportRow], event: Any, tracking: Tracking, **changes: Any
) -> None:
    row = table.get(event.originator_id)
    if row is not None:
        table[event.originator_id] = replace(
            row,
            updated_at=event.timestamp,
            position=tracking.notification_id,
            **changes,
        )
