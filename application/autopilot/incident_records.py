"""Incident records, their (pure) transitions, and the outbox and sink ports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

OPENING, OPEN, RESOLVING, RESOLVED, DROPPED = (
    "opening",
    "open",
    "resolving",
    "resolved",
    "dropped",
)
UNRESOLVED = (OPENING, OPEN, RESOLVING)
"""At most one incident per (tenant, guard) is in one of these states."""
FINISHED = (RESOLVED, DROPPED)
STATES = (*UNRESOLVED, *FINISHED)


class SinkError(Exception):
    """The issue sink refused or could not be reached (no payload in the text)."""


def evidence_record(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """``{"links": [...], "metrics": {...}}`` from a guard's evidence.

    Links are kept as given (e.g. ``"log:42:sha256:<hex>"``: an event's position
    and chain hash); metrics are ``evidence["metrics"]``, else every other key.
    """
    links = [str(x) for x in evidence.get("links", ())]
    metrics = evidence.get("metrics")
    if not isinstance(metrics, Mapping):
        metrics = {k: v for k, v in evidence.items() if k != "links"}
    return {"links": links, "metrics": dict(metrics)}


@dataclass(frozen=True, slots=True)
class Incident:
    """One guard breach and the state of its issue at the sink."""

    id: str
    tenant: str
    guard: str
    state: str
    title: str
    body: str
    labels: tuple[str, ...]
    evidence: Mapping[str, Any]
    """``{links, metrics}`` at the breach (see evidence_record)."""
    opened_at: float
    external_id: str | None = None
    attempts: int = 0
    next_attempt_at: float | None = None
    """When deliver() owes this row work (None: nothing to do)."""
    last_error: str | None = None
    resolved_at: float | None = None
    resolve_evidence: Mapping[str, Any] | None = None
    unrecorded: str | None = None
    """'opened' or 'resolved' once sent but not yet recorded in the log."""
    lease_until: float | None = None
    lease_token: str | None = None

    @property
    def dedup_key(self) -> str:
        return f"conductor/{self.tenant}/{self.guard}"

    def leased(self, now: float) -> bool:
        return self.lease_until is not None and self.lease_until > now


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one deliver() step did for one incident."""

    incident: Incident
    """The row after the step."""
    action: str
    """'open' or 'resolve'."""
    sent: bool
    recorded: bool
    error: str | None = None
    position: int | None = None


class IssueSink(Protocol):
    """Where issues are opened and resolved (a webhook, a tracker)."""

    def open(self, payload: Mapping[str, Any]) -> str:
        """Open an issue; return its external id. Raises SinkError."""

    def resolve(self, external_id: str, payload: Mapping[str, Any]) -> None:
        """Resolve an issue. Raises SinkError."""

    def close(self) -> None:
        """Release connections."""


class IncidentStore(Protocol):
    """The incident outbox. Every change runs under a row (or database) lock."""

    def change_current(
        self,
        tenant: str,
        guard: str,
        change: Callable[[Incident | None], Incident | None],
    ) -> Incident | None:
        """Write what change() makes of the unresolved incident (None: none
        exists); return the written row, or the current one if it returned None."""

    def claim(
        self, *, now: float, lease_until: float, token: str, limit: int
    ) -> Sequence[Incident]:
        """Lease up to ``limit`` rows due at ``now`` that no live lease holds."""

    def change_leased(
        self, incident_id: str, token: str, change: Callable[[Incident], Incident]
    ) -> Incident | None:
        """Write change(row) if ``token`` still holds the row's lease, else None."""

    def find(
        self,
        *,
        tenant: str | None = None,
        states: Collection[str] | None = None,
        guard: str | None = None,
    ) -> Sequence[Incident]:
        """Incidents, newest first."""

    def close(self) -> None:
        """Release connections of its own (the event log's are not its to close)."""


# Transitions: pure functions of a row, run by the store under its lock.


def released(row: Incident, **changes: Any) -> Incident:
    """The row with its lease given back."""
    return replace(row, lease_until=None, lease_token=None, **changes)


def rebreached(row: Incident, now: float) -> Incident | None:
    """A breach while the guard's incident is unresolved: None keeps it as is.

    A resolve that is still waiting is cancelled (the issue stays open); one in
    flight lands, and the next breach opens a new incident.
    """
    if row.state != RESOLVING:
        return None
    if row.external_id is None:  # the open is still owed, or in flight
        return replace(row, state=OPENING, resolve_evidence=None)
    if row.leased(now) and row.unrecorded is None:
        return None  # the resolve is in flight
    due = now if row.unrecorded else None
    return replace(row, state=OPEN, resolve_evidence=None, next_attempt_at=due)


def cleared(row: Incident, evidence: Mapping[str, Any], now: float) -> Incident | None:
    """The guard cleared: drop a never-sent open, else owe a resolve."""
    if row.state == RESOLVING:
        return None
    if row.state == OPENING and not row.leased(now):
        return released(
            row,
            state=DROPPED,
            resolved_at=now,
            resolve_evidence=evidence,
            next_attempt_at=None,
        )
    return replace(
        row,
        state=RESOLVING,
        resolve_evidence=evidence,
        attempts=0,
        last_error=None,
        next_attempt_at=now,
    )


def sent(row: Incident, action: str, external_id: str, now: float) -> Incident:
    """The sink took an open or a resolve; the lease is kept for recording it."""
    if action == "open":
        # Still OPENING, or RESOLVING when the guard cleared meanwhile.
        return replace(
            row,
            external_id=external_id,
            state=OPEN if row.state == OPENING else row.state,
            attempts=0,
            last_error=None,
            unrecorded="opened",
        )
    return replace(
        row,
        state=RESOLVED,
        resolved_at=now,
        attempts=0,
        last_error=None,
        unrecorded="resolved",
    )


def failed(
    row: Incident, error: str, now: float, backoff: Callable[[int], float]
) -> Incident:
    """A send or a record failed: try again after backoff(attempts)."""
    attempts = row.attempts + 1
    if row.state == RESOLVING and row.external_id is None:
        # Cleared while this open was in flight, and the open failed.
        return released(
            row,
            state=DROPPED,
            resolved_at=now,
            attempts=attempts,
            last_error=error,
            next_attempt_at=None,
        )
    return released(
        row,
        attempts=attempts,
        last_error=error,
        next_attempt_at=now + backoff(attempts),
    )


def recorded(row: Incident, now: float) -> Incident:
    """The log has the send; a resolve owed meanwhile is due now."""
    return released(
        row,
        unrecorded=None,
        attempts=0,
        last_error=None,
        next_attempt_at=now if row.state in {OPENING, RESOLVING} else None,
    )
