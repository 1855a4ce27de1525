"""Governed exports in GraphQL: the seed's requestGovernedExport, exports, policies.

Commands go to the same ``Exports`` application service as /v1/exports (a
denial is the REST ``export-denied`` problem, reasons and all); reads come
from the exports read model, as the REST listing's do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

import strawberry
from strawberry.types import Info  # noqa: TC002 - strawberry resolves it

from api.denials import export_denied
from api.graphql.auth import Sight, check_page, coded, guarded
from api.graphql.context import GraphContext
from api.paging import export_after, export_cursor
from api.problems import Problem

if TYPE_CHECKING:
    from projections.exports import ExportRow

MAX_EXPORTS = 200
"""As REST's ``limit`` on /v1/exports."""


def context_of(info: Info) -> GraphContext:
    context = info.context
    assert isinstance(context, GraphContext)
    return context


@strawberry.type
class DeniedBy:
    platform: list[str]
    tenant: list[str]


@strawberry.type
class Decision:
    """The gate's verdict: both policies' reasons and the digests it judged."""

    allow: bool
    reasons: list[str]
    policy_digest: str
    input_digest: str
    platform_policy_digest: str | None
    denied_by: DeniedBy | None
    limit: str | None


@strawberry.type
class Export:
    id: strawberry.ID
    dataset_id: strawberry.ID
    dataset_version: int
    status: str
    preset: str
    purpose: str
    destination_region: str
    requester: str
    decision: Decision | None
    content_sha256: str | None
    rows: int
    bytes: int
    failure: str | None
    proof: str | None
    """Where the signed proof bundle is served (REST), once proven."""
    position: int
    tenant: strawberry.Private[str]
    region: strawberry.Private[str]
    purposes: strawberry.Private[tuple[str, ...]]


def export_of(row: ExportRow) -> Export:
    decided = row.status != "requested"
    return Export(
        id=strawberry.ID(str(row.id)),
        dataset_id=strawberry.ID(str(row.dataset_id)),
        dataset_version=row.dataset_version,
        status=row.status,
        preset=row.preset,
        purpose=row.purpose,
        destination_region=row.destination_region,
        requester=row.requester,
        decision=Decision(
            allow=row.allow,
            reasons=list(row.reasons),
            policy_digest=row.policy_digest,
            input_digest=row.input_digest,
            platform_policy_digest=row.floor_digest or None,
            denied_by=DeniedBy(
                platform=list(row.floor_reasons), tenant=list(row.policy_reasons)
            )
            if row.floor_digest
            else None,
            limit=row.limit or None,
        )
        if decided
        else None,
        content_sha256=row.content_sha256 or None,
        rows=row.rows,
        bytes=row.bytes,
        failure=row.failure or None,
        proof=f"/v1/exports/{row.id}/proof" if row.status == "proven" else None,
        position=row.position,
        tenant=row.tenant,
        region=row.destination_region,
        purposes=(row.purpose,),
    )


@strawberry.type
class ExportPage:
    items: list[Export]
    next: str | None

    def visible_to(self, sight: Sight) -> ExportPage:
        return ExportPage(
            items=[e for e in self.items if sight.sees(e)], next=self.next
        )


@strawberry.input
class PolicyModuleInput:
    name: str
    source: str


@strawberry.type
class PolicyPublished:
    digest: str
    position: int | None


def _export_id(raw: str, field: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise coded(
            Problem(
                400,
                f"{field} is not an id",
                errors=[{"field": field, "rule": "uuid", "message": "not a UUID"}],
            )
        ) from None


@strawberry.type
class ExportsRoot:
    """Export queries."""

    @guarded("export.request")
    async def export(
        self,
        info: Info,
        id: strawberry.ID,  # noqa: A002
        min_position: int | None = None,
    ) -> Export | None:
        """One export from the read model (null: not found in this tenant)."""
        context = context_of(info)
        export_id = _export_id(id, "id")
        await context.read("exports", min_position)
        row = await context.loaders.export_rows.load(export_id)
        return export_of(row) if row is not None else None

    @guarded("export.request")
    async def exports(
        self,
        info: Info,
        status: str | None = None,
        dataset_id: strawberry.ID | None = None,
        first: int = 50,
        after: str | None = None,
        min_position: int | None = None,
    ) -> ExportPage:
        """Newest first, filtered by status and dataset (the REST listing)."""
        check_page(first, MAX_EXPORTS)
        context = context_of(info)
        dataset = _export_id(dataset_id, "datasetId") if dataset_id else None
        cursor = export_after(after) if after else None
        view, tenant = context.exports.view, context.tenant
        rows = await context.read_then(
            "exports",
            min_position,
            lambda _: view.list_exports(
                tenant, status=status, dataset_id=dataset, after=cursor, limit=first + 1
            ),
        )
        return ExportPage(
            items=[export_of(r) for r in rows[:first]],
            next=export_cursor(rows[first - 1]) if len(rows) > first else None,
        )


@strawberry.type
class ExportsCommands:
    """Export commands."""

    @guarded("export.request", target="dataset_id", mutation=True)
    async def request_governed_export(
        self,
        info: Info,
        dataset_id: strawberry.ID,
        preset: str,
        purpose: str,
        destination_region: str | None = None,
    ) -> strawberry.ID:
        """The seed's mutation: judged by the tenant's policy; the export's id.

        ``destinationRegion`` defaults to the dataset's own region. A denial
        is an ``export-denied`` error with the reasons (recorded all the same).
        """
        context = context_of(info)
        who = context.principal
        assert who is not None
        dataset = _export_id(dataset_id, "datasetId")
        if destination_region is None:  # the @auth rule loaded the dataset
            destination_region = context.targets[dataset].region
        exports, metrics = context.exports, context.core.metrics
        decision = await context.run(
            lambda: exports.app.request_export(
                tenant=who.tenant,
                dataset_id=dataset,
                preset=preset,
                purpose=purpose,
                destination_region=destination_region,
                requester=who.sub,
            )
        )
        context.wrote(decision.position)
        metrics.export_decisions.labels("true" if decision.allow else "false").inc()
        if not decision.allow and not decision.pending_review:
            raise export_denied(decision)
        if not decision.pending_review:
            exports.start(decision.export_id)
        return strawberry.ID(str(decision.export_id))

    @guarded("export.approve", mutation=True)
    async def publish_policy(
        self, info: Info, name: str, modules: list[PolicyModuleInput]
    ) -> PolicyPublished:
        """Publish a Rego module set and bind the tenant's gate to it."""
        context = context_of(info)
        policies, tenant = context.exports.app.policies, context.tenant
        result = await context.run(
            lambda: policies.publish_policy(
                tenant=tenant, name=name, sources=[(m.name, m.source) for m in modules]
            )
        )
        context.wrote(result.position)
        return PolicyPublished(digest=result.digest, position=result.position)
