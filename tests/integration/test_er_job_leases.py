"""Embedding jobs hold a lease while they run: one run per job across every
process, and a run that dies (kill -9, a crash) is resumed once its lease
expires, on real SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import httpx
import pytest

from adapters.er.files import CsvRecordFiles
from adapters.er.store import SqlVectorStore
from adapters.ledger.store import open_ledger
from api.bootstrap import build_conductor
from application.er.assist import LEASE_LOST, LEASED_ELSEWHERE, LOST_RUNS, ErAssist
from tests.conftest import bearer
from tests.integration.server import Server, cli

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from api.bootstrap import Conductor
    from api.settings import Settings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
"""The hand clock's start: in the past, so real-time runs find its leases expired."""
LEASE_S = 30.0


class Clock:
    """A hand-driven clock for the leases (the store compares stamps only)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def write_people(settings: Settings, rows: int) -> None:
    folder = settings.data_root_path / "acme"
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["rec_id,given_name,surname,postcode"]
    lines += [f"p{n},name{n % 7},family{n % 11},{2600 + n % 5}" for n in range(rows)]
    (folder / "people.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def processes(settings: Settings) -> Iterator[tuple[Conductor, Conductor]]:
    """Two sets of services on one database, as two processes would have."""
    first = build_conductor(settings)
    second = build_conductor(settings)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def assist(services: Conductor, clock: Clock, *, chunk: int = 50) -> ErAssist:
    """The process's ER application with a hand clock and small chunks."""
    assert services.er is not None
    app = services.er.app
    fields = app.ports.embedder.fields  # type: ignore[attr-defined]
    return ErAssist(
        services.core.ledger,
        ports=dataclasses.replace(app.ports, files=CsvRecordFiles(fields, chunk=chunk)),
        policy=dataclasses.replace(app.policy, clock=clock, lease_s=LEASE_S),
    )


def request(app: ErAssist) -> UUID:
    job, _ = app.request_job(
        tenant="acme",
        entity_set="crm",
        location="people.csv",
        id_column="rec_id",
        force=True,
        requester="test",
    )
    return job.id


def topics(app: ErAssist, job_id: UUID) -> list[str]:
    """The job's events in the log, by class name."""
    return [e.topic.rsplit(".", 1)[-1] for e in app.event_log.entries_for(job_id)]


class CrashError(Exception):
    """Stands for the process dying in the middle of a run."""


def crash_after_first_chunk(done: int, _total: int) -> None:
    if done:
        raise CrashError


# -- the store's lease ----------------------------------------------------------


def test_a_lease_is_held_by_one_owner_until_it_expires(database_url: str) -> None:
    ledger = open_ledger(database_url, pool_size=2)
    store = SqlVectorStore(ledger)
    try:
        job = uuid4()
        store.enqueue(job, "acme", T0)
        until = T0 + timedelta(seconds=LEASE_S)
        assert store.claim(job, "a", T0, until)
        assert not store.claim(job, "b", T0 + timedelta(seconds=29), until)
        assert store.renew(job, "a", until + timedelta(seconds=LEASE_S))
        assert not store.renew(job, "b", until)
        # Expired (a stopped renewing): b takes it over, and a learns it lost.
        later = until + timedelta(seconds=LEASE_S)
        assert store.claim(job, "b", later, later + timedelta(seconds=LEASE_S))
        assert not store.renew(job, "a", later + timedelta(seconds=1))
        assert store.due(later) == [job]
        store.dequeue(job)
        assert store.due(later) == []
        # Dequeued: the lease went with the queue row.
        assert store.claim(job, "c", T0, until)
    finally:
        store.close()
        ledger.close()


# -- runs through the application -----------------------------------------------


def test_a_lost_run_is_resumed_once_its_lease_expires(
    settings: Settings, processes: tuple[Conductor, Conductor]
) -> None:
    """The first process dies mid-job: the job stays running under its lease;
    a second process leaves it alone until the lease expires, then resumes it,
    embeds the whole file and completes it, with the Resumed event in the log."""
    write_people(settings, 120)
    clock = Clock()
    first, second = (assist(s, clock) for s in processes)
    job_id = request(first)
    with pytest.raises(CrashError):
        first.run_job(job_id, crash_after_first_chunk)
    assert first.get_job(tenant="acme", job_id=job_id).status == "running"
    assert first.due_jobs(clock()) == [job_id]  # still queued: nothing is lost

    clock.advance(LEASE_S - 1)
    assert second.run_job(job_id, lambda *_: None) == LEASED_ELSEWHERE
    assert topics(second, job_id) == ["Requested", "Started"]

    clock.advance(2)
    assert second.run_job(job_id, lambda *_: None) == "completed"
    job = second.get_job(tenant="acme", job_id=job_id)
    assert (job.status, job.attempt, job.embedded) == ("completed", 2, 120)
    assert topics(second, job_id) == ["Requested", "Started", "Resumed", "Completed"]
    assert second.ports.store.count("acme", "crm") == 120
    assert second.due_jobs(clock() + timedelta(days=1)) == []
    # The vectors answer candidates, as after an uninterrupted run.
    near = second.candidates(tenant="acme", entity_set="crm", record_id="p7", k=3)
    assert len(near) == 3


