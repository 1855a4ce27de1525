"""The catalog in GraphQL: the seed's Dataset, queries and registry commands.

Reads come from the catalog read model (the same ``SearchCache`` and view the
REST search and lineage use), commands go to the same ``Datasets``
application service as /v1/datasets; the cursor is the REST search cursor.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Literal, cast
from uuid import UUID

import strawberry
from strawberry.types import Info  # noqa: TC002 - strawberry resolves it

from api.graphql.auth import Sight, check_page, coded, guarded
from api.graphql.context import GraphContext
from api.graphql.exports import MAX_EXPORTS, Export, export_of
from api.paging import SEARCH_LIMIT, decode_cursor, encode_cursors
from api.problems import Problem
from api.requests import command_response
from domain.values import Column as ColumnValue
from domain.values import DatasetSpec
from projections.catalog import CatalogPage, CatalogQuery, CatalogRow

if TYPE_CHECKING:
    from collections.abc import Sequence

    from application.base import CommandResult

MAX_LINEAGE_DEPTH = 20
"""As REST's ``depth`` on /v1/datasets/{id}/lineage."""


def context_of(info: Info) -> GraphContext:
    context = info.context
    assert isinstance(context, GraphContext)
    return context


@strawberry.type
class Column:
    name: str
    classification: str


@strawberry.enum
class LineageDirection(enum.Enum):
    UP = "up"
    DOWN = "down"


@strawberry.enum
class DatasetSort(enum.Enum):
    """As REST's ``sort``: with text, RELEVANCE ranks by BM25 and NAME lists
    the matches by name; without text both list by name."""

    RELEVANCE = "relevance"
    NAME = "name"


def columns_of(root: Dataset) -> list[Column]:
    """A dataset's columns, made only when a query selects them (a page of
    rows has many)."""
    return [Column(name=n, classification=c) for n, c in root.column_pairs]


@strawberry.type
class HistoryEntry:
    """One event of the dataset, with its place in the hash chain."""

    position: int
    version: int
    topic: str
    hash: str
    prev_hash: str


@strawberry.type
class Dataset:
    """The seed's Dataset, plus what a client needs (additive)."""

    id: strawberry.ID
    name: str
    license: str
    purpose: list[str]
    retention: str
    region: str
    contract_version: str
    description: str
    tags: list[str]
    columns: list[Column] = strawberry.field(resolver=columns_of)
    status: str
    version: int
    position: int
    owner: str
    location: str
    contract_status: str
    tenant: strawberry.Private[str]
    purposes: strawberry.Private[tuple[str, ...]]
    upstream_ids: strawberry.Private[tuple[UUID, ...]]
    column_pairs: strawberry.Private[tuple[tuple[str, str], ...]]

    @classmethod
    def of(cls, row: CatalogRow) -> Dataset:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            license=row.license,
            purpose=list(row.purposes),
            retention=row.retention,
            region=row.region,
            contract_version=row.contract_version,
            description=row.description,
            tags=list(row.tags),
            status=row.status,
            version=row.version,
            position=row.position,
            owner=row.owner,
            location=row.location,
            contract_status=row.contract_status,
            tenant=row.tenant,
            purposes=row.purposes,
            upstream_ids=row.upstream,
            column_pairs=row.columns,
        )

    @guarded("catalog.read")
    async def upstream(self, info: Info) -> list[Dataset]:
        """The datasets this one is derived from (one hop; batched)."""
        return await _datasets(context_of(info), self.upstream_ids)

    @guarded("catalog.read")
    async def downstream(self, info: Info) -> list[Dataset]:
        """Active datasets derived from this one (one hop; batched)."""
        context = context_of(info)
        below = await context.loaders.downstream.load(UUID(self.id))
        return await _datasets(context, below)

    @guarded("catalog.read")
    async def lineage(
        self,
        info: Info,
        direction: LineageDirection = LineageDirection.UP,
        depth: int = 3,
    ) -> Lineage:
        """Datasets reachable upstream or downstream within ``depth`` hops."""
        if not 1 <= depth <= MAX_LINEAGE_DEPTH:
            raise _range("depth", MAX_LINEAGE_DEPTH)
        return await walk(context_of(info), self, direction, depth)

    @guarded("catalog.read")
    async def history(self, info: Info) -> list[HistoryEntry]:
        """Every event of the dataset (the write model's log entries; batched)."""
        entries = await context_of(info).loaders.histories.load(UUID(self.id))
        return [
            HistoryEntry(
                position=e.position,
                version=e.version,
                topic=e.topic,
                hash=e.hash,
                prev_hash=e.prev_hash,
            )
            for e in entries
        ]

    @guarded("export.request")
    async def exports(
        self, info: Info, status: str | None = None, first: int = 20
    ) -> list[Export]:
        """The newest exports of this dataset (the exports read model; batched)."""
        check_page(first, MAX_EXPORTS)
        context = context_of(info)
        await context.read_once("exports")
        key = (UUID(self.id), status, first)
        return [export_of(r) for r in await context.loaders.dataset_exports.load(key)]


