"""/v1/datasets: registry commands (write model) and catalog queries (read model)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from api.auth import requires
from api.paging import SEARCH_LIMIT as MAX_LIMIT
from api.paging import After, ceiling, decode_cursor, encode_cursor, next_link
from api.problems import Problem
from api.requests import (
    command_response,
    expected_version,
    idempotency,
    principal,
    read_model,
)
from api.schemas.base import CommandAccepted
from api.schemas.catalog import (
    ColumnIn,
    ColumnOut,
    DatasetCreate,
    DatasetOut,
    DatasetPage,
    DatasetUpdate,
    HistoryOut,
    LineageEdgeOut,
    LineageLink,
    LineageNodeOut,
    LineageOut,
)
from api.schemas.ledger import entry_out
from api.wiring.catalog import CatalogBundle
from api.wiring.core import Core
from api.wiring.dr import DrBundle
from domain.values import Column, DatasetSpec
from projections.catalog import CatalogQuery

if TYPE_CHECKING:
    from collections.abc import Callable

    from application.catalog.datasets import Datasets
    from domain.catalog.dataset import Dataset
    from projections.catalog import CatalogRow, CatalogView, LineageGraphView
    from projections.lineage import LineageView

T = TypeVar("T")


def from_region(
    request: Request[Any, Any, Any],
    catalog: CatalogBundle,
    dr: DrBundle,
    work: Callable[[Datasets], T],
) -> tuple[T, dict[str, str]]:
    """work on the registry of the region x-ig-read-from picks on a DR pair
    (its copy of the log; headers name the region, position and staleness),
    else on the primary's."""
    pair = dr.runtime
    route = pair.route_datasets(request.headers, work) if pair is not None else None
    if route is not None and route.read is not None:
        return route.read.value, dict(route.headers)
    return work(catalog.registry), dict(route.headers) if route is not None else {}


def _columns(columns: list[ColumnIn]) -> tuple[Column, ...]:
    return tuple(Column(c.name, c.classification) for c in columns)


def spec_from(body: DatasetCreate) -> DatasetSpec:
    return DatasetSpec(
        name=body.name,
        license=body.license,
        purposes=tuple(body.purposes),
        retention=body.retention,
        region=body.region,
        contract_version=body.contract_version,
        description=body.description,
        contract_status=body.contract_status,
        tags=tuple(body.tags),
        owner=body.owner,
        location=body.location,
        columns=_columns(body.columns),
    )


def changes_from(body: DatasetUpdate) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in body.__struct_fields__:
        value = getattr(body, name)
        if value is msgspec.UNSET:
            continue
        if name == "columns":
            value = _columns(value)
        elif isinstance(value, list):
            value = tuple(value)
        changes[name] = value
    return changes


def dataset_out(dataset: Dataset) -> DatasetOut:
    return DatasetOut(
        id=dataset.id,
        tenant=dataset.tenant,
        name=dataset.name,
        description=dataset.description,
        license=dataset.license,
        purposes=list(dataset.purposes),
        retention=dataset.retention,
        region=dataset.region,
        contract_version=dataset.contract_version,
        contract_status=dataset.contract_status,
        tags=list(dataset.tags),
        owner=dataset.owner,
        location=dataset.location,
        columns=[
            ColumnOut(name=c.name, classification=c.classification)
            for c in dataset.columns
        ],
        upstream=list(dataset.upstream),
        status="retired" if dataset.retired else "active",
        version=dataset.version,
        created_at=dataset.created_on,
        updated_at=dataset.modified_on,
    )


def row_out(row: CatalogRow) -> DatasetOut:
    return DatasetOut(
        id=row.id,
        tenant=row.tenant,
        name=row.name,
        description=row.description,
        license=row.license,
        purposes=list(row.purposes),
        retention=row.retention,
        region=row.region,
        contract_version=row.contract_version,
        contract_status=row.contract_status,
        tags=list(row.tags),
        owner=row.owner,
        location=row.location,
        columns=[ColumnOut(name=n, classification=c) for n, c in row.columns],
        upstream=list(row.upstream),
        status=row.status,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        position=row.position,
    )


Limit = Annotated[
    int, QueryParameter(ge=1, le=MAX_LIMIT, description=ceiling(20, MAX_LIMIT))
]
Depth = Annotated[int, QueryParameter(ge=1, le=20)]
Text = Annotated[str | None, QueryParameter(max_length=200)]
ContractStatus = Annotated[
    str | None, QueryParameter(name="contractStatus", max_length=200)
]


