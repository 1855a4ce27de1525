"""/v1/incidents: the auto-issues opened for the caller's tenant."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from api.auth import requires
from api.requests import principal
from api.schemas.base import Out
from application.autopilot.incidents import Incident, Incidents


@runtime_checkable  # litestar checks a dependency with isinstance()
class IncidentServices(Protocol):
    """What this controller needs of the wired services."""

    incidents: Incidents


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
        services: NamedDependency[IncidentServices],
        wanted: Annotated[
            Literal["open", "resolved", "all"], QueryParameter(name="state")
        ] = "all",
        guard: Annotated[str | None, QueryParameter(max_length=128)] = None,
    ) -> IncidentList:
        """The tenant's incidents, newest first (open: not yet resolved)."""
        found = services.incidents.list(principal(request).tenant, wanted, guard=guard)
        return IncidentList(items=[incident_out(i) for i in found])