@strawberry.type
class LineageNode:
    dataset: Dataset
    depth: int


@strawberry.type
class LineageEdge:
    downstream: strawberry.ID
    upstream: strawberry.ID


@strawberry.type
class Lineage:
    nodes: list[LineageNode]
    edges: list[LineageEdge]

    def visible_to(self, sight: Sight) -> Lineage:
        """Without the nodes the caller may not see (and their edges)."""
        kept = [n for n in self.nodes if sight.sees(n.dataset)]
        ids = {n.dataset.id for n in kept}
        return Lineage(
            nodes=kept,
            edges=[
                e for e in self.edges if {e.downstream, e.upstream} <= ids | {self.root}
            ],
        )

    root: strawberry.Private[str] = ""


async def _datasets(context: GraphContext, ids: Sequence[UUID]) -> list[Dataset]:
    rows = await context.loaders.rows.load_many(list(ids))
    return [Dataset.of(r) for r in rows if r is not None]


async def walk(
    context: GraphContext, root: Dataset, direction: LineageDirection, depth: int
) -> Lineage:
    """Breadth first through the DataLoaders: one batched query per level."""
    seen = {root.id: root}
    frontier = [root]
    nodes: list[LineageNode] = []
    edges: list[LineageEdge] = []
    for level in range(1, depth + 1):
        found: list[Dataset] = []
        for dataset in frontier:
            if direction is LineageDirection.UP:
                near = await _datasets(context, dataset.upstream_ids)
            else:
                below = await context.loaders.downstream.load(UUID(dataset.id))
                near = await _datasets(context, below)
            for other in near:
                pair = (dataset.id, other.id)
                down, up = pair if direction is LineageDirection.UP else pair[::-1]
                edges.append(LineageEdge(downstream=down, upstream=up))
                if other.id not in seen:
                    seen[other.id] = other
                    nodes.append(LineageNode(dataset=other, depth=level))
                    found.append(other)
        frontier = found
        if not frontier:
            break
    return Lineage(nodes=nodes, edges=edges, root=root.id)


def _range(field: str, most: int) -> Exception:
    return coded(
        Problem(
            400,
            f"{field} must be between 1 and {most}",
            errors=[{"field": field, "rule": "range", "message": f"1..{most}"}],
        )
    )


@strawberry.type
class FacetValue:
    value: str
    count: int


@strawberry.type
class Facet:
    name: str
    values: list[FacetValue]


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class DatasetEdge:
    cursor: str
    """``after: cursor`` continues the search right after this edge."""
    node: Dataset


@strawberry.type
class DatasetConnection:
    edges: list[DatasetEdge]
    page_info: PageInfo
    total_count: int
    facets: list[Facet]

    def visible_to(self, sight: Sight) -> DatasetConnection:
        """Without the nodes and facet values the caller may not see."""
        return dataclasses.replace(
            self,
            edges=[e for e in self.edges if sight.sees(e.node)],
            facets=[
                Facet(
                    name=f.name,
                    values=[v for v in f.values if sight.sees_value(f.name, v.value)],
                )
                for f in self.facets
            ],
        )


@strawberry.input
class DatasetFilter:
    """The search's filters, as REST GET /v1/datasets takes them."""

    q: str | None = None
    license: str | None = None
    purpose: str | None = None
    region: str | None = None
    tag: str | None = None
    status: str | None = None
    contract_status: str | None = None
    sort: DatasetSort = DatasetSort.RELEVANCE


@strawberry.input
class ColumnInput:
    name: str
    classification: str


@strawberry.input
class DatasetInput:
    """A registration (the REST body's fields; ``purpose`` as on Dataset)."""

    name: str
    license: str
    purpose: list[str]
    retention: str
    region: str
    contract_version: str
    description: str = ""
    contract_status: str = "active"
    tags: list[str] = strawberry.field(default_factory=list)
    owner: str = ""
    location: str = ""
    columns: list[ColumnInput] = strawberry.field(default_factory=list)
    upstream: list[strawberry.ID] = strawberry.field(default_factory=list)


@strawberry.input
class DatasetPatch:
    """A partial update: only the fields given change."""

    name: str | None = strawberry.UNSET
    license: str | None = strawberry.UNSET
    purpose: list[str] | None = strawberry.UNSET
    retention: str | None = strawberry.UNSET
    region: str | None = strawberry.UNSET
    contract_version: str | None = strawberry.UNSET
    contract_status: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
    owner: str | None = strawberry.UNSET
    location: str | None = strawberry.UNSET
    columns: list[ColumnInput] | None = strawberry.UNSET


