"""/v1/log: the hash-chained event log, paged, for auditors."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from api.auth import requires
from api.controllers.datasets import entry_out
from api.schemas import LogHeadOut, LogPage
from api.services import Services


class LogController(Controller):
    path = "/v1/log"
    tags = ["audit"]  # noqa: RUF012

    @get(
        "/",
        operation_id="ReadLog",
        guards=[requires("audit.read")],
        sync_to_thread=True,
    )
    def read_log(
        self,
        request: Request[Any, Any, Any],
        services: NamedDependency[Services],
        after: Annotated[int, QueryParameter(ge=0, le=2**63 - 1)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> LogPage:
        """Events after a position, with their chain hashes, oldest first.

        The log is global: every tenant's events are in it, which is why this
        needs the audit.read scope.
        """
        del request
        entries = services.ledger.entries(after=after, limit=limit)
        head = services.ledger.head()
        return LogPage(
            entries=[entry_out(e) for e in entries],
            head=LogHeadOut(position=head.position, hash=head.hash, events=head.events),
            next_after=entries[-1].position if len(entries) == limit else None,
        )
