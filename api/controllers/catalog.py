"""/v1/catalog: coverage of the tenant's data by the registry; CI gate runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, JSONBody

from api.auth import requires
from api.requests import principal, read_model
from api.schemas.catalog import (
    CoverageOut,
    CoverageSourceOut,
    GateRunIn,
    GateRunOut,
    UnregisteredOut,
)
from api.wiring.catalog import CatalogBundle
from api.wiring.core import Core
from api.wiring.dr import DrBundle

if TYPE_CHECKING:
    from domain.catalog.gate import CatalogGateRan


def gate_run_out(run: CatalogGateRan, position: int | None = None) -> GateRunOut:
    return GateRunOut(
        id=run.id,
        repo=run.repo,
        commit=run.commit,
        findings_digest=run.findings_digest,
        findings=run.findings,
        datasets=list(run.datasets),
        failing=list(run.failing),
        position=position,
    )


class CatalogController(Controller):
    path = "/v1/catalog"
    tags = ["catalog"]  # noqa: RUF012

    @get(
        "/coverage",
        operation_id="CatalogCoverage",
        guards=[requires("catalog.read")],
        sync_to_thread=True,
    )
    def catalog_coverage(
        self,
        request: Request[Any, Any, Any],
        core: NamedDependency[Core],
        catalog: NamedDependency[CatalogBundle],
        dr: NamedDependency[DrBundle],
    ) -> Response[CoverageOut]:
        """Registered active datasets over active ones; files, classified and
        contract shares.

        Active: the data-root files, ER jobs' files, exported datasets, the
        lineage of active datasets and the datasets each repository's newest
        recorded CI gate run names; registered: an active entry's location
        matches, or the entry is that dataset (docs/catalog.md#coverage).

        With x-ig-read-from on a DR pair, a standby's replicated catalog may
        answer (the data files are this host's, whichever region answers).
        """
        tenant = principal(request).tenant
        queries = catalog.queries
        pair = dr.runtime
        route = (
            pair.route_catalog(
                request.headers, lambda view: queries.over(view).coverage(tenant)
            )
            if pair is not None
            else None
        )
        if route is not None and route.read is not None:
            cov, headers = route.read.value, route.headers
        else:
            wait_s = core.settings.min_position_wait_s
            gate = read_model(request, core.runners["gate-runs"], wait_s)
            headers = read_model(request, core.runners["catalog"], wait_s)
            if int(gate["x-ig-position"]) < int(headers["x-ig-position"]):
                headers = gate  # the answer is as of the view further behind
            headers.update(route.headers if route is not None else {})
            cov = catalog.queries.coverage(tenant)
        core.metrics.catalog_coverage.labels(tenant).set(cov.ratio)
        body = CoverageOut(
            tenant=tenant,
            coverage=round(cov.ratio, 6),
            files_found=cov.files_found,
            files_registered=cov.files_registered,
            unregistered=list(cov.unregistered),
            active_datasets=cov.active,
            retired_datasets=cov.retired,
            classified_share=round(cov.classified_share, 6),
            contract_share=round(cov.contract_share, 6),
            missing_locations=list(cov.missing_locations),
            file_coverage=round(cov.file_ratio, 6),
            datasets_in_use=cov.in_use,
            registered_in_use=cov.registered_in_use,
            unregistered_in_use=[
                UnregisteredOut(
                    location=u.location,
                    dataset_id=u.dataset_id,
                    seen_by=list(u.seen_by),
                    name=u.name or None,
                )
                for u in cov.unregistered_in_use
            ],
            sources=[
                CoverageSourceOut(source=s, active=n, registered=r)
                for s, n, r in cov.by_source
            ],
        )
        return Response(body, headers=headers)

    @post(
        "/gate-runs",
        operation_id="RecordGateRun",
        guards=[requires("catalog.write")],
        sync_to_thread=True,
        status_code=201,
    )
    def record_gate_run(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[GateRunIn],
        catalog: NamedDependency[CatalogBundle],
    ) -> Response[GateRunOut]:
        """Append a CatalogGateRan event (repo, commit, findings digest).

        The same repo, commit and digest again answers 200 with the run
        already recorded (no new event).
        """
        tenant = principal(request).tenant
        result = catalog.gate_runs.record_gate_run(
            tenant=tenant,
            repo=data.repo,
            commit=data.commit,
            findings_digest=data.findings_digest,
            findings=data.findings,
            datasets=data.datasets,
            failing=data.failing,
        )
        run = catalog.gate_runs.get_gate_run(tenant=tenant, run_id=result.id)
        assert run is not None  # just recorded, for this tenant
        return Response(
            gate_run_out(run, result.position),
            status_code=201 if result.created else 200,
        )

    @get(
        "/gate-runs/{run_id:uuid}",
        operation_id="GetGateRun",
        guards=[requires("catalog.read")],
        sync_to_thread=True,
    )
    def get_gate_run(
        self,
        request: Request[Any, Any, Any],
        run_id: FromPath[UUID],
        catalog: NamedDependency[CatalogBundle],
    ) -> GateRunOut:
        """A recorded gate run of the token's tenant (another tenant's: 404)."""
        run = catalog.gate_runs.get_gate_run(
            tenant=principal(request).tenant, run_id=run_id
        )
        if run is None:
            raise NotFoundException(detail=f"no gate run {run_id}")
        return gate_run_out(run)
