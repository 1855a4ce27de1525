"""The ER projection: job and resolution rows folded from the domain's events."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import Tracking
from eventsourcing.popo import POPOTrackingRecorder

from domain.er.resolution import EmbeddingJob, Resolution
from projections.er import ErProjection, ErView, JobRow, ResolutionRow

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from uuid import UUID


class MemoryErView(POPOTrackingRecorder, ErView):
    """The ER view in dicts (the SQL views' contract, in memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[UUID, JobRow] = {}
        self.resolutions: dict[UUID, ResolutionRow] = {}
        self.locations: dict[UUID, tuple[str, str]] = {}

    def load_jobs(self, ids: Sequence[UUID]) -> dict[UUID, JobRow]:
        return {i: self.jobs[i] for i in ids if i in self.jobs}

    def load_resolutions(self, ids: Sequence[UUID]) -> dict[UUID, ResolutionRow]:
        return {i: self.resolutions[i] for i in ids if i in self.resolutions}

    def write_batch(
        self,
        jobs: Sequence[JobRow],
        resolutions: Sequence[ResolutionRow],
        tracking: Tracking,
        locations: Mapping[UUID, tuple[str, str]] | None = None,
    ) -> None:
        for job_id, where in (locations or {}).items():
            self.locations.setdefault(job_id, where)
        self.jobs.update((r.id, r) for r in jobs)
        self.resolutions.update((r.id, r) for r in resolutions)
        self.insert_tracking(tracking)

    def list_jobs(
        self,
        tenant: str,
        *,
        status: str | None,
        entity_set: str | None,
        before: int | None,
        limit: int,
    ) -> list[JobRow]:
        del status, entity_set, before
        return sorted(
            (r for r in self.jobs.values() if r.tenant == tenant),
            key=lambda r: -r.created,
        )[:limit]

    def list_resolutions(
        self,
        tenant: str,
        *,
        entity_set: str | None,
        before: int | None,
        limit: int,
    ) -> list[ResolutionRow]:
        del entity_set, before
        return sorted(
            (r for r in self.resolutions.values() if r.tenant == tenant),
            key=lambda r: -r.created,
        )[:limit]

    def job_locations(self, tenant: str) -> list[str]:
        return sorted({loc for who, loc in self.locations.values() if who == tenant})

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


def fold(*batches: Sequence[Any]) -> MemoryErView:
    """Each batch's events at consecutive positions from 1, one batch per commit."""
    view = MemoryErView()
    projection = ErProjection(view=view)
    position = 0
    for batch in batches:
        items = []
        for event in batch:
            position += 1
            items.append((event, Tracking("ledger", position)))
        projection.process_batch(items, Tracking("ledger", position))
    return view


def job_events(*, complete: bool) -> list[Any]:
    job = EmbeddingJob(
        tenant="acme",
        entity_set="crm",
        location="secret-people.csv",
        id_column="rec_id",
        records=120,
        forced=True,
        run_after=datetime(2030, 1, 1, tzinfo=UTC),
        requester="alice",
    )
    job.start()
    job.resume()
    if complete:
        job.complete(
            records=120, vectors_sha256="ab" * 32, index_size=120, embedder="hash"
        )
    else:
        job.fail(reason="FileNotFoundError")
    return list(job.collect_events())


def resolution_events() -> list[Any]:
    resolution = Resolution(
        tenant="acme",
        entity_set="people",
        records=5,
        k=10,
        blocking="soundex",
        gate_digest="cd" * 32,
        merge_at=Decimal(6),
        embedder="hash",
        blocking_pairs=3,
        ann_pairs=2,
        candidate_pairs=4,
    )
    resolution.decide(left="r0", right="r1", score=7, agreed=("surname",), via="both")
    resolution.decide(left="r0", right="r2", score=5, agreed=(), via="blocking")
    resolution.decide(left="r3", right="r4", score=6, agreed=(), via="ann")
    return list(resolution.collect_events())


class TestErProjection:
    def test_a_job_row_follows_the_job_to_completion(self) -> None:
        """Requested, Started, Resumed, Completed: status, attempt, hash, counts."""
        events = job_events(complete=True)
        (row,) = fold(events).jobs.values()
        assert (row.status, row.attempt, row.embedded) == ("completed", 2, 120)
        assert (row.records, row.forced, row.entity_set) == (120, True, "crm")
        assert row.vectors_sha256 == "ab" * 32
        assert (row.created, row.position) == (1, len(events))

    def test_a_failed_job_keeps_its_reason(self) -> None:
        """The reason is an error's name, never a value."""
        (row,) = fold(job_events(complete=False)).jobs.values()
        assert (row.status, row.failure, row.embedded) == (
            "failed",
            "FileNotFoundError",
            0,
        )

    def test_a_resolution_row_counts_proposals_decisions_and_merges(self) -> None:
        """Three pairs decided, two merged (scores 7 and 6 at merge_at 6)."""
        events = resolution_events()
        (row,) = fold(events).resolutions.values()
        assert (row.records, row.candidate_pairs) == (5, 4)
        assert (row.proposed, row.decided, row.merged) == (3, 3, 2)
        assert row.gate_digest == "cd" * 32
        assert (row.created, row.position) == (1, len(events))

    def test_one_batch_gives_the_rows_event_by_event_gives(self) -> None:
        """The batched runner's pages and single events fold alike."""
        events = [*job_events(complete=True), *resolution_events()]
        whole = fold(events)
        single = fold(*([e] for e in events))
        assert whole.jobs == single.jobs
        assert whole.resolutions == single.resolutions
        assert whole.max_tracking_id("ledger") == len(events)

    def test_rows_hold_no_file_location_requester_or_record_id(self) -> None:
        """Only ids, counts, digests and statuses reach the rows (and the lists)."""
        view = fold([*job_events(complete=True), *resolution_events()])
        text = repr([*view.jobs.values(), *view.resolutions.values()])
        for value in ("secret-people.csv", "alice", "r0", "surname"):
            assert value not in text
        assert "location" not in {f.name for f in dataclasses.fields(JobRow)}

    def test_a_jobs_location_is_kept_apart_for_coverage(self) -> None:
        """Catalog coverage counts the files ER jobs read: the location is kept
        beside the rows, once per job, and only for its tenant."""
        view = fold(*([e] for e in job_events(complete=True)))
        assert view.job_locations("acme") == ["secret-people.csv"]
        assert view.job_locations("globex") == []
