"""/v1/incidents: the auto-issues opened for the caller's tenant."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from api.auth import requires
from api.paging import (
    After,
    bad_cursor,
    ceiling,
    decode_key,
    encode_key,
    next_link,
)
from api.requests import principal
from api.schemas.base import Out
from api.wiring.autopilot import AutopilotBundle
from application.autopilot.incidents import Incident


class IncidentOut(Out, frozen=True):
    id: str
    guard: str
    state: str
    """opening, open, resolving, resolved or dropped (cleared before sent)."""
    title: str
    body: str
    labels: list[str]
    evidence: dict[str, Any]
    external_id: str | None
    """The sink's id for the issue, once it was opened there."""
    attempts: int
    """Failed deliveries of the pending open or resolve."""
    next_attempt_at: datetime | None
    last_error: str | None
    opened_at: datetime
    resolved_at: datetime | None


class IncidentList(Out, frozen=True):
    items: list[IncidentOut]
    next: str | None
    """Opaque cursor for the next page (pass as ?after=); null at the end."""


Limit = Annotated[int, QueryParameter(ge=1, le=200, description=ceiling(50, 200))]


def _moment(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def incident_out(incident: Incident) -> IncidentOut:
    return IncidentOut(
        id=incident.id,
        guard=incident.guard,
        state=incident.state,
        title=incident.title,
        body=incident.body,
        labels=list(incident.labels),
        evidence=dict(incident.evidence),
        external_id=incident.external_id,
        attempts=incident.attempts,
        next_attempt_at=_moment(incident.next_attempt_at),
        last_error=incident.last_error,
        opened_at=datetime.fromtimestamp(incident.opened_at, UTC),
        resolved_at=_moment(incident.resolved_at),
    )


class IncidentController(Controller):
    path = "/v1/incidents"
    tags = ["incidents"]  # noqa: RUF012

    @get(
        "/",
        operation_id="ListIncidents",
        guards=[requires("budget.admin", "audit.read")],
        sync_to_thread=True,
    )
    def list_incidents(
        self,
        request: Request[Any, Any, Any],
        autopilot: NamedDependency[AutopilotBundle],
        wanted: Annotated[
            Literal["open", "resolved", "all"], QueryParameter(name="state")
        ] = "all",
        guard: Annotated[str | None, QueryParameter(max_length=128)] = None,
        after: After = None,
        limit: Limit = 50,
    ) -> Response[IncidentList]:
        """The tenant's incidents, newest first (open: not yet resolved)."""
        found = autopilot.incidents.list(principal(request).tenant, wanted, guard=guard)
        if after:  # the page starts after the incident the cursor names
            last = decode_key(after, listing="incident list")
            ids = [i.id for i in found]
            if last not in ids:  # not handed out here (or another tenant's)
                raise bad_cursor("incident list")
            found = found[ids.index(last) + 1 :]
        page = found[:limit]
        cursor = encode_key(page[-1].id) if len(found) > limit else None
        body = IncidentList(items=[incident_out(i) for i in page], next=cursor)
        return Response(body, headers=next_link(request, cursor))
