"""/v1/log: the hash-chained event log, paged, for auditors.

The log is global. ``audit.platform`` (an operator's scope) reads all of it;
``audit.read`` reads the caller's tenant's slice (its events, the policies it
bound, the public keys), each entry with an RFC 9162 inclusion proof against
one signed checkpoint of the whole log, which the page carries: a tenant can
check its events are in the one log without seeing anyone else's.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from api.auth import requires
from api.controllers.log_slice import (
    SlicePage,
    log_tip,
    pinned,
    slice_page,
    wait_for_view,
)
from api.paging import ceiling, next_link
from api.problems import Problem
from api.requests import principal, read_model
from api.schemas.ledger import (
    CheckpointOut,
    InclusionOut,
    LogHeadOut,
    LogPage,
    entry_out,
)
from api.wiring.core import Core
from api.wiring.exports import ExportsBundle

WHOLE_LOG = "audit.platform"


class LogController(Controller):
    path = "/v1/log"
    tags = ["audit"]  # noqa: RUF012

    @get(
        "/",
        operation_id="ReadLog",
        guards=[requires("audit.read", WHOLE_LOG)],
        sync_to_thread=True,
    )
    def read_log(
        self,
        request: Request[Any, Any, Any],
        core: NamedDependency[Core],
        exports: NamedDependency[ExportsBundle],
        after: Annotated[int, QueryParameter(ge=0, le=2**63 - 1)] = 0,
        limit: Annotated[
            int, QueryParameter(ge=1, le=1000, description=ceiling(100, 1000))
        ] = 100,
        size: Annotated[int | None, QueryParameter(ge=1, le=2**62)] = None,
    ) -> Response[LogPage]:
        """Events after a position, with their chain hashes, oldest first.

        With audit.platform: every tenant's events. With audit.read: the
        caller's slice, proven against the page's checkpoint; ``size`` pins
        that checkpoint (the page then stops at its last position), so the
        pages of one export share it.
        """
        who = principal(request)
        if WHOLE_LOG in who.scopes:
            whole = _whole_log(core, after, limit)
            return Response(whole, headers=next_link(request, whole.next))
        wait_for_view(core, log_tip(core))
        headers = read_model(
            request, core.runners["tenancy"], core.settings.min_position_wait_s
        )
        try:
            checkpoint = pinned(core, size) if size is not None else None
        except LookupError as error:
            raise Problem(404, str(error)) from None
        page = slice_page(
            core, exports, who.tenant, after=after, limit=limit, checkpoint=checkpoint
        )
        out = _slice_out(core, who.tenant, page)
        return Response(out, headers={**headers, **next_link(request, out.next)})


def _whole_log(core: Core, after: int, limit: int) -> LogPage:
    """Every tenant's events after ``after``, as the log has always been read."""
    entries = core.ledger.entries(after=after, limit=limit)
    last = entries[-1].position if len(entries) == limit else None
    return LogPage(
        entries=[entry_out(e) for e in entries],
        head=_head(core),
        next_after=last,
        next=None if last is None else str(last),
    )


def _head(core: Core) -> LogHeadOut:
    head = core.ledger.head()
    return LogHeadOut(position=head.position, hash=head.hash, events=head.events)


def _slice_out(core: Core, tenant: str, page: SlicePage) -> LogPage:
    checkpoint = page.checkpoint
    return LogPage(
        entries=[
            msgspec.structs.replace(entry_out(entry), inclusion=_inclusion(proof))
            for entry, proof in zip(page.entries, page.proofs, strict=True)
        ],
        head=_head(core),
        next_after=page.next_after,
        next=None if page.next_after is None else str(page.next_after),
        tenant=tenant,
        checkpoint=None
        if checkpoint is None
        else CheckpointOut(
            size=checkpoint.size,
            root_hash=checkpoint.root,
            last_position=checkpoint.last_position,
            envelope=checkpoint.envelope,
        ),
    )


def _inclusion(proof: dict[str, Any]) -> InclusionOut:
    return InclusionOut(
        leaf_index=proof["leafIndex"], tree_size=proof["treeSize"], proof=proof["proof"]
    )
