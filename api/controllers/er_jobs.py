"""/v1/er/jobs: embedding jobs over a file in the tenant's data root, and their list."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

import structlog
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from api.auth import requires
from api.controllers.er import (
    EntitySet,
    Limit,
    cursor_position,
    invalid,
    over_cap,
    page_cursor,
)
from api.paging import After, next_link
from api.requests import principal, read_model
from api.runtime.er import ErRuntime
from api.schemas.er import JobCreate, JobOut, JobPage
from api.wiring.core import Core
from domain.er.resolution import EmbeddingJob, ErCapExceededError
from domain.errors import ValidationError

if TYPE_CHECKING:
    from projections.er import JobRow

log = structlog.get_logger("conductor.er")
JobStatus = Literal["scheduled", "running", "completed", "failed"]


def job_out(
    job: EmbeddingJob | JobRow, er: ErRuntime, position: int | None = None
) -> JobOut:
    """A job (the aggregate, or a listed read-model row), with live progress if
    it runs in this process."""
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


class ErJobController(Controller):
    path = "/v1/er"
    tags = ["er"]  # noqa: RUF012

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
            raise invalid(error) from None
        except ErCapExceededError as error:
            raise over_cap(error, core) from None
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

    @get(
        "/jobs",
        operation_id="ListErEmbeddingJobs",
        guards=[requires("er.read", "er.write")],
        sync_to_thread=True,
    )
    def list_jobs(
        self,
        request: Request[Any, Any, Any],
        core: NamedDependency[Core],
        er: NamedDependency[ErRuntime],
        status: Annotated[JobStatus | None, QueryParameter()] = None,
        entity_set: EntitySet = None,
        after: After = None,
        limit: Limit = 50,
    ) -> Response[JobPage]:
        """The tenant's embedding jobs, newest first, by status and entity set
        (read model; ``position`` is each job's last event)."""
        headers = read_model(
            request, core.runners["er"], core.settings.min_position_wait_s
        )
        tenant = principal(request).tenant
        before = (
            cursor_position(after, kind="job", tenant=tenant, load=er.view.load_jobs)
            if after
            else None
        )
        rows = er.view.list_jobs(
            tenant, status=status, entity_set=entity_set, before=before, limit=limit + 1
        )
        page = JobPage(
            items=[job_out(r, er, r.position) for r in rows[:limit]],
            next=page_cursor("job", rows, limit),
        )
        return Response(page, headers={**headers, **next_link(request, page.next)})
