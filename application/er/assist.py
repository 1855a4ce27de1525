"""The ER hook: ``candidates = blocking(record) | ann.knn(embed(record), K)``.

Every candidate pair then goes through the unchanged rules gate; pairs the
gate scores within one comparison of the threshold are recorded as
MergeProposed/MergeDecided events (ids and scores only). Vectors are stored
and indexed after the events commit, at the position they reflect. Records
count against a per-tenant, per-day cap; embedding jobs wait for the next
off-peak window unless forced (the cap holds either way).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import numpy as np
from eventsourcing.persistence import IntegrityError

from application.base import LedgerApplication
from application.er.candidates import PairSpace, ann_pairs, blocked_pairs
from application.er.inputs import (
    PairDecision,
    ResolveResult,
    as_columns,
    check_entity_set,
    check_records,
    require,
)
from application.ports import TransformRefusedError
from domain.er.resolution import (
    EmbeddingJob,
    ErJobNotFoundError,
    ErQuota,
    ErRecordNotFoundError,
    Resolution,
)
from domain.errors import FieldViolation, ValidationError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime
    from typing import NoReturn
    from uuid import UUID

    import numpy.typing as npt

    from application.er.inputs import ErPolicy, ErRecord, Ports
    from application.ports import EventLog, JobQueue


VIA = {(True, True): "both", (True, False): "blocking", (False, True): "ann"}


class ErAssist(LedgerApplication):
    """Resolutions, embedding jobs and the daily caps of every tenant."""

    def __init__(
        self,
        log: EventLog,
        *,
        ports: Ports,
        policy: ErPolicy,
        assist_off: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(log)
        self.ports = ports
        self.policy = policy
        self.assist_off = assist_off
        """The disable-er-assist backout: resolve on blocking rules alone."""

    # -- resolve ---------------------------------------------------------------

    def resolve(
        self,
        *,
        tenant: str,
        entity_set: str,
        records: Sequence[ErRecord],
        k: int | None = None,
    ) -> ResolveResult:
        """Candidates, gate decisions recorded as events, vectors stored."""
        policy, gate = self.policy, self.policy.gate
        fields = set(self.ports.embedder.fields) | gate.fields | policy.blocking.fields
        require(
            check_entity_set(entity_set)
            + check_records(records, known=fields, max_batch=policy.max_batch)
        )
        self._quota(tenant).check(records=len(records), cap=policy.cap_records_per_day)
        # Backed out, no ANN candidate is added and the Resolution records k=0;
        # vectors are still stored, so the index is whole when assist returns.
        k = 0 if self.assist_off() else k or policy.k
        columns = as_columns(records, sorted(fields))
        vectors = self.ports.embedder.embed(tenant, columns)
        space = PairSpace(len(records))
        base = blocked_pairs(policy.blocking, space, columns)
        ann = (
            ann_pairs(self.ports.neighbours, space, vectors, None, k)
            if k
            else np.empty(0, dtype=base.dtype)
        )
        union = np.union1d(base, ann)
        resolution = Resolution(
            tenant=tenant,
            entity_set=entity_set,
            records=len(records),
            k=k,
            blocking=policy.blocking.spec,
            gate_digest=gate.digest,
            merge_at=Decimal(str(gate.merge_at)),
            embedder=self.ports.embedder.name,
            blocking_pairs=len(base),
            ann_pairs=len(ann),
            candidate_pairs=len(union),
        )
        i, j = space.decode(union)
        via = [
            VIA[b, a]
            for b, a in zip(
                np.isin(union, base).tolist(), np.isin(union, ann).tolist(), strict=True
            )
        ]
        pairs = self._decide(
            resolution,
            [(records[x].id, records[y].id) for x, y in zip(i, j, strict=True)],
            gate.agreements(columns, columns, i, j),
            via,
        )
        position = self._save_charged(tenant, len(records), resolution)
        self._store(tenant, entity_set, [r.id for r in records], vectors, position)
        return ResolveResult(resolution.id, position, len(base), len(ann), pairs)

    def _decide(
        self,
        resolution: Resolution,
        ids: list[tuple[str, str]],
        agreements: npt.NDArray[np.bool_],
        via: list[str],
    ) -> list[PairDecision]:
        """The gate's decision on every pair; near and over the line go on record."""
        gate = self.policy.gate
        names = [str(c) for c in gate.comparisons]
        pairs = []
        for (left, right), agreed, came in zip(ids, agreements, via, strict=True):
            score = int(agreed.sum())
            if score >= gate.merge_at - 1:
                rules = tuple(c for c, a in zip(names, agreed, strict=True) if a)
                resolution.decide(
                    left=left, right=right, score=score, agreed=rules, via=came
                )
            pairs.append(PairDecision(left, right, came, score, score >= gate.merge_at))
        return pairs

    def _save_charged(self, tenant: str, records: int, aggregate: Any) -> int | None:
        """Save with the day's quota charged; a concurrent charge means load again."""
        for _ in range(5):
            quota = self._quota(tenant)
            quota.charge(
                records=records,
                cap=self.policy.cap_records_per_day,
                reference=aggregate.id,
            )
            try:
                return self._save(quota, aggregate)
            except IntegrityError:
                continue
        raise ValidationError(
            [FieldViolation("records", "contention", "the quota is busy; try again")]
        )

    def _quota(self, tenant: str) -> ErQuota:
        day = self.policy.clock().date().isoformat()
        quota = self._load(ErQuota.create_id(tenant, day))
        return quota if isinstance(quota, ErQuota) else ErQuota(tenant=tenant, day=day)

    def used_today(self, tenant: str) -> int:
        """Records counted against the tenant's cap so far today (UTC)."""
        return self._quota(tenant).used

    def _save(self, *aggregates: Any) -> int | None:
        recordings = self.save(*aggregates)
        return recordings[-1].notification.id if recordings else None

    def _store(
        self,
        tenant: str,
        entity_set: str,
        ids: Sequence[str],
        vectors: npt.NDArray[np.float32],
        position: int | None,
    ) -> None:
        labels = self.ports.store.upsert(tenant, entity_set, ids, vectors)
        self.ports.index.add(tenant, entity_set, labels, vectors)
        if position is not None:
            self.ports.store.set_position(tenant, entity_set, position)
            self.ports.index.commit(tenant, entity_set, position)

    # -- candidates from the stored index ---------------------------------------

    def candidates(
        self, *, tenant: str, entity_set: str, record_id: str, k: int
    ) -> list[tuple[str, float]]:
        """A stored record's nearest stored records (ids, cosine similarity)."""
        require(check_entity_set(entity_set))
        found = self.ports.store.lookup(tenant, entity_set, record_id)
        if found is None:
            raise ErRecordNotFoundError(entity_set, record_id)
        label, vector = found
        labels, sims = self.ports.index.knn(tenant, entity_set, vector[None, :], k + 1)
        pairs = [
            (int(lab), float(sim))
            for lab, sim in zip(labels[0], sims[0], strict=True)
            if int(lab) != label
        ][:k]
        ids = self.ports.store.record_ids(tenant, entity_set, [p[0] for p in pairs])
        return [(ids[lab], sim) for lab, sim in pairs if lab in ids]

    def rebuild_index(
        self,
        *,
        tenant: str,
        entity_set: str,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Rebuild the stored index; ``progress`` gets (vectors added, in all)."""
        require(check_entity_set(entity_set))
        return self.ports.index.rebuild(tenant, entity_set, progress=progress)

    # -- embedding jobs ---------------------------------------------------------

    def request_job(
        self,
        *,
        tenant: str,
        entity_set: str,
        location: str,
        id_column: str,
        force: bool,
        requester: str,
    ) -> tuple[EmbeddingJob, int | None]:
        """Count the file's records against the cap; queue the job for its window."""
        require(check_entity_set(entity_set))
        try:
            path = self.ports.sources.resolve(tenant, location)
            records = self.ports.files.count(path, id_column)
        except TransformRefusedError as error:
            raise_field("location", error.reason, error.detail or error.reason)
        except UnicodeDecodeError:
            raise_field("location", "encoding", "the file is not UTF-8")
        except ValueError as error:
            raise_field("idColumn", "missing-column", str(error))
        now = self.policy.clock()
        job = EmbeddingJob(
            tenant=tenant,
            entity_set=entity_set,
            location=location,
            id_column=id_column,
            records=records,
            forced=force,
            run_after=now if force else self.policy.next_window(now),
            requester=requester,
        )
        position = self._save_charged(tenant, records, job)
        self.ports.queue.enqueue(job.id, tenant, job.run_after)
        return job, position

    def get_job(self, *, tenant: str, job_id: UUID) -> EmbeddingJob:
        job = self._load(job_id)
        if not isinstance(job, EmbeddingJob) or job.tenant != tenant:
            raise ErJobNotFoundError(job_id)
        return job

    def get_job_any_tenant(self, job_id: UUID) -> EmbeddingJob | None:
        """The job whoever's it is (operators' tools: the CLI), or None."""
        job = self._load(job_id)
        return job if isinstance(job, EmbeddingJob) else None

    def run_job(self, job_id: UUID, progress: Callable[[int, int], None]) -> str:
        """Embed the job's file in chunks, store and index; returns the status.

        The run holds the job's lease (JobQueue) from start to end: a job
        leased elsewhere is left alone ("leased-elsewhere"); a job left
        "running" by a run whose lease expired is resumed (a Resumed event,
        then the whole file again: vectors are upserted by record id, so the
        lost run's partial work is simply overwritten); a run that finds its
        lease taken over stops without recording anything ("lease-lost"). A
        job lost ``max_attempts`` times fails with reason "lost-runs".
        """
        lease = _Lease(self.ports.queue, job_id, self.policy)
        if not lease.claim():
            return LEASED_ELSEWHERE
        job = self._load(job_id)
        if not isinstance(job, EmbeddingJob) or job.status not in RUNNABLE:
            self.ports.queue.dequeue(job_id)
            return getattr(job, "status", "missing")
        if job.status == "running" and job.attempt >= self.policy.max_attempts:
            job.fail(reason=LOST_RUNS)
        elif job.status == "running":
            job.resume()
        else:
            job.start()
        self._save(job)
        if job.status == "failed":
            self.ports.queue.dequeue(job_id)
            return job.status
        return self._embed(job, lease, progress)

    def _embed(
        self, job: EmbeddingJob, lease: _Lease, progress: Callable[[int, int], None]
    ) -> str:
        """The run itself: chunks embedded, stored and indexed, then Completed
        (or Failed on a bad file); stops early if the lease was taken over."""
        digest = hashlib.sha256()
        done = 0
        try:
            path = self.ports.sources.resolve(job.tenant, job.location)
            for ids, columns in self.ports.files.chunks(path, job.id_column):
                if not lease.renew():
                    return LEASE_LOST
                vectors = self.ports.embedder.embed(job.tenant, columns)
                self._store(job.tenant, job.entity_set, ids, vectors, None)
                digest.update(vectors.tobytes())
                done += len(ids)
                progress(done, job.records)
            if not lease.renew(force=True):
                return LEASE_LOST
        except (TransformRefusedError, ValueError, OSError) as error:
            job.fail(reason=type(error).__name__)
            self._save(job)
            self.ports.queue.dequeue(job.id)
            return job.status
        job.complete(
            records=done,
            vectors_sha256=digest.hexdigest(),
            index_size=self.ports.store.count(job.tenant, job.entity_set),
            embedder=self.ports.embedder.name,
        )
        position = self._save(job)
        if position is not None:
            self.ports.store.set_position(job.tenant, job.entity_set, position)
            self.ports.index.commit(job.tenant, job.entity_set, position)
        self.ports.queue.dequeue(job.id)
        return job.status

    def due_jobs(self, now: datetime) -> list[UUID]:
        """Queued jobs whose window has come."""
        return self.ports.queue.due(now)


LEASED_ELSEWHERE = "leased-elsewhere"
"""run_job's answer when another run holds the job's lease."""
LEASE_LOST = "lease-lost"
"""run_job's answer when its lease expired and another run took the job over."""
RUNNABLE = frozenset({"scheduled", "running"})
LOST_RUNS = "lost-runs"
"""A failed job's reason when its runs were lost ErPolicy.max_attempts times."""


class _Lease:
    """One run's hold on a job: claimed once, renewed as the run goes."""

    def __init__(self, queue: JobQueue, job_id: UUID, policy: ErPolicy) -> None:
        self._queue = queue
        self._job_id = job_id
        self._policy = policy
        self.owner = uuid4().hex
        self._renewed = policy.clock()

    def _until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self._policy.lease_s)

    def claim(self) -> bool:
        now = self._policy.clock()
        self._renewed = now
        return self._queue.claim(self._job_id, self.owner, now, self._until(now))

    def renew(self, *, force: bool = False) -> bool:
        """Extend the lease once a third of it has passed (always if force)."""
        now = self._policy.clock()
        if (
            not force
            and (now - self._renewed).total_seconds() < self._policy.lease_s / 3
        ):
            return True
        self._renewed = now
        return self._queue.renew(self._job_id, self.owner, self._until(now))


def raise_field(field: str, rule: str, message: str) -> NoReturn:
    raise ValidationError([FieldViolation(field, rule, message)])
