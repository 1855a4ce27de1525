"""Concurrent writers: optimistic locking over real HTTP, and separate ledgers
sharing one database without breaking the hash chain or the position order."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import httpx
import pytest
import uvicorn
from eventsourcing.utils import get_topic

from adapters.ledger.chain import GENESIS
from adapters.ledger.store import open_ledger
from adapters.ledger.verify import verify_chain
from api.app import create_app
from application.catalog.datasets import Datasets
from domain.autopilot.usage import Usage
from domain.ledger.keys import SigningKeyRing
from tests.conftest import bearer, dataset_body, dataset_spec

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from adapters.ledger.store import Ledger
    from adapters.ledger.verify import ChainReport
    from api.settings import Settings
    from application.ports import LogEntry

pytestmark = pytest.mark.integration

WRITERS = 8
ROUNDS = 10
TIMEOUT_S = 30.0


def _poll(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT_S) -> None:
    """Wait until ``condition()`` holds, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The real app under uvicorn on a free port, in a background thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
    )
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        _poll(lambda: server.started or not thread.is_alive(), "uvicorn to start")
        assert thread.is_alive(), "uvicorn exited during startup"
        with httpx.Client(base_url=base, timeout=10) as probe:
            assert probe.get("/healthz").status_code == 200
        yield base
    finally:
        server.should_exit = True
        thread.join(TIMEOUT_S)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def test_of_eight_concurrent_patches_with_the_same_if_match_exactly_one_wins_each_round(
    settings: Settings, database_url: str
) -> None:
    """Each round: one PATCH 200, seven 412; the version ends at 1 + rounds."""
    auth = bearer("acme", "catalog.read", "catalog.write")
    with serving(settings) as base:
        clients = [
            httpx.Client(base_url=base, headers=auth, timeout=TIMEOUT_S)
            for _ in range(WRITERS)
        ]
        try:
            created = clients[0].post("/v1/datasets", json=dataset_body("contended"))
            assert created.status_code == 201, created.text
            dataset_id = created.json()["id"]
            winners: list[str] = []
            for round_no in range(ROUNDS):
                current = clients[0].get(f"/v1/datasets/{dataset_id}")
                assert current.status_code == 200, current.text
                version = current.json()["version"]
                assert version == 1 + round_no
                assert current.headers["etag"] == f'"{version}"'
                statuses = _patch_all_at_once(clients, dataset_id, version, round_no)
                codes = sorted(status for status, _ in statuses.values())
                assert codes == [200] + [412] * (WRITERS - 1), statuses
                winner = [w for w, (status, _) in statuses.items() if status == 200]
                winners.append(f"round {round_no} writer {winner[0]}")
                for status, body in statuses.values():
                    if status == 200:
                        assert body["version"] == version + 1
                    else:
                        assert body["type"] == "/problems/precondition-failed"
            final = clients[0].get(f"/v1/datasets/{dataset_id}").json()
            assert final["version"] == 1 + ROUNDS
            assert final["description"] == winners[-1]
        finally:
            for client in clients:
                client.close()

    ledger = open_ledger(database_url, pool_size=2)
    try:
        report = verify_chain(ledger.chained)
        assert report.ok, report
        assert report.checked == ledger.head().events
        history = ledger.entries_for(UUID(dataset_id))
        assert [e.version for e in history] == list(range(1, ROUNDS + 2))
        # Besides the dataset's own events the log may only hold the signing
        # key ring, written by the checkpoint job when it first signs, and the
        # meter's flushes (one UsageRecorded per tenant every few seconds).
        others = {
            e.topic
            for e in ledger.entries(after=0, limit=1000)
            if e.originator_id != UUID(dataset_id)
        }
        ring_events = {
            SigningKeyRing.Started,
            SigningKeyRing.KeyAdded,
            Usage.UsageRecorded,
        }
        assert others <= {get_topic(cls) for cls in ring_events}, others
    finally:
        ledger.close()


def _patch_all_at_once(
    clients: list[httpx.Client], dataset_id: str, version: int, round_no: int
) -> dict[int, tuple[int, dict[str, Any]]]:
    """Every client PATCHes with If-Match: version, released together by a barrier."""
    barrier = threading.Barrier(len(clients), timeout=TIMEOUT_S)
    results: dict[int, tuple[int, dict[str, Any]]] = {}
    errors: list[BaseException] = []

    def patch(index: int) -> None:
        try:
            barrier.wait()
            response = clients[index].patch(
                f"/v1/datasets/{dataset_id}",
                json={"description": f"round {round_no} writer {index}"},
                headers={"If-Match": f'"{version}"'},
            )
            results[index] = (response.status_code, response.json())
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=patch, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT_S)
    assert not errors, errors
    assert len(results) == len(clients)
    return results


# -- separate ledgers on one database -------------------------------------------

LEDGERS = 3
THREADS_PER_LEDGER = 3
OWN_NAMES = 5
CONTESTED = [f"shared-{i}" for i in range(4)]
REGIONS = frozenset({"US", "EU", "UK"})