def test_a_job_whose_runs_are_always_lost_fails_after_max_attempts(
    settings: Settings, processes: tuple[Conductor, Conductor]
) -> None:
    """A run that always dies is not resumed for ever: after max_attempts
    (3) lost runs the next claimer records Failed{lost-runs} and dequeues."""
    write_people(settings, 120)
    clock = Clock()
    app = assist(processes[0], clock)
    job_id = request(app)
    for attempt in (1, 2, 3):
        with pytest.raises(CrashError):
            app.run_job(job_id, crash_after_first_chunk)
        assert app.get_job(tenant="acme", job_id=job_id).attempt == attempt
        clock.advance(LEASE_S + 1)
    assert app.run_job(job_id, lambda *_: None) == "failed"
    job = app.get_job(tenant="acme", job_id=job_id)
    assert (job.status, job.failure, job.attempt) == ("failed", LOST_RUNS, 3)
    assert topics(app, job_id)[-1] == "Failed"
    assert app.due_jobs(clock() + timedelta(days=1)) == []


def test_two_processes_starting_one_job_run_it_once(
    settings: Settings, processes: tuple[Conductor, Conductor]
) -> None:
    write_people(settings, 300)
    clock = Clock()
    apps = [assist(s, clock) for s in processes]
    job_id = request(apps[0])
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def slowly(_done: int, _total: int) -> None:
        time.sleep(0.05)  # 6 chunks: the winner holds the lease a while

    def run(app: ErAssist) -> None:
        start.wait(10)
        outcomes.append(app.run_job(job_id, slowly))

    threads = [threading.Thread(target=run, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Ran once: one Started. (A loser scheduled only after the winner's end
    # would find the job completed, not leased: both answers are fine.)
    assert topics(apps[1], job_id) == ["Requested", "Started", "Completed"]
    assert len(outcomes) == 2
    assert "completed" in outcomes
    assert set(outcomes) <= {"completed", LEASED_ELSEWHERE}


def test_a_run_whose_lease_was_taken_over_stops_and_records_nothing(
    settings: Settings, processes: tuple[Conductor, Conductor]
) -> None:
    """A run that stalled past its lease (a long GC pause, a hung disk) finds
    another run took the job over: it stops at its next chunk, no events."""
    write_people(settings, 200)
    clock = Clock()
    stalled, other = (assist(s, clock) for s in processes)
    job_id = request(stalled)
    taken_over: list[str] = []

    def stall_then_lose(done: int, _total: int) -> None:
        if done and not taken_over:
            clock.advance(LEASE_S + 1)
            taken_over.append(other.run_job(job_id, lambda *_: None))

    assert stalled.run_job(job_id, stall_then_lose) == LEASE_LOST
    assert taken_over == ["completed"]
    job = other.get_job(tenant="acme", job_id=job_id)
    assert (job.status, job.attempt, job.embedded) == ("completed", 2, 200)
    assert topics(other, job_id) == ["Requested", "Started", "Resumed", "Completed"]


def test_a_job_killed_with_its_server_is_resumed_by_the_next_server(
    database_url: str, tmp_path: Path, settings: Settings
) -> None:
    """kill -9 the server mid-job; the next server (1 s lease) resumes it."""
    write_people(settings, 5000)
    var = tmp_path / "var"
    env = {"CONDUCTOR_ER_JOB_LEASE_S": "1"}
    with (tmp_path / "first.log").open("w") as log:
        server = Server(database_url, var, log, env=env)
        try:
            made = httpx.post(
                server.base + "/v1/er/jobs",
                json={"entitySet": "crm", "location": "people.csv", "force": True},
                headers=bearer("acme", "er.write"),
                timeout=30,
            )
            assert made.status_code == 202, made.text
            job_id = made.json()["id"]
            running = wait_status(server.base, job_id, {"running"})
        finally:
            server.kill()
    assert running["attempt"] == 1
    with (tmp_path / "second.log").open("w") as log:
        server = Server(database_url, var, log, env=env)
        try:
            done = wait_status(server.base, job_id, {"completed", "failed"}, 120)
        finally:
            server.stop()
    # attempt 2: the job was still running when its server died.
    assert (done["status"], done["attempt"], done["done"]) == ("completed", 2, 5000)


def wait_status(
    base: str, job_id: str, wanted: set[str], timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = httpx.get(
            f"{base}/v1/er/jobs/{job_id}", headers=bearer("acme", "er.read"), timeout=10
        ).json()
        if body["status"] in wanted:
            return body
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} never became {wanted}: {body}")


def test_run_due_on_the_command_line_resumes_a_lost_run(
    database_url: str, tmp_path: Path, settings: Settings
) -> None:
    """The operator's way with no server running: `conductor er run-due`."""
    write_people(settings, 80)
    services = build_conductor(settings)
    try:
        app = assist(services, Clock())
        job_id = request(app)
        with pytest.raises(CrashError):
            app.run_job(job_id, crash_after_first_chunk)
    finally:
        services.close()
    ran = cli(database_url, tmp_path / "var", "er", "run-due")
    assert ran.returncode == 0, ran.stderr
    assert f"job {job_id}: completed, 80 records embedded" in ran.stdout
    again = cli(database_url, tmp_path / "var", "er", "run-due")
    assert (again.returncode, again.stdout.strip()) == (0, "no embedding job is due")
    services = build_conductor(settings)
    try:
        assert services.er is not None
        job = services.er.app.get_job(tenant="acme", job_id=job_id)
        assert (job.status, job.attempt, job.embedded) == ("completed", 2, 80)
    finally:
        services.close()
