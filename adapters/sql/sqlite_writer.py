"""A dedicated SQLite write connection with BEGIN IMMEDIATE transactions.

The library's connection pool hands out writer connections under a "fairness"
semaphore that is held while a writer waits for the writer lock, so every read
in the process queues behind the write (and fsync) in flight. WAL lets readers
run beside one writer; writing through a connection of our own keeps it so.
BEGIN IMMEDIATE takes SQLite's write lock up front (waiting up to the busy
timeout), so a transaction that reads before it writes cannot fail with
SQLITE_BUSY when another connection committed in between.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

from eventsourcing.persistence import IntegrityError, OperationalError
from eventsourcing.sqlite import SQLiteCursor

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventsourcing.sqlite import SQLiteDatastore

DEFAULT_TIMEOUT_S = 30


class SQLiteWriter:
    """One write connection to a datastore's file, used by one thread at a time."""

    def __init__(
        self, datastore: SQLiteDatastore, *, synchronous: str = "FULL"
    ) -> None:
        self._db_name = datastore.pool.db_name
        self._timeout = datastore.pool.lock_timeout or DEFAULT_TIMEOUT_S
        if synchronous not in {"FULL", "NORMAL"}:
            msg = f"synchronous must be FULL or NORMAL, not {synchronous!r}"
            raise ValueError(msg)
        self._synchronous = synchronous
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[SQLiteCursor]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        with self._lock:
            connection = self._connect()
            cursor = connection.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                yield SQLiteCursor(cursor)
                connection.commit()
            except sqlite3.IntegrityError as error:
                connection.rollback()
                raise IntegrityError(error) from error
            except sqlite3.OperationalError as error:
                connection.rollback()
                raise OperationalError(error) from error
            except BaseException:
                connection.rollback()
                raise
            finally:
                # Close here, on the thread that owns the connection. A cursor
                # left to the garbage collector (an exception's traceback keeps
                # this frame in a cycle) is reset by whichever thread collects
                # it: that thread then waits for this connection's mutex, which
                # a busy-waiting BEGIN IMMEDIATE here may hold while it waits
                # for the write lock the collecting thread holds. Deadlock until
                # the busy timeout, then "database is locked".
                cursor.close()

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = sqlite3.connect(
                self._db_name,
                uri=True,
                check_same_thread=False,
                isolation_level=None,
                timeout=self._timeout,
            )
            self._connection.row_factory = sqlite3.Row
            self._connection.execute(f"PRAGMA synchronous={self._synchronous}")
        return self._connection
