"""Auto-issues: one issue per breached guard per tenant, delivered through a sink.

An incident moves opening -> open -> resolving -> resolved. Its row is an
outbox: breach() and clear() only write it; deliver() sends what is due, with
exponential backoff while the sink is down, then records what was sent (a
failed record is retried on its own: the sink is never asked twice).

A guard that clears before its open reached the sink ends ``dropped`` and the
open is never sent. A failed attempt counts as "not created" (the payload's
dedup_key lets a sink tell otherwise). If the open is in flight when the guard
clears, the resolve follows it. Records and transitions: incident_records.
"""

from __future__ import annotations

import builtins
import uuid
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from application.autopilot.incident_records import (
    FINISHED,
    OPENING,
    STATES,
    UNRESOLVED,
    Delivery,
    Incident,
    IncidentStore,
    IssueSink,
    SinkError,
    cleared,
    evidence_record,
    failed,
    rebreached,
    recorded,
    sent,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

__all__ = [
    "Delivery",
    "Incident",
    "IncidentStore",
    "Incidents",
    "IssueRecorder",
    "IssueSink",
    "SinkError",
]

log = structlog.get_logger("conductor.incidents")


class IssueRecorder(Protocol):
    """Records sent opens and resolves in the event log; returns the position."""

    def issue_opened(
        self,
        *,
        tenant: str,
        guard: str,
        external_id: str,
        evidence_links: list[str],
    ) -> int | None: ...

    def issue_resolved(
        self, *, tenant: str, guard: str, external_id: str
    ) -> int | None: ...


def _ids(incident: Incident) -> dict[str, str]:
    return {
        "incident_id": incident.id,
        "tenant": incident.tenant,
        "guard": incident.guard,
    }


class Incidents:
    """Opens, dedups, retries and resolves guard-breach issues."""

    def __init__(
        self,
        store: IncidentStore,
        sink: IssueSink,
        recorder: IssueRecorder,
        *,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
        lease_s: float = 120.0,
        batch: int = 20,
    ) -> None:
        self.store = store
        self.sink = sink
        self.recorder = recorder
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.lease_s = lease_s
        """How long a deliverer owns what it claimed (> batch x sink timeout)."""
        self.batch = batch
        """Rows claimed per deliver() call (the rest wait for the next call)."""

    def breach(
        self,
        tenant: str,
        guard: str,
        *,
        title: str,
        body: str,
        labels: Sequence[str],
        evidence: Mapping[str, Any],
        now: float,
    ) -> Incident:
        """Open an incident for the guard, or return the one already open."""
        fresh = Incident(
            id=uuid.uuid4().hex,
            tenant=tenant,
            guard=guard,
            state=OPENING,
            title=title,
            body=body,
            labels=tuple(labels),
            evidence=evidence_record(evidence),
            opened_at=now,
            next_attempt_at=now,
        )
        incident = self.store.change_current(
            tenant, guard, lambda row: fresh if row is None else rebreached(row, now)
        )
        assert incident is not None  # the change never leaves the guard without one
        log.info(
            "incident_opened" if incident.id == fresh.id else "incident_deduped",
            **_ids(incident),
            state=incident.state,
        )
        return incident

    def clear(
        self, tenant: str, guard: str, *, evidence: Mapping[str, Any], now: float
    ) -> Incident | None:
        """Mark the guard's open incident for resolution (None if none is open)."""
        record = evidence_record(evidence)
        incident = self.store.change_current(
            tenant,
            guard,
            lambda row: None if row is None else cleared(row, record, now),
        )
        if incident is not None:
            log.info("incident_cleared", **_ids(incident), state=incident.state)
        return incident

    def deliver(self, now: float) -> builtins.list[Delivery]:
        """Send the due opens and resolves (up to ``batch``, oldest due first),
        record the sent ones, back off the failed ones.

        One claim per call: its lease is counted from ``now``, so a loop of
        claims under a real clock could outlive it. Call it periodically.
        """
        token = uuid.uuid4().hex
        claimed = self.store.claim(
            now=now, lease_until=now + self.lease_s, token=token, limit=self.batch
        )
        return [self._step(incident, token, now) for incident in claimed]

    def list(
        self, tenant: str | None, state: str | None = None, *, guard: str | None = None
    ) -> builtins.list[Incident]:
        """Incidents, newest first; state is open, resolved, all or one state."""
        states: Collection[str] | None
        if state in {None, "all"}:
            states = None
        elif state == "open":
            states = UNRESOLVED
        elif state == "resolved":
            states = FINISHED
        elif state in STATES:
            states = (state,)
        else:
            msg = f"unknown incident state {state!r}"
            raise ValueError(msg)
        found = self.store.find(tenant=tenant, states=states, guard=guard)
        return builtins.list(found)

    def close(self) -> None:
        """Close the sink's and the store's own connections."""
        self.sink.close()
        self.store.close()

    def _backoff(self, attempts: int) -> float:
        return min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (attempts - 1))

    def _failed(
        self, incident: Incident, token: str, now: float, error: str
    ) -> Incident:
        row = self.store.change_leased(
            incident.id, token, lambda row: failed(row, error, now, self._backoff)
        )
        return row or incident

    def _step(self, incident: Incident, token: str, now: float) -> Delivery:
        if incident.unrecorded is not None:
            return self._record(incident, token, now)
        action = "open" if incident.external_id is None else "resolve"
        attempt = incident.attempts + 1
        try:
            if incident.external_id is None:
                external_id = self.sink.open(self._payload(incident, "open"))
            else:
                external_id = incident.external_id
                self.sink.resolve(external_id, self._payload(incident, "resolve"))
        except SinkError as error:
            row = self._failed(incident, token, now, str(error))
            log.warning(
                "issue_send_failed",
                **_ids(incident),
                action=action,
                attempt=attempt,
                error=str(error),
                next_attempt_at=row.next_attempt_at,
            )
            return Delivery(row, action, sent=False, recorded=False, error=str(error))
        log.info(
            "issue_sent",
            **_ids(incident),
            action=action,
            attempt=attempt,
            external_id=external_id,
        )
        taken = self.store.change_leased(
            incident.id, token, lambda row: sent(row, action, external_id, now)
        )
        if taken is None:  # a clear dropped the row once the lease ran out
            log.error("issue_lease_lost", **_ids(incident), external_id=external_id)
            return Delivery(incident, action, sent=True, recorded=False, error="lease")
        return self._record(taken, token, now)

    def _record(self, incident: Incident, token: str, now: float) -> Delivery:
        assert incident.external_id is not None  # only sent rows are unrecorded
        action = "open" if incident.unrecorded == "opened" else "resolve"
        try:
            if action == "open":
                position = self.recorder.issue_opened(
                    tenant=incident.tenant,
                    guard=incident.guard,
                    external_id=incident.external_id,
                    evidence_links=builtins.list(incident.evidence["links"]),
                )
            else:
                position = self.recorder.issue_resolved(
                    tenant=incident.tenant,
                    guard=incident.guard,
                    external_id=incident.external_id,
                )
        except Exception as error:  # retried on its own by a later deliver()
            failure = f"recording failed: {type(error).__name__}"
            row = self._failed(incident, token, now, failure)
            log.exception("issue_record_failed", **_ids(incident), action=action)
            return Delivery(row, action, sent=True, recorded=False, error=failure)
        done = self.store.change_leased(
            incident.id, token, lambda row: recorded(row, now)
        )
        log.info("issue_recorded", **_ids(incident), action=action, position=position)
        return Delivery(
            done or incident, action, sent=True, recorded=True, position=position
        )

    def _payload(self, incident: Incident, action: str) -> dict[str, Any]:
        evidence = incident.evidence
        if action == "resolve" and incident.resolve_evidence is not None:
            evidence = incident.resolve_evidence
        payload: dict[str, Any] = {
            "action": action,
            "title": incident.title,
            "body": incident.body,
            "labels": builtins.list(incident.labels),
            "dedup_key": incident.dedup_key,
            "tenant": incident.tenant,
            "guard": incident.guard,
            "evidence": dict(evidence),
        }
        if action == "resolve":
            payload["external_id"] = incident.external_id
        return payload
