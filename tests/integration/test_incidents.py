"""Auto-issues against real databases and a real webhook server."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pytest
import structlog
from litestar import Litestar
from litestar.di import Provide
from litestar.testing import TestClient
from structlog.testing import capture_logs

from adapters.autopilot.incident_store import incident_store
from adapters.autopilot.webhook import WebhookSink
from adapters.ledger.store import Ledger, open_ledger
from api.auth import jwt_auth
from api.controllers.incidents import IncidentController
from api.problems import problem_plugin
from api.wiring.autopilot import AutopilotBundle
from application.autopilot.incidents import Incidents, SinkError
from tests.conftest import SECRET, bearer
from tests.integration.sink import SinkServer

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration
SECRET_BODY = "spend 1234.56 of 1000 for tenant acme"
LINKS = [f"log:41:sha256:{'ab' * 32}", f"log:42:sha256:{'cd' * 32}"]
EVIDENCE = {"spend": "1234.56", "budget": "1000", "ratio": 1.23, "links": LINKS}


class Recorder:
    """An IssueRecorder that remembers its calls; can be told to fail once."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_next = False

    def _record(self, kind: str, fields: dict[str, Any]) -> int:
        if self.fail_next:
            self.fail_next = False
            msg = "log unavailable"
            raise RuntimeError(msg)
        self.calls.append((kind, fields))
        return len(self.calls)

    def issue_opened(
        self,
        *,
        tenant: str,
        guard: str,
        external_id: str,
        evidence_links: list[str],
    ) -> int:
        return self._record(
            "opened",
            {"tenant": tenant, "guard": guard, "external_id": external_id,
             "evidence_links": evidence_links},
        )  # fmt: skip

    def issue_resolved(self, *, tenant: str, guard: str, external_id: str) -> int:
        return self._record(
            "resolved", {"tenant": tenant, "guard": guard, "external_id": external_id}
        )


@pytest.fixture
def sink() -> Iterator[SinkServer]:
    server = SinkServer().start()
    yield server
    server.stop()


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    opened = open_ledger(database_url, pool_size=2)
    yield opened
    opened.close()


def incidents(
    ledger: Ledger, sink: SinkServer, recorder: Recorder, batch: int = 20
) -> Incidents:
    return Incidents(
        incident_store(ledger),
        WebhookSink(sink.url, timeout_s=2),
        recorder,
        backoff_base_s=1.0,
        backoff_max_s=8.0,
        batch=batch,
    )


def breach(app: Incidents, now: float, guard: str = "cost.page") -> Any:
    return app.breach(
        "acme", guard, title="Cost page: acme", body=SECRET_BODY,
        labels=["conductor", "cost"], evidence=EVIDENCE, now=now,
    )  # fmt: skip


def test_breaching_twice_opens_one_issue(ledger: Ledger, sink: SinkServer) -> None:
    """A second breach of an open guard returns the same incident; one POST."""
    recorder = Recorder()
    app = incidents(ledger, sink, recorder)
    first = breach(app, 100.0)
    assert breach(app, 101.0).id == first.id
    [delivery] = app.deliver(102.0)
    assert breach(app, 103.0).id == first.id
    assert app.deliver(104.0) == []
    assert (delivery.sent, delivery.recorded, delivery.position) == (True, True, 1)
    [body] = sink.accepted("open")
    assert sink.received() == 1
    assert body["dedup_key"] == "conductor/acme/cost.page"
    assert body["labels"] == ["conductor", "cost"]
    assert body["evidence"] == {
        "links": LINKS,
        "metrics": {"spend": "1234.56", "budget": "1000", "ratio": 1.23},
    }
    assert recorder.calls == [
        ("opened", {"tenant": "acme", "guard": "cost.page", "external_id": "ISSUE-1",
                    "evidence_links": LINKS}),
    ]  # fmt: skip
    [row] = app.list("acme", "open")
    assert (row.state, row.external_id) == ("open", "ISSUE-1")


