"""The dedicated SQLite write connection: errors map to the library's, and no
cursor outlives its transaction (a leaked one deadlocks writers, see below)."""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING

import pytest
from eventsourcing.persistence import IntegrityError, OperationalError
from eventsourcing.sqlite import SQLiteDatastore

from adapters.sql.sqlite_writer import SQLiteWriter

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType


def _writer(tmp_path: Path) -> tuple[SQLiteWriter, SQLiteDatastore]:
    datastore = SQLiteDatastore(str(tmp_path / "w.db"), lock_timeout=2)
    writer = SQLiteWriter(datastore)
    with writer.transaction() as c:
        c.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        c.execute("INSERT INTO t VALUES (1)")
    return writer, datastore


def _cursors_in(tb: TracebackType | None) -> list[sqlite3.Cursor]:
    found = []
    while tb is not None:
        local = tb.tb_frame.f_locals.values()
        found += [v for v in local if isinstance(v, sqlite3.Cursor)]
        tb = tb.tb_next
    return found


def _walk(error: BaseException) -> list[sqlite3.Cursor]:
    cursors: list[sqlite3.Cursor] = []
    seen: BaseException | None = error
    while seen is not None:
        cursors += _cursors_in(seen.__traceback__)
        seen = seen.__cause__ or seen.__context__
    return cursors


def _insert_two_then_a_duplicate(writer: SQLiteWriter) -> None:
    with writer.transaction() as c:
        c.execute("INSERT INTO t VALUES (2)")
        c.execute("INSERT INTO t VALUES (1)")


def test_integrity_error_maps_to_the_library_error_and_rolls_back(
    tmp_path: Path,
) -> None:
    writer, datastore = _writer(tmp_path)
    with pytest.raises(IntegrityError):
        _insert_two_then_a_duplicate(writer)
    with writer.transaction() as c:
        c.execute("SELECT k FROM t ORDER BY k")
        assert [r[0] for r in c.fetchall()] == [1]
    writer.close()
    datastore.close()


def test_a_failed_transaction_leaves_no_open_cursor_for_the_collector(
    tmp_path: Path,
) -> None:
    """The exception's traceback keeps the transaction's frame, and so its
    cursor, alive in a reference cycle. Were that cursor still open, the
    garbage collector would reset it on whatever thread collects the cycle,
    taking this connection's mutex, which a BEGIN IMMEDIATE busy-waiting on
    this connection holds while it waits for the write lock that the
    collecting thread may hold: a deadlock that CI saw as "database is
    locked" after the 30 s busy timeout."""
    writer, datastore = _writer(tmp_path)
    with pytest.raises(IntegrityError) as caught, writer.transaction() as c:
        c.execute("INSERT INTO t VALUES (1)")
    cursors = _walk(caught.value)
    assert cursors, "the traceback should reach the transaction's frame"
    for cursor in cursors:
        with pytest.raises(sqlite3.ProgrammingError, match="closed cursor"):
            cursor.execute("SELECT 1")
    writer.close()
    datastore.close()


def test_a_writer_waits_for_another_connection_then_reports_locked(
    tmp_path: Path,
) -> None:
    writer, datastore = _writer(tmp_path)
    other = SQLiteWriter(datastore)
    entered = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with other.transaction() as c:
            c.execute("INSERT INTO t VALUES (3)")
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(10)
    try:
        with pytest.raises(OperationalError, match="locked"), writer.transaction():
            pass
    finally:
        release.set()
        holder.join(10)
    with writer.transaction() as c:  # the lock is free again
        c.execute("SELECT count(*) FROM t")
        assert c.fetchone()[0] == 2
    other.close()
    writer.close()
    datastore.close()
