"""The incident transitions the store runs under its lock (pure functions)."""

from __future__ import annotations

from dataclasses import replace

from application.autopilot.incident_records import (
    DROPPED,
    OPEN,
    OPENING,
    RESOLVED,
    RESOLVING,
    Incident,
    cleared,
    evidence_record,
    failed,
    rebreached,
    recorded,
    sent,
)

ROW = Incident(
    id="i1",
    tenant="acme",
    guard="cost-burn",
    state=OPENING,
    title="t",
    body="b",
    labels=("conductor",),
    evidence={"links": [], "metrics": {}},
    opened_at=0.0,
    next_attempt_at=0.0,
)
LEASED = replace(ROW, lease_until=100.0, lease_token="tok")


def double(attempts: int) -> float:
    return 2.0 ** (attempts - 1)


def test_evidence_record_splits_links_from_metrics() -> None:
    """Flat evidence becomes {links, metrics}; an explicit metrics key is kept."""
    flat = {"links": ["log:1:sha256:aa"], "cost": {"burn": 2.0}}
    assert evidence_record(flat) == {
        "links": ["log:1:sha256:aa"],
        "metrics": {"cost": {"burn": 2.0}},
    }
    assert evidence_record({"metrics": {"x": 1}, "other": 2}) == {
        "links": [],
        "metrics": {"x": 1},
    }


def test_clearing_an_unsent_open_drops_it() -> None:
    """No lease on an opening row: nothing was sent, nothing will be."""
    row = cleared(ROW, {"links": [], "metrics": {}}, now=5.0)
    assert row is not None
    assert (row.state, row.next_attempt_at, row.resolved_at) == (DROPPED, None, 5.0)


def test_clearing_an_open_in_flight_owes_a_resolve() -> None:
    """The open may land: the row waits for it, then resolves."""
    row = cleared(LEASED, {"links": [], "metrics": {}}, now=5.0)
    assert row is not None
    assert (row.state, row.lease_token) == (RESOLVING, "tok")
    landed = sent(row, "open", "ISSUE-9", now=6.0)
    assert (landed.state, landed.external_id, landed.unrecorded) == (
        RESOLVING,
        "ISSUE-9",
        "opened",
    )
    assert recorded(landed, now=7.0).next_attempt_at == 7.0


def test_an_in_flight_open_that_fails_after_a_clear_is_dropped() -> None:
    """Cleared and never created: nothing to resolve."""
    row = cleared(LEASED, {"links": [], "metrics": {}}, now=5.0)
    assert row is not None
    assert failed(row, "webhook answered 503", 6.0, double).state == DROPPED


def test_failures_back_off_and_release_the_lease() -> None:
    """attempts counts up; the next try is backoff(attempts) away."""
    once = failed(LEASED, "webhook answered 503", 10.0, double)
    twice = failed(replace(once, lease_token="t2"), "down", 11.0, double)
    assert (once.attempts, once.next_attempt_at, once.lease_token) == (1, 11.0, None)
    assert (twice.attempts, twice.next_attempt_at) == (2, 13.0)


def test_a_breach_cancels_a_waiting_resolve_but_not_one_in_flight() -> None:
    """Flapping keeps the issue open; a resolve already sent lands."""
    waiting = replace(ROW, state=RESOLVING, external_id="ISSUE-1", next_attempt_at=3)
    reopened = rebreached(waiting, now=4.0)
    assert reopened is not None
    assert (reopened.state, reopened.next_attempt_at) == (OPEN, None)
    in_flight = replace(waiting, lease_until=100.0, lease_token="tok")
    assert rebreached(in_flight, now=4.0) is None
    assert rebreached(replace(ROW, state=OPEN), now=4.0) is None


def test_a_sent_resolve_finishes_the_incident() -> None:
    """resolved at the send; recorded after."""
    row = sent(replace(LEASED, state=RESOLVING, external_id="X"), "resolve", "X", 8.0)
    assert (row.state, row.resolved_at, row.unrecorded) == (RESOLVED, 8.0, "resolved")
    done = recorded(row, now=9.0)
    assert (done.unrecorded, done.next_attempt_at, done.lease_token) == (
        None,
        None,
        None,
    )
