"""/v1/er: resolve batches, nearest stored records, the resolutions list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

import structlog
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from api.auth import requires
from api.paging import After, bad_cursor, ceiling, decode_key, encode_key, next_link
from api.problems import Problem
from api.requests import principal, read_model
from api.runtime.er import ErRuntime
from api.schemas.er import (
    CandidatesOut,
    NeighbourOut,
    PairOut,
    ResolutionOut,
    ResolutionPage,
    ResolveOut,
    ResolveRequest,
)
from api.wiring.core import Core
from application.er.inputs import ErRecord
from domain.er.resolution import ErCapExceededError
from domain.errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from projections.er import JobRow, ResolutionRow

log = structlog.get_logger("conductor.er")
Limit = Annotated[int, QueryParameter(ge=1, le=200, description=ceiling(50, 200))]
JobStatus = Literal["scheduled", "running", "completed", "failed"]
EntitySet = Annotated[str | None, QueryParameter(name="entitySet", max_length=64)]


def invalid(error: ValidationError) -> Problem:
    """422 naming each field as sent (record field names are data, not camelCase)."""
    return Problem(
        422,
        str(error),
        errors=[
            {"field": v.field, "rule": v.rule, "message": v.message}
            for v in error.violations
        ],
    )


def over_cap(error: ErCapExceededError, core: Core) -> Problem:
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


def resolution_out(row: ResolutionRow) -> ResolutionOut:
    return ResolutionOut(
        id=row.id,
        entity_set=row.entity_set,
        records=row.records,
        candidate_pairs=row.candidate_pairs,
        pairs_proposed=row.proposed,
        pairs_decided=row.decided,
        merges=row.merged,
        gate_digest=row.gate_digest,
        position=row.position,
    )


def page_cursor(
    kind: str, rows: Sequence[JobRow | ResolutionRow], limit: int
) -> str | None:
    """The next page's cursor (``rows`` holds one more than a page if there is one):
    the listing, then the last row's request position and id."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_key(f"{kind}:{last.created}:{last.id}")


def cursor_position(
    after: str,
    *,
    kind: str,
    tenant: str,
    load: Callable[[Sequence[UUID]], Mapping[UUID, JobRow | ResolutionRow]],
) -> int:
    """The request position a cursor continues after: only a cursor this listing
    handed to this tenant (it names one of the tenant's rows), else a 400."""
    listing = f"{kind} list"
    named, _, rest = decode_key(after, listing=listing).partition(":")
    created, _, row_id = rest.partition(":")
    try:
        key = UUID(row_id)
    except ValueError:
        raise bad_cursor(listing) from None
    row = load([key]).get(key) if named == kind else None
    if row is None or row.tenant != tenant or f"{row.created}" != created:
        raise bad_cursor(listing)  # forged, another listing's or another tenant's
    return row.created


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

        Pairs only records inside this request: the batch is deduplicated
        within itself, never matched against records stored before (for
        those, GET /v1/er/candidates/{recordId} after the batch is stored).
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
            raise invalid(error) from None
        except ErCapExceededError as error:
            raise over_cap(error, core) from None
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
            raise invalid(error) from None
        return CandidatesOut(
            record_id=record_id,
            entity_set=entity_set,
            index_position=er.indexes.position(tenant, entity_set),
            neighbours=[NeighbourOut(record_id=r, similarity=s) for r, s in found],
        )

    @get(
        "/resolutions",
        operation_id="ListErResolutions",
        guards=[requires("er.read", "er.write")],
        sync_to_thread=True,
    )
    def list_resolutions(
        self,
        request: Request[Any, Any, Any],
        core: NamedDependency[Core],
        er: NamedDependency[ErRuntime],
        entity_set: EntitySet = None,
        after: After = None,
        limit: Limit = 50,
    ) -> Response[ResolutionPage]:
        """The tenant's resolve batches, newest first, by entity set: counts of
        records, pairs and merges, and the gate's digest (read model)."""
        headers = read_model(
            request, core.runners["er"], core.settings.min_position_wait_s
        )
        tenant = principal(request).tenant
        before = (
            cursor_position(
                after, kind="resolution", tenant=tenant, load=er.view.load_resolutions
            )
            if after
            else None
        )
        rows = er.view.list_resolutions(
            tenant, entity_set=entity_set, before=before, limit=limit + 1
        )
        page = ResolutionPage(
            items=[resolution_out(r) for r in rows[:limit]],
            next=page_cursor("resolution", rows, limit),
        )
        return Response(page, headers={**headers, **next_link(request, page.next)})
