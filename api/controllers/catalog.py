"""/v1/catalog: coverage of the tenant's data by the registry."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency

from api.auth import requires
from api.requests import principal, read_model
from api.schemas import CoverageOut
from api.services import Services


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
        self, request: Request[Any, Any, Any], services: NamedDependency[Services]
    ) -> Response[CoverageOut]:
        """Registered data files over files found; classified and contract shares."""
        headers = read_model(
            request, services.runners["catalog"], services.settings.min_position_wait_s
        )
        tenant = principal(request).tenant
        cov = services.queries.coverage(tenant)
        services.metrics.catalog_coverage.labels(tenant).set(cov.ratio)
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
        )
        return Response(body, headers=headers)