class DatasetController(Controller):
    """Register, amend, link, retire and read datasets; search the catalog."""

    path = "/v1/datasets"
    tags = ["datasets"]  # noqa: RUF012

    @post(
        "/",
        operation_id="RegisterDataset",
        guards=[requires("catalog.write")],
        sync_to_thread=True,
        status_code=201,
    )
    def register_dataset(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[DatasetCreate],
        catalog: NamedDependency[CatalogBundle],
    ) -> Response[CommandAccepted]:
        """Register a dataset; the identical registration again is a 200 no-op."""
        result = catalog.registry.register_dataset(
            tenant=principal(request).tenant,
            spec=spec_from(data),
            upstream=data.upstream,
            idempotency=idempotency(request, data),
        )
        return command_response(catalog, result)

    @get(
        "/{dataset_id:uuid}",
        operation_id="GetDataset",
        guards=[requires("catalog.read")],
        sync_to_thread=True,
    )
    def get_dataset(
        self,
        request: Request[Any, Any, Any],
        dataset_id: FromPath[UUID],
        catalog: NamedDependency[CatalogBundle],
        dr: NamedDependency[DrBundle],
    ) -> Response[DatasetOut]:
        """The dataset as the write model holds it, with its version as ETag.

        On a DR pair, x-ig-read-from picks the region whose copy of the log
        answers (as for the read models; the position is that log's head).
        """
        tenant = principal(request).tenant
        dataset, headers = from_region(
            request,
            catalog,
            dr,
            lambda registry: registry.get_dataset(tenant=tenant, dataset_id=dataset_id),
        )
        headers["ETag"] = f'"{dataset.version}"'
        return Response(dataset_out(dataset), headers=headers)

    @patch(
        "/{dataset_id:uuid}",
        operation_id="AmendDataset",
        guards=[requires("catalog.write")],
        sync_to_thread=True,
    )
    def amend_dataset(
        self,
        request: Request[Any, Any, Any],
        dataset_id: FromPath[UUID],
        data: JSONBody[DatasetUpdate],
        catalog: NamedDependency[CatalogBundle],
    ) -> Response[CommandAccepted]:
        """Change some fields; needs If-Match with the version you read."""
        version = expected_version(request, required=True)
        assert version is not None
        result = catalog.registry.amend_dataset(
            tenant=principal(request).tenant,
            dataset_id=dataset_id,
            changes=changes_from(data),
            expected_version=version,
            idempotency=idempotency(request, data),
        )
        return command_response(catalog, result)

    @post(
        "/{dataset_id:uuid}/lineage",
        operation_id="LinkLineage",
        guards=[requires("catalog.write")],
        sync_to_thread=True,
        status_code=200,
    )
    def link_lineage(
        self,
        request: Request[Any, Any, Any],
        dataset_id: FromPath[UUID],
        data: JSONBody[LineageLink],
        catalog: NamedDependency[CatalogBundle],
    ) -> Response[CommandAccepted]:
        """Add upstream datasets; a cycle is refused (409 naming it)."""
        result = catalog.registry.link_lineage(
            tenant=principal(request).tenant,
            dataset_id=dataset_id,
            upstream=data.upstream,
            idempotency=idempotency(request, data),
        )
        return command_response(catalog, result)

    @delete(
        "/{dataset_id:uuid}",
        operation_id="RetireDataset",
        guards=[requires("catalog.write")],
        sync_to_thread=True,
        status_code=200,
    )
    def retire_dataset(
        self,
        request: Request[Any, Any, Any],
        dataset_id: FromPath[UUID],
        catalog: NamedDependency[CatalogBundle],
        reason: Text = None,
    ) -> Response[CommandAccepted]:
        """Retire the dataset (an event; its history stays)."""
        result = catalog.registry.retire_dataset(
            tenant=principal(request).tenant,
            dataset_id=dataset_id,
            reason=reason or "",
            expected_version=expected_version(request, required=False),
            idempotency=idempotency(
                request, {"retire": str(dataset_id), "reason": reason or ""}
            ),
        )
        return command_response(catalog, result)

    @get(
        "/{dataset_id:uuid}/history",
        operation_id="DatasetHistory",
        guards=[requires("catalog.read")],
        sync_to_thread=True,
    )
    def dataset_history(
        self,
        request: Request[Any, Any, Any],
        dataset_id: FromPath[UUID],
        catalog: NamedDependency[CatalogBundle],
        dr: NamedDependency[DrBundle],
    ) -> Response[HistoryOut]:
        """Every event of the dataset with its position and chain hashes (from
        a DR region's copy of the log if x-ig-read-from picks one)."""
        tenant = principal(request).tenant
        entries, headers = from_region(
            request,
            catalog,
            dr,
            lambda registry: registry.dataset_history(
                tenant=tenant, dataset_id=dataset_id
            ),
        )
        return Response(
            HistoryOut(id=dataset_id, entries=[entry_out(e) for e in entries]),
            headers=headers,
        )

    @get(
        "/",
        operation_id="SearchDatasets",
        guards=[requires("catalog.read")],
        sync_to_thread=True,
    )
    def search_datasets(
        self,
        request: Request[Any, Any, Any],
        core: NamedDependency[Core],
        catalog: NamedDependency[CatalogBundle],
        dr: NamedDependency[DrBundle],
        q: Text = None,
        license: Text = None,  # noqa: A002
        purpose: Text = None,
        region: Text = None,
        tag: Text = None,
        contract_status: ContractStatus = None,
        status: FromQuery[Literal["active", "retired", "any"]] = "active",
        sort: FromQuery[Literal["relevance", "name"]] = "relevance",
        after: After = None,
        limit: Limit = 20,
    ) -> Response[DatasetPage]:
        """Full-text search with facet counts, filters and a keyset cursor."""
        query = CatalogQuery(
            tenant=principal(request).tenant,
            q=q or "",
            license=license,
            purpose=purpose,
            region=region,
            tag=tag,
            contract_status=contract_status,
            status=status,
            sort=sort,
            limit=limit,
        )
        if after:
            query = dataclasses.replace(query, after=decode_cursor(query, after))
        # x-ig-read-from on a DR pair: a standby's replicated catalog may answer.
        pair = dr.runtime
        route = (
            pair.search_catalog(request.headers, query) if pair is not None else None
        )
        if route is not None and route.read is not None:
            page, headers = route.read.value, {**route.headers, "x-ig-cache": "miss"}
        else:
            runner = core.runners["catalog"]
            headers = read_model(request, runner, core.settings.min_position_wait_s)
            page, cached = catalog.search.search(query, int(headers["x-ig-position"]))
            headers["x-ig-cache"] = "hit" if cached else "miss"
            headers.update(route.headers if route is not None else {})
        body = DatasetPage(
            items=[row_out(r) for r in page.items],
            total=page.total,
            facets=page.facets,
            next=encode_cursor(query, page.next_after) if page.next_after else None,
        )
        return Response(body, headers={**headers, **next_link(request, body.next)})

    @get(
        "/{dataset_id:uuid}/lineage",
        operation_id="DatasetLineage",
        guards=[requires("catalog.read")],
        sync_to_thread=True,
    )
    def dataset_lineage(
        self,
        request: Request[Any, Any, Any],
        dataset_id: FromPath[UUID],
        core: NamedDependency[Core],
        catalog: NamedDependency[CatalogBundle],
        dr: NamedDependency[DrBundle],
        direction: FromQuery[Literal["up", "down"]] = "up",
        depth: Depth = 3,
    ) -> Response[LineageOut]:
        """Upstream or downstream datasets up to ``depth`` hops (read model).

        Served by the Neo4j lineage view when one is configured, else by the
        catalog's SQL lineage tables (a DR standby's copy of them if
        x-ig-read-from picks one).
        """
        graph_store = catalog.lineage
        tenant = principal(request).tenant

        def walk(
            catalog: CatalogView, graph: CatalogView | LineageView | None = None
        ) -> LineageGraphView | None:
            if catalog.get(tenant, dataset_id) is None:
                return None
            return (graph or catalog).lineage(tenant, dataset_id, direction, depth)

        pair = dr.runtime
        route = (
            pair.route_catalog(request.headers, walk)
            if pair is not None and graph_store is None  # a graph store is not paired
            else None
        )
        if route is not None and route.read is not None:
            graph, headers = route.read.value, route.headers
        else:
            runner = core.runners["lineage" if graph_store else "catalog"]
            headers = read_model(request, runner, core.settings.min_position_wait_s)
            headers.update(route.headers if route is not None else {})
            graph = walk(catalog.view, graph_store)
        if graph is None:
            raise Problem(404, f"dataset {dataset_id} not found")
        body = LineageOut(
            root=dataset_id,
            direction=direction,
            depth=depth,
            nodes=[
                LineageNodeOut(id=n.id, name=n.name, status=n.status, depth=n.depth)
                for n in graph.nodes
            ],
            edges=[LineageEdgeOut(downstream=d, upstream=u) for d, u in graph.edges],
        )
        return Response(body, headers=headers)
