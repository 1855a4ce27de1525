"""A lineage store outside the log's database notices when that log was
rewound (pg_rewind of a region that lost an asynchronous failover) and
rebuilds, instead of keeping events the log no longer holds.

The rewind is played on real SQLite logs: a copy of the log taken earlier
stands for the rewound node, and new commands on it for what it takes after.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from typing import TYPE_CHECKING

from adapters.catalog.lineage_sqlite import open_sqlite_lineage
from adapters.dr.lineage_follower import LineageFollower
from adapters.ledger.store import open_ledger
from application.catalog.datasets import Datasets
from tests.conftest import dataset_spec

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from uuid import UUID

    from adapters.ledger.store import Ledger

REGIONS = frozenset({"EU"})


def register(log: Ledger, name: str, *upstream: UUID) -> UUID:
    app = Datasets(log, regions=REGIONS)
    return app.register_dataset(
        tenant="acme", spec=dataset_spec(name), upstream=upstream
    ).id


def copy(src: Path, dst: Path) -> None:
    with (
        contextlib.closing(sqlite3.connect(src)) as a,
        contextlib.closing(sqlite3.connect(dst)) as b,
    ):
        a.backup(b)


def follow(log_path: Path, store: Path, *, check_s: float = 0.05) -> LineageFollower:
    return LineageFollower(
        open_ledger(f"sqlite:///{log_path}", pool_size=2),
        open_sqlite_lineage(store),
        poll_interval=0.02,
        check_interval=check_s,
    ).start()


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def names(follower: LineageFollower, root: UUID) -> set[str]:
    graph = follower.view.lineage("acme", root, "down", 5)
    return {node.name for node in graph.nodes}


def head(path: Path) -> int:
    log = open_ledger(f"sqlite:///{path}", pool_size=1)
    try:
        return log.recorder.max_notification_id() or 0
    finally:
        log.close()


def test_a_store_ahead_of_a_rewound_log_that_moved_on_is_rebuilt(
    tmp_path: Path,
) -> None:
    """The rewound log took new events past the store's position: the tip's
    hash there changed, so the first batch rebuilds the store rather than
    continuing it (the periodic check is kept out of the way here)."""
    primary, rewound, store = (tmp_path / n for n in ("a.db", "b.db", "lin.db"))
    log = open_ledger(f"sqlite:///{primary}", pool_size=2)
    root = register(log, "raw")
    log.close()
    copy(primary, rewound)  # what the node keeps after the rewind
    log = open_ledger(f"sqlite:///{primary}", pool_size=2)
    register(log, "lost", root)  # on the old timeline only
    log.close()

    follower = follow(primary, store)
    try:
        until(lambda: follower.position() == head(primary), "the first log")
        assert names(follower, root) == {"raw", "lost"}
        assert follower.check.rebuilds == 0
        applied_at = follower.position()
    finally:
        follower.close()

    log = open_ledger(f"sqlite:///{rewound}", pool_size=2)
    for name in ("kept-1", "kept-2", "kept-3"):
        register(log, name, root)
    log.close()
    assert head(rewound) > applied_at  # positions reused past the store's

    follower = follow(rewound, store, check_s=3600)
    try:
        until(lambda: follower.position() == head(rewound), "the rewound log")
        until(lambda: "kept-3" in names(follower, root), "the rebuilt graph")
        assert names(follower, root) == {"raw", "kept-1", "kept-2", "kept-3"}
        assert follower.check.rebuilds == 1
        assert follower.check.diverged() is None
    finally:
        follower.close()


def test_a_store_ahead_of_a_quiet_rewound_log_is_rebuilt(tmp_path: Path) -> None:
    """No new event comes, so no batch runs: the periodic check finds the
    store's position gone from the log and rebuilds it to the log's head."""
    primary, rewound, store = (tmp_path / n for n in ("a.db", "b.db", "lin.db"))
    log = open_ledger(f"sqlite:///{primary}", pool_size=2)
    root = register(log, "raw")
    log.close()
    copy(primary, rewound)
    log = open_ledger(f"sqlite:///{primary}", pool_size=2)
    register(log, "lost", root)
    log.close()
    follower = follow(primary, store)
    try:
        until(lambda: follower.position() == head(primary), "the first log")
    finally:
        follower.close()

    follower = follow(rewound, store)
    try:
        until(lambda: follower.check.rebuilds == 1, "the rebuild")
        until(lambda: follower.position() == head(rewound), "the rewound log")
        assert names(follower, root) == {"raw"}
    finally:
        follower.close()


def test_a_store_kept_in_step_with_its_log_is_never_rebuilt(tmp_path: Path) -> None:
    """Restarts and new events on the same log: the tip always matches."""
    path, store = tmp_path / "a.db", tmp_path / "lin.db"
    log = open_ledger(f"sqlite:///{path}", pool_size=2)
    root = register(log, "raw")
    follower = follow(path, store)
    try:
        register(log, "one", root)
        until(lambda: follower.position() == head(path), "the log")
        time.sleep(0.2)  # several periodic checks
    finally:
        follower.close()
    register(log, "two", root)
    log.close()
    follower = follow(path, store)
    try:
        until(lambda: follower.position() == head(path), "the log again")
        time.sleep(0.2)
        assert follower.check.rebuilds == 0
        assert names(follower, root) == {"raw", "one", "two"}
    finally:
        follower.close()


def test_a_store_without_a_tip_is_rebuilt_once(tmp_path: Path) -> None:
    """A store written before tips existed cannot be checked: rebuilt once."""
    path, store = tmp_path / "a.db", tmp_path / "lin.db"
    log = open_ledger(f"sqlite:///{path}", pool_size=2)
    root = register(log, "raw")
    register(log, "one", root)
    log.close()
    follower = follow(path, store)
    try:
        until(lambda: follower.position() == head(path), "the log")
    finally:
        follower.close()
    with contextlib.closing(sqlite3.connect(store)) as db, db:
        db.execute("DELETE FROM lineage_tip")
    follower = follow(path, store)
    try:
        until(lambda: follower.check.rebuilds == 1, "the rebuild")
        until(lambda: follower.position() == head(path), "the log")
        time.sleep(0.2)
        assert follower.check.rebuilds == 1
        assert names(follower, root) == {"raw", "one"}
    finally:
        follower.close()
