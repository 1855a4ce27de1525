"""Group commit: concurrent callers share transactions; a bad job fails alone."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from adapters.ledger.groupcommit import GroupCommitter

if TYPE_CHECKING:
    from collections.abc import Sequence

    from adapters.ledger.groupcommit import Job


class FakeLog:
    """An in-memory, all-or-nothing writer that is slow like an fsync."""

    def __init__(self, delay: float = 0.01) -> None:
        self.rows: list[str] = []
        self.batches: list[int] = []
        self.delay = delay

    def write(self, jobs: Sequence[Job]) -> None:
        time.sleep(self.delay)
        staged = list(self.rows)
        for job in jobs:
            events = [str(e) for e in job.events]
            if any(e.startswith("bad") or e in staged for e in events):
                msg = f"conflict in {events}"
                raise ValueError(msg)
            start = len(staged) + 1
            staged.extend(events)
            job.ids = list(range(start, start + len(events)))
        self.rows = staged
        self.batches.append(len(jobs))


def run_concurrently(
    committer: GroupCommitter, payloads: list[list[str]]
) -> dict[int, object]:
    results: dict[int, object] = {}

    def work(i: int) -> None:
        try:
            results[i] = committer.submit(payloads[i])  # type: ignore[arg-type]
        except ValueError as error:
            results[i] = error

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_submits_share_transactions() -> None:
    """16 callers need far fewer than 16 transactions."""
    log = FakeLog()
    committer = GroupCommitter(log.write)
    results = run_concurrently(committer, [[f"e{i}"] for i in range(16)])
    assert sorted(log.rows) == sorted(f"e{i}" for i in range(16))
    assert len(log.batches) < 16
    assert sum(log.batches) == 16
    for i, ids in results.items():
        assert log.rows[ids[0] - 1] == f"e{i}"  # type: ignore[index]


def test_a_failing_job_fails_alone_and_the_others_commit() -> None:
    """The combined write is retried job by job so only the offender errors."""
    log = FakeLog()
    committer = GroupCommitter(log.write)
    payloads = [[f"e{i}"] for i in range(8)]
    payloads[3] = ["bad"]
    results = run_concurrently(committer, payloads)
    assert isinstance(results[3], ValueError)
    assert sorted(log.rows) == sorted(f"e{i}" for i in range(8) if i != 3)


def test_commit_listener_sees_last_position_and_count() -> None:
    """Listeners learn the highest position and the number of events committed."""
    log = FakeLog(delay=0)
    seen: list[tuple[int, int]] = []
    committer = GroupCommitter(log.write, on_commit=lambda p, n: seen.append((p, n)))
    committer.submit(["a", "b"])  # type: ignore[arg-type]
    assert seen == [(2, 2)]
    assert committer.batches == 1
    assert committer.jobs == 1
