"""Stored ER vectors (record id, hnswlib label, float32 bytes) and the job queue.

Only ids and vectors are kept: the values a vector came from are never
written. Tables live in the event log's database (SQLite file or PostgreSQL).
The vectors are the durable data behind the ANN indexes (adapters.er.hnsw), which
rebuild from them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import numpy as np

from adapters.sql.pg_schema import schema_lock
from adapters.sql.sqlite_writer import SQLiteWriter

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from contextlib import AbstractContextManager

    import numpy.typing as npt

    from adapters.ledger.store import Ledger

_IN = 500
"""Ids per IN (...) query."""


def _stamp(moment: datetime) -> str:
    """UTC, fixed width: the text order is the time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _tables(blob: str) -> tuple[str, ...]:
    return (
        "CREATE TABLE IF NOT EXISTS er_vectors (tenant TEXT NOT NULL, "
        "entity_set TEXT NOT NULL, record_id TEXT NOT NULL, label BIGINT NOT NULL, "
        f"vector {blob} NOT NULL, PRIMARY KEY (tenant, entity_set, record_id))",
        "CREATE UNIQUE INDEX IF NOT EXISTS er_vectors_by_label "
        "ON er_vectors (tenant, entity_set, label)",
        "CREATE TABLE IF NOT EXISTS er_sets (tenant TEXT NOT NULL, "
        "entity_set TEXT NOT NULL, n_vectors BIGINT NOT NULL, "
        "position BIGINT NOT NULL, PRIMARY KEY (tenant, entity_set))",
        "CREATE TABLE IF NOT EXISTS er_job_queue (id TEXT PRIMARY KEY, "
        "tenant TEXT NOT NULL, run_after TEXT NOT NULL, status TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS er_job_leases (id TEXT PRIMARY KEY, "
        "owner TEXT NOT NULL, until TEXT NOT NULL)",
    )


