"""The per-request GraphQL context: principal, bundles, DataLoaders, read state.

The context holds the same bundles the REST controllers take as dependencies
(``core``, ``catalog``, ``exports``: the app's ``Conductor``) and the principal
from the same JWT code (api.auth). The DataLoaders batch every read-model
look-up a request makes in one tick into one query: a page of datasets with
their lineage costs one query per lineage level, whatever the page size.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
import msgspec
from litestar.exceptions import NotAuthorizedException
from strawberry.dataloader import DataLoader
from strawberry.litestar import BaseContext

from api.auth import CachedToken, Principal, principal_from_token
from api.problems import Problem
from api.requests import is_position
from api.wiring.catalog import CatalogBundle  # noqa: TC001
from api.wiring.core import Core  # noqa: TC001
from api.wiring.exports import ExportsBundle  # noqa: TC001

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    from litestar import Request, Response

    from application.ports import LogEntry
    from domain.catalog.dataset import Dataset
    from projections.catalog import CatalogRow
    from projections.exports import ExportRow

MIN_POSITION_HEADER = "x-ig-min-position"
T = TypeVar("T")
ExportsKey = tuple["UUID", str | None, int]
"""A dataset's exports: (dataset, status filter, how many)."""


class Loaders:
    """Batched read-model look-ups for one request (one tenant)."""

    def __init__(
        self, tenant: str, catalog: CatalogBundle, exports: ExportsBundle
    ) -> None:
        self.tenant = tenant
        self.catalog = catalog
        self.exports = exports
        self.rows: DataLoader[UUID, CatalogRow | None] = DataLoader(self._rows)
        self.downstream: DataLoader[UUID, list[UUID]] = DataLoader(self._downstream)
        self.export_rows: DataLoader[UUID, ExportRow | None] = DataLoader(
            self._export_rows
        )
        self.histories: DataLoader[UUID, Sequence[LogEntry]] = DataLoader(
            self._histories
        )
        self.dataset_exports: DataLoader[ExportsKey, list[ExportRow]] = DataLoader(
            self._dataset_exports
        )

    async def _rows(self, ids: Sequence[UUID]) -> list[CatalogRow | None]:
        found = await anyio.to_thread.run_sync(self.catalog.view.load_rows, list(ids))
        return [
            row if row is not None and row.tenant == self.tenant else None
            for row in (found.get(i) for i in ids)
        ]

    async def _downstream(self, ids: Sequence[UUID]) -> list[list[UUID]]:
        view, tenant = self.catalog.view, self.tenant
        below = await anyio.to_thread.run_sync(
            lambda: view.downstream(tenant, list(ids))
        )
        return [sorted(below.get(i, ()), key=str) for i in ids]

    async def _histories(self, ids: Sequence[UUID]) -> list[Sequence[LogEntry]]:
        registry, tenant = self.catalog.registry, self.tenant
        found = await anyio.to_thread.run_sync(
            lambda: registry.dataset_histories(tenant=tenant, dataset_ids=list(ids))
        )
        return [found.get(i, ()) for i in ids]

    async def _dataset_exports(
        self, keys: Sequence[ExportsKey]
    ) -> list[list[ExportRow]]:
        """One query per distinct (status, first) the page asked for."""
        view, tenant = self.exports.view, self.tenant
        wanted: dict[tuple[str | None, int], list[UUID]] = {}
        for dataset_id, status, first in keys:
            wanted.setdefault((status, first), []).append(dataset_id)

        def query() -> dict[tuple[str | None, int], dict[UUID, list[ExportRow]]]:
            return {
                (status, first): view.exports_of(
                    tenant, ids, status=status, limit=first
                )
                for (status, first), ids in wanted.items()
            }

        found = await anyio.to_thread.run_sync(query)
        return [found[s, f].get(i, []) for i, s, f in keys]

    async def _export_rows(self, ids: Sequence[UUID]) -> list[ExportRow | None]:
        found = await anyio.to_thread.run_sync(self.exports.view.load_rows, list(ids))
        return [
            row if row is not None and row.tenant == self.tenant else None
            for row in (found.get(i) for i in ids)
        ]