def test_retries_with_backoff_until_the_sink_is_back(
    ledger: Ledger, sink: SinkServer
) -> None:
    """503s and a dead server are retried at base * 2**(n-1) (capped); one open."""
    recorder = Recorder()
    app = incidents(ledger, sink, recorder)
    sink.status = 503
    breach(app, 0.0)
    [failed] = app.deliver(0.0)
    assert not failed.sent
    assert failed.error == "webhook answered 503"
    assert (failed.incident.attempts, failed.incident.next_attempt_at) == (1, 1.0)
    assert app.deliver(0.9) == []  # not due yet
    assert app.deliver(1.0)[0].incident.next_attempt_at == 3.0
    assert app.deliver(3.0)[0].incident.next_attempt_at == 7.0
    sink.stop()
    [down] = app.deliver(7.0)
    assert down.error is not None
    assert down.error.startswith("webhook unreachable")
    assert (down.incident.attempts, down.incident.next_attempt_at) == (4, 15.0)
    assert app.deliver(14.0) == []
    sink.status = 201
    sink.start()
    [done] = app.deliver(15.0)
    assert (done.sent, done.recorded) == (True, True)
    assert done.incident.attempts == 0
    assert done.incident.last_error is None
    assert len(sink.accepted("open")) == 1
    assert [c[0] for c in recorder.calls] == ["opened"]
    assert app.deliver(500.0) == []


def test_cap_limits_the_backoff(ledger: Ledger, sink: SinkServer) -> None:
    """Delays stop growing at backoff_max_s."""
    app = incidents(ledger, sink, Recorder())
    sink.status = 500
    breach(app, 0.0)
    now, delays = 0.0, []
    for _ in range(6):
        [step] = app.deliver(now)
        assert step.incident.next_attempt_at is not None
        delays.append(step.incident.next_attempt_at - now)
        now = step.incident.next_attempt_at
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_no_duplicate_after_a_restart(
    database_url: str, ledger: Ledger, sink: SinkServer
) -> None:
    """New store objects over the same database still see the open incident."""
    app = incidents(ledger, sink, Recorder())
    pending = breach(app, 0.0)
    restarted = open_ledger(database_url, pool_size=2)
    try:
        again = incidents(restarted, sink, Recorder())
        assert breach(again, 1.0).id == pending.id  # not yet delivered
        assert len(again.deliver(2.0)) == 1
        assert breach(app, 3.0).id == pending.id  # delivered
        assert app.deliver(4.0) == []
        assert again.deliver(5.0) == []
    finally:
        restarted.close()
    assert len(sink.accepted("open")) == 1
    assert len(app.list("acme", "all")) == 1


def test_clear_sends_one_resolve_with_the_external_id(
    ledger: Ledger, sink: SinkServer
) -> None:
    """A cleared guard resolves its issue once; the next breach opens a new one."""
    recorder = Recorder()
    app = incidents(ledger, sink, recorder)
    first = breach(app, 0.0)
    app.deliver(0.0)
    cleared = {"metrics": {"spend": "900"}}
    assert app.clear("acme", "cost.page", evidence=cleared, now=10.0) is not None
    assert app.clear("acme", "cost.page", evidence=cleared, now=10.5) is not None
    [resolve] = app.deliver(11.0)
    assert resolve.action == "resolve"
    assert resolve.recorded
    assert app.deliver(12.0) == []
    [body] = sink.accepted("resolve")
    assert body["external_id"] == "ISSUE-1"
    assert body["evidence"] == {"links": [], "metrics": {"spend": "900"}}
    assert recorder.calls[-1] == (
        "resolved", {"tenant": "acme", "guard": "cost.page", "external_id": "ISSUE-1"}
    )  # fmt: skip
    assert app.clear("acme", "cost.page", evidence=cleared, now=13.0) is None
    [row] = app.list("acme", "resolved")
    assert (row.id, row.state, row.resolved_at) == (first.id, "resolved", 11.0)
    second = breach(app, 20.0)
    assert second.id != first.id
    app.deliver(20.0)
    assert [b["external_id"] for b in sink.accepted("resolve")] == ["ISSUE-1"]
    assert len(sink.accepted("open")) == 2


