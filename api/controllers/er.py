"""/v1/er: resolve batches, nearest stored records, embedding jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import structlog
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from api.auth import requires
from api.bootstrap import Core
from api.problems import Problem
from api.requests import principal
from api.runtime.er import ErRuntime
from api.schemas.er import (
    CandidatesOut,
    JobCreate,
    JobOut,
    NeighbourOut,
    PairOut,
    ResolveOut,
    ResolveRequest,
)
from application.er.inputs import ErRecord
from domain.er.resolution import EmbeddingJob, ErCapExceededError
from domain.errors import ValidationError

log = structlog.get_logger("conductor.er")


def _invalid(error: ValidationError) -> Problem:
    """422 naming each field as sent (record field names are data, not camelCase)."""
    return Problem(
        422,
        str(error),
        errors=[
            {"field": v.field, "rule": v.rule, "message": v.message}
            for v in error.violations
        ],
    )


def _over_cap(error: ErCapExceededError, core: Core) -> Problem:
    core.metrics.er_cap_refusals.inc()
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    log.warning(
        "er_cap_refused",
        tenant=error.tenant,
        requested=error.requested,
        used=error.used,
    )
    return Problem(
        429,
        str(error),
        kind="er-cap-exceeded",
        title="The tenant's ER records-per-day cap is reached",
        headers={"Retry-After": str(int((midnight - now).total_seconds()) + 1)},
        capRecordsPerDay=error.cap,
        usedToday=error.used,
        requested=error.requested,
        errors=[
            {
                "field": "records",
                "rule": "cap",
                "message": f"at most {error.cap - error.used:,} more records today",
            }
        ],
    )


def job_out(job: EmbeddingJob, er: ErRuntime, position: int | None = None) -> JobOut:
    live = er.worker.progress(job.id)
    return JobOut(
        id=job.id,
        entity_set=job.entity_set,
        status=job.status,
        records=job.records,
        done=live[0] if live else job.embedded,
        forced=job.forced,
        run_after=job.run_after,
        attempt=job.attempt,
        position=position,
        vectors_sha256=job.vectors_sha256 or None,
        failure=job.failure or None,
    )


class ErController(Controller):
    path = "/v1/er"
    tags = ["er"]  # noqa: RUF012

    @post(
        "/resolve",
        operation_id="ResolveRecords",
        guards=[requires("er.write")],
        sync_to_thread=True,
        status_code=200,
    )
    def resolve(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[ResolveRequest],
        core: NamedDependency[Core],
        er: NamedDependency[ErRuntime],
    ) -> ResolveOut:
        """Candidate pairs (blocking | ANN) of a batch and the gate's decisions.

        Decisions near or over the threshold are recorded as MergeProposed and
        MergeDecided events (ids and scores only); the vectors are stored.
        """
        tenant = principal(request).tenant
        try:
            result = er.app.resolve(
                tenant=tenant,
                entity_set=data.entity_set,
                records=[ErRecord(r.id, r.fields) for r in data.records],
                k=data.k,
            )
        except ValidationError as error:
            raise _invalid(error) from None
        except ErCapExceededError as error:
            raise _over_cap(error, core) from None
        er.charge_embeddings(tenant, len(data.records))
        gate = er.app.policy.gate
        log.info(
            "er_resolved",
            resolution_id=str(result.resolution_id),
            records=len(data.records),
            pairs=len(result.pairs),
            position=result.position,
        )
        return ResolveOut(
            resolution_id=result.resolution_id,
            position=result.position,
            records=len(data.records),
            blocking_pairs=result.blocking_pairs,
            ann_pairs=result.ann_pairs,
            candidate_pairs=len(result.pairs),
            merge_at=gate.merge_at,
            gate_digest=gate.digest,
            pairs=[
                PairOut(
                    left=p.left,
                    right=p.right,
                    via=p.via,
                    score=p.score,
                    merged=p.merged,
                )
                for p in result.pairs
            ],
        )

    @get(
        "/candidates/{record_id:str}",
        operation_id="GetErCandidates",
        guards=[requires("er.read", "er.write")],
        sync_to_thread=True,
    )
    def candidates(
        self,
        request: Request[Any, Any, Any],
        record_id: FromPath[str],
        entity_set: Annotated[str, QueryParameter(name="entitySet", max_length=64)],
        er: NamedDependency[ErRuntime],
        k: Annotated[int, QueryParameter(ge=1, le=100)] = 10,
    ) -> CandidatesOut:
        """The stored records nearest to a stored record (ids and similarity)."""
        tenant = principal(request).tenant
        try:
            found = er.app.candidates(
                tenant=tenant, entity_set=entity_set, record_id=record_id, k=k
            )
        except ValidationError as error:
            raise _invalid(error) from None
        return CandidatesOut(
            record_id=record_id,
            entity_set=entity_set,
            index_position=er.indexes.position(tenant, entity_set),
            neighbours=[NeighbourOut(record_id=r, similarity=s) for r, s in found],
        )

    @post(
        "/jobs",
        operation_id="RequestErEmbeddingJob",
        guards=[requires("er.write")],
        sync_to_thread=True,
        status_code=202,
    )
    def request_job(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[JobCreate],
        core: NamedDependency[Core],
        er: NamedDependency[ErRuntime],
    ) -> Response[JobOut]:
        """Queue an embedding job over a file in the tenant's data root.

        It runs in the next off-peak window, or now if forced; either way its
        records count against the tenant's daily cap (429 past it).
        """
        who = principal(request)
        shaped = er.shaping_reason(who.tenant) if data.force else None
        try:
            job, position = er.app.request_job(
                tenant=who.tenant,
                entity_set=data.entity_set,
                location=data.location,
                id_column=data.id_column,
                force=data.force and shaped is None,
                requester=who.sub,
            )
        except ValidationError as error:
            raise _invalid(error) from None
        except ErCapExceededError as error:
            raise _over_cap(error, core) from None
        if job.forced:
            er.worker.start(job.id)
        er.charge_embeddings(who.tenant, job.records)
        headers = {"Location": f"/v1/er/jobs/{job.id}"}
        if shaped is not None:  # the autopilot is shaping this tenant: off-peak
            headers["x-ig-deferred"] = f"off-peak; reason={shaped}"
        log.info(
            "er_job_requested",
            job_id=str(job.id),
            records=job.records,
            forced=job.forced,
            run_after=job.run_after.isoformat(),
        )
        return Response(
            job_out(job, er, position),
            status_code=202,
            headers=headers,
        )

    @get(
        "/jobs/{job_id:uuid}",
        operation_id="GetErEmbeddingJob",
        guards=[requires("er.read", "er.write")],
        sync_to_thread=True,
    )
    def get_job(
        self,
        request: Request[Any, Any, Any],
        job_id: FromPath[UUID],
        er: NamedDependency[ErRuntime],
    ) -> JobOut:
        """Status and progress (records done of records) of an embedding job."""
        job = er.app.get_job(tenant=principal(request).tenant, job_id=job_id)
        return job_out(job, er)
