"""The ER aggregates: caps refuse without an event; jobs move in order."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest

from domain.er.resolution import (
    EmbeddingJob,
    ErCapExceededError,
    ErJobStateError,
    ErQuota,
    Resolution,
)


class TestErQuota:
    def test_charges_add_up_to_the_cap_and_no_further(self) -> None:
        """At the cap exactly is fine; one more record is refused with no event."""
        quota = ErQuota(tenant="acme", day="2026-11-26")
        quota.charge(records=6, cap=10, reference=uuid4())
        quota.charge(records=4, cap=10, reference=uuid4())
        with pytest.raises(ErCapExceededError) as refused:
            quota.charge(records=1, cap=10, reference=uuid4())
        assert (refused.value.used, refused.value.requested) == (10, 1)
        assert [type(e).__name__ for e in quota.collect_events()] == [
            "Opened",
            "Charged",
            "Charged",
        ]

    def test_the_id_is_the_tenant_and_the_day(self) -> None:
        """One quota per tenant per UTC day (uniqueness from the event store)."""
        assert ErQuota.create_id("acme", "2026-11-26") == ErQuota.create_id(
            "acme", "2026-11-26"
        )
        assert ErQuota.create_id("acme", "2026-11-26") != ErQuota.create_id(
            "acme", "2026-11-27"
        )


class TestEmbeddingJob:
    def job(self) -> EmbeddingJob:
        return EmbeddingJob(
            tenant="acme",
            entity_set="people",
            location="people.csv",
            id_column="rec_id",
            records=3,
            forced=False,
            run_after=datetime(2026, 11, 27, 1, tzinfo=UTC),
            requester="ops",
        )

    def test_scheduled_then_running_then_completed(self) -> None:
        """The happy path records Started and Completed with the vectors' digest."""
        job = self.job()
        job.start()
        job.complete(records=3, vectors_sha256="ab" * 32, index_size=3, embedder="e")
        assert (job.status, job.embedded) == ("completed", 3)
        with pytest.raises(ErJobStateError):
            job.start()
        with pytest.raises(ErJobStateError):
            job.fail(reason="late")

    def test_a_running_job_is_resumed_with_its_attempt_and_replays_so(
        self,
    ) -> None:
        """Resumed (a lost run taken over) counts attempts; only while running."""
        job = self.job()
        with pytest.raises(ErJobStateError):
            job.resume()
        job.start()
        job.resume()
        job.resume()
        assert (job.status, job.attempt) == ("running", 3)
        copy: EmbeddingJob | None = None
        for event in job.collect_events():
            copy = event.mutate(copy)  # type: ignore[assignment]
        assert copy is not None
        assert (copy.status, copy.attempt) == ("running", 3)
        job.complete(records=3, vectors_sha256="ab" * 32, index_size=3, embedder="e")
        with pytest.raises(ErJobStateError):
            job.resume()

    def test_a_job_cannot_complete_before_it_starts(self) -> None:
        """Completing a scheduled job is out of order."""
        with pytest.raises(ErJobStateError):
            self.job().complete(
                records=3, vectors_sha256="", index_size=3, embedder="e"
            )


def test_a_resolution_records_each_decision_with_ids_and_scores_only() -> None:
    """MergeProposed/MergeDecided carry ids, scores and rule names, no values."""
    resolution = Resolution(
        tenant="acme",
        entity_set="people",
        records=2,
        k=5,
        blocking="exact:postcode",
        gate_digest="d" * 64,
        merge_at=Decimal(6),
        embedder="e",
        blocking_pairs=1,
        ann_pairs=1,
        candidate_pairs=1,
    )
    assert resolution.decide(
        left="r0", right="r1", score=7, agreed=("exact:postcode",), via="both"
    )
    assert not resolution.decide(left="r0", right="r2", score=5, agreed=(), via="ann")
    events = resolution.collect_events()
    decided = [e for e in events if isinstance(e, Resolution.MergeDecided)]
    assert [(e.left, e.right, e.merged, e.score) for e in decided] == [
        ("r0", "r1", True, 7),
        ("r0", "r2", False, 5),
    ]
    assert resolution.decisions == {("r0", "r1"): True, ("r0", "r2"): False}
