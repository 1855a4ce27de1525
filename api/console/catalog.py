"""/console/datasets: the catalog search and a dataset's page.

Reads go through the same bundles as /v1/datasets (the catalog read model,
the registry, the log) and the same cursor encoding; nothing here decides a
rule of its own.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlencode
from uuid import UUID

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Template

from api.console.lineage_svg import lineage_svg
from api.console.session import ConsoleUser, require_scope
from api.paging import After, decode_cursor, encode_cursor
from api.problems import Problem
from api.schemas.ledger import entry_out
from api.wiring.catalog import CatalogBundle
from api.wiring.core import Core
from api.wiring.exports import ExportsBundle
from domain.errors import NotFoundError
from projections.catalog import CatalogQuery

if TYPE_CHECKING:
    from projections.catalog import CatalogPage

PAGE = 20
TRAIL_MAX = 30
"""Earlier pages' cursors kept in the URL for "Previous" (the back button
needs none: every page is its own URL)."""
FILTERS = ("license", "purpose", "region", "tag", "contractStatus")
"""The facets the read model can also filter on (CatalogQuery's fields)."""
FIRST = "-"
"""The first page's place in the trail (it has no cursor)."""

Text = Annotated[str | None, QueryParameter(max_length=200)]
ContractStatus = Annotated[
    str | None, QueryParameter(name="contractStatus", max_length=200)
]
Trail = Annotated[str | None, QueryParameter(max_length=TRAIL_MAX * 600)]


def _href(params: dict[str, str | None], **changes: str | None) -> str:
    merged = {**params, **changes}
    query = [(k, v) for k, v in merged.items() if v]
    return "/console/datasets" + (f"?{urlencode(query)}" if query else "")


def _facet_links(
    page: CatalogPage, params: dict[str, str | None]
) -> list[dict[str, Any]]:
    """Each facet's values with counts and the link that toggles it."""
    groups = []
    for name, counts in page.facets.items():
        chosen = params.get(name)
        values = [
            {
                "value": value,
                "count": count,
                "selected": value == chosen,
                "href": _href(
                    params, **{name: None if value == chosen else value, "after": None}
                )
                if name in FILTERS
                else None,
            }
            for value, count in counts.items()
        ]
        groups.append({"name": name, "values": values})
    return groups


class DatasetPages(Controller):
    """The catalog search and a dataset's page (forms: api.console.dataset_forms)."""

    path = "/datasets"

    @get("/", name="console-datasets", sync_to_thread=True)
    def search(
        self,
        user: NamedDependency[ConsoleUser],
        core: NamedDependency[Core],
        catalog: NamedDependency[CatalogBundle],
        q: Text = None,
        license: Text = None,  # noqa: A002
        purpose: Text = None,
        region: Text = None,
        tag: Text = None,
        contract_status: ContractStatus = None,
        status: FromQuery[Literal["active", "retired", "any"]] = "active",
        sort: FromQuery[Literal["relevance", "name"]] = "relevance",
        after: After = None,
        trail: Trail = None,
    ) -> Template:
        """The search box, the facets with counts, a page of results."""
        require_scope(user, "catalog.read")
        query = CatalogQuery(
            tenant=user.tenant,
            q=q or "",
            license=license,
            purpose=purpose,
            region=region,
            tag=tag,
            contract_status=contract_status,
            status=status,
            sort=sort,
            limit=PAGE,
        )
        if after:
            query = dataclasses.replace(query, after=decode_cursor(query, after))
        position = core.runners["catalog"].status().position
        page, _ = catalog.search.search(query, position)
        params: dict[str, str | None] = {
            "q": q or None,
            "license": license,
            "purpose": purpose,
            "region": region,
            "tag": tag,
            "contractStatus": contract_status,
            "status": None if status == "active" else status,
            "sort": None if sort == "relevance" else sort,
        }
        steps = [s for s in (trail or "").split(",") if s][-TRAIL_MAX:]
        nxt = encode_cursor(query, page.next_after) if page.next_after else None
        next_href = (
            _href(params, after=nxt, trail=",".join([*steps, after or FIRST]))
            if nxt
            else None
        )
        prev_href = None
        if after:
            back = steps[-1] if steps else FIRST
            prev_href = _href(
                params,
                after=None if back == FIRST else back,
                trail=",".join(steps[:-1]) or None,
            )
        return Template(
            "datasets.html",
            context={
                "user": user,
                "params": params,
                "filters": [(k, params[k]) for k in FILTERS if params[k]],
                "clear": {k: _href(params, **{k: None}) for k in FILTERS},
                "status": status,
                "page": page,
                "facets": _facet_links(page, params),
                "next_href": next_href,
                "prev_href": prev_href,
                "first": len(steps) * PAGE + 1 if after else 1,
                "sort": sort,
                "ordered_by": "relevance"
                if query.q.strip() and sort == "relevance"
                else "name",
            },
            headers={"Vary": "HX-Request", "Cache-Control": "no-store"},
        )

    @get("/{dataset_id:uuid}", name="console-dataset", sync_to_thread=True)
    def dataset(
        self,
        user: NamedDependency[ConsoleUser],
        dataset_id: FromPath[UUID],
        core: NamedDependency[Core],
        catalog: NamedDependency[CatalogBundle],
        exports: NamedDependency[ExportsBundle],
    ) -> Template:
        """Fields, classifications, history, lineage, exports of one dataset."""
        require_scope(user, "catalog.read")
        tenant = user.tenant
        try:
            # The registry's cached head (one indexed row while unchanged).
            dataset, _ = catalog.registry.dataset_at_head(
                tenant=tenant, dataset_id=dataset_id
            )
            history = catalog.registry.dataset_history(
                tenant=tenant, dataset_id=dataset_id
            )
        except NotFoundError:
            raise Problem(404, f"dataset {dataset_id} not found") from None
        graph = catalog.lineage or catalog.view
        up = graph.lineage(tenant, dataset_id, "up", 3)
        down = graph.lineage(tenant, dataset_id, "down", 3)
        can_see_exports = any(
            user.can(s) for s in ("export.request", "export.approve", "audit.read")
        )
        runs = (
            exports.view.list_exports(
                tenant, status=None, dataset_id=dataset_id, after=None, limit=20
            )
            if can_see_exports
            else []
        )
        return Template(
            "dataset.html",
            context={
                "user": user,
                "d": dataset,
                "history": [entry_out(e) for e in history],
                "svg": lineage_svg(dataset_id, dataset.name, up, down),
                "upstream": sum(n.id != dataset_id for n in up.nodes),
                "downstream": sum(n.id != dataset_id for n in down.nodes),
                "exports": runs,
                "can_see_exports": can_see_exports,
                "position": core.runners["catalog"].status().position,
            },
            headers={"Cache-Control": "no-store"},
        )

    @get("/{dataset_id:uuid}/coverage", name="console-coverage", sync_to_thread=True)
    def coverage(
        self,
        user: NamedDependency[ConsoleUser],
        dataset_id: FromPath[UUID],
        catalog: NamedDependency[CatalogBundle],
    ) -> Template:
        """The tenant's coverage and this dataset's part in it (an htmx fragment:
        coverage walks the data root, so the page does not wait for it)."""
        require_scope(user, "catalog.read")
        row = catalog.view.get(user.tenant, dataset_id)
        if row is None:
            raise Problem(404, f"dataset {dataset_id} not found")
        cov = catalog.queries.coverage(user.tenant)
        return Template(
            "coverage.html",
            context={
                "user": user,
                "cov": cov,
                "row": row,
                "file_missing": bool(row.location)
                and row.location in cov.missing_locations,
                "classified": any(c != "public" for _, c in row.columns),
            },
        )
