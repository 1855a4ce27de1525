"""PostgreSQL event log: the library's recorder plus the hash chain, group
commit and idempotency keys, all in the insert's transaction.

The library locks the events table (EXCLUSIVE) before inserting, so commit
order equals position order and reading the chain tip after the lock is
race-free across processes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from adapters.ledger.chain import GENESIS, check_topic, event_hash
from adapters.ledger.groupcommit import GroupCommitInserts, Job
from adapters.sql.pg_schema import schema_lock
from application.ports import IdempotencyRecord, LogEntry, LogHead

if TYPE_CHECKING:
    from collections.abc import Sequence

    from psycopg import Cursor
    from psycopg.rows import DictRow


class LedgerPostgresRecorder(GroupCommitInserts, PostgresApplicationRecorder):
    """Every insert also appends to ``event_chain`` in the same transaction."""

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(self.datastore.schema)
        self._events = SQL("{0}.{1}").format(schema, Identifier(events_table_name))
        self._chain = SQL("{0}.event_chain").format(schema)
        self._keys = SQL("{0}.idempotency_keys").format(schema)
        self._checkpoints = SQL("{0}.ledger_checkpoints").format(schema)
        self.sql_create_statements += [
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} (position bigint PRIMARY KEY, "
                "prev_hash text NOT NULL, hash text NOT NULL)"
            ).format(self._chain),
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} (tenant text NOT NULL, "
                "key text NOT NULL, fingerprint text NOT NULL, "
                "response bytea NOT NULL, "
                "position bigint, created_at double precision NOT NULL, "
                "PRIMARY KEY (tenant, key))"
            ).format(self._keys),
            SQL(
                "CREATE INDEX IF NOT EXISTS idempotency_keys_created ON {0} "
                "(created_at)"
            ).format(self._keys),
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} (size bigint PRIMARY KEY, "
                "last_position bigint NOT NULL, root text NOT NULL, "
                "envelope text NOT NULL)"
            ).format(self._checkpoints),
        ]
        self._insert_statement = SQL(
            "INSERT INTO {0} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::{1}[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(self._events, SQL(self.datastore.originator_id_type))
        self._tip_statement = SQL(
            "SELECT hash FROM {0} ORDER BY position DESC LIMIT 1"
        ).format(self._chain)
        self._start_group_commit()

    def create_table(self) -> None:
        with schema_lock(self.datastore):
            super().create_table()

    def close(self) -> None:
        """Nothing of its own to close: the datastore's pool is the factory's."""

    def _write_jobs(self, jobs: Sequence[Job]) -> None:
        events = [e for job in jobs for e in job.events]
        # Four binary arrays rather than the library's array of composites,
        # which psycopg dumps element by element in Python.
        columns = (
            [e.originator_id for e in events],
            [e.originator_version for e in events],
            [e.topic for e in events],
            [e.state for e in events],
        )
        # Pipelined: lock, notify, insert and the chain tip go in one round
        # trip, the chain rows and the commit in a second.
        with (
            self.datastore.get_connection() as conn,
            conn.pipeline(),
            conn.transaction(),
            conn.cursor() as curs,
            conn.cursor() as tip_curs,
        ):
            self._lock_table(curs)
            self._notify_channel(curs)
            curs.execute(self._insert_statement, columns)
            tip_curs.execute(self._tip_statement, prepare=True)
            ids = [r["notification_id"] for r in curs.fetchall()]
            start = 0
            for job in jobs:
                job.ids = ids[start : start + len(job.events)]
                start += len(job.events)
            tip = tip_curs.fetchone()
            prev = tip["hash"] if tip else GENESIS
            positions, prevs, hashes = [], [], []
            for position, e in zip(ids, events, strict=True):
                prevs.append(prev)
                prev = event_hash(
                    position,
                    _uuid(e.originator_id),
                    e.originator_version,
                    check_topic(e.topic),
                    e.state,
                    prev,
                )
                positions.append(position)
                hashes.append(prev)
            curs.execute(
                SQL(
                    "INSERT INTO {0} SELECT * FROM "
                    "unnest(%b::bigint[], %b::text[], %b::text[])"
                ).format(self._chain),
                (positions, prevs, hashes),
            )
            for job in jobs:
                record: IdempotencyRecord | None = job.kwargs.get("idempotency")
                if record is not None:
                    self._insert_idempotency(curs, record, job.ids[-1])

    def _insert_idempotency(
        self, curs: Cursor[DictRow], record: IdempotencyRecord, position: int
    ) -> None:
        curs.execute(
            SQL("INSERT INTO {0} VALUES (%s,%s,%s,%s,%s,%s)").format(self._keys),
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
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT fingerprint, response, position FROM {0} "
                    "WHERE tenant=%s AND key=%s AND created_at>%s"
                ).format(self._keys),
                (tenant, key, time.time() - self.idempotency_ttl_s),
            )
            row = curs.fetchone()
        if row is None:
            return None
        return IdempotencyRecord(
            tenant, key, row["fingerprint"], bytes(row["response"]), row["position"]
        )

    def purge_idempotency(self) -> int:
        """Forget keys older than the TTL; returns how many were dropped."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL("DELETE FROM {0} WHERE created_at<=%s").format(self._keys),
                (time.time() - self.idempotency_ttl_s,),
            )
            return curs.rowcount

    def _select_entries(self, where: SQL, params: Sequence[Any]) -> list[LogEntry]:
        query = SQL(
            "SELECT e.notification_id, e.originator_id, e.originator_version, "
            "e.topic, e.state, c.prev_hash, c.hash FROM {0} e "
            "LEFT JOIN {1} c ON c.position=e.notification_id "
        ).format(self._events, self._chain)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query + where, params, prepare=True)
            return [
                LogEntry(
                    position=r["notification_id"],
                    originator_id=r["originator_id"],
                    version=r["originator_version"],
                    topic=r["topic"],
                    state=bytes(r["state"]),
                    prev_hash=r["prev_hash"] or "",
                    hash=r["hash"] or "",
                )
                for r in curs.fetchall()
            ]

    def entries(self, *, after: int, limit: int) -> list[LogEntry]:
        return self._select_entries(
            SQL("WHERE e.notification_id>%s ORDER BY e.notification_id LIMIT %s"),
            (after, limit),
        )

    def entries_for(self, originator_id: UUID) -> list[LogEntry]:
        return self._select_entries(
            SQL("WHERE e.originator_id=%s ORDER BY e.originator_version"),
            (originator_id,),
        )

    def entries_for_many(self, originator_ids: Sequence[UUID]) -> list[LogEntry]:
        """Several aggregates' events, by aggregate then version (one query)."""
        if not originator_ids:
            return []
        return self._select_entries(
            SQL(
                "WHERE e.originator_id = ANY(%s) "
                "ORDER BY e.originator_id, e.originator_version"
            ),
            (list(originator_ids),),
        )

    def entries_at(self, positions: Sequence[int]) -> list[LogEntry]:
        """The events at these positions (absent ones left out), in order."""
        if not positions:
            return []
        return self._select_entries(
            SQL("WHERE e.notification_id = ANY(%s) ORDER BY e.notification_id"),
            (list(positions),),
        )

    def chain_rows(self, *, after: int, limit: int) -> list[tuple[Any, ...]]:
        """Raw (position, id text, version, topic, state, prev_hash, hash) rows."""
        query = SQL(
            "SELECT e.notification_id, e.originator_id::text, e.originator_version, "
            "e.topic, e.state, c.prev_hash, c.hash FROM {0} e "
            "LEFT JOIN {1} c ON c.position=e.notification_id "
            "WHERE e.notification_id>%s ORDER BY e.notification_id LIMIT %s"
        ).format(self._events, self._chain)
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute(query, (after, limit), prepare=True)
            return curs.fetchall()

    def chain_hashes(self, *, after: int, limit: int) -> list[tuple[int, str]]:
        """(position, hash) of chain rows after a position, in order."""
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute(
                SQL(
                    "SELECT position, hash FROM {0} WHERE position>%s "
                    "ORDER BY position LIMIT %s"
                ).format(self._chain),
                (after, limit),
            )
            return [(int(p), str(h)) for p, h in curs.fetchall()]

    def save_checkpoint(
        self, *, size: int, last_position: int, root: str, envelope: str
    ) -> None:
        """Keep a signed checkpoint (a second one for the same size is ignored)."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "INSERT INTO {0} VALUES (%s,%s,%s,%s) ON CONFLICT (size) DO NOTHING"
                ).format(self._checkpoints),
                (size, last_position, root, envelope),
            )

    def checkpoints(self, *, at_least: int = 0) -> list[tuple[int, int, str, str]]:
        """(size, last_position, root, envelope) of the checkpoints, smallest first."""
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute(
                SQL(
                    "SELECT size, last_position, root, envelope FROM {0} "
                    "WHERE size>=%s ORDER BY size"
                ).format(self._checkpoints),
                (at_least,),
            )
            return [(int(s), int(p), str(r), str(e)) for s, p, r, e in curs.fetchall()]

    def chain_positions(self, lo: int, hi: int) -> list[int]:
        """Chain rows between two positions (to name events deleted from the log)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT position FROM {0} WHERE position>%s AND position<%s "
                    "ORDER BY position"
                ).format(self._chain),
                (lo, hi),
            )
            return [r["position"] for r in curs.fetchall()]

    def head(self) -> LogHead:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT position, hash FROM {0} ORDER BY position DESC LIMIT 1"
                ).format(self._chain)
            )
            row = curs.fetchone()
            curs.execute(SQL("SELECT count(*) AS n FROM {0}").format(self._events))
            count_row = curs.fetchone()
        count = int(count_row["n"]) if count_row else 0
        if row is None:
            return LogHead(0, GENESIS, count)
        return LogHead(int(row["position"]), str(row["hash"]), count)


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)
