"""SQLite event log: the library's recorder plus the hash chain, group commit,
idempotency keys and a polling subscription (stock 9.5.6 cannot subscribe)."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import Notification, Subscription
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from adapters.ledger.chain import GENESIS, check_topic, event_hash
from adapters.ledger.groupcommit import GroupCommitInserts, Job
from adapters.sql.sqlite_writer import SQLiteWriter
from application.ports import IdempotencyRecord, LogEntry, LogHead

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import ApplicationRecorder
    from eventsourcing.sqlite import SQLiteCursor


class LedgerSQLiteRecorder(GroupCommitInserts, SQLiteApplicationRecorder):
    """Every insert also appends to ``event_chain`` in the same transaction."""

    def __init__(
        self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name)
        self.writer = SQLiteWriter(datastore)
        self._start_group_commit()

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS event_chain ("
            "position INTEGER PRIMARY KEY, prev_hash TEXT NOT NULL, "
            "hash TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS idempotency_keys ("
            "tenant TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, "
            "response BLOB NOT NULL, position INTEGER, created_at REAL NOT NULL, "
            "PRIMARY KEY (tenant, key))",
            "CREATE INDEX IF NOT EXISTS idempotency_keys_created "
            "ON idempotency_keys (created_at)",
            "CREATE TABLE IF NOT EXISTS ledger_checkpoints ("
            "size INTEGER PRIMARY KEY, last_position INTEGER NOT NULL, "
            "root TEXT NOT NULL, envelope TEXT NOT NULL)",
        ]

    def close(self) -> None:
        """Close the write connection (the pool is the datastore's to close)."""
        self.writer.close()

    def _write_jobs(self, jobs: Sequence[Job]) -> None:
        with self.writer.transaction() as c:
            for job in jobs:
                ids = super()._insert_events(c, job.events)
                job.ids = list(ids or ())
            # The inserts hold SQLite's single write lock: the tip is ours alone.
            c.execute("SELECT hash FROM event_chain ORDER BY position DESC LIMIT 1")
            row = c.fetchone()
            prev = row[0] if row else GENESIS
            chain = []
            for job in jobs:
                for position, s in zip(job.ids, job.events, strict=True):
                    prev_hash, prev = (
                        prev,
                        event_hash(
                            position,
                            _uuid(s.originator_id),
                            s.originator_version,
                            check_topic(s.topic),
                            s.state,
                            prev,
                        ),
                    )
                    chain.append((position, prev_hash, prev))
            c.executemany("INSERT INTO event_chain VALUES (?,?,?)", chain)
            for job in jobs:
                record: IdempotencyRecord | None = job.kwargs.get("idempotency")
                if record is not None:
                    self._insert_idempotency(c, record, job.ids[-1])

    @staticmethod
    def _insert_idempotency(
        c: SQLiteCursor, record: IdempotencyRecord, position: int
    ) -> None:
        c.execute(
            "INSERT INTO idempotency_keys VALUES (?,?,?,?,?,?)",
            (
                record.tenant,
                record.key,
                record.fingerprint,
                record.response,
                position,
                time.time(),
            ),
        )

    def find_idempotency(self, tenant: str, key: str) -> IdempotencyRecord | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT fingerprint, response, position FROM idempotency_keys "
                "WHERE tenant=? AND key=? AND created_at>?",
                (tenant, key, time.time() - self.idempotency_ttl_s),
            )
            row = c.fetchone()
        if row is None:
            return None
        return IdempotencyRecord(tenant, key, row[0], bytes(row[1]), row[2])

    def purge_idempotency(self) -> int:
        """Forget keys older than the TTL; returns how many were dropped."""
        with self.writer.transaction() as c:
            c.execute(
                "DELETE FROM idempotency_keys WHERE created_at<=?",
                (time.time() - self.idempotency_ttl_s,),
            )
            c.execute("SELECT changes()")
            return int(c.fetchone()[0])

    _ENTRY = (
        "SELECT e.rowid, e.originator_id, e.originator_version, e.topic, e.state, "
        "c.prev_hash, c.hash FROM {t} e LEFT JOIN event_chain c ON c.position=e.rowid "
    )

    def entries(self, *, after: int, limit: int) -> list[LogEntry]:
        sql = self._ENTRY.format(t=self.events_table_name)
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql + "WHERE e.rowid>? ORDER BY e.rowid LIMIT ?", (after, limit))
            return [_entry(r) for r in c.fetchall()]

    def entries_for(self, originator_id: UUID) -> list[LogEntry]:
        sql = self._ENTRY.format(t=self.events_table_name)
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                sql + "WHERE e.originator_id=? ORDER BY e.originator_version",
                (originator_id.hex,),
            )
            return [_entry(r) for r in c.fetchall()]

    def entries_for_many(self, originator_ids: Sequence[UUID]) -> list[LogEntry]:
        """Several aggregates' events, by aggregate then version (one query)."""
        if not originator_ids:
            return []
        sql = self._ENTRY.format(t=self.events_table_name)
        marks = ",".join("?" * len(originator_ids))
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                sql + f"WHERE e.originator_id IN ({marks}) "
                "ORDER BY e.originator_id, e.originator_version",
                [i.hex for i in originator_ids],
            )
            return [_entry(r) for r in c.fetchall()]

    def entries_at(self, positions: Sequence[int]) -> list[LogEntry]:
        """The events at these positions (absent ones left out), in order."""
        if not positions:
            return []
        sql = self._ENTRY.format(t=self.events_table_name)
        marks = ",".join("?" * len(positions))
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                sql + f"WHERE e.rowid IN ({marks}) ORDER BY e.rowid", list(positions)
            )
            return [_entry(r) for r in c.fetchall()]

    def chain_rows(self, *, after: int, limit: int) -> list[tuple[Any, ...]]:
        """Raw (position, id text, version, topic, state, prev_hash, hash) rows."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT e.rowid, substr(e.originator_id,1,8)||'-'||"
                "substr(e.originator_id,9,4)||'-'||substr(e.originator_id,13,4)||'-'||"
                "substr(e.originator_id,17,4)||'-'||substr(e.originator_id,21), "
                "e.originator_version, e.topic, e.state, c.prev_hash, c.hash "
                f"FROM {self.events_table_name} e "
                "LEFT JOIN event_chain c ON c.position=e.rowid "
                "WHERE e.rowid>? ORDER BY e.rowid LIMIT ?",
                (after, limit),
            )
            return [tuple(r) for r in c.fetchall()]

    def chain_hashes(self, *, after: int, limit: int) -> list[tuple[int, str]]:
        """(position, hash) of chain rows after a position, in order."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT position, hash FROM event_chain WHERE position>? "
                "ORDER BY position LIMIT ?",
                (after, limit),
            )
            return [(int(r[0]), str(r[1])) for r in c.fetchall()]

    def save_checkpoint(
        self, *, size: int, last_position: int, root: str, envelope: str
    ) -> None:
        """Keep a signed checkpoint (a second one for the same size is ignored)."""
        with self.writer.transaction() as c:
            c.execute(
                "INSERT INTO ledger_checkpoints VALUES (?,?,?,?) "
                "ON CONFLICT (size) DO NOTHING",
                (size, last_position, root, envelope),
            )

    def checkpoints(self, *, at_least: int = 0) -> list[tuple[int, int, str, str]]:
        """(size, last_position, root, envelope) of the checkpoints, smallest first."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT size, last_position, root, envelope FROM ledger_checkpoints "
                "WHERE size>=? ORDER BY size",
                (at_least,),
            )
            return [(int(r[0]), int(r[1]), str(r[2]), str(r[3])) for r in c.fetchall()]

    def chain_positions(self, lo: int, hi: int) -> list[int]:
        """Chain rows between two positions (to name events deleted from the log)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT position FROM event_chain WHERE position>? AND position<? "
                "ORDER BY position",
                (lo, hi),
            )
            return [r[0] for r in c.fetchall()]

    def head(self) -> LogHead:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT position, hash FROM event_chain ORDER BY position DESC LIMIT 1"
            )
            row = c.fetchone()
            c.execute(f"SELECT count(*) FROM {self.events_table_name}")
            count = int(c.fetchone()[0])
        if row is None:
            return LogHead(0, GENESIS, count)
        return LogHead(int(row[0]), str(row[1]), count)

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        return PollingSubscription(self, gt=gt, topics=topics)


class PollingSubscription(Subscription["ApplicationRecorder"]):
    """Follows the log by polling (SQLite has no LISTEN/NOTIFY)."""

    def __init__(
        self,
        recorder: ApplicationRecorder,
        gt: int | None = None,
        topics: Sequence[str] = (),
        interval: float = 0.05,
    ) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._interval = interval
        self._buffer: deque[Notification] = deque()
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()
        super().stop()

    def __next__(self) -> Notification:
        while not self._buffer:
            if self._stopped.is_set() or self._has_been_stopped:
                raise StopIteration
            self._buffer = deque(
                self._recorder.select_notifications(
                    start=self._last_notification_id or 0,
                    limit=500,
                    topics=self._topics,
                    inclusive_of_start=False,
                )
            )
            if not self._buffer:
                self._stopped.wait(self._interval)
        notification = self._buffer.popleft()
        self._last_notification_id = notification.id
        return notification


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


def _entry(row: Any) -> LogEntry:
    return LogEntry(
        position=int(row[0]),
        originator_id=UUID(row[1]),
        version=int(row[2]),
        topic=row[3],
        state=bytes(row[4]),
        prev_hash=row[5] or "",
        hash=row[6] or "",
    )