def test_clear_before_delivery_drops_the_open(ledger: Ledger, sink: SinkServer) -> None:
    """A guard that clears before its open was sent leaves nothing at the sink."""
    recorder = Recorder()
    app = incidents(ledger, sink, recorder)
    sink.status = 503
    breach(app, 0.0)
    app.deliver(0.0)  # one failed attempt: not created
    dropped = app.clear("acme", "cost.page", evidence=EVIDENCE, now=0.5)
    assert dropped is not None
    assert dropped.state == "dropped"
    sink.status = 201
    assert app.deliver(100.0) == []
    assert sink.accepted("open") == []
    assert recorder.calls == []
    assert [i.state for i in app.list("acme", "resolved")] == ["dropped"]


def test_clear_while_the_open_is_in_flight_resolves_after_it(
    ledger: Ledger, sink: SinkServer
) -> None:
    """The open lands, then the resolve follows: no issue left dangling."""
    recorder = Recorder()
    app = incidents(ledger, sink, recorder)
    breach(app, 0.0)
    sink.gate = threading.Event()
    deliverer = threading.Thread(target=app.deliver, args=(1.0,))
    deliverer.start()
    assert sink.arrived.wait(10)
    row = app.clear("acme", "cost.page", evidence=EVIDENCE, now=1.5)
    assert row is not None
    assert row.state == "resolving"
    sink.gate.set()
    deliverer.join(10)
    [resolve] = app.deliver(2.0)
    assert resolve.action == "resolve"
    assert resolve.incident.state == "resolved"
    assert [b["external_id"] for b in sink.accepted("resolve")] == ["ISSUE-1"]
    assert [c[0] for c in recorder.calls] == ["opened", "resolved"]


def test_a_breach_cancels_a_pending_resolve(ledger: Ledger, sink: SinkServer) -> None:
    """Flapping (clear, breach before delivery) keeps the one issue open."""
    app = incidents(ledger, sink, Recorder())
    first = breach(app, 0.0)
    app.deliver(0.0)
    app.clear("acme", "cost.page", evidence=EVIDENCE, now=1.0)
    again = breach(app, 2.0)
    assert (again.id, again.state) == (first.id, "open")
    assert app.deliver(3.0) == []
    assert sink.accepted("resolve") == []


def test_two_concurrent_deliverers_send_each_open_once(
    database_url: str, ledger: Ledger, sink: SinkServer
) -> None:
    """Claims lease rows: deliverers on separate connections never share one."""
    guards = [f"guard-{i}" for i in range(6)]
    app = incidents(ledger, sink, Recorder())
    for guard in guards:
        breach(app, 0.0, guard)
    sink.delay_s = 0.05
    other = open_ledger(database_url, pool_size=2)
    apps = [incidents(db, sink, Recorder(), batch=2) for db in (ledger, other)]
    start = threading.Barrier(2)
    done: list[int] = []

    def deliver(each: Incidents) -> None:
        start.wait()
        while sent := each.deliver(1.0):  # two rows a claim, until none is due
            done.append(len(sent))

    try:
        threads = [threading.Thread(target=deliver, args=(a,)) for a in apps]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        other.close()
    assert sum(done) == len(guards)
    assert len(done) >= 3
    assert sorted(b["guard"] for b in sink.accepted("open")) == guards
    assert sink.received() == len(guards)


def test_concurrent_breaches_from_two_connections_make_one_incident(
    database_url: str, ledger: Ledger, sink: SinkServer
) -> None:
    """The partial unique index settles an insert race: both get the same row."""
    other = open_ledger(database_url, pool_size=2)
    apps = [incidents(db, sink, Recorder()) for db in (ledger, other)]
    start = threading.Barrier(2)
    ids: list[str] = []

    def race(each: Incidents) -> None:
        start.wait()
        ids.append(breach(each, 0.0).id)

    try:
        threads = [threading.Thread(target=race, args=(a,)) for a in apps]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        other.close()
    assert len(ids) == 2
    assert ids[0] == ids[1]
    assert len(apps[0].list("acme", "all")) == 1


