"""Opening the event log from a database URL (SQLite file or PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from eventsourcing.persistence import InfrastructureFactory

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    from eventsourcing.persistence import ApplicationRecorder

    from application.ports import IdempotencyRecord, LogEntry, LogHead

SQLITE_RECORDER = "adapters.ledger.sqlite:LedgerSQLiteRecorder"
POSTGRES_RECORDER = "adapters.ledger.postgres:LedgerPostgresRecorder"
TRANSCODER = "adapters.ledger.transcoder:CanonicalJSONTranscoder"


class ChainedRecorder(Protocol):
    """What both chained recorders offer beyond the library's ApplicationRecorder."""

    idempotency_ttl_s: float

    def add_listener(self, listener: Callable[[int, int], None]) -> None: ...
    def entries(self, *, after: int, limit: int) -> Sequence[LogEntry]: ...
    def entries_for(self, originator_id: UUID) -> Sequence[LogEntry]: ...
    def entries_for_many(
        self, originator_ids: Sequence[UUID]
    ) -> Sequence[LogEntry]: ...
    def entries_at(self, positions: Sequence[int]) -> Sequence[LogEntry]: ...
    def chain_positions(self, lo: int, hi: int) -> Sequence[int]: ...
    def chain_rows(self, *, after: int, limit: int) -> Sequence[tuple[Any, ...]]: ...
    def chain_hashes(self, *, after: int, limit: int) -> Sequence[tuple[int, str]]: ...
    def save_checkpoint(
        self, *, size: int, last_position: int, root: str, envelope: str
    ) -> None: ...
    def checkpoints(
        self, *, at_least: int = 0
    ) -> Sequence[tuple[int, int, str, str]]: ...
    def head(self) -> LogHead: ...
    def find_idempotency(self, tenant: str, key: str) -> IdempotencyRecord | None: ...
    def purge_idempotency(self) -> int: ...
    def close(self) -> None: ...
    def max_notification_id(self) -> int | None: ...


def eventsourcing_env(database_url: str, *, pool_size: int = 8) -> dict[str, str]:
    """The library's environment for a database URL (no os.environ involved)."""
    url = urlsplit(database_url)
    if url.scheme == "sqlite":
        path = unquote(url.path)
        # sqlite:///rel/path -> "rel/path"; sqlite:////abs/path -> "/abs/path"
        path = path.removeprefix("/")
        if not path:
            msg = f"no file path in {database_url!r}"
            raise ValueError(msg)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
            "APPLICATION_RECORDER_TOPIC": SQLITE_RECORDER,
            "TRANSCODER_TOPIC": TRANSCODER,
            "IS_SNAPSHOTTING_ENABLED": "y",
        }
    if url.scheme in {"postgres", "postgresql"}:
        query = parse_qs(url.query)
        host = query.get("host", [url.hostname or "127.0.0.1"])[0]
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": unquote(url.path.lstrip("/")) or "postgres",
            "POSTGRES_HOST": host,
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": unquote(url.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(url.password or ""),
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": str(pool_size),
            "POSTGRES_CONNECT_TIMEOUT": "10",
            "APPLICATION_RECORDER_TOPIC": POSTGRES_RECORDER,
            "TRANSCODER_TOPIC": TRANSCODER,
            "IS_SNAPSHOTTING_ENABLED": "y",
        }
    msg = f"unsupported database URL scheme {url.scheme!r} (sqlite or postgresql)"
    raise ValueError(msg)


@dataclass
class Ledger:
    """The shared event log: one factory, one chained recorder, one env."""

    env: dict[str, str]
    factory: InfrastructureFactory
    recorder: ApplicationRecorder

    @property
    def chained(self) -> ChainedRecorder:
        return self.recorder  # type: ignore[return-value]

    @property
    def backend(self) -> str:
        return "postgres" if "postgres" in self.env["PERSISTENCE_MODULE"] else "sqlite"

    def entries(self, *, after: int, limit: int) -> Sequence[LogEntry]:
        return self.chained.entries(after=after, limit=limit)

    def entries_for(self, originator_id: UUID) -> Sequence[LogEntry]:
        return self.chained.entries_for(originator_id)

    def entries_for_many(self, originator_ids: Sequence[UUID]) -> Sequence[LogEntry]:
        return self.chained.entries_for_many(originator_ids)

    def entries_at(self, positions: Sequence[int]) -> Sequence[LogEntry]:
        return self.chained.entries_at(positions)

    def head(self) -> LogHead:
        return self.chained.head()

    def find_idempotency(self, tenant: str, key: str) -> IdempotencyRecord | None:
        return self.chained.find_idempotency(tenant, key)

    def purge_idempotency(self) -> int:
        return self.chained.purge_idempotency()

    def close(self) -> None:
        self.chained.close()
        self.factory.close()


def open_ledger(database_url: str, *, pool_size: int = 8) -> Ledger:
    """Open (and create if needed) the event log at ``database_url``."""
    env = eventsourcing_env(database_url, pool_size=pool_size)
    factory = InfrastructureFactory.construct(env=env)
    recorder = factory.application_recorder()
    return Ledger(env=env, factory=factory, recorder=recorder)