class SqlVectorStore:
    """Vectors and queued jobs in the log's database (plain SQL both speak)."""

    def __init__(self, ledger: Ledger) -> None:
        self.backend = ledger.backend
        self._datastore: Any = ledger.factory.datastore  # type: ignore[attr-defined]
        self._mark = "%s" if self.backend == "postgres" else "?"
        self._writer: SQLiteWriter | None = None
        if self.backend == "postgres":
            with schema_lock(self._datastore), self._writing() as c:
                for statement in _tables("BYTEA"):
                    c.execute(statement)
        else:
            self._writer = SQLiteWriter(self._datastore, synchronous="NORMAL")
            with self._writing() as c:
                for statement in _tables("BLOB"):
                    c.execute(statement)

    def _sql(self, text: str) -> str:
        return text.replace("?", self._mark)

    def _reading(self) -> AbstractContextManager[Any]:
        return self._datastore.transaction(commit=False)  # type: ignore[no-any-return]

    def _writing(self) -> AbstractContextManager[Any]:
        if self._writer is not None:
            return self._writer.transaction()
        return self._datastore.transaction(commit=True)  # type: ignore[no-any-return]

    def upsert(
        self,
        tenant: str,
        entity_set: str,
        record_ids: Sequence[str],
        vectors: npt.NDArray[np.float32],
    ) -> npt.NDArray[np.int64]:
        """Store vectors under their record ids; returns each one's index label."""
        labels = np.empty(len(record_ids), dtype=np.int64)
        with self._writing() as c:
            known = self._labels(c, tenant, entity_set, record_ids)
            c.execute(
                self._sql(
                    "SELECT n_vectors FROM er_sets WHERE tenant = ? AND entity_set = ?"
                ),
                (tenant, entity_set),
            )
            row = c.fetchone()
            count = int(row["n_vectors"]) if row else 0
            for i, record_id in enumerate(record_ids):
                label = known.get(record_id)
                if label is None:
                    label, count = count, count + 1
                labels[i] = label
            c.executemany(
                self._sql(
                    "INSERT INTO er_vectors (tenant, entity_set, record_id, label, "
                    "vector) VALUES (?, ?, ?, ?, ?) ON CONFLICT "
                    "(tenant, entity_set, record_id) DO UPDATE SET "
                    "vector = excluded.vector"
                ),
                [
                    (tenant, entity_set, rid, int(lab), vec.tobytes())
                    for rid, lab, vec in zip(
                        record_ids, labels, vectors.astype("<f4"), strict=True
                    )
                ],
            )
            c.execute(
                self._sql(
                    "INSERT INTO er_sets (tenant, entity_set, n_vectors, position) "
                    "VALUES (?, ?, ?, 0) ON CONFLICT (tenant, entity_set) "
                    "DO UPDATE SET n_vectors = excluded.n_vectors"
                ),
                (tenant, entity_set, count),
            )
        return labels

    def _labels(
        self, c: Any, tenant: str, entity_set: str, record_ids: Sequence[str]
    ) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(record_ids), _IN):
            part = list(record_ids[start : start + _IN])
            c.execute(
                self._sql(
                    "SELECT record_id, label FROM er_vectors WHERE tenant = ? AND "
                    f"entity_set = ? AND record_id IN ({','.join('?' * len(part))})"
                ),
                [tenant, entity_set, *part],
            )
            found.update({r["record_id"]: int(r["label"]) for r in c.fetchall()})
        return found

    def set_position(self, tenant: str, entity_set: str, position: int) -> None:
        """Record the log position the stored vectors now reflect."""
        with self._writing() as c:
            c.execute(
                self._sql(
                    "UPDATE er_sets SET position = ? "
                    "WHERE tenant = ? AND entity_set = ?"
                ),
                (position, tenant, entity_set),
            )

    def _set(self, tenant: str, entity_set: str) -> tuple[int, int]:
        with self._reading() as c:
            c.execute(
                self._sql(
                    "SELECT n_vectors, position FROM er_sets "
                    "WHERE tenant = ? AND entity_set = ?"
                ),
                (tenant, entity_set),
            )
            row = c.fetchone()
        return (int(row["n_vectors"]), int(row["position"])) if row else (0, 0)

    def position(self, tenant: str, entity_set: str) -> int:
        return self._set(tenant, entity_set)[1]

    def count(self, tenant: str, entity_set: str) -> int:
        return self._set(tenant, entity_set)[0]

    def vectors(
        self, tenant: str, entity_set: str, *, chunk: int = 10_000
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
        """Every stored vector in label order, in chunks."""
        after = -1
        while True:
            with self._reading() as c:
                c.execute(
                    self._sql(
                        "SELECT label, vector FROM er_vectors WHERE tenant = ? AND "
                        "entity_set = ? AND label > ? ORDER BY label LIMIT ?"
                    ),
                    (tenant, entity_set, after, chunk),
                )
                rows = c.fetchall()
            if not rows:
                return
            labels = np.array([int(r["label"]) for r in rows], dtype=np.int64)
            vectors = np.frombuffer(
                b"".join(bytes(r["vector"]) for r in rows), dtype="<f4"
            ).reshape(len(rows), -1)
            yield labels, vectors.astype(np.float32)
            after = int(labels[-1])

    def lookup(
        self, tenant: str, entity_set: str, record_id: str
    ) -> tuple[int, npt.NDArray[np.float32]] | None:
        """A stored record's label and vector, or None."""
        with self._reading() as c:
            c.execute(
                self._sql(
                    "SELECT label, vector FROM er_vectors WHERE tenant = ? AND "
                    "entity_set = ? AND record_id = ?"
                ),
                (tenant, entity_set, record_id),
            )
            row = c.fetchone()
        if row is None:
            return None
        vector = np.frombuffer(bytes(row["vector"]), dtype="<f4").astype(np.float32)
        return int(row["label"]), vector

    def record_ids(
        self, tenant: str, entity_set: str, labels: Sequence[int]
    ) -> dict[int, str]:
        found: dict[int, str] = {}
        with self._reading() as c:
            for start in range(0, len(labels), _IN):
                part = [int(x) for x in labels[start : start + _IN]]
                c.execute(
                    self._sql(
                        "SELECT record_id, label FROM er_vectors WHERE tenant = ? AND "
                        f"entity_set = ? AND label IN ({','.join('?' * len(part))})"
                    ),
                    [tenant, entity_set, *part],
                )
                found.update({int(r["label"]): r["record_id"] for r in c.fetchall()})
        return found

    # -- the job queue ------------------------------------------------------------

    def enqueue(self, job_id: UUID, tenant: str, run_after: datetime) -> None:
        with self._writing() as c:
            c.execute(
                self._sql(
                    "INSERT INTO er_job_queue (id, tenant, run_after, status) "
                    "VALUES (?, ?, ?, 'queued') ON CONFLICT (id) DO NOTHING"
                ),
                (str(job_id), tenant, _stamp(run_after)),
            )

    def due(self, now: datetime) -> list[UUID]:
        """Queued jobs whose time has come, oldest first."""
        with self._reading() as c:
            c.execute(
                self._sql(
                    "SELECT id FROM er_job_queue WHERE status = 'queued' "
                    "AND run_after <= ? ORDER BY run_after, id"
                ),
                (_stamp(now),),
            )
            return [UUID(r["id"]) for r in c.fetchall()]

    def claim(self, job_id: UUID, owner: str, now: datetime, until: datetime) -> bool:
        """One statement, so two claimers cannot both win (see JobQueue)."""
        with self._writing() as c:
            c.execute(
                self._sql(
                    "INSERT INTO er_job_leases (id, owner, until) VALUES (?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, "
                    "until = excluded.until WHERE er_job_leases.until <= ? "
                    "RETURNING owner"
                ),
                (str(job_id), owner, _stamp(until), _stamp(now)),
            )
            return c.fetchone() is not None

    def renew(self, job_id: UUID, owner: str, until: datetime) -> bool:
        with self._writing() as c:
            c.execute(
                self._sql(
                    "UPDATE er_job_leases SET until = ? WHERE id = ? AND owner = ? "
                    "RETURNING owner"
                ),
                (_stamp(until), str(job_id), owner),
            )
            return c.fetchone() is not None

    def dequeue(self, job_id: UUID) -> None:
        with self._writing() as c:
            c.execute(
                self._sql("UPDATE er_job_queue SET status = 'done' WHERE id = ?"),
                (str(job_id),),
            )
            c.execute(
                self._sql("DELETE FROM er_job_leases WHERE id = ?"), (str(job_id),)
            )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
