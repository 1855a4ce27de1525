"""Entity resolution: resolutions with their merge decisions, embedding jobs, caps.

Events carry record ids, scores and counts, never a record's values: the
values are compared in memory and dropped. A Resolution records which pairs
the gate was asked about and what it decided; an EmbeddingJob is one batch of
records turned into stored vectors; an ErQuota counts a tenant's records for
one UTC day against the cap in force.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import ConflictError, DomainError, NotFoundError
from domain.topics import keep_stored_topics

if TYPE_CHECKING:
    from datetime import datetime


class ErCapExceededError(DomainError):
    """A batch would take the tenant past its records-per-day cap."""

    def __init__(self, tenant: str, cap: int, used: int, requested: int) -> None:
        self.tenant = tenant
        self.cap = cap
        self.used = used
        self.requested = requested
        super().__init__(
            f"tenant {tenant} has used {used:,} of {cap:,} records today; "
            f"{requested:,} more would exceed the cap"
        )


class ErJobNotFoundError(NotFoundError):
    def __init__(self, job_id: UUID) -> None:
        self.job_id = job_id
        super().__init__(f"ER job {job_id} not found")


class ErRecordNotFoundError(NotFoundError):
    def __init__(self, entity_set: str, record_id: str) -> None:
        self.entity_set = entity_set
        self.record_id = record_id
        super().__init__(f"record {record_id!r} is not in entity set {entity_set!r}")


class ErJobStateError(ConflictError):
    def __init__(self, job_id: UUID, status: str, step: str) -> None:
        self.job_id = job_id
        super().__init__(f"ER job {job_id} is {status}: cannot {step}")


class ErQuota(Aggregate):
    """One tenant's embedded records on one UTC day."""

    class Opened(Aggregate.Created):
        tenant: str
        day: str

    class Charged(Aggregate.Event):
        records: int
        cap: int
        reference: UUID

    @staticmethod
    def create_id(tenant: str, day: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/tenants/{tenant}/er-quota/{day}")

    @event(Opened)
    def __init__(self, *, tenant: str, day: str) -> None:
        self.tenant = tenant
        self.day = day
        self.used = 0

    def check(self, *, records: int, cap: int) -> None:
        """Refuse (ErCapExceededError) if ``records`` more would pass ``cap``."""
        if self.used + records > cap:
            raise ErCapExceededError(self.tenant, cap, self.used, records)

    def charge(self, *, records: int, cap: int, reference: UUID) -> None:
        """Count ``records`` against ``cap``; refuse (no event) past it."""
        self.check(records=records, cap=cap)
        self._charge(records=records, cap=cap, reference=reference)

    @event(Charged)
    def _charge(self, *, records: int, cap: int, reference: UUID) -> None:
        del cap, reference
        self.used += records


class EmbeddingJob(Aggregate):
    """A batch of a tenant's records embedded into an entity set's vectors."""

    class Requested(Aggregate.Created):
        tenant: str
        entity_set: str
        location: str
        id_column: str
        records: int
        forced: bool
        run_after: datetime
        requester: str

    class Started(Aggregate.Event):
        pass

    class Resumed(Aggregate.Event):
        """A run whose worker vanished (its lease expired) starts again."""

        attempt: int
        """1 is the first run; the new run embeds the whole file again."""

    class Completed(Aggregate.Event):
        records: int
        vectors_sha256: str
        index_size: int
        embedder: str

    class Failed(Aggregate.Event):
        reason: str

    @staticmethod
    def create_id() -> UUID:
        return uuid4()

    @event(Requested)
    def __init__(
        self,
        *,
        tenant: str,
        entity_set: str,
        location: str,
        id_column: str,
        records: int,
        forced: bool,
        run_after: datetime,
        requester: str,
    ) -> None:
        self.tenant = tenant
        self.entity_set = entity_set
        self.location = location
        self.id_column = id_column
        self.records = records
        self.forced = forced
        self.run_after = run_after
        self.requester = requester
        self.status = "scheduled"
        self.attempt = 0
        self.embedded = 0
        self.vectors_sha256 = ""
        self.failure = ""

    def start(self) -> None:
        if self.status != "scheduled":
            raise ErJobStateError(self.id, self.status, "start")
        self._start()

    @event(Started)
    def _start(self) -> None:
        self.status = "running"
        self.attempt = 1

    def resume(self) -> None:
        """Run again after the worker running it was lost (it stayed running)."""
        if self.status != "running":
            raise ErJobStateError(self.id, self.status, "resume")
        self._resume(attempt=self.attempt + 1)

    @event(Resumed)
    def _resume(self, *, attempt: int) -> None:
        self.attempt = attempt

    def complete(
        self, *, records: int, vectors_sha256: str, index_size: int, embedder: str
    ) -> None:
        if self.status != "running":
            raise ErJobStateError(self.id, self.status, "complete")
        self._complete(
            records=records,
            vectors_sha256=vectors_sha256,
            index_size=index_size,
            embedder=embedder,
        )

    @event(Completed)
    def _complete(
        self, *, records: int, vectors_sha256: str, index_size: int, embedder: str
    ) -> None:
        del index_size, embedder
        self.status = "completed"
        self.embedded = records
        self.vectors_sha256 = vectors_sha256

    def fail(self, *, reason: str) -> None:
        if self.status in {"completed", "failed"}:
            raise ErJobStateError(self.id, self.status, "fail")
        self._fail(reason=reason)

    @event(Failed)
    def _fail(self, *, reason: str) -> None:
        self.status = "failed"
        self.failure = reason


class Resolution(Aggregate):
    """One batch put through candidates and the gate, and what the gate decided."""

    class Requested(Aggregate.Created):
        tenant: str
        entity_set: str
        records: int
        k: int
        blocking: str
        gate_digest: str
        merge_at: Decimal
        embedder: str
        blocking_pairs: int
        ann_pairs: int
        candidate_pairs: int

    class MergeProposed(Aggregate.Event):
        left: str
        right: str
        score: int
        agreed: tuple[str, ...]
        """The comparisons that agreed (rule names, not values)."""
        via: str

    class MergeDecided(Aggregate.Event):
        left: str
        right: str
        merged: bool
        score: int
        merge_at: Decimal
        gate_digest: str

    @staticmethod
    def create_id() -> UUID:
        return uuid4()

    @event(Requested)
    def __init__(
        self,
        *,
        tenant: str,
        entity_set: str,
        records: int,
        k: int,
        blocking: str,
        gate_digest: str,
        merge_at: Decimal,
        embedder: str,
        blocking_pairs: int,
        ann_pairs: int,
        candidate_pairs: int,
    ) -> None:
        self.tenant = tenant
        self.entity_set = entity_set
        self.records = records
        self.k = k
        self.blocking = blocking
        self.gate_digest = gate_digest
        self.merge_at = Decimal(merge_at)
        self.embedder = embedder
        self.pairs = (blocking_pairs, ann_pairs, candidate_pairs)
        self.decisions: dict[tuple[str, str], bool] = {}

    def decide(
        self, *, left: str, right: str, score: int, agreed: tuple[str, ...], via: str
    ) -> bool:
        """Propose a pair with its gate score and record the gate's decision."""
        self._propose(left=left, right=right, score=score, agreed=agreed, via=via)
        merged = score >= self.merge_at
        self._decide(
            left=left,
            right=right,
            merged=merged,
            score=score,
            merge_at=self.merge_at,
            gate_digest=self.gate_digest,
        )
        return merged

    @event(MergeProposed)
    def _propose(
        self, *, left: str, right: str, score: int, agreed: tuple[str, ...], via: str
    ) -> None:
        del score, agreed, via
        self.decisions.setdefault((left, right), False)

    @event(MergeDecided)
    def _decide(
        self,
        *,
        left: str,
        right: str,
        merged: bool,
        score: int,
        merge_at: Decimal,
        gate_digest: str,
    ) -> None:
        del score, merge_at, gate_digest
        self.decisions[(left, right)] = merged


keep_stored_topics(__name__, stored_as="domain.er")
