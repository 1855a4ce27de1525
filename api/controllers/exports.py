"""/v1/policies and /v1/exports: the governed export gate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import structlog
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from adapters.exports.dlp.presets import describe_presets
from api.auth import requires
from api.denials import export_denied as _denied
from api.paging import After, ceiling, next_link
from api.paging import export_after as _after
from api.paging import export_cursor as _cursor
from api.problems import Problem
from api.requests import idempotency, principal, read_model
from api.schemas.exports import (
    DecisionOut,
    DeliveryOut,
    DeniedByOut,
    ExportCreate,
    ExportOut,
    ExportPage,
    PresetColumnOut,
    PresetOut,
    PresetsOut,
    ProgressOut,
    ReviewCreate,
    ReviewOut,
)
from api.wiring.core import Core
from api.wiring.dr import DrBundle
from api.wiring.exports import ExportsBundle
from application.exports.exports import ExportNotFoundError
from domain.exports.export import PROOF_FILE, Export
from projections.exports import ExportRow

if TYPE_CHECKING:
    from collections.abc import Sequence

    from projections.exports import ExportsView

log = structlog.get_logger("conductor.exports")
PRESETS_DESCRIBED = describe_presets()
"""Computed once: the decision table does not change while the process runs."""
Limit = Annotated[int, QueryParameter(ge=1, le=200, description=ceiling(50, 200))]


def decision_out(export: Export | ExportRow) -> DecisionOut:
    """Both policies' parts of a decision, and its review if it had one (the
    write model and the read model carry the same fields)."""
    return DecisionOut(
        allow=export.allow,
        reasons=list(export.reasons),
        policy_digest=export.policy_digest,
        input_digest=export.input_digest,
        platform_policy_digest=export.floor_digest or None,
        denied_by=DeniedByOut(
            platform=list(export.floor_reasons), tenant=list(export.policy_reasons)
        )
        if export.floor_digest
        else None,
        limit=export.limit or None,
        review=None
        if export.review is None
        else ReviewOut(
            approved=export.review[0],
            reviewer=export.review[1],
            reason=export.review[2],
        ),
    )


def export_out(
    export: Export, exports: ExportsBundle, position: int | None = None
) -> ExportOut:
    """The write model's view of one export (with live progress if it runs here);
    ``position`` is the decision's place in the log, when the caller knows it."""
    decided = export.status != "requested"
    progress = exports.progress(export.id)
    return ExportOut(
        id=export.id,
        dataset_id=export.dataset_id,
        dataset_version=export.dataset_version,
        status=export.status,
        preset=export.preset,
        purpose=export.purpose,
        destination_region=export.destination_region,
        requester=export.requester,
        decision=decision_out(export) if decided else None,
        delivery=DeliveryOut(
            file=export.file_name,
            content_sha256=export.content_sha256,
            bytes=export.bytes,
            rows=export.rows,
        )
        if export.file_name
        else None,
        progress=_progress(progress),
        failure=export.failure or None,
        failure_detail=export.failure_detail or None,
        proof=f"/v1/exports/{export.id}/proof" if export.status == "proven" else None,
        position=position,
    )


def _progress(progress: tuple[int, int] | None) -> ProgressOut | None:
    """The DLP callback's (bytes read, bytes total), named as such."""
    if progress is None:
        return None
    read, total = progress
    percent = round(100 * read / total, 1) if total else 0.0
    return ProgressOut(bytes_read=read, bytes_total=total, percent=percent)


def row_out(row: ExportRow) -> ExportOut:
    return ExportOut(
        id=row.id,
        dataset_id=row.dataset_id,
        dataset_version=row.dataset_version,
        status=row.status,
        preset=row.preset,
        purpose=row.purpose,
        destination_region=row.destination_region,
        requester=row.requester,
        decision=decision_out(row) if row.status != "requested" else None,
        delivery=DeliveryOut(
            file=row.file_name,
            content_sha256=row.content_sha256,
            bytes=row.bytes,
            rows=row.rows,
        )
        if row.content_sha256
        else None,
        failure=row.failure or None,
        failure_detail=row.failure_detail or None,
        proof=f"/v1/exports/{row.id}/proof" if row.status == "proven" else None,
        position=row.position,
    )