@dataclass(frozen=True)
class Outcome:
    ledger: int
    name: str
    position: int | None
    created: bool
    started: float
    returned: float


def test_separate_ledgers_writing_concurrently_keep_one_chain_in_commit_order(
    database_url: str,
) -> None:
    """Writers on separate ledgers: chain verifies, one event each, no gap ever seen."""
    run = _write_through_separate_ledgers(database_url)

    commands = LEDGERS * THREADS_PER_LEDGER * (OWN_NAMES + len(CONTESTED))
    assert len(run.outcomes) == commands
    assert any(  # writers on different ledgers really overlapped in time
        a.started < b.returned and b.started < a.returned
        for a in run.outcomes
        for b in run.outcomes
        if a.ledger != b.ledger
    )
    created = [o for o in run.outcomes if o.created]
    # Every own name is created once; each contested name exactly once overall.
    assert len(created) == LEDGERS * THREADS_PER_LEDGER * OWN_NAMES + len(CONTESTED)
    assert sorted(o.name for o in created) == sorted({o.name for o in run.outcomes})

    # The chain verifies and holds exactly one event per successful creation.
    assert run.report is not None
    assert run.report.ok, run.report
    assert run.report.checked == len(run.final) == len(created)
    positions = [e.position for e in run.final]
    assert positions == sorted(set(positions)), "positions must strictly increase"
    assert sorted(o.position or 0 for o in created) == positions
    assert run.final[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(run.final):
        assert after.prev_hash == before.hash

    # A reader never saw a gap that was filled later: each snapshot is a prefix.
    assert run.snapshots, "the reader took no snapshot"
    for _, seen in run.snapshots:
        assert seen == positions[: len(seen)], (seen, positions)

    # Commit order is position order: a command that started after another
    # returned got a larger position, and a returned commit is visible to any
    # read that starts afterwards.
    for a, b in itertools.product(created, created):
        if a.returned < b.started:
            assert (a.position or 0) < (b.position or 0), (a, b)
    for began, seen in run.snapshots:
        visible = set(seen)
        for o in created:
            if o.returned < began:
                assert o.position in visible, (o, began)


@dataclass
class Run:
    outcomes: list[Outcome]
    snapshots: list[tuple[float, list[int]]]
    """(monotonic time the read began, positions it saw), as the log grew."""
    final: list[LogEntry]
    report: ChainReport | None = None


def _write_through_separate_ledgers(database_url: str) -> Run:  # noqa: C901
    """Register from many threads on several ledgers while a reader polls the log."""
    ledgers: list[Ledger] = []
    run = Run(outcomes=[], snapshots=[], final=[])
    errors: list[BaseException] = []
    done = threading.Event()
    lock = threading.Lock()
    start = threading.Barrier(LEDGERS * THREADS_PER_LEDGER + 1, timeout=TIMEOUT_S)

    def write(ledger_no: int, app: Datasets, label: str) -> None:
        names = [f"{label}-{j}" for j in range(OWN_NAMES)]
        mixed = [n for pair in zip(names, CONTESTED, strict=False) for n in pair]
        mixed += names[len(CONTESTED) :]
        try:
            start.wait()
            for name in mixed:
                began = time.monotonic()
                result = app.register_dataset(tenant="acme", spec=dataset_spec(name))
                returned = time.monotonic()
                with lock:
                    run.outcomes.append(
                        Outcome(
                            ledger_no,
                            name,
                            result.position,
                            result.created,
                            began,
                            returned,
                        )
                    )
        except BaseException as error:  # reported below
            errors.append(error)

    def read(reader: Ledger) -> None:
        try:
            start.wait()
            while not done.is_set():
                began = time.monotonic()
                seen = [e.position for e in reader.entries(after=0, limit=100_000)]
                if not run.snapshots or run.snapshots[-1][1] != seen:
                    run.snapshots.append((began, seen))
                done.wait(0.002)
        except BaseException as error:  # reported below
            errors.append(error)

    try:
        ledgers += [
            open_ledger(database_url, pool_size=THREADS_PER_LEDGER + 1)
            for _ in range(LEDGERS)
        ]
        reader = open_ledger(database_url, pool_size=2)
        ledgers.append(reader)
        threads = [
            threading.Thread(
                target=write,
                args=(
                    k,
                    Datasets(ledger, regions=REGIONS),  # type: ignore[arg-type]
                    f"l{k}t{t}",
                ),
            )
            for k, ledger in enumerate(ledgers[:LEDGERS])
            for t in range(THREADS_PER_LEDGER)
        ]
        watcher = threading.Thread(target=read, args=(reader,))
        for thread in [*threads, watcher]:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT_S)
        done.set()
        watcher.join(TIMEOUT_S)
        assert not errors, errors
        assert not any(t.is_alive() for t in [*threads, watcher])
        run.final = list(reader.entries(after=0, limit=100_000))
        run.report = verify_chain(reader.chained)
    finally:
        for ledger in ledgers:
            ledger.close()
    return run