def test_a_failed_record_is_retried_without_resending(
    ledger: Ledger, sink: SinkServer
) -> None:
    """When the log refuses, only the record is retried; the sink has it."""
    recorder = Recorder()
    recorder.fail_next = True
    app = incidents(ledger, sink, recorder)
    breach(app, 0.0)
    [first] = app.deliver(0.0)
    assert first.sent
    assert not first.recorded
    assert first.incident.state == "open"
    [second] = app.deliver(first.incident.next_attempt_at or 0.0)
    assert second.recorded
    assert len(sink.accepted("open")) == 1
    assert [c[0] for c in recorder.calls] == ["opened"]


def test_logs_name_ids_never_bodies(
    ledger: Ledger, sink: SinkServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Log lines carry ids, guard, tenant, attempt and status, not the payload."""
    # An earlier app's configure_logging caches the module's logger on first
    # use; a fresh one binds inside capture_logs.
    monkeypatch.setattr(
        "application.autopilot.incidents.log",
        structlog.get_logger("conductor.incidents"),
    )
    app = incidents(ledger, sink, Recorder())
    sink.status = 503
    with capture_logs() as logs:
        breach(app, 0.0)
        app.deliver(0.0)
    text = repr(logs)
    assert "issue_send_failed" in text
    assert "503" in text
    assert SECRET_BODY not in text
    assert "1234.56" not in text


def test_webhook_takes_the_trackers_id_or_the_dedup_key(sink: SinkServer) -> None:
    """id, number or url from the reply; otherwise the dedup_key. Errors are terse."""
    hook = WebhookSink(sink.url)
    payload = {"action": "open", "dedup_key": "conductor/acme/g", "body": SECRET_BODY}
    sink.reply = {"number": 42, "url": "https://tracker/42"}
    assert hook.open(payload) == "42"
    sink.reply = {"html_url": "x"}
    assert hook.open(payload) == "conductor/acme/g"
    sink.status = 502
    with pytest.raises(SinkError) as refused:
        hook.resolve("42", payload)
    assert str(refused.value) == "webhook answered 502"
    assert sink.requests[-1][1]["external_id"] == "42"
    hook.close()


def test_api_lists_the_callers_incidents(ledger: Ledger, sink: SinkServer) -> None:
    """GET /v1/incidents: own tenant only, filtered by state, scope-guarded."""
    app = incidents(ledger, sink, Recorder())
    breach(app, 1_700_000_000.0)
    app.breach(
        "other", "cost.page", title="t", body="b", labels=[], evidence=EVIDENCE,
        now=1_700_000_001.0,
    )  # fmt: skip
    app.deliver(1_700_000_002.0)
    bundle = object.__new__(AutopilotBundle)  # the controller reads its incidents
    bundle.incidents = app
    api = Litestar(
        route_handlers=[IncidentController],
        dependencies={"autopilot": Provide(lambda: bundle, sync_to_thread=False)},
        on_app_init=[jwt_auth(SECRET).on_app_init],
        plugins=[problem_plugin()],
    )
    with TestClient(api) as client:
        got = client.get("/v1/incidents", headers=bearer("acme", "audit.read"))
        assert got.status_code == 200, got.text
        [item] = got.json()["items"]
        assert item["guard"] == "cost.page"
        assert item["externalId"] in {"ISSUE-1", "ISSUE-2"}
        assert item["state"] == "open"
        assert item["openedAt"].startswith("2023-11-14T22:13:20")
        assert item["evidence"]["links"] == LINKS
        admin = bearer("acme", "budget.admin")
        assert client.get("/v1/incidents?state=open", headers=admin).json()["items"]
        gone = client.get("/v1/incidents?state=resolved", headers=admin).json()
        assert gone["items"] == []
        other_guard = client.get("/v1/incidents?guard=slo.page", headers=admin)
        assert other_guard.json()["items"] == []
        bad = client.get("/v1/incidents?state=bogus", headers=admin)
        assert bad.status_code == 400
        denied = client.get("/v1/incidents", headers=bearer("acme", "catalog.read"))
        assert denied.status_code == 403
        assert client.get("/v1/incidents").status_code == 401