@strawberry.type
class CommandAccepted:
    """As REST's 200/201 body: the dataset, its version, the log position."""

    id: strawberry.ID
    version: int
    position: int | None


def spec_of(data: DatasetInput) -> DatasetSpec:
    return DatasetSpec(
        name=data.name,
        license=data.license,
        purposes=tuple(data.purpose),
        retention=data.retention,
        region=data.region,
        contract_version=data.contract_version,
        description=data.description,
        contract_status=data.contract_status,
        tags=tuple(data.tags),
        owner=data.owner,
        location=data.location,
        columns=tuple(ColumnValue(c.name, c.classification) for c in data.columns),
    )


def changes_of(patch: DatasetPatch) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in (f.name for f in dataclasses.fields(patch)):
        value = getattr(patch, name)
        if value is strawberry.UNSET:
            continue
        if value is None:
            raise coded(
                Problem(
                    400,
                    f"{name} cannot be null: leave it out to keep it",
                    errors=[{"field": name, "rule": "non-null", "message": "null"}],
                )
            )
        if name == "columns":
            value = tuple(ColumnValue(c.name, c.classification) for c in value)
        elif isinstance(value, list):
            value = tuple(value)
        changes["purposes" if name == "purpose" else name] = value
    return changes


def parse_id(raw: str, field: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise coded(
            Problem(
                400,
                f"{field} is not a dataset id",
                errors=[{"field": field, "rule": "uuid", "message": "not a UUID"}],
            )
        ) from None


def accepted(context: GraphContext, result: CommandResult) -> CommandAccepted:
    body = command_response(context.catalog, result).content
    context.wrote(body.position)
    return CommandAccepted(
        id=strawberry.ID(str(body.id)), version=body.version, position=body.position
    )


async def search(
    context: GraphContext,
    query: CatalogQuery,
    after: str | None,
    min_position: int | None,
) -> tuple[CatalogQuery, CatalogPage]:
    """The page REST's search answers (the same cache), in one trip off the
    event loop: wait for the catalog, note its position, search."""
    if after:
        query = dataclasses.replace(query, after=decode_cursor(query, after))
    cache = context.catalog.search
    page = await context.read_then(
        "catalog", min_position, lambda position: cache.search(query, position)[0]
    )
    return query, page


_NODES: OrderedDict[int, tuple[CatalogPage, list[Dataset]]] = OrderedDict()
NODES_KEPT = 64
"""Search pages whose GraphQL objects ``nodes_of`` keeps (the oldest go)."""


def nodes_of(page: CatalogPage) -> list[Dataset]:
    """The page's datasets as GraphQL objects, made once per page: the search
    cache hands out the same page object until the catalog moves, and neither
    the page nor these objects ever change (resolvers and @auth only read
    them). Event-loop only, like every resolver."""
    kept = _NODES.get(id(page))
    if kept is not None and kept[0] is page:
        return list(kept[1])
    nodes = [Dataset.of(row) for row in page.items]
    _NODES[id(page)] = (page, nodes)
    if len(_NODES) > NODES_KEPT:
        _NODES.popitem(last=False)
    return list(nodes)


def connection_of(query: CatalogQuery, page: CatalogPage) -> DatasetConnection:
    """The Relay connection over a search page: a keyset cursor on every edge."""
    cursors = encode_cursors(query, page.afters)
    end = cursors[-1] if page.next_after and cursors else None
    return DatasetConnection(
        edges=[
            DatasetEdge(cursor=c, node=node)
            for c, node in zip(cursors, nodes_of(page), strict=True)
        ],
        page_info=PageInfo(has_next_page=end is not None, end_cursor=end),
        total_count=page.total,
        facets=[
            Facet(
                name=name,
                values=[FacetValue(value=v, count=n) for v, n in counts.items()],
            )
            for name, counts in page.facets.items()
        ],
    )


def catalog_query(context: GraphContext, first: int, **filters: Any) -> CatalogQuery:
    check_page(first, SEARCH_LIMIT)
    status = filters.pop("status", None) or "active"
    if status not in {"active", "retired", "any"}:
        raise coded(
            Problem(
                400,
                "status must be active, retired or any",
                errors=[{"field": "status", "rule": "enum", "message": status}],
            )
        )
    sort = filters.pop("sort", None) or DatasetSort.RELEVANCE
    return CatalogQuery(
        tenant=context.tenant,
        q=filters.pop("q", None) or "",
        status=cast("Literal['active', 'retired', 'any']", status),
        sort=cast("Literal['relevance', 'name']", sort.value),
        limit=first,
        **filters,
    )