class ExportController(Controller):
    path = "/v1/exports"
    tags = ["exports"]  # noqa: RUF012

    @post(
        "/",
        operation_id="RequestGovernedExport",
        guards=[requires("export.request")],
        sync_to_thread=True,
        status_code=201,
    )
    def request_export(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[ExportCreate],
        core: NamedDependency[Core],
        exports: NamedDependency[ExportsBundle],
    ) -> Response[ExportOut]:
        """Judge by the tenant's policy; if allowed, the export runs in the background.

        A denial is a 403 problem listing the reasons; it is recorded all the same.
        """
        who = principal(request)
        decision = exports.app.request_export(
            tenant=who.tenant,
            dataset_id=data.dataset_id,
            preset=data.preset,
            purpose=data.purpose,
            destination_region=data.destination_region,
            requester=who.sub,
            idempotency=idempotency(request, data),
        )
        if not decision.replayed:
            core.metrics.export_decisions.labels(
                "true" if decision.allow else "false"
            ).inc()
        if not decision.allow and not decision.pending_review:
            raise _denied(decision)
        if not decision.replayed and not decision.pending_review:
            exports.start(decision.export_id)
        export = exports.app.get_export(tenant=who.tenant, export_id=decision.export_id)
        body = export_out(export, exports, decision.position)
        headers = {"Location": f"/v1/exports/{decision.export_id}"}
        if decision.replayed:
            headers["Idempotent-Replayed"] = "true"
        status = 202 if export.status == "pending_review" else 201
        return Response(body, status_code=status, headers=headers)

    @post(
        "/{export_id:uuid}/review",
        operation_id="ReviewExport",
        guards=[requires("export.approve")],
        sync_to_thread=True,
        status_code=200,
    )
    def review_export(
        self,
        request: Request[Any, Any, Any],
        export_id: FromPath[UUID],
        data: JSONBody[ReviewCreate],
        exports: NamedDependency[ExportsBundle],
    ) -> ExportOut:
        """Approve or reject an export pending manual review, with a reason.

        The requester cannot review their own export (403); an approved export
        runs at once and its proof names the approval among its authorizing
        events.
        """
        who = principal(request)
        position = exports.app.review_export(
            tenant=who.tenant,
            export_id=export_id,
            approved=data.approve,
            reviewer=who.sub,
            reason=data.reason,
        )
        log.info(
            "export_reviewed",
            export_id=str(export_id),
            approved=data.approve,
            position=position,
        )
        if data.approve:
            exports.start(export_id)
        export = exports.app.get_export(tenant=who.tenant, export_id=export_id)
        return export_out(export, exports, position)

    @get(
        "/presets",
        operation_id="ListExportPresets",
        guards=[requires("export.request", "export.approve", "audit.read")],
    )
    async def list_presets(self) -> PresetsOut:
        """Each DLP preset and what it does to each classification, read off the
        engine's decision table (the same code every export runs)."""
        return PresetsOut(
            presets=[
                PresetOut(
                    name=preset.name,
                    always_denied=preset.always_denied,
                    classifications={
                        label: PresetColumnOut(
                            action=a.action, meaning=a.meaning, rescanned=a.rescanned
                        )
                        for label, a in preset.columns.items()
                    },
                )
                for preset in PRESETS_DESCRIBED
            ]
        )

    @get(
        "/{export_id:uuid}",
        operation_id="GetExport",
        guards=[requires("export.request")],
        sync_to_thread=True,
    )
    def get_export(
        self,
        request: Request[Any, Any, Any],
        export_id: FromPath[UUID],
        exports: NamedDependency[ExportsBundle],
        dr: NamedDependency[DrBundle],
    ) -> Response[ExportOut]:
        """Status, decision, progress (rows, bytes) and the proof's location.

        With x-ig-read-from naming a DR standby, its replicated exports read
        model answers (no live progress); else the write model. ``position`` is
        the log position of the export's latest event, as in the listing.
        """
        tenant = principal(request).tenant
        pair = dr.runtime
        route = (
            pair.route_exports(
                request.headers, lambda view: view.load_rows([export_id]).get(export_id)
            )
            if pair is not None
            else None
        )
        if route is not None and route.read is not None:
            row = route.read.value
            if row is None or row.tenant != tenant:
                raise ExportNotFoundError(export_id)
            return Response(row_out(row), headers=route.headers)
        export = exports.app.get_export(tenant=tenant, export_id=export_id)
        headers = route.headers if route is not None else {}
        position = exports.app.last_position(export_id)
        return Response(export_out(export, exports, position), headers=headers)

    @get(
        "/",
        operation_id="ListExports",
        guards=[requires("export.request")],
        sync_to_thread=True,
    )
    def list_exports(
        self,
        request: Request[Any, Any, Any],
        core: NamedDependency[Core],
        exports: NamedDependency[ExportsBundle],
        dr: NamedDependency[DrBundle],
        status: FromQuery[str | None] = None,
        dataset_id: Annotated[UUID | None, QueryParameter(name="datasetId")] = None,
        after: After = None,
        limit: Limit = 50,
    ) -> Response[ExportPage]:
        """Newest first, filtered by status and dataset (read model).

        With x-ig-read-from on a DR pair, a standby's replicated copy may answer.
        """
        tenant = principal(request).tenant
        cursor = _after(after) if after else None

        def listing(view: ExportsView) -> Sequence[ExportRow]:
            return view.list_exports(
                tenant,
                status=status,
                dataset_id=dataset_id,
                after=cursor,
                limit=limit + 1,
            )

        pair = dr.runtime
        route = (
            pair.route_exports(request.headers, listing) if pair is not None else None
        )
        if route is not None and route.read is not None:
            rows, headers = route.read.value, route.headers
        else:
            headers = read_model(
                request,
                core.runners["exports"],
                core.settings.min_position_wait_s,
            )
            headers.update(route.headers if route is not None else {})
            rows = listing(exports.view)
        page = ExportPage(
            items=[row_out(r) for r in rows[:limit]],
            next=_cursor(rows[limit - 1]) if len(rows) > limit else None,
        )
        return Response(page, headers={**headers, **next_link(request, page.next)})


class ProofController(Controller):
    path = "/v1/exports/{export_id:uuid}/proof"
    tags = ["exports"]  # noqa: RUF012

    @get(
        "/",
        operation_id="GetExportProof",
        guards=[requires("export.request", "audit.read")],
        sync_to_thread=True,
    )
    def get_proof(
        self,
        request: Request[Any, Any, Any],
        export_id: FromPath[UUID],
        core: NamedDependency[Core],
        exports: NamedDependency[ExportsBundle],
    ) -> Response[bytes]:
        """The signed proof bundle (a DSSE envelope), once the export is proven."""
        export = exports.app.get_export(
            tenant=principal(request).tenant, export_id=export_id
        )
        path = exports.worker.pipeline.directory(export_id) / PROOF_FILE
        if export.status != "proven" or not path.is_file():
            core.metrics.export_proof_failures.labels("asked_too_early").inc()
            log.warning(
                "export_proof_refused", export_id=str(export_id), status=export.status
            )
            raise Problem(
                409,
                f"export {export_id} is {export.status}: it has no proof",
                kind="no-proof",
                title="The export has no proof",
                status_=export.status,
            )
        return Response(path.read_bytes(), media_type="application/json")