class GraphContext(BaseContext, kw_only=True):
    """What every resolver may use; ``principal`` is None without a token."""

    principal: Principal | None
    core: Core
    catalog: CatalogBundle
    exports: ExportsBundle
    loaders: Loaders
    min_position: int | None = None
    """x-ig-min-position, when the request sent it."""
    reads: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    """Read models this request read: their position and lag (extensions)."""
    last_position: int | None = None
    """The log position of this request's last command (extensions)."""
    targets: dict[UUID, Dataset] = msgspec.field(default_factory=dict)
    """Datasets the @auth rule loaded for a command (api.graphql.auth)."""
    shared_reads: dict[str, asyncio.Future[int]] = msgspec.field(default_factory=dict)
    """``read_once``'s reads, one per view and request."""

    @property
    def tenant(self) -> str:
        assert self.principal is not None  # guarded fields only
        return self.principal.tenant

    def read_now(self, view: str, min_position: int | None = None) -> int:
        """Wait for ``view`` to reach the wanted position (argument or header),
        note its position and lag, and return the position (blocking: for a
        caller already off the event loop, as ``read_then``'s work is)."""
        runner = self.core.runners[view]
        wanted = max(min_position or 0, self.min_position or 0)
        if wanted and not runner.wait(wanted, self.core.settings.min_position_wait_s):
            status = runner.status()
            raise Problem(
                503,
                f"the {runner.name} view is at position {status.position}, "
                f"behind the requested {wanted}",
                kind="projection-lagging",
                title="The read model has not caught up yet",
                position=status.position,
                minPosition=wanted,
            )
        status = runner.status()
        self.reads[view] = {"position": status.position, "lagEvents": status.lag}
        return status.position

    async def read(self, view: str, min_position: int | None = None) -> int:
        """``read_now`` off the event loop (the runner's status is a query)."""
        return await self.run(self.read_now, view, min_position)

    async def read_then(
        self, view: str, min_position: int | None, work: Callable[[int], T]
    ) -> T:
        """Wait for ``view``, then ``work(position)``: one trip off the loop."""
        return await self.run(lambda: work(self.read_now(view, min_position)))

    async def read_once(self, view: str) -> int:
        """``read(view)`` once per request, shared by every field of a page
        that needs it (a page of datasets, each with its exports)."""
        future = self.shared_reads.get(view)
        if future is None:
            future = self.shared_reads[view] = asyncio.ensure_future(self.read(view))
        return await future

    def wrote(self, position: int | None) -> None:
        if position is not None:
            self.last_position = max(position, self.last_position or 0)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """A synchronous application call, off the event loop."""
        return await anyio.to_thread.run_sync(work, *args)


def _min_position(request: Request[Any, Any, Any]) -> int | None:
    raw = request.headers.get(MIN_POSITION_HEADER)
    if raw is None:
        return None
    if not is_position(raw):
        raise Problem(
            400,
            "x-ig-min-position must be a non-negative integer log position",
            errors=[
                {
                    "field": MIN_POSITION_HEADER,
                    "rule": "integer",
                    "message": "not a log position",
                }
            ],
        )
    return int(raw)


async def authenticate(
    request: Request[Any, Any, Any], secret: str
) -> Principal | None:
    """The bearer token's principal, by api.auth's own checks (the GraphiQL page
    and its assets are open, so /graphql is not behind the JWT middleware).
    No token: None (every guarded field then answers ``unauthorized``);
    a bad token: 401, as on REST."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "bearer" or not encoded:
        raise NotAuthorizedException(detail="send Authorization: Bearer <token>")
    token = CachedToken.decode(
        encoded.strip(), secret, "HS256", require_claims=["exp", "sub"]
    )
    return await principal_from_token(token, request)


async def graph_context(
    request: Request[Any, Any, Any], response: Response[Any], secret: str
) -> GraphContext:
    """The request's context: the principal and the app's own bundles.

    The bundles come from the composition root's ``Conductor`` on the app
    (api.app) rather than through litestar's dependencies: resolving several
    dependencies spawns a task group on every request, a cost GraphQL paid
    on top of REST's for nothing.
    """
    principal = await authenticate(request, secret)
    tenant = principal.tenant if principal else ""
    conductor = request.app.state.conductor
    catalog: CatalogBundle = conductor.catalog
    exports: ExportsBundle = conductor.exports
    return GraphContext(
        request=request,
        response=response,
        principal=principal,
        core=conductor.core,
        catalog=catalog,
        exports=exports,
        loaders=Loaders(tenant, catalog, exports),
        min_position=_min_position(request),
    )
