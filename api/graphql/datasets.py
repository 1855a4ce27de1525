"""The catalog's root fields: the seed's ``datasets`` and ``registerDataset``,
the Relay connection, ``dataset(id)`` and the other registry commands."""

from __future__ import annotations

from uuid import UUID

import strawberry
from strawberry.types import Info  # noqa: TC002 - strawberry resolves it

from api.graphql.auth import guarded
from api.graphql.catalog import (
    CommandAccepted,
    Dataset,
    DatasetConnection,
    DatasetFilter,
    DatasetInput,
    DatasetPatch,
    accepted,
    catalog_query,
    changes_of,
    connection_of,
    context_of,
    nodes_of,
    parse_id,
    search,
    spec_of,
)


@strawberry.type
class CatalogRoot:
    """Catalog queries (the catalog read model)."""

    @guarded("catalog.read")
    async def datasets(
        self,
        info: Info,
        q: str | None = None,
        license: str | None = None,  # noqa: A002 - the seed's name
        purpose: str | None = None,
        region: str | None = None,
        after: str | None = None,
        first: int = 20,
        min_position: int | None = None,
    ) -> list[Dataset]:
        """The seed's search: a page of active datasets (``after``: the cursor
        ``datasetsConnection`` hands out, as REST's ``next``)."""
        context = context_of(info)
        query = catalog_query(
            context, first, q=q, license=license, purpose=purpose, region=region
        )
        _, page = await search(context, query, after, min_position)
        return nodes_of(page)

    @guarded("catalog.read")
    async def datasets_connection(
        self,
        info: Info,
        first: int = 20,
        after: str | None = None,
        filter: DatasetFilter | None = None,  # noqa: A002 - the issue's name
        min_position: int | None = None,
    ) -> DatasetConnection:
        """Relay-style search: edges (each with its cursor), pageInfo,
        totalCount and facet counts."""
        context = context_of(info)
        given = filter or DatasetFilter()
        query = catalog_query(
            context,
            first,
            q=given.q,
            license=given.license,
            purpose=given.purpose,
            region=given.region,
            tag=given.tag,
            status=given.status,
            contract_status=given.contract_status,
            sort=given.sort,
        )
        query, page = await search(context, query, after, min_position)
        return connection_of(query, page)

    @guarded("catalog.read")
    async def dataset(
        self,
        info: Info,
        id: strawberry.ID,  # noqa: A002
        min_position: int | None = None,
    ) -> Dataset | None:
        """One dataset from the catalog read model (null: not in this tenant)."""
        context = context_of(info)
        dataset_id = parse_id(id, "id")
        await context.read("catalog", min_position)
        row = await context.loaders.rows.load(dataset_id)
        return Dataset.of(row) if row is not None else None


@strawberry.type
class CatalogCommands:
    """Registry commands (the Datasets application service)."""

    @guarded("catalog.write", mutation=True)
    async def register_dataset(self, info: Info, input: DatasetInput) -> bool | None:  # noqa: A002
        """The seed's mutation: true once registered (or identically re-registered)."""
        await _register(info, input)
        return True

    @guarded("catalog.write", mutation=True)
    async def register_dataset_accepted(
        self,
        info: Info,
        input: DatasetInput,  # noqa: A002
    ) -> CommandAccepted:
        """registerDataset answering the id, version and position (additive)."""
        return await _register(info, input)

    @guarded("catalog.write", target="id", mutation=True)
    async def amend_dataset(
        self,
        info: Info,
        id: strawberry.ID,  # noqa: A002 - the issue's name
        expected_version: int,
        input: DatasetPatch,  # noqa: A002
    ) -> CommandAccepted:
        """Change some fields, if ``expectedVersion`` is still the latest."""
        context = context_of(info)
        registry, tenant = context.catalog.registry, context.tenant
        changes = changes_of(input)
        result = await context.run(
            lambda: registry.amend_dataset(
                tenant=tenant,
                dataset_id=UUID(id),
                changes=changes,
                expected_version=expected_version,
            )
        )
        return accepted(context, result)

    @guarded("catalog.write", target="id", mutation=True)
    async def link_lineage(
        self,
        info: Info,
        id: strawberry.ID,  # noqa: A002
        upstream: list[strawberry.ID],
    ) -> CommandAccepted:
        """Add upstream datasets; a cycle is refused (``lineage-cycle``)."""
        context = context_of(info)
        registry, tenant = context.catalog.registry, context.tenant
        ups = [parse_id(u, f"upstream[{i}]") for i, u in enumerate(upstream)]
        result = await context.run(
            lambda: registry.link_lineage(
                tenant=tenant, dataset_id=UUID(id), upstream=ups
            )
        )
        return accepted(context, result)

    @guarded("catalog.write", target="id", mutation=True)
    async def retire_dataset(
        self,
        info: Info,
        id: strawberry.ID,  # noqa: A002 - the issue's name
        reason: str = "",
        expected_version: int | None = None,
    ) -> CommandAccepted:
        """Retire the dataset (an event; its history stays)."""
        context = context_of(info)
        registry, tenant = context.catalog.registry, context.tenant
        result = await context.run(
            lambda: registry.retire_dataset(
                tenant=tenant,
                dataset_id=UUID(id),
                reason=reason,
                expected_version=expected_version,
            )
        )
        return accepted(context, result)


async def _register(info: Info, data: DatasetInput) -> CommandAccepted:
    context = context_of(info)
    registry, tenant = context.catalog.registry, context.tenant
    spec = spec_of(data)
    upstream = [
        parse_id(u, f"input.upstream[{i}]") for i, u in enumerate(data.upstream)
    ]
    result = await context.run(
        lambda: registry.register_dataset(tenant=tenant, spec=spec, upstream=upstream)
    )
    return accepted(context, result)
